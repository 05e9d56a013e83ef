"""Label Studio's ML-backend protocol, spoken by the service under ``/labelstudio`` (docs/label-studio.md).

In Label Studio (Project → Settings → Model → Connect model) the backend URL is ``http://HOST:PORT/labelstudio``;
Label Studio then calls, relative to it::

    GET  /health         {"status": "UP", "model_version", "training": {...}}: Label Studio's connection check;
                          here also the state of the last retraining (running, done, or failed with its error)
    POST /setup          {"project", "schema": labelling config XML, "hostname", "access_token"} → {"model_version"}
    POST /predict        {"tasks": [...], "label_config", "project"} → {"results": [one prediction per task]}
    POST /webhook        {"action": "START_TRAINING" | "ANNOTATION_CREATED" | ..., "project": {...}}
    POST /train          {"annotations": [tasks with annotations], "label_config", "project"} (the "Start Training"
                          button of Label Studio versions that post the annotations instead of a webhook)
    POST /job_status     {"job": id} → the retraining's state;   GET /versions → {"versions": [model version]}

The service's own routes (``/health``, ``/predict``, ...) stay as they are: the prefix keeps the two apart.

Labelling configs (Choices, Taxonomy) and the result format: :mod:`labelwise.data.labelstudio`. Training (the
webhook, /train) runs in the background: :mod:`labelwise.serve.retrain`.
"""
from __future__ import annotations

import json
import logging

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from labelwise.data.labelstudio import SEP, Control, parse_label_config, prediction_for
from labelwise.errors import LabelwiseError, shorten
from labelwise.serve.config import ServeConfig
from labelwise.serve.http import json_response, printable
from labelwise.serve.retrain import Busy, Retrainer, fetch_annotated_tasks
from labelwise.serve.slot import ModelSlot

log = logging.getLogger("labelwise")

__all__ = ["PREFIX", "ROUTES", "Control", "LabelStudioBackend", "add_labelstudio_routes", "parse_label_config",
           "prediction_for"]

PREFIX = "/labelstudio"
ROUTES = tuple(PREFIX + p for p in ("/", "/health", "/setup", "/predict", "/webhook", "/train", "/job_status",
                                    "/versions"))
TRAINING_EVENTS = ("START_TRAINING",)
ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED")


# ---- the routes --------------------------------------------------------------------------------------------------
def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


async def _read_object(request: Request, example: str) -> dict:
    """The JSON object of a request body, or one line saying what is wrong with it (400 / 422)."""
    raw = await request.body()
    try:
        payload = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except UnicodeDecodeError as err:
        raise _bad(400, f"request body is not UTF-8 (at byte {err.start}); send {example}") from None
    except json.JSONDecodeError as err:
        raise _bad(400, f"request body is not valid JSON: {printable(err.msg)} at line {err.lineno}, column "
                        f"{err.colno}; send {example}") from None
    except (ValueError, RecursionError) as err:  # a number of more than 4,300 digits, say
        raise _bad(400, f"request body could not be read as JSON ({printable(str(err))[:120]}); send {example}") \
            from None
    if not isinstance(payload, dict):
        raise _bad(422, f"request body must be a JSON object: {example}")
    return payload


def _project_id(project) -> str | None:
    """Label Studio names a project "12.1700000000" (id.created) in its calls, {"id": 12, ...} in webhooks."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, (int, str)) and str(project).strip():
        return str(project).split(".")[0]
    return None


class LabelStudioBackend:
    """The ML backend's state: each project's labelling control and connection (from /setup), the retrainer."""

    def __init__(self, slot: ModelSlot, config: ServeConfig):
        self.slot, self.config = slot, config
        self.projects: dict[str, dict] = {}  # project id → {"control", "hostname", "access_token"}
        self.retrainer = Retrainer(slot, config)
        self.new_annotations: dict[str, int] = {}  # project id → annotation events since the last retraining

    def control(self, payload: dict, key: str = "label_config") -> Control:
        """The payload's labelling config, else the one its project sent at /setup."""
        project = _project_id(payload.get("project"))
        xml = payload.get(key)
        if xml is None and isinstance(payload.get("project"), dict):
            xml = payload["project"].get("label_config")
        try:
            if xml is not None:
                control = parse_label_config(xml, self.config.labelstudio_from_name)
            elif project in self.projects:
                control = self.projects[project]["control"]
            else:
                raise LabelwiseError(f"no labelling config: send `{key}` (Label Studio does) or call /setup for "
                                     "this project first")
        except LabelwiseError as err:
            raise _bad(422, str(err)) from None
        labels = self.slot.current.classifier.labels
        if not control.covered(labels):
            what = "paths (label names split on ##)" if control.kind == "taxonomy" else "choices"
            shown = ", ".join(shorten(v if isinstance(v, str) else SEP.join(v), 30) for v in sorted(control.values)[:3])
            raise _bad(422, f"none of the model's {len(labels)} labels (such as {shorten(labels[0], 30)}) is among the "
                            f"{what} of <{control.kind.title()} name={control.from_name!r}> ({shown or 'none'}); "
                            "the choices must be the label names of the model's label.txt")
        return control

    def texts(self, tasks, control: Control) -> list[str]:
        if not isinstance(tasks, list) or not tasks:
            raise _bad(422, 'tasks: send a non-empty list of Label Studio tasks, such as [{"id": 1, "data": '
                            f'{{"{control.data_key}": "..."}}}}]')
        texts = []
        for number, task in enumerate(tasks, 1):
            data = task.get("data") if isinstance(task, dict) else None
            named = isinstance(task, dict) and "id" in task
            where = f"task {number}" + (f" (id {printable(str(task['id']))[:40]})" if named else "")
            text = data.get(control.data_key) if isinstance(data, dict) else None
            if not isinstance(text, str):
                got = "no such field" if text is None else f"a {type(text).__name__}"
                raise _bad(422, f"{where}: data.{control.data_key} must be the text to label ({got}); the labelling "
                                f"config's <Text value=\"${control.data_key}\"> names that field")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise _bad(422, f"{where}: the text holds an unpaired surrogate at character {err.start}; send "
                                "valid Unicode") from None
            texts.append(text)
        return texts

    def chunks(self, texts: list[str], rows: list[int]) -> list[list[int]]:
        """``rows`` of ``texts`` in groups within ``max_texts`` texts and ``max_chars`` characters; 413 for a call
        over ``labelstudio_max_tasks`` tasks or a text over ``max_chars``."""
        config = self.config
        if len(texts) > config.labelstudio_max_tasks:
            raise _bad(413, f"{len(texts)} tasks in one call; the limit is {config.labelstudio_max_tasks} (retrieve "
                            "predictions for fewer tasks at a time, or start the server with a larger "
                            "`labelstudio_max_tasks`)")
        groups, chars = [[]], 0
        for i in rows:
            if len(texts[i]) > config.max_chars:
                raise _bad(413, f"task {i + 1}: its text has {len(texts[i])} characters; the limit is "
                                f"{config.max_chars} (start the server with a larger `max_chars`)")
            if len(groups[-1]) == config.max_texts or chars + len(texts[i]) > config.max_chars:
                groups.append([])
                chars = 0
            groups[-1].append(i)
            chars += len(texts[i])
        return [g for g in groups if g]

    async def predict(self, payload: dict) -> dict:
        control = self.control(payload)
        texts = self.texts(payload.get("tasks"), control)
        served = self.slot.current  # one model for the whole request, even if a retrained one arrives meanwhile
        labels, version = served.classifier.labels, served.info["model_version"]
        probs = np.zeros((len(texts), len(labels)), dtype=np.float32)
        live = [i for i, t in enumerate(texts) if t.strip()]  # an empty text gets an empty prediction, score 0
        for rows in self.chunks(texts, live):  # /predict's limits on each pass: max_texts, max_chars
            probs[rows] = await served.batcher.proba([texts[i] for i in rows])
        decided = served.classifier.decode(probs)
        results = []
        for i, prediction in enumerate(decided):
            if texts[i].strip():
                results.append(prediction_for(probs[i], prediction.labels, labels, control, version))
            else:
                results.append({"model_version": version, "score": 0.0, "result": []})
        return {"results": results, "model_version": version}

    def setup(self, payload: dict) -> dict:
        project = _project_id(payload.get("project"))
        control = self.control(payload, "schema")
        if project is not None:
            self.projects[project] = {"control": control, "hostname": payload.get("hostname") or None,
                                      "access_token": payload.get("access_token") or None}
        served = self.slot.current
        missing = [label for label in served.classifier.labels if control.label_value(label) is None]
        answer = {"model_version": served.info["model_version"]}
        if missing:
            answer["warning"] = (f"{len(missing)} of the model's labels are not in <{control.kind.title()} "
                                 f"name={control.from_name!r}> and are never predicted: "
                                 + ", ".join(shorten(label, 30) for label in missing[:5]))
            log.warning("Label Studio project %s: %s", project, answer["warning"])
        return answer

    def _fetcher(self, project: str | None):
        """A function that downloads the project's annotated tasks through Label Studio's REST API."""
        known = self.projects.get(project or "", {})
        url = self.config.labelstudio_url or known.get("hostname")
        token = self.config.labelstudio_token or known.get("access_token")
        if project is None:
            raise _bad(422, "the training event names no project; Label Studio sends {\"project\": {\"id\": ...}}")
        if not url or not token:
            missing = "address" if not url else "access token"
            raise _bad(422, f"cannot fetch project {project}'s annotations: no Label Studio {missing} (connect the "
                            "model in Label Studio so that it calls /setup, or start the service with "
                            "--labelstudio_url and --labelstudio_token)")
        return lambda: fetch_annotated_tasks(url, token, project)

    def _start(self, fetch, control: Control, trigger: str, project: str | None) -> dict:
        try:
            job = self.retrainer.start(fetch, control, trigger)
        except Busy as err:
            raise _bad(409, str(err)) from None
        if project is not None:
            self.new_annotations[project] = 0
        return {"status": "training", "job": job, "model_version": self.slot.current.info["model_version"]}

    def webhook(self, payload: dict) -> tuple[int, dict]:
        action = payload.get("action")
        if not isinstance(action, str) or not action:
            raise _bad(422, 'action: a webhook names its event, such as {"action": "START_TRAINING", "project": '
                            '{"id": 1}}')
        project = _project_id(payload.get("project"))
        if action in TRAINING_EVENTS:
            control = self.control(payload)
            return 201, self._start(self._fetcher(project), control, action, project)
        if action in ANNOTATION_EVENTS and self.config.labelstudio_retrain_every > 0:
            count = self.new_annotations.get(project or "", 0) + 1
            self.new_annotations[project or ""] = count
            if count >= self.config.labelstudio_retrain_every and not self.retrainer.busy():
                control = self.control(payload)
                return 201, self._start(self._fetcher(project), control, action, project)
            return 200, {"status": "counted", "annotations_since_training": count,
                         "retrain_every": self.config.labelstudio_retrain_every}
        reason = ("annotation events start no training (press Start Training in Label Studio, or start the service "
                  "with --labelstudio_retrain_every N)" if action in ANNOTATION_EVENTS else "not a training event")
        return 200, {"status": "ignored", "action": printable(action)[:80], "reason": reason}

    def train(self, payload: dict) -> dict:
        tasks = payload.get("annotations")
        if not isinstance(tasks, list) or not tasks:
            raise _bad(422, "annotations: send the list of annotated tasks (Label Studio's JSON export)")
        control = self.control(payload)
        return self._start(lambda: tasks, control, "train", _project_id(payload.get("project")))

    def health(self) -> dict:
        served = self.slot.current
        return {"status": "UP", "model_class": "labelwise", "model_version": served.info["model_version"],
                "model": served.info["model"], "labels": len(served.classifier.labels),
                "training": self.retrainer.status()}


def add_labelstudio_routes(app: FastAPI, slot: ModelSlot, config: ServeConfig) -> LabelStudioBackend:
    """Mount the ML-backend routes under :data:`PREFIX` on ``app``; returns the backend (also ``app.state``)."""
    backend = LabelStudioBackend(slot, config)
    app.state.labelstudio = backend

    @app.get(PREFIX + "/health", tags=["Label Studio"])
    @app.get(PREFIX + "/", include_in_schema=False)
    async def ls_health():
        return backend.health()

    @app.post(PREFIX + "/setup", tags=["Label Studio"])
    async def ls_setup(request: Request):
        return backend.setup(await _read_object(request, '{"project": "1", "schema": "<View>...</View>"}'))

    @app.post(PREFIX + "/predict", tags=["Label Studio"])
    async def ls_predict(request: Request):
        payload = await _read_object(request, '{"tasks": [{"data": {"text": "..."}}], "label_config": "<View>..."}')
        return json_response(await backend.predict(payload))

    @app.post(PREFIX + "/webhook", tags=["Label Studio"])
    async def ls_webhook(request: Request):
        status, answer = backend.webhook(await _read_object(request, '{"action": "START_TRAINING", "project": {}}'))
        return json_response(answer) if status == 200 else _created(answer)

    @app.post(PREFIX + "/train", tags=["Label Studio"])
    async def ls_train(request: Request):
        payload = await _read_object(request, '{"annotations": [...], "label_config": "<View>..."}')
        return _created(backend.train(payload))

    @app.post(PREFIX + "/job_status", tags=["Label Studio"])
    async def ls_job_status():
        return backend.retrainer.status()

    @app.get(PREFIX + "/versions", tags=["Label Studio"])
    async def ls_versions():
        return {"versions": [slot.current.info["model_version"]]}

    return backend


def _created(answer: dict) -> JSONResponse:
    return JSONResponse(answer, status_code=201)

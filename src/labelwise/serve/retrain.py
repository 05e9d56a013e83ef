"""Retraining from Label Studio's annotations, in the background, while the service keeps answering.

Where the annotations come from:

* Label Studio's **Start Training** posts every annotated task to ``/labelstudio/train`` (Label Studio's default),
  and those tasks are used as sent;
* with Label Studio's webhook flavour of it (a ``START_TRAINING`` event at ``/labelstudio/webhook``), or after
  ``--labelstudio_retrain_every N`` annotation events, the service downloads the project's annotated tasks from
  Label Studio's REST API (``GET /api/projects/ID/export?exportType=JSON``), at the address and with the access
  token Label Studio sent at /setup, or those of ``--labelstudio_url`` / ``--labelstudio_token``.

What is trained: a copy of the dataset the served model was trained on (its ``dataset_dir``, or
``--labelstudio_dataset_dir``) in which each annotated text carries its annotated labels (a text already in
train.txt is relabelled, a text in dev.txt is left out, so dev stays a fair judge), trained with the served
model's own training settings (``--labelstudio_retrain_epochs`` overrides the epochs). Each job writes a new
folder ``<labelstudio_runs_dir>/job-N-<time>/`` holding ``data/`` (that dataset) and ``checkpoint/`` (written
through labelwise's guarded save path); the served folder is never written. When training ends the new model
replaces the served one (:meth:`labelwise.serve.slot.ModelSlot.swap`); a failed job leaves the old model serving,
and its error is in ``GET /labelstudio/health`` under ``training``. One job at a time: a second training request
while one runs is refused (409) with a message saying so.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from labelwise.data.dataset import Example, check_same_labels, load_dataset, save_dataset
from labelwise.data.labelstudio import SEP, Control, read_tasks
from labelwise.data.tables import columns_of
from labelwise.errors import LabelwiseError, shorten

if TYPE_CHECKING:
    from labelwise.serve.config import ServeConfig
    from labelwise.serve.slot import ModelSlot

log = logging.getLogger("labelwise")

__all__ = ["Busy", "Retrainer", "examples_from_tasks", "fetch_annotated_tasks"]

FETCH_TIMEOUT = 120.0


class Busy(LabelwiseError):
    """A training job is already running."""


# ---- annotated tasks → examples ----------------------------------------------------------------------------------
def examples_from_tasks(tasks: list, control: Control, labels: list[str]) -> tuple[list[Example], dict]:
    """Label Studio tasks (JSON export) → examples, one per annotated text (its last annotation not cancelled),
    read by :func:`labelwise.data.labelstudio.read_tasks` as ``labelwise labelstudio`` reads an export file.

    Returns the examples (labels in label.txt order; a text annotated twice: the later task) and counts of the
    tasks left out: ``no_annotation``, ``other_control`` (only another control was used) and ``empty_text`` (no
    text in the control's data field). A label the model does not know is an error (one line naming the task):
    retraining cannot add a class. Only a taxonomy path's ancestors may be missing from the model's labels (a
    tree whose leaves alone are labels); they are left out.
    """
    reading = read_tasks(tasks, "annotated tasks", control.data_key, control.from_name, SEP)
    known = set(labels)
    examples: dict[str, Example] = {}
    for example, where in zip(reading.examples, reading.where):
        for label in example.labels:
            ancestor = any(other.startswith(label + SEP) for other in example.labels)
            if label not in known and not ancestor:
                raise LabelwiseError(f"{where}: label {shorten(label)} is not one of the model's {len(labels)} "
                                     "labels; fix the annotation, or add the label to label.txt and train a new model")
        chosen = set(example.labels) & known
        examples[example.text] = Example(example.text, tuple(label for label in labels if label in chosen))
    return list(examples.values()), {**reading.skipped, "empty_text": len(reading.problems)}


# ---- Label Studio's REST API -------------------------------------------------------------------------------------
def _get_json(request: urllib.request.Request, what: str):
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as answer:
            return json.loads(answer.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        hint = (" (the token is wrong, or legacy tokens are off in this Label Studio: use a personal access token, "
                "or start Label Studio with LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true)" if err.code in (401, 403)
                else "")
        raise LabelwiseError(f"Label Studio answered {err.code} {err.reason} to {what}{hint}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise LabelwiseError(f"could not reach Label Studio for {what}: {reason}; check its address "
                             "(--labelstudio_url, or Label Studio's LABEL_STUDIO_HOST)") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LabelwiseError(f"Label Studio's answer to {what} is not JSON; is the address Label Studio's?") from None


def _authorization(url: str, token: str) -> str:
    """``Token KEY`` for a legacy token; a personal access token (a JWT refresh token) is exchanged for an access
    token first (``POST /api/token/refresh``), which goes as ``Bearer``."""
    if token.count(".") != 2:
        return f"Token {token}"
    body = json.dumps({"refresh": token}).encode("utf-8")
    request = urllib.request.Request(url + "/api/token/refresh/", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    access = _get_json(request, "the exchange of the personal access token").get("access")
    if not access:
        raise LabelwiseError("Label Studio gave no access token for the personal access token")
    return f"Bearer {access}"


def fetch_annotated_tasks(url: str, token: str, project: str | int) -> list[dict]:
    """Project ``project``'s annotated tasks from Label Studio at ``url`` (its JSON export)."""
    url = url.rstrip("/")
    query = urllib.parse.urlencode({"exportType": "JSON", "download_all_tasks": "false"})
    request = urllib.request.Request(f"{url}/api/projects/{int(project)}/export?{query}",
                                     headers={"Authorization": _authorization(url, token)})
    tasks = _get_json(request, f"the export of project {project}")
    if not isinstance(tasks, list):
        raise LabelwiseError(f"Label Studio's export of project {project} is not a list of tasks")
    return tasks


# ---- the background job ------------------------------------------------------------------------------------------
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Retrainer:
    """Runs one training job at a time on a thread and swaps its model in (see the module's docstring)."""

    def __init__(self, slot: ModelSlot, config: ServeConfig):
        self.slot, self.config = slot, config
        self._lock = threading.Lock()
        self._status: dict = {"state": "idle", "job": 0}
        self.thread: threading.Thread | None = None

    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    def busy(self) -> bool:
        return self.status()["state"] == "running"

    def _update(self, **fields) -> None:
        with self._lock:
            self._status.update(fields)

    def start(self, fetch: Callable[[], list], control: Control, trigger: str) -> int:
        """Start a job on the tasks ``fetch()`` returns (called on the job's thread); its number."""
        with self._lock:
            if self._status["state"] == "running":
                started = time.time() - self._status["started"]
                raise Busy(f"training job {self._status['job']} is still running ({started:.0f} s so far); wait "
                           "until GET /labelstudio/health says it is done, then start training again")
            job = self._status["job"] + 1
            self._status = {"state": "running", "job": job, "trigger": trigger, "started": time.time(),
                            "started_at": _now()}
        self.thread = threading.Thread(target=self._run, args=(job, fetch, control), daemon=True,
                                       name=f"labelwise-retrain-{job}")
        self.thread.start()
        return job

    def wait(self, timeout: float | None = None) -> dict:
        """Wait for the running job, if any (tests, scripts); the status."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.status()

    def _run(self, job: int, fetch: Callable[[], list], control: Control) -> None:
        try:
            summary = self._train(job, fetch, control)
        except Exception as err:  # whatever went wrong: the old model keeps serving, the error is reported
            message = str(err) if isinstance(err, LabelwiseError) else f"{type(err).__name__}: {err}"
            if not isinstance(err, LabelwiseError):
                log.exception("training job %d failed", job)
            else:
                log.error("training job %d failed: %s", job, message)
            self._update(state="failed", error=" ".join(message.split()), finished_at=_now(),
                         seconds=round(time.time() - self.status()["started"], 1))
            return
        self._update(state="done", finished_at=_now(), seconds=round(time.time() - self.status()["started"], 1),
                     **summary)

    def _base_dataset(self, served):
        meta = served.classifier.meta
        args = meta.training_args or {}
        folder = self.config.labelstudio_dataset_dir or args.get("dataset_dir")
        if not folder or not Path(folder).is_dir():
            raise LabelwiseError(f"retraining needs the dataset the model was trained on (train.txt, dev.txt, "
                                 f"label.txt){': ' + str(folder) + ' is not a folder' if folder else ''}; start the "
                                 "service with --labelstudio_dataset_dir")
        names = {k: args[k] for k in ("train_file", "dev_file", "test_file", "label_file") if args.get(k)}
        dataset = load_dataset(folder, columns=columns_of(args), labels=served.classifier.labels,  # as trained
                               **names)
        check_same_labels(served.classifier.labels, dataset.labels, served.path or None,
                          Path(folder) / names.get("label_file", "label.txt"))
        return Path(folder), dataset

    def _run_dir(self, job: int, inputs: list[Path]) -> Path:
        root = Path(self.config.labelstudio_runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for given in inputs:
            if given and root.resolve() in [given.resolve(), *given.resolve().parents]:
                raise LabelwiseError(f"{root}: retraining runs may not go inside {given} (an input of the service); "
                                     "choose another --labelstudio_runs_dir")
        for attempt in range(100):
            folder = root / (f"job-{job}-{stamp}" + (f"-{attempt}" if attempt else ""))
            try:
                folder.mkdir(parents=True, exist_ok=False)
                return folder
            except FileExistsError:
                continue
        raise LabelwiseError(f"{root}: could not make a new folder for training job {job}")

    def _train(self, job: int, fetch: Callable[[], list], control: Control) -> dict:
        from labelwise.training.config import TrainConfig
        from labelwise.training.finetune import train

        served = self.slot.current
        folder, dataset = self._base_dataset(served)
        tasks = fetch()
        annotated, skipped = examples_from_tasks(tasks, control, served.classifier.labels)
        if not annotated:
            raise LabelwiseError(f"no annotated task to train on ({len(tasks)} tasks sent, none with an annotation of "
                                 f"<{control.kind.title()} name={control.from_name!r}>)")
        dev = {e.text for e in dataset.dev}
        new = {e.text: e for e in annotated if e.text not in dev}
        relabelled = sum(1 for e in dataset.train if e.text in new)
        train_set = [new.pop(e.text, e) for e in dataset.train] + list(new.values())
        run = self._run_dir(job, [folder, Path(served.path) if served.path else None])
        splits = {"train": train_set, "dev": dataset.dev, **({"test": dataset.test} if dataset.test else {})}
        data_dir = save_dataset(run / "data", dataset.labels, splits)
        added = len(train_set) - len(dataset.train)
        self._update(run_dir=str(run), annotated_tasks=len(annotated), added=added, relabelled=relabelled,
                     left_out_in_dev=sum(1 for e in annotated if e.text in dev), skipped=skipped)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        args = {k: v for k, v in (served.classifier.meta.training_args or {}).items() if k in fields}
        args.update(dataset_dir=str(data_dir), save_dir=str(run / "checkpoint"), overwrite=False, resume=False,
                    progress=False, init_from_ckpt=None, max_train_samples=None, train_file="train.txt",
                    dev_file="dev.txt", test_file="test.txt", label_file="label.txt")
        args.setdefault("model_name", served.classifier.meta.base_model)
        if self.config.labelstudio_retrain_epochs:
            args["epochs"] = self.config.labelstudio_retrain_epochs
        log.info("training job %d: %d annotated texts (%d new, %d relabelled) with %s", job, len(annotated), added,
                 relabelled, folder)
        result = train(TrainConfig(**args))
        new_served = self.slot.swap_from_thread(result.classifier, str(result.save_dir))
        metrics = {split: {name: figures[name] for name in ("micro_f1", "macro_f1") if name in figures}
                   for split, figures in (result.metrics or {}).items()  # dev@0.5, dev@tuned: as labelwise.json
                   if split.startswith("dev@") and isinstance(figures, dict)}
        return {"checkpoint": str(result.save_dir), "model_version": new_served.info["model_version"],
                "previous_model_version": served.info["model_version"], "metrics": metrics}


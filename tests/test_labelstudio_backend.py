"""Label Studio's ML-backend protocol in the service (/labelstudio/...): setup, predictions in Label Studio's result
format for Choices and Taxonomy configs, retraining in the background with the model swapped while predictions keep
answering, and one-line 4xx answers to bad payloads. In-process (TestClient); the real Label Studio server is
tests/test_labelstudio_real.py."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from labelwise.data.dataset import read_examples, read_labels, read_texts
from labelwise.data.labelstudio import read_tasks
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.app import create_app
from labelwise.serve.config import ServeConfig
from labelwise.serve.labelstudio import parse_label_config
from labelwise.serve.retrain import examples_from_tasks

KEY = "ls-backend-key_42"


def choices_config(labels, name="label", choice="multiple") -> str:
    items = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (f'<View><Text name="text" value="$text"/><Choices name="{name}" toName="text" choice="{choice}">'
            f"{items}</Choices></View>")


def taxonomy_config(paths) -> str:
    tree: dict = {}
    for path in paths:
        node = tree
        for part in path:
            node = node.setdefault(part, {})

    def render(node):
        return "".join(f'<Choice value="{k}">{render(v)}</Choice>' for k, v in node.items())

    return f'<View><Text name="doc" value="$body"/><Taxonomy name="tax" toName="doc">{render(tree)}</Taxonomy></View>'


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def tasks_of(texts, key="text"):
    return [{"id": i + 1, "data": {key: t}} for i, t in enumerate(texts)]


def annotated(text, labels, task_id=1, name="label"):
    result = [{"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": list(labels)}}]
    return {"id": task_id, "data": {"text": text}, "annotations": [{"result": result, "was_cancelled": False}]}


@pytest.fixture(scope="module")
def texts(divorce_small):
    return read_texts(divorce_small / "data.txt")[:6]


@pytest.fixture(scope="module")
def classifier(tiny_zh_checkpoint):
    return Classifier.load(tiny_zh_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(classifier, tiny_zh_checkpoint):
    with TestClient(create_app(classifier, ServeConfig(max_texts=4), model_path=str(tiny_zh_checkpoint))) as c:
        yield c


# ---- the protocol ------------------------------------------------------------------------------------------------
def test_health_says_up_and_the_service_health_is_unchanged(client):
    ls = client.get("/labelstudio/health").json()
    own = client.get("/health").json()
    assert ls["status"] == "UP" and own["status"] == "ok"
    assert ls["model_version"] == own["model_version"] and ls["training"]["state"] == "idle"
    assert client.get("/labelstudio/").json()["status"] == "UP"
    assert client.get("/labelstudio/versions").json() == {"versions": [own["model_version"]]}


def test_predict_answers_each_task_in_label_studios_choices_format(client, classifier, texts):
    config = choices_config(classifier.labels)
    tasks = tasks_of(texts) + [{"id": 99, "data": {"text": "   "}}]  # more tasks than max_texts: answered in chunks
    response = client.post("/labelstudio/predict", json={"tasks": tasks, "label_config": config, "project": "3.17"})
    assert response.status_code == 200, response.text
    body = response.json()
    version = client.get("/health").json()["model_version"]
    assert body["model_version"] == version and len(body["results"]) == len(tasks)
    probs = classifier.predict_proba(texts)
    for text, row, got in zip(texts, probs, body["results"]):
        want = classifier.predict([text])[0].labels
        assert got["model_version"] == version
        chosen = set(want)
        certainty = [p if label in chosen else 1 - p for label, p in zip(classifier.labels, row)]
        assert got["score"] == pytest.approx(min(certainty), abs=1e-4)
        if want:
            assert got["result"] == [{"from_name": "label", "to_name": "text", "type": "choices",
                                      "value": {"choices": want}}]
        else:
            assert got["result"] == []
    assert body["results"][-1] == {"model_version": version, "score": 0.0, "result": []}  # the blank task


def test_a_single_choice_control_gets_the_most_probable_label(client, classifier, texts):
    config = choices_config(classifier.labels, choice="single")
    body = {"tasks": tasks_of(texts), "label_config": config}
    results = client.post("/labelstudio/predict", json=body).json()["results"]
    assert len(results) == len(texts)
    for text, got in zip(texts, results):
        probs = dict(zip(classifier.labels, classifier.predict_proba([text])[0]))
        chosen = classifier.predict([text])[0].labels
        assert got["result"][0]["value"]["choices"] == [max(chosen, key=probs.get)] if chosen else got["result"] == []


def test_setup_keeps_the_projects_config_and_names_labels_it_lacks(client, classifier, texts):
    subset = classifier.labels[:5]
    answer = client.post("/labelstudio/setup", json={"project": "7.1700000000", "schema": choices_config(subset),
                                                     "hostname": "http://localhost:8080", "access_token": "t0ken"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == client.get("/health").json()["model_version"]
    assert f"{len(classifier.labels) - 5} of the model's labels" in answer.json()["warning"]
    # a predict call without a config uses the one of setup: only its five choices are ever predicted
    results = client.post("/labelstudio/predict", json={"tasks": tasks_of(texts), "project": "7.1700000000"}).json()
    everything = client.post("/labelstudio/predict", json={"tasks": tasks_of(texts), "project": "7.1700000000",
                                                           "label_config": choices_config(classifier.labels)}).json()
    assert len(results["results"]) == len(everything["results"]) == len(texts)
    for narrow, wide in zip(results["results"], everything["results"]):
        got = narrow["result"][0]["value"]["choices"] if narrow["result"] else []
        full = wide["result"][0]["value"]["choices"] if wide["result"] else []
        assert got == [label for label in full if label in subset]


def test_taxonomy_predictions_are_label_paths_split_on_hashes(tmp_path, tiny_zh_encoder, texts):
    from conftest import untrained_checkpoint

    labels = ["子女", "子女##婚后有子女", "子女##抚养", "财产", "财产##不动产"]
    data = tmp_path / "tree"
    data.mkdir()
    (data / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    tree = Classifier.load(untrained_checkpoint(tiny_zh_encoder, data, tmp_path / "ckpt"), device="cpu")
    tree.meta.thresholds = [0.0] * len(labels)  # every label chosen: the paths are known
    config = taxonomy_config([label.split("##") for label in labels])
    with TestClient(create_app(tree)) as c:
        results = c.post("/labelstudio/predict", json={"tasks": tasks_of(texts[:2], key="body"),
                                                       "label_config": config}).json()["results"]
    for got in results:
        (item,) = got["result"]
        assert item["from_name"] == "tax" and item["to_name"] == "doc" and item["type"] == "taxonomy"
        # a parent chosen with its children is not sent again: the deepest paths only
        assert sorted(item["value"]["taxonomy"]) == [["子女", "婚后有子女"], ["子女", "抚养"], ["财产", "不动产"]]


def test_bad_payloads_get_one_line_4xx(client, classifier):
    config = choices_config(classifier.labels)
    post = client.post
    assert "not valid JSON" in one_line_error(post("/labelstudio/predict", content=b'{"tasks": [',
                                                   headers={"Content-Type": "application/json"}), 400)
    assert "JSON object" in one_line_error(post("/labelstudio/predict", json=[1, 2]), 422)
    assert "tasks" in one_line_error(post("/labelstudio/predict", json={"label_config": config}), 422)
    missing = post("/labelstudio/predict", json={"tasks": [{"id": 5, "data": {"txt": "x"}}], "label_config": config})
    assert "task 1 (id 5): data.text" in one_line_error(missing, 422)
    number = post("/labelstudio/predict", json={"tasks": [{"data": {"text": 12}}], "label_config": config})
    assert "data.text must be the text" in one_line_error(number, 422)
    no_control = '<View><Text name="text" value="$text"/><Labels name="l" toName="text"/></View>'
    assert "no <Choices> or <Taxonomy>" in one_line_error(
        post("/labelstudio/predict", json={"tasks": tasks_of(["x"]), "label_config": no_control}), 422)
    assert "not valid XML" in one_line_error(
        post("/labelstudio/predict", json={"tasks": tasks_of(["x"]), "label_config": "<View><Choices"}), 422)
    assert "none of the model's" in one_line_error(
        post("/labelstudio/predict", json={"tasks": tasks_of(["x"]), "label_config": choices_config(["cat"])}), 422)
    assert "no labelling config" in one_line_error(
        post("/labelstudio/predict", json={"tasks": tasks_of(["x"]), "project": "404.1"}), 422)
    assert "action" in one_line_error(post("/labelstudio/webhook", json={"project": {"id": 1}}), 422)
    assert "annotations" in one_line_error(post("/labelstudio/train", json={"label_config": config}), 422)
    unknown = post("/labelstudio/webhook", json={"action": "START_TRAINING", "project": {"id": 404}})
    assert "no labelling config" in one_line_error(unknown, 422)
    # nothing broke: the next request is answered
    assert post("/labelstudio/predict", json={"tasks": tasks_of(["x"]), "label_config": config}).status_code == 200


def test_other_webhook_events_are_acknowledged_and_ignored(client):
    for action in ("TASKS_CREATED", "ANNOTATION_CREATED", "PROJECT_UPDATED"):
        response = client.post("/labelstudio/webhook", json={"action": action, "project": {"id": 1}})
        assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert client.get("/labelstudio/health").json()["training"]["state"] == "idle"


def test_the_api_key_guards_the_backend_and_label_studios_basic_auth_carries_it(classifier):
    with TestClient(create_app(classifier, ServeConfig(api_key=KEY))) as c:
        assert "missing API key" in one_line_error(c.get("/labelstudio/health"), 401)
        basic = base64.b64encode(f"labelstudio:{KEY}".encode()).decode()
        assert c.get("/labelstudio/health", headers={"Authorization": f"Basic {basic}"}).json()["status"] == "UP"
        wrong = base64.b64encode(b"labelstudio:nope").decode()
        assert "wrong API key" in one_line_error(c.get("/labelstudio/health", headers={"Authorization":
                                                                                        f"Basic {wrong}"}), 401)
        assert c.get("/health").status_code == 200  # the service's own probe stays open


# ---- labelling configs and annotations ---------------------------------------------------------------------------
def test_parse_label_config_finds_the_control_and_the_text_field():
    control = parse_label_config(choices_config(["a", "b"], name="cls"))
    assert (control.kind, control.from_name, control.to_name, control.data_key) == ("choices", "cls", "text", "text")
    assert control.values == {"a", "b"} and control.multiple
    tax = parse_label_config(taxonomy_config([["x", "y"], ["z"]]))
    assert tax.kind == "taxonomy" and tax.data_key == "body" and tax.values == {("x",), ("x", "y"), ("z",)}
    assert tax.label_value("x##y") == ("x", "y") and tax.label_value("y") is None
    two = choices_config(["a"]).replace("</View>", '<Choices name="second" toName="text"><Choice value="b"/>'
                                                   "</Choices></View>")
    assert parse_label_config(two, "second").values == {"b"}
    with pytest.raises(LabelwiseError, match="named 'third'"):
        parse_label_config(two, "third")
    with pytest.raises(LabelwiseError, match="not a <Text>"):
        parse_label_config('<View><Choices name="c" toName="img"><Choice value="a"/></Choices>'
                           '<Image name="img" value="$image"/></View>')


def test_annotations_become_examples():
    control = parse_label_config(taxonomy_config([["x", "y"], ["z"]]))
    labels = ["x", "x##y", "z"]

    def task(i, paths, cancelled=False, text="t"):
        result = [{"from_name": "tax", "to_name": "doc", "type": "taxonomy", "value": {"taxonomy": paths}}]
        return {"id": i, "data": {"body": f"{text}{i}"}, "annotations": [{"result": result,
                                                                         "was_cancelled": cancelled}]}

    other = {"id": 6, "data": {"body": "t6"}, "annotations": [{"result": [
        {"from_name": "mood", "to_name": "doc", "type": "choices", "value": {"choices": ["happy"]}}]}]}
    unannotated = {"id": 3, "data": {"body": "t3"}, "annotations": []}
    blank = {**task(7, [["z"]]), "data": {"body": "\t "}}
    tasks = [task(1, [["x", "y"]]), task(2, [["z"]], cancelled=True), unannotated, task(4, [["z"], ["x"]]), other,
             blank, task(1, [["z"]])]
    examples, skipped = examples_from_tasks(tasks, control, labels)
    # labels in label.txt order; a text annotated twice takes its later annotation
    assert [(e.text, e.labels) for e in examples] == [("t1", ("z",)), ("t4", ("x", "z"))]
    assert skipped == {"no_annotation": 2, "other_control": 1, "empty_text": 1}
    # the same reader as `labelwise labelstudio`'s: the same texts and labels, before the model's label set
    reading = read_tasks(tasks, text_key="body", from_name="tax")
    assert [(e.text, e.labels) for e in reading.examples] == [("t1", ("x", "x##y")), ("t4", ("z", "x")), ("t1", ("z",))]
    with pytest.raises(LabelwiseError, match=r"task 1 \(id 5\): label 'q##r' is not one of the model's 3 labels"):
        examples_from_tasks([task(5, [["q", "r"]])], control, labels)
    # a path's ancestor may be missing from a leaves-only label set; the path itself may not
    leaves = ["x##y", "z"]
    assert [e.labels for e in examples_from_tasks([task(8, [["x", "y"]])], control, leaves)[0]] == [("x##y",)]
    with pytest.raises(LabelwiseError, match=r"task 1 \(id 9\): label 'x' is not one of the model's 2 labels"):
        examples_from_tasks([task(9, [["x"]])], control, leaves)
    with pytest.raises(LabelwiseError, match=r"annotated tasks: task 1 \(id 10\): label 'a,b' contains a comma"):
        examples_from_tasks([annotated("t10", ["a,b"], 10)], parse_label_config(choices_config(["a"])), ["a"])


# ---- retraining --------------------------------------------------------------------------------------------------
def _wait_for(client, states=("done", "failed"), timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        training = client.get("/labelstudio/health").json()["training"]
        if training["state"] in states:
            return training
        time.sleep(0.2)
    raise AssertionError(f"training did not finish: {training}")


@pytest.fixture()
def retrain_client(classifier, tiny_zh_checkpoint, tmp_path):
    config = ServeConfig(labelstudio_runs_dir=str(tmp_path / "runs"), labelstudio_retrain_epochs=1)
    with TestClient(create_app(classifier, config, model_path=str(tiny_zh_checkpoint))) as c:
        yield c


def test_training_swaps_the_model_while_predictions_keep_answering(retrain_client, classifier, tiny_zh_checkpoint,
                                                                    divorce_small, texts):
    client = retrain_client
    config = choices_config(classifier.labels)
    served_files = {p: p.stat().st_mtime_ns for p in Path(tiny_zh_checkpoint).rglob("*")}
    before = client.get("/health").json()["model_version"]
    labels = classifier.labels
    payload = {"annotations": [annotated(texts[0], labels[:2], 1), annotated(texts[1], [labels[3]], 2),
                               {"id": 3, "data": {"text": texts[2]}, "annotations": []}],
               "label_config": config, "project": "1.1700000000"}
    started = client.post("/labelstudio/train", json=payload)
    assert started.status_code == 201, started.text
    assert started.json()["status"] == "training" and started.json()["job"] == 1
    busy = client.post("/labelstudio/train", json=payload)  # one job at a time: the second is refused, clearly
    assert "training job 1 is still running" in one_line_error(busy, 409)
    answered_while_training = 0
    while client.get("/labelstudio/health").json()["training"]["state"] == "running":
        response = client.post("/labelstudio/predict", json={"tasks": tasks_of(texts[:3]), "label_config": config})
        assert response.status_code == 200, response.text
        answered_while_training += 1
    assert answered_while_training >= 1
    training = _wait_for(client)
    assert training["state"] == "done", training
    assert (training["annotated_tasks"], training["skipped"]["no_annotation"]) == (2, 1)
    new_meta = json.loads((Path(training["checkpoint"]) / "labelwise.json").read_text(encoding="utf-8"))
    assert training["metrics"] == {split: {k: new_meta["metrics"][split][k] for k in ("micro_f1", "macro_f1")}
                                   for split in ("dev@0.5", "dev@tuned")}  # the new model's dev figures, shown
    after = client.get("/health").json()["model_version"]
    assert after != before and training["model_version"] == after and training["previous_model_version"] == before
    assert client.get("/labelstudio/health").json()["model_version"] == after
    # the new checkpoint is a new folder; the served one was not touched
    checkpoint = Path(training["checkpoint"])
    assert checkpoint.parent.parent == Path(client.app.state.labelstudio.config.labelstudio_runs_dir)
    assert {p: p.stat().st_mtime_ns for p in Path(tiny_zh_checkpoint).rglob("*")} == served_files
    merged = read_examples(checkpoint.parent / "data" / "train.txt", labels)
    train = {e.text: e.labels for e in merged}
    assert train[texts[0]] == tuple(labels[:2]) and train[texts[1]] == (labels[3],)
    assert len(merged) == len(read_examples(divorce_small / "train.txt")) + 2
    assert read_labels(checkpoint.parent / "data" / "label.txt") == labels
    # the answers now come from the new model
    new = Classifier.load(checkpoint, device="cpu")
    got = client.post("/predict", json={"texts": texts, "threshold": 0.0}).json()["predictions"]
    for prediction, row in zip(got, new.predict_proba(texts)):
        np.testing.assert_allclose([prediction["probabilities"][label] for label in labels], row, atol=1e-5)
    ls = client.post("/labelstudio/predict", json={"tasks": tasks_of(texts[:1]), "label_config": config}).json()
    assert ls["results"][0]["model_version"] == after


def test_a_failed_training_keeps_the_old_model_and_says_why(retrain_client, classifier, texts):
    client = retrain_client
    before = client.get("/health").json()["model_version"]
    config = choices_config(classifier.labels + ["新标签"])
    payload = {"annotations": [annotated(texts[0], ["新标签"])], "label_config": config}
    assert client.post("/labelstudio/train", json=payload).status_code == 201
    training = _wait_for(client)
    assert training["state"] == "failed" and "label '新标签' is not one of the model's 20 labels" in training["error"]
    assert client.get("/health").json()["model_version"] == before
    answer = client.post("/labelstudio/predict", json={"tasks": tasks_of(texts[:1]), "label_config": config})
    assert answer.status_code == 200 and answer.json()["results"][0]["model_version"] == before
    # the failure does not block the next job
    again = client.post("/labelstudio/train", json={"annotations": [annotated(texts[0], ["新标签"])],
                                                    "label_config": config})
    assert again.status_code == 201 and again.json()["job"] == 2
    _wait_for(client)


class FakeLabelStudio(BaseHTTPRequestHandler):
    """Label Studio's export endpoint, as far as the backend uses it."""

    tasks: ClassVar[list] = []
    seen: ClassVar[list] = []

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Token abc123":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps(self.tasks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_start_training_webhook_downloads_the_annotations_from_label_studio(retrain_client, classifier, texts):
    client = retrain_client
    labels = classifier.labels
    FakeLabelStudio.tasks = [annotated(texts[3], [labels[5]], 11), annotated(texts[4], [], 12)]
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        setup = {"project": "4.1700000000", "schema": choices_config(labels), "hostname": url,
                 "access_token": "abc123"}
        assert client.post("/labelstudio/setup", json=setup).status_code == 200
        started = client.post("/labelstudio/webhook", json={"action": "START_TRAINING", "project": {"id": 4}})
        assert started.status_code == 201, started.text
        training = _wait_for(client)
    finally:
        server.shutdown()
    assert training["state"] == "done", training
    path, auth = FakeLabelStudio.seen[-1]
    assert path.startswith("/api/projects/4/export?") and "exportType=JSON" in path and auth == "Token abc123"
    train = {e.text: e.labels for e in read_examples(Path(training["checkpoint"]).parent / "data" / "train.txt")}
    assert train[texts[3]] == (labels[5],) and train[texts[4]] == ()

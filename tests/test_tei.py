"""The serving conventions: text-embeddings-inference's request and answer shapes (the JSON bodies of its
documentation), /info, /embed, and liveness / readiness probes that say different things."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from labelwise.predict.classifier import Classifier  # noqa: E402
from labelwise.serve.app import create_app  # noqa: E402
from labelwise.serve.config import ServeConfig  # noqa: E402

TEXTS = ["婚生子杨某甲由原告抚养。", "原、被告婚后共同财产：房屋一套。"]


@pytest.fixture(scope="module")
def classifier(tiny_zh_checkpoint):
    return Classifier.load(tiny_zh_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(classifier):
    with TestClient(create_app(classifier, ServeConfig(max_texts=4))) as test_client:
        yield test_client


def test_tei_predict_one_text_and_a_batch(client, classifier):
    one = client.post("/predict", json={"inputs": TEXTS[0]})  # TEI's README: {"inputs": "I like you."}
    assert one.status_code == 200, one.text
    got = one.json()
    assert [set(x) for x in got] == [{"label", "score"}] * len(classifier.labels)
    scores = [x["score"] for x in got]
    assert scores == sorted(scores, reverse=True)
    want = classifier.predict_proba(TEXTS[:1])[0]
    assert {x["label"]: x["score"] for x in got} == pytest.approx(dict(zip(classifier.labels, want)), abs=1e-5)
    batch = client.post("/predict", json={"inputs": TEXTS}).json()
    assert len(batch) == 2 and [x["label"] for x in batch[0]][:3] == [x["label"] for x in got][:3]
    assert [x["score"] for x in batch[0]] == pytest.approx(scores, abs=1e-5)  # padded with the second text
    raw = client.post("/predict", json={"inputs": TEXTS[0], "raw_scores": True, "truncate": True}).json()
    logits = {x["label"]: x["score"] for x in raw}
    assert {k: 1 / (1 + np.exp(-v)) for k, v in logits.items()} == pytest.approx(dict(zip(classifier.labels, want)),
                                                                                 abs=1e-4)


def test_the_services_own_predict_still_answers_and_bad_tei_bodies_get_one_line(client):
    own = client.post("/predict", json={"texts": TEXTS}).json()
    assert len(own["predictions"]) == 2 and "labels" in own["predictions"][0]
    for body, status, words in (({"inputs": []}, 422, "texts"), ({"inputs": 5}, 422, "inputs"),
                                ({"inputs": ["a"] * 5}, 413, "5 texts"), ({"inputs": " "}, 422, "text 1 is empty"),
                                ({"inputs": "x", "raw_scores": "yes"}, 422, "raw_scores"),
                                ({"inputs": [["a", "b"]]}, 422, "inputs")):
        answer = client.post("/predict", json=body)
        assert answer.status_code in (status, 422), (body, answer.text)
        message = answer.json()["error"]
        assert "\n" not in message and message


def test_info_names_the_model_and_its_labels(client, classifier):
    info = client.get("/info").json()
    assert info["model_type"]["classifier"]["id2label"] == {str(i): x for i, x in enumerate(classifier.labels)}
    assert info["max_input_length"] == classifier.max_seq_length and info["max_client_batch_size"] == 4
    assert info["backend"] == "torch" and info["model_sha"] == client.get("/health").json()["model_version"]


def test_embed_gives_the_texts_vectors(client, classifier):
    vectors = np.asarray(client.post("/embed", json={"inputs": TEXTS}).json())
    want = classifier.features(TEXTS)
    assert vectors.shape == want.shape
    np.testing.assert_allclose(vectors, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    raw = np.asarray(client.post("/embed", json={"inputs": TEXTS[0], "normalize": False}).json())
    np.testing.assert_allclose(raw, want[:1], atol=1e-4)


def test_embed_on_an_export_without_vectors_is_a_501(untrained_zh_checkpoint, tmp_path):
    from labelwise.compress.export import export_onnx

    export_onnx(untrained_zh_checkpoint, tmp_path / "export", optimize=False)
    with TestClient(create_app(Classifier.load(tmp_path / "export"))) as client:
        answer = client.post("/embed", json={"inputs": "x"})
        assert answer.status_code == 501 and "--features" in answer.json()["error"]


def test_live_and_ready_say_different_things(classifier):
    app = create_app(classifier, ServeConfig(max_texts=4, max_queue=4, api_key="probe-key-0123456789"))
    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "alive"}  # open, like /health
        assert client.get("/health/ready").json()["status"] == "ready"
        batcher = app.state.slot.current.batcher
        batcher.pending = 4  # the queue is full: new work is shed
        shedding = client.get("/health/ready")
        assert shedding.status_code == 503 and shedding.json()["status"] == "shedding"
        assert client.get("/health/live").status_code == 200  # alive all the same: no restart
        batcher.pending = 0
        batcher.started = False
        assert client.get("/health/ready").json()["status"] == "starting"
        batcher.started = True
        assert client.get("/info").status_code == 401  # the rest needs the key


def test_ready_waits_for_the_first_answer(classifier):
    from labelwise.serve.batcher import Batcher

    batcher = Batcher(classifier, ServeConfig())
    assert not batcher.started
    asyncio.run(batcher.start())
    assert batcher.started
    asyncio.run(batcher.stop())


def test_the_dockerfile_serves_as_a_non_root_user_with_extras_that_exist():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "Dockerfile").read_text(encoding="utf-8")
    extras = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    wanted = re.search(r'pip install "\.\[([a-z,]+)\]"', text).group(1).split(",")
    assert set(wanted) <= set(extras)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "/health/live" in text and '"serve"' in text and "torch==${TORCH_VERSION}" in text

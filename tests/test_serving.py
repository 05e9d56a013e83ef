"""HTTP service: answers match the Classifier, bad input gets a clear 4xx, batching gathers requests."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from labelwise.predict.classifier import Classifier
from labelwise.serve.app import ServerThread, create_app
from labelwise.serve.config import ServeConfig

TEXTS = ["婚生子杨某甲由原告抚养，被告每月支付抚养费一千元。", "原、被告婚后感情尚可，后因生活琐事发生矛盾。", "ok"]


@pytest.fixture(scope="module")
def classifier(tiny_zh_checkpoint):
    return Classifier.load(tiny_zh_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(classifier):
    app = create_app(classifier, ServeConfig(max_texts=4, max_chars=300, max_wait_ms=1))
    with TestClient(app) as test_client:
        yield test_client


def test_predict_matches_the_classifier(client, classifier):
    response = client.post("/predict", json={"texts": TEXTS, "top_k_min": 1})
    assert response.status_code == 200
    got = response.json()["predictions"]
    want = classifier.predict(TEXTS, top_k_min=1)
    assert [p["labels"] for p in got] == [p.labels for p in want]
    assert len(got[0]["labels"]) >= 1
    for g, w in zip(got, want):
        assert set(g["probabilities"]) == set(classifier.labels)
        np.testing.assert_allclose(g["scores"], w.scores, atol=1e-5)


def test_threshold_and_top_k_options(client, classifier):
    everything = client.post("/predict", json={"texts": TEXTS[:1], "threshold": 0.0}).json()["predictions"][0]
    assert sorted(everything["labels"]) == sorted(classifier.labels)
    assert everything["scores"] == sorted(everything["scores"], reverse=True)
    capped = client.post("/predict", json={"texts": TEXTS[:1], "threshold": 0.0, "top_k_max": 3}).json()
    assert capped["predictions"][0]["labels"] == everything["labels"][:3]
    nothing = client.post("/predict", json={"texts": TEXTS[:1], "threshold": 1.0}).json()["predictions"][0]
    assert nothing["labels"] == [] and nothing["scores"] == []


def test_paddlenlp_request_shape_returns_label_names(client, classifier):
    body = {"data": {"text": TEXTS}, "parameters": {"max_seq_len": 32, "batch_size": 8, "prob_limit": 0.1}}
    response = client.post("/models/cls_multi_label", json=body)
    assert response.status_code == 200
    result = response.json()["result"]
    probs = classifier.predict_proba(TEXTS, max_seq_length=32)
    for i, (names, confidence, ids) in enumerate(zip(result["label"], result["confidence"], result["label_ids"])):
        want = [j for j in np.argsort(-probs[i], kind="stable") if probs[i][j] >= 0.1]
        assert ids == [int(j) for j in want]
        assert names == [classifier.labels[j] for j in want]
        np.testing.assert_allclose(confidence, probs[i][want], atol=1e-5)
        assert result["predictions"][i]["text"] == TEXTS[i]
        assert result["predictions"][i]["labels"] == names
    # parameters are optional: the model's tuned thresholds are used
    plain = client.post("/models/cls_multi_label", json={"data": {"text": TEXTS[:1]}}).json()["result"]
    assert plain["label"][0] == classifier.predict(TEXTS[:1])[0].labels


def test_health_and_labels(client, classifier):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["backend"] == "torch" and health["labels"] == 20
    assert health["config"]["max_texts"] == 4 and health["config"]["dynamic_batching"] is True
    labels = client.get("/labels").json()
    assert labels["labels"] == classifier.labels
    np.testing.assert_allclose(labels["thresholds"], classifier.thresholds, atol=1e-6)
    assert "/predict" in client.get("/openapi.json").json()["paths"]


BAD_REQUESTS = [
    # (method, path, raw body or JSON, expected status, words the error must contain)
    ("post", "/predict", b'{"texts": ["a", }', 400, "not valid JSON"),
    ("post", "/predict", b"\xff\xfe not utf-8", 400, ""),
    ("post", "/predict", {"texts": "just one string"}, 422, "texts"),
    ("post", "/predict", {"texts": []}, 422, "texts"),
    ("post", "/predict", {"texts": ["fine", 42]}, 422, "texts.1"),
    ("post", "/predict", {"texts": ["fine", None]}, 422, "texts.1"),
    ("post", "/predict", {"text": ["wrong key"]}, 422, "texts"),
    ("post", "/predict", {"texts": ["a"], "threshold": 1.5}, 422, "threshold"),
    ("post", "/predict", {"texts": ["a"], "top_k_min": 3, "top_k_max": 1}, 422, "top_k_max"),
    ("post", "/predict", {"texts": ["a"], "bad\nkey": 1}, 422, "bad\\nkey: Extra inputs"),  # stays one line
    ("post", "/predict", {"texts": ["a"] * 5}, 413, "limit is 4"),
    ("post", "/predict", {"texts": ["长" * 301]}, 413, "limit is 300"),
    ("post", "/predict", [1, 2, 3], 422, ""),
    ("post", "/predict", {"texts": ["fine", "  "]}, 422, "text 2 is empty"),
    ("post", "/predict", b'{"texts": ["\\ud800abc"]}', 422, "unpaired surrogate (U+D800)"),
    ("post", "/models/cls_multi_label", b'{"data": {"text": ["ok", "x\\udfffy"]}}', 422, "text 2 holds"),
    ("post", "/models/cls_multi_label", {"data": {"text": [1]}}, 422, "data.text.0"),
    ("post", "/models/cls_multi_label", {"data": {"text": ["a"]}, "parameters": {"max_seq_len": 100000}}, 422,
     "max_seq_len"),
    ("post", "/models/cls_multi_label", {"parameters": {}}, 422, "data"),
    ("get", "/nowhere", None, 404, "no route"),
    ("get", "/predict", None, 405, "not allowed"),
]


@pytest.mark.parametrize("method,path,body,status,words", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(client, method, path, body, status, words):
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    assert words in message
    assert client.post("/predict", json={"texts": ["still alive"]}).status_code == 200


def test_oversized_body_is_refused_before_parsing(client):
    body = json.dumps({"texts": ["x" * 10_000]})
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "bytes" in response.json()["error"]


def test_service_binds_to_localhost_by_default():
    import inspect

    from labelwise.serve.app import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_are_batched_only_when_enabled(classifier, batching):
    app = create_app(classifier, ServeConfig(max_wait_ms=300, max_batch_size=64, dynamic_batching=batching))
    texts = [f"{TEXTS[i % 3]} 第{i}号" for i in range(12)]
    with ServerThread(app) as url:
        with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda t: http.post("/predict", json={"texts": [t]}).json(), texts))
            stats = http.get("/health").json()["stats"]
    want = classifier.predict(texts)
    assert [a["predictions"][0]["labels"] for a in answers] == [p.labels for p in want]
    for answer, prediction in zip(answers, want):
        np.testing.assert_allclose(list(answer["predictions"][0]["probabilities"].values()),
                                   list(prediction.probabilities.values()), atol=1e-5)
    assert stats["requests"] == 12 and stats["texts"] == 12
    if batching:
        assert stats["forward_passes"] < 12 and stats["largest_batch"] > 1
    else:
        assert stats["forward_passes"] == 12 and stats["largest_batch"] == 1


def test_serve_cli_rejects_bad_settings(capsys):
    from labelwise.cli.main import main

    assert main(["serve", "--model_path", "no/such/folder"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["serve", "--model_path", "x", "--max_texts", "0"]) == 2
    assert "--max_texts" in capsys.readouterr().err


def test_serve_command_binds_to_localhost_by_default(monkeypatch):
    from labelwise.cli.main import build_parser, main
    from labelwise.serve import app as serving

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    calls = []
    monkeypatch.setattr(serving, "serve", lambda model_path, **options: calls.append((model_path, options)))
    assert main(["serve", "--model_path", "export"]) == 0
    assert calls[0][0] == "export" and calls[0][1]["host"] == "127.0.0.1" and calls[0][1]["port"] == 8189
    assert main(["serve", "--host", "0.0.0.0"]) == 0  # opening it up takes the flag
    assert calls[1][1]["host"] == "0.0.0.0"


class SlowClassifier:
    """The real classifier, but each forward pass takes at least 0.3 s: a server that is easy to overload."""

    def __init__(self, classifier):
        self.inner = classifier

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_proba(self, texts, **options):
        import time

        time.sleep(0.3)
        return self.inner.predict_proba(texts, **options)


def test_overload_is_refused_with_503_and_retry_after_and_the_server_recovers(classifier):
    app = create_app(SlowClassifier(classifier), ServeConfig(max_queue=4, max_texts=4, max_batch_size=4))
    with ServerThread(app) as url:
        with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: http.post("/predict", json={"texts": [f"{TEXTS[0]} {i}"]}),
                                    range(16)))
            refused = [a for a in answers if a.status_code == 503]
            assert refused and all(a.status_code in (200, 503) for a in answers)
            for answer in refused:
                assert int(answer.headers["Retry-After"]) >= 1
                assert "server busy" in answer.json()["error"] and "\n" not in answer.json()["error"]
            assert http.post("/predict", json={"texts": [TEXTS[0]]}).status_code == 200  # still serving
            stats = http.get("/health").json()["stats"]
    assert stats["refused_busy"] == len(refused)
    assert stats["requests"] == 16 - len(refused) + 1


def test_queue_bound_below_a_full_request_is_refused():
    from labelwise.errors import LabelwiseError

    with pytest.raises(LabelwiseError, match="max_queue"):
        ServeConfig(max_texts=64, max_queue=10).validate()


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # lone surrogates included
BODIES = st.one_of(
    JSON_VALUES,
    st.builds(lambda texts: {"texts": texts}, st.lists(ANY_TEXT, max_size=5)),
    st.builds(lambda texts, value: {"data": {"text": texts}, "parameters": value}, st.lists(ANY_TEXT, max_size=5),
              JSON_VALUES),
    st.builds(lambda texts, extra: {"texts": texts, **extra}, st.lists(ANY_TEXT, min_size=1, max_size=3),
              st.dictionaries(st.sampled_from(["threshold", "top_k_min", "top_k_max", "other"]), JSON_VALUES)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=BODIES, route=st.sampled_from(["/predict", "/models/cls_multi_label"]))
def test_fuzzed_bodies_get_2xx_or_a_one_line_4xx(client, body, route):
    response = client.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error and "\n" not in error
    assert client.get("/health").status_code == 200


KEY = "fuzz-key-0123456789"
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
AUTH_HEADERS = st.one_of(  # (headers, whether they carry the key): random values are never the key
    st.just(({}, False)),
    st.builds(lambda v: ({"Authorization": v}, False), HEADER_TEXT),
    st.builds(lambda v: ({"Authorization": f"Bearer {v}"}, False), HEADER_TEXT),
    st.builds(lambda v: ({"X-API-Key": v}, False), HEADER_TEXT),
    st.just(({"Authorization": f"Basic {KEY}"}, False)),
    st.sampled_from([({"Authorization": f"Bearer {KEY}"}, True), ({"X-API-Key": KEY}, True),
                     ({"authorization": f"bearer  {KEY} "}, True), ({"X-API-Key": f" {KEY}"}, True)]),
)


@pytest.fixture(scope="module")
def keyed_client(classifier):
    with TestClient(create_app(classifier, ServeConfig(max_texts=4, max_chars=300, api_key=KEY))) as test_client:
        yield test_client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=st.one_of(BODIES.map(lambda b: json.dumps(b).encode()), st.binary(max_size=40)), auth=AUTH_HEADERS,
       route=st.sampled_from(["/predict", "/models/cls_multi_label", "/labels", "/metrics", "/health"]))
def test_fuzzed_keys_and_bodies_get_401_without_the_key_and_never_a_5xx(keyed_client, body, auth, route):
    headers, has_key = auth
    method = "GET" if route in ("/labels", "/metrics", "/health") else "POST"
    response = keyed_client.request(method, route, content=body if method == "POST" else None,
                                    headers={"content-type": "application/json", **headers})
    assert response.status_code < 500, response.text
    assert (response.status_code == 401) == (route != "/health" and not has_key), response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error and "\n" not in error

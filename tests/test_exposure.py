"""The service as a hostile page or client meets it: cross-site posts, deep or huge bodies on every route, slow
clients, SIGTERM, /health's contents, the warning for a server open to the network without a key."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labelwise.predict.classifier import Classifier  # noqa: E402
from labelwise.serve.app import ROUTES, ServerThread, create_app  # noqa: E402
from labelwise.serve.config import ServeConfig  # noqa: E402
from labelwise.serve.http import json_depth  # noqa: E402

TEXT = "婚生子杨某甲由原告抚养。"
POST_ROUTES = ["/predict", "/embed", "/models/cls_multi_label", "/labelstudio/setup", "/labelstudio/predict",
               "/labelstudio/webhook", "/labelstudio/train", "/labelstudio/job_status"]
STATE_CHANGING = ["/labelstudio/setup", "/labelstudio/webhook", "/labelstudio/train"]


def choices(labels) -> str:
    items = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (f'<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">{items}'
            "</Choices></View>")


@pytest.fixture(scope="module")
def classifier(untrained_zh_checkpoint):
    return Classifier.load(untrained_zh_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(classifier, tmp_path_factory):
    runs = tmp_path_factory.mktemp("exposure") / "secret-runs-folder"
    config = ServeConfig(max_texts=4, max_chars=400, labelstudio_max_tasks=10, labelstudio_runs_dir=str(runs),
                         cors_origins=["https://app.example.com"])
    with TestClient(create_app(classifier, config)) as test_client:
        yield test_client


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


# ---- cross-site posts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", POST_ROUTES)
def test_a_plain_text_post_is_refused_before_any_route_reads_it(client, classifier, route):
    """What a foreign page sends without a preflight (text/plain, a form) changes nothing."""
    backend = client.app.state.labelstudio
    body = json.dumps({"project": "9", "schema": choices(classifier.labels), "hostname": "http://evil.example.org",
                       "access_token": "stolen", "annotations": [{"data": {"text": TEXT}}],
                       "label_config": choices(classifier.labels), "texts": [TEXT]})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"content-type": kind} if kind else {}
        response = client.post(route, content=body, headers={**headers, "Origin": "https://evil.example.org"})
        assert "Content-Type: application/json" in one_line_error(response, 415)
    assert backend.projects == {} and backend.retrainer.status()["state"] == "idle"


@pytest.mark.parametrize("route", STATE_CHANGING)
def test_a_page_of_another_site_may_not_post_json_either(client, classifier, route):
    body = {"project": "9", "schema": choices(classifier.labels), "hostname": "http://evil.example.org",
            "access_token": "stolen"}
    refused = client.post(route, json=body, headers={"Origin": "https://evil.example.org"})
    assert "cors_origins" in one_line_error(refused, 403)
    assert client.app.state.labelstudio.projects == {}


def test_the_services_own_pages_and_the_allowed_origins_may_post(client, classifier):
    for origin in ("http://testserver", "https://testserver", "https://app.example.com"):  # the demo, behind TLS too
        response = client.post("/predict", json={"texts": [TEXT]}, headers={"Origin": origin})
        assert response.status_code == 200, (origin, response.text)
    assert client.post("/predict", json={"texts": [TEXT]}).status_code == 200  # curl, servers: no Origin
    answer = client.post("/labelstudio/setup", json={"project": "5", "schema": choices(classifier.labels)},
                         headers={"content-type": "application/json; charset=utf-8"})
    assert answer.status_code == 200 and "5" in client.app.state.labelstudio.projects
    client.app.state.labelstudio.projects.clear()


# ---- one JSON path: depth, size and text limits on every route, and never a 5xx ----------------------------------
def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[{{{"}]}') == 3
    assert json_depth(b'"just a string \\" [ "') == 0
    assert json_depth(b"[" * 1500 + b"]" * 1500) == 1500


@pytest.mark.parametrize("route", POST_ROUTES)
def test_deep_json_is_a_400_on_every_route(client, route):
    deep = b'{"tasks": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    assert len(deep) < 3200
    assert "nests 1501 levels" in one_line_error(client.post(route, content=deep,
                                                             headers={"content-type": "application/json"}), 400)
    assert client.get("/health").status_code == 200


def test_label_studio_predict_keeps_the_request_limits(client, classifier):
    config = choices(classifier.labels)
    tasks = [{"id": i, "data": {"text": f"{TEXT}{i}"}} for i in range(11)]
    message = one_line_error(client.post("/labelstudio/predict", json={"tasks": tasks, "label_config": config}), 413)
    assert "11 tasks" in message and "labelstudio_max_tasks" in message
    long = [{"id": 1, "data": {"text": TEXT}}, {"id": 2, "data": {"text": "长" * 401}}]
    message = one_line_error(client.post("/labelstudio/predict", json={"tasks": long, "label_config": config}), 413)
    assert "task 2" in message and "401 characters" in message and "max_chars" in message
    stats = client.app.state.slot.current.batcher.stats
    stats["largest_batch"] = 0
    ten = [{"id": i, "data": {"text": "长" * 150}} for i in range(10)]  # 1,500 characters: passes of ≤ 400, ≤ 4 texts
    answer = client.post("/labelstudio/predict", json={"tasks": ten, "label_config": config})
    assert answer.status_code == 200 and len(answer.json()["results"]) == 10
    assert 1 <= stats["largest_batch"] <= 2


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=4), max_leaves=16)
LABEL_STUDIO_KEYS = ["tasks", "label_config", "schema", "project", "action", "annotations", "data", "texts", "job",
                     "hostname", "access_token", "inputs", "raw_scores", "normalize"]
HOSTILE = [b"", b"null", b"[]", b'"x"', b"1e999999", b"-" + b"9" * 5000, b'{"tasks": "x"}', b'{"tasks": [null]}',
           b'{"tasks": [{"data": null}]}', b'{"label_config": 5}', b'{"label_config": "<View><"}',
           b'{"schema": "<!DOCTYPE x [<!ENTITY a \\"b\\">]><View/>"}', b'{"project": {"id": [1]}}',
           b'{"action": 7}', b'{"action": "START_TRAINING"}', b'{"annotations": {}}', b'{"texts": [""]}',
           b'{"a": NaN}', b"\xff\xfe", b'{"inputs": []}', b'{"inputs": [""]}', b'{"inputs": "x", "texts": 1}',
           b'{"tasks": [' + b'{"data": {"text": "x"}},' * 20 + b'{}]}']


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=st.one_of(st.sampled_from(HOSTILE), JSON.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.sampled_from(LABEL_STUDIO_KEYS), JSON, max_size=4).map(
                          lambda v: json.dumps(v).encode())),
       route=st.sampled_from(POST_ROUTES))
def test_fuzzed_bodies_on_every_route_never_get_a_5xx(client, body, route):
    response = client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, (route, body[:200], response.text)
    if response.status_code >= 400:
        one_line_error(response, response.status_code)
    assert client.app.state.labelstudio.retrainer.status()["state"] in ("idle", "failed")


# ---- /health and the warning -------------------------------------------------------------------------------------
def test_open_health_shows_no_server_path(client):
    text = client.get("/health").text
    assert "secret-runs-folder" not in text and "labelstudio_runs_dir" not in text
    assert "max_texts" in client.get("/health").json()["config"]


def test_serve_warns_when_it_listens_beyond_localhost_without_a_key(monkeypatch, untrained_zh_checkpoint, caplog):
    import uvicorn

    from labelwise.serve import app as serving

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    with caplog.at_level("WARNING", logger="labelwise"):
        serving.serve(str(untrained_zh_checkpoint), host="0.0.0.0", config=ServeConfig(api_key=None))
        assert "listening on 0.0.0.0 without an API key" in caplog.text
        caplog.clear()
        serving.serve(str(untrained_zh_checkpoint), host="0.0.0.0", config=ServeConfig(api_key="a-key-0123456789"))
        serving.serve(str(untrained_zh_checkpoint), host="127.0.0.1", config=ServeConfig(api_key=None))
        assert "without an API key" not in caplog.text
    assert [c["timeout_graceful_shutdown"] for c in calls] == [20, 20, 20]


# ---- slow clients and SIGTERM ------------------------------------------------------------------------------------
def slow_client(url: str) -> socket.socket:
    """A client that promises 100 bytes of body and sends 10."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 b'{"texts": ')
    return sock


def test_a_slow_body_gets_408_within_the_read_timeout(classifier):
    app = create_app(classifier, ServeConfig(read_timeout=0.5))
    with ServerThread(app) as url:
        sock = slow_client(url)
        started = time.monotonic()
        answer = sock.recv(4096).decode("latin-1")
        waited = time.monotonic() - started
        sock.close()
    assert answer.startswith("HTTP/1.1 408") and "read_timeout" in answer
    assert 0.4 <= waited < 10


@pytest.mark.integration  # a new Python process
def test_sigterm_does_not_wait_for_a_slow_client_past_the_shutdown_timeout(untrained_zh_checkpoint):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "labelwise", "serve", "--model_path", str(untrained_zh_checkpoint),
                             "--port", str(port), "--read_timeout", "120", "--shutdown_timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        sock = slow_client(f"http://127.0.0.1:{port}")
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stopped = time.monotonic() - started
        sock.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert stopped < 8, proc.stdout.read()


def test_every_route_is_listed(client):
    assert set(POST_ROUTES) <= set(ROUTES)

"""The service beyond localhost: API key, CORS, trusted hosts, /health without the server's paths, and a
malformed body answered in the same one-line form as every other bad request."""
from __future__ import annotations

import importlib.metadata
import re

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.app import create_app
from labelwise.serve.config import ServeConfig

KEY = "k3y-for-tests_0123456789"
ORIGIN = "https://app.example.com"
TEXT = {"texts": ["婚生子杨某甲由原告抚养。"]}


@pytest.fixture(scope="module")
def classifier(untrained_zh_checkpoint):
    return Classifier.load(untrained_zh_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def keyed(classifier, untrained_zh_checkpoint):
    config = ServeConfig(api_key=KEY, cors_origins=[ORIGIN], allowed_hosts=["api.example.com", "testserver"])
    with TestClient(create_app(classifier, config, model_path=str(untrained_zh_checkpoint.resolve()))) as client:
        yield client


@pytest.fixture(scope="module")
def open_client(classifier):
    with TestClient(create_app(classifier, ServeConfig(api_key=None))) as client:
        yield client


def one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    return message


# ---- API key ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body", [("post", "/predict", TEXT), ("get", "/labels", None),
                                              ("get", "/metrics", None), ("get", "/", None), ("get", "/docs", None),
                                              ("post", "/models/cls_multi_label", {"data": {"text": ["x"]}})])
def test_every_route_but_health_needs_the_key(keyed, method, path, body):
    response = keyed.request(method, path, json=body)
    assert "missing API key" in one_line_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}x"})
    assert "wrong API key" in one_line_error(wrong, 401)
    assert keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert keyed.request(method, path, json=body, headers={"X-API-Key": KEY}).status_code == 200


@pytest.mark.parametrize("headers", [{"Authorization": KEY}, {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": "Bearer"}, {"X-API-Key": ""}, {"X-API-Key": KEY[:-1]},
                                     {"Authorization": f"Bearer {KEY}", "X-API-Key": "other"}])
def test_a_key_in_the_wrong_form_is_refused(keyed, headers):
    one_line_error(keyed.post("/predict", json=TEXT, headers=headers), 401)


def test_health_is_open_and_the_key_is_never_shown(keyed):
    response = keyed.get("/health")
    assert response.status_code == 200
    assert KEY not in response.text
    config = ServeConfig(api_key=KEY)
    assert KEY not in repr(config) and KEY not in str(config)


def test_without_a_key_every_route_is_open(open_client):
    assert open_client.post("/predict", json=TEXT).status_code == 200
    assert open_client.get("/metrics").status_code == 200


def test_the_key_defaults_to_the_environment_variable(monkeypatch):
    from labelwise.cli.main import main
    from labelwise.serve import app as serving

    monkeypatch.setenv("LABELWISE_API_KEY", "from-env")
    assert ServeConfig().api_key == "from-env"
    calls = []
    monkeypatch.setattr(serving, "serve", lambda model_path, **options: calls.append(options["config"]))
    assert main(["serve", "--model_path", "export"]) == 0
    assert main(["serve", "--model_path", "export", "--api_key", "from-flag"]) == 0
    assert [c.api_key for c in calls] == ["from-env", "from-flag"]
    monkeypatch.delenv("LABELWISE_API_KEY")
    assert ServeConfig().api_key is None


# ---- CORS ------------------------------------------------------------------------------------------
def preflight(client, origin: str, method: str = "POST"):
    return client.options("/predict", headers={"Origin": origin, "Access-Control-Request-Method": method,
                                               "Access-Control-Request-Headers": "authorization, content-type"})


def test_preflight_from_an_allowed_origin_needs_no_key(keyed):
    response = preflight(keyed, ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    answer = keyed.post("/predict", json=TEXT, headers={"Origin": ORIGIN, "X-API-Key": KEY})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
    refused = keyed.post("/predict", json=TEXT, headers={"Origin": ORIGIN})  # the page can read why
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN


def test_preflight_from_another_origin_is_refused_in_one_line(keyed):
    response = preflight(keyed, "https://evil.example.org")
    message = one_line_error(response, 400)
    assert "https://evil.example.org" in message and "cors_origins" in message
    assert "access-control-allow-origin" not in response.headers
    answer = keyed.post("/predict", json=TEXT, headers={"Origin": "https://evil.example.org", "X-API-Key": KEY})
    assert "access-control-allow-origin" not in answer.headers  # the browser will not hand it to the page


def test_without_cors_origins_no_origin_is_allowed(open_client):
    response = preflight(open_client, ORIGIN)
    assert response.status_code == 405 and "access-control-allow-origin" not in response.headers


# ---- trusted hosts ---------------------------------------------------------------------------------
def test_only_the_allowed_hosts_are_served(keyed, open_client):
    assert keyed.get("/health", headers={"Host": "api.example.com"}).status_code == 200
    message = one_line_error(keyed.get("/health", headers={"Host": "evil.example.org"}), 400)
    assert "evil.example.org" in message and "allowed_hosts" in message
    one_line_error(keyed.post("/predict", json=TEXT, headers={"Host": "evil.example.org", "X-API-Key": KEY}), 400)
    assert open_client.get("/health", headers={"Host": "anything.example.org"}).status_code == 200


@pytest.mark.parametrize("options,field", [({"cors_origins": ["app.example.com"]}, "cors_origins"),
                                           ({"cors_origins": ["https://app.example.com/page"]}, "cors_origins"),
                                           ({"allowed_hosts": ["api.*.com"]}, "allowed_hosts"),
                                           ({"allowed_hosts": ["*example.com"]}, "allowed_hosts"),
                                           ({"api_key": "two words"}, "api_key"), ({"api_key": ""}, "api_key")])
def test_bad_access_settings_are_refused_naming_the_field(options, field):
    with pytest.raises(LabelwiseError, match=f"`{field}`"):
        ServeConfig(**options).validate()


def test_serve_cli_names_the_bad_flag(capsys):
    from labelwise.cli.main import main

    assert main(["serve", "--model_path", "x", "--cors_origins", "app.example.com"]) == 2
    assert "--cors_origins" in capsys.readouterr().err


# ---- /health and malformed bodies ------------------------------------------------------------------
def test_health_names_the_model_without_the_servers_paths(keyed, untrained_zh_checkpoint, classifier):
    health = keyed.get("/health").json()
    folder = untrained_zh_checkpoint.resolve()
    text = keyed.get("/health").text
    assert str(folder.parent) not in text and str(folder.parent).replace("/", "\\/") not in text
    assert health["model"] == folder.name
    assert health["base_model"] == classifier.meta.base_model.rstrip("/").split("/")[-1]
    assert health["labels"] == len(classifier.labels) == 20
    assert health["labelwise_version"] == importlib.metadata.version("labelwise")
    assert health["backend"] == "torch" and re.fullmatch(r"[0-9a-f]{12}", health["model_version"])
    assert set(health["config"]) >= {"max_texts", "max_queue"} and "api_key" not in health["config"]


@pytest.mark.parametrize("body,words", [
    (b'{"texts": ["a", }', "not valid JSON: Expecting value at line 1, column 17"),
    (b'{"texts": ["a"],\n "threshold": }', "at line 2, column 15"),
    (b'{"texts": ["a"]} trailing', "Extra data at line 1, column 18"),
    (b'{"texts": ["\xff"]}', "not UTF-8 (byte 0xff at position 12)"),
])
def test_a_malformed_body_gets_the_one_line_400(open_client, body, words):
    response = open_client.post("/predict", content=body, headers={"content-type": "application/json"})
    message = one_line_error(response, 400)
    assert words in message and '{"texts": ["..."]}' in message

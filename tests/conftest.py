"""Shared fixtures and builders: tiny encoders (real tokenizers, random small BERTs), small data subsets,
tiny checkpoints, and the one headless Chromium of the browser tests.

Everything but Chromium is built offline from what the packages ship and from the repo's data/ folder,
so the suite needs no network and runs in seconds per test (except those marked ``slow``).

Markers (registered in pyproject.toml): ``slow`` fine-tunes the real m3e-small / all-MiniLM encoder, runs
DDP (torchrun) subprocesses or a local Ray cluster; ``browser`` drives headless Chromium; ``integration``
(seconds each) uses a trained model, trains or exports one itself, or runs labelwise in a new process.
`make test-fast` runs ``-m "not slow and not browser"``, `make test-unit` leaves ``integration`` out too.
A test that uses a fixture of ``MODEL_FIXTURES`` (or one built on it) is marked ``integration`` here.

Browser tests skip when Chromium or the playwright package is missing, except on CI (``CI=true``), where
they fail instead, unless ``LABELWISE_SKIP_BROWSER=1`` opts out (``.ci/run`` then deselects them).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DIVORCE = REPO / "data" / "divorce"
GOEMOTIONS = REPO / "data" / "goemotions"

# The suite's one tiny encoder shape: 2 layers, 32 wide, 2 heads.
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=512)


# ---- builders --------------------------------------------------------------------------------------------
def tiny_bert(vocab_size: int, model_class=None, seed: int = 0, **config):
    """A random tiny BERT (``TINY_BERT`` shape; ``config`` overrides BertConfig fields) of ``model_class``
    (default ``BertModel``; e.g. ``BertForMaskedLM``), its weights drawn right after ``torch.manual_seed(seed)``."""
    import torch
    from transformers import BertConfig, BertModel

    bert_config = BertConfig(**{**TINY_BERT, "vocab_size": vocab_size, **config})
    torch.manual_seed(seed)
    return (model_class or BertModel)(bert_config)


def make_tiny_encoder(folder: Path, base: str) -> Path:
    """A tiny BERT folder with the tokenizer of offline model ``base`` (m3e-small / all-minilm-l6-v2)."""
    from transformers import AutoTokenizer

    from labelwise.model.encoders import resolve_model_name

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(base))
    tiny_bert(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_subset(source: Path, folder: Path, n_train: int, n_dev: int, n_test: int = 0) -> Path:
    """The first lines of each split (deterministic) plus label.txt and a data.txt from dev texts."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text((source / "label.txt").read_text(encoding="utf-8"), encoding="utf-8")
    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        if n:
            lines = (source / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:n]
            (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dev = (source / "dev.txt").read_text(encoding="utf-8").splitlines()[-8:]
    (folder / "data.txt").write_text("\n".join(line.split("\t")[0] for line in dev) + "\n", encoding="utf-8")
    return folder


def untrained_checkpoint(encoder: Path, dataset: Path, folder: Path) -> Path:
    """A checkpoint straight from the tiny encoder plus a random head.

    The shared trained fixtures saturate the tiny pooler (every text gets the same features), which
    says nothing about similarity; a fresh random encoder keeps texts apart.
    """
    import torch

    from labelwise.data.dataset import read_labels
    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import build_model

    labels = read_labels(dataset / "label.txt")
    torch.manual_seed(0)
    model, tokenizer, _ = build_model(str(encoder), labels)
    save_checkpoint(folder, model, tokenizer, CheckpointMeta(labels=labels, max_seq_length=64, base_model=str(encoder)))
    return folder


def _train_tiny(encoder: Path, dataset: Path, save_dir: Path) -> Path:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    train(TrainConfig(dataset_dir=str(dataset), save_dir=str(save_dir), model_name=str(encoder), epochs=3,
                      learning_rate=3e-3, batch_size=16, max_seq_length=64, long_text="truncate", blend="off",
                      progress=False, seed=1))
    return save_dir


# ---- encoders and data -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_zh_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_zh"), "m3e-small")


@pytest.fixture(scope="session")
def tiny_en_encoder(tmp_path_factory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny_en"), "all-minilm-l6-v2")


@pytest.fixture(scope="session")
def divorce_small(tmp_path_factory) -> Path:
    """300 train / 80 dev examples of CAIL2019 divorce, and a data.txt of 8 texts."""
    return make_subset(DIVORCE, tmp_path_factory.mktemp("divorce_small"), 300, 80)


@pytest.fixture(scope="session")
def goemotions_small(tmp_path_factory) -> Path:
    """300 train / 80 dev / 80 test GoEmotions examples."""
    return make_subset(GOEMOTIONS, tmp_path_factory.mktemp("goemotions_small"), 300, 80, 80)


# ---- checkpoints -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_zh_checkpoint(tmp_path_factory, tiny_zh_encoder, divorce_small) -> Path:
    """A tiny model trained for 3 epochs on divorce_small: a real checkpoint folder, seconds to make."""
    return _train_tiny(tiny_zh_encoder, divorce_small, tmp_path_factory.mktemp("ckpt_zh") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_en_checkpoint(tmp_path_factory, tiny_en_encoder, goemotions_small) -> Path:
    return _train_tiny(tiny_en_encoder, goemotions_small, tmp_path_factory.mktemp("ckpt_en") / "checkpoint")


@pytest.fixture(scope="session")
def untrained_zh_checkpoint(tmp_path_factory, tiny_zh_encoder, divorce_small) -> Path:
    """The tiny Chinese encoder with a random head, divorce labels (see ``untrained_checkpoint``)."""
    folder = tmp_path_factory.mktemp("untrained_zh") / "ckpt"
    return untrained_checkpoint(tiny_zh_encoder, divorce_small, folder)


@pytest.fixture(scope="session")
def untrained_en_checkpoint(tmp_path_factory, tiny_en_encoder, goemotions_small) -> Path:
    """The tiny English encoder with a random head, GoEmotions labels (see ``untrained_checkpoint``)."""
    return untrained_checkpoint(tiny_en_encoder, goemotions_small, tmp_path_factory.mktemp("untrained_en") / "ckpt")


# ---- headless Chromium -----------------------------------------------------------------------------------
def find_chromium() -> str | None:
    """The Chromium to drive: $LABELWISE_CHROMIUM (or $CHROMIUM_PATH), else Debian's chromium on the PATH."""
    for candidate in (os.environ.get("LABELWISE_CHROMIUM"), os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def browser_tests_required() -> bool:
    """On CI (CI=true) the browser tests must run, unless LABELWISE_SKIP_BROWSER=1 opts out."""
    on_ci = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    return on_ci and os.environ.get("LABELWISE_SKIP_BROWSER", "").strip() != "1"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (no Chromium, no playwright package), or None."""
    if find_chromium() is None:
        return "no Chromium found: apt-get install chromium (or set LABELWISE_CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright; `make test` does)"
    return None


def _browser_unavailable(reason: str):
    if browser_tests_required():
        pytest.fail(f"{reason}. CI=true: the browser tests must run here (.ci/run installs Chromium, `make test` "
                    "playwright); set LABELWISE_SKIP_BROWSER=1 to go without them", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_browser():
    """A launched headless Chromium (playwright ``Browser``), one per test module."""
    reason = browser_missing()
    if reason:
        _browser_unavailable(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def pytest_runtest_setup(item):
    """Skip (or, on CI, fail) a browser test before its fixtures train and export models for nothing."""
    if item.get_closest_marker("browser"):
        reason = browser_missing()
        if reason:
            _browser_unavailable(reason)


# Fixtures that train a model (seconds each): a test using one, directly or through another fixture, is an
# ``integration`` test. ``teacher`` is test_pruning.py's own.
MODEL_FIXTURES = frozenset({"tiny_zh_checkpoint", "tiny_en_checkpoint", "teacher"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    """Every test that drives Chromium is a ``browser`` test, and every one that needs a trained model an
    ``integration`` test, whatever its module says."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "chromium_browser" in fixtures and not item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)
        if fixtures & MODEL_FIXTURES and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


def assert_served_like(folder, classifier, texts):
    """The HTTP service over ``folder`` (opened with Classifier.load) answers ``classifier``'s probabilities."""
    import numpy as np
    from fastapi.testclient import TestClient

    from labelwise.predict.classifier import Classifier
    from labelwise.serve.app import create_app

    with TestClient(create_app(Classifier.load(folder), model_path=str(folder))) as client:
        assert client.get("/health").json()["backend"] == classifier.backend.name
        got = client.post("/predict", json={"texts": texts, "threshold": 0.0}).json()["predictions"]
    for prediction, row in zip(got, classifier.predict_proba(texts)):
        np.testing.assert_allclose([prediction["probabilities"][label] for label in classifier.labels], row, atol=1e-5)


# ---- Triton's Python backend, faked ----------------------------------------------------------------------------
class FakeTensor:
    """Triton's ``pb_utils.Tensor``: a name and a NumPy array."""

    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class FakeResponse:
    def __init__(self, output_tensors=(), error=None):
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class FakeServer:
    """What Triton's business-logic scripting reaches from inside a Python model: ``models`` maps a model name to a
    function of {input name: array} that returns {output name: array} (an ONNX session, another Python model)."""

    def __init__(self):
        self.models, self.calls = {}, []

    def request(self, model_name, requested_output_names, inputs):
        server = self

        class _Request:
            def exec(self):
                server.calls.append((model_name, {t.name(): t.as_numpy().shape for t in inputs}))
                outputs = server.models[model_name]({t.name(): t.as_numpy() for t in inputs})
                response = FakeResponse([FakeTensor(n, outputs[n]) for n in requested_output_names])
                response.has_error = lambda: False
                return response

        return _Request()


@pytest.fixture
def pb_utils(monkeypatch):
    """A stand-in for Triton's ``triton_python_backend_utils`` module (tests/test_triton.py, test_hierarchy_flow.py)."""
    import types

    fake = types.ModuleType("triton_python_backend_utils")
    fake.Tensor, fake.InferenceResponse = FakeTensor, FakeResponse
    fake.TritonError = lambda message: types.SimpleNamespace(message=lambda: message)
    fake.get_input_tensor_by_name = lambda request, name: request[name]
    fake.server = FakeServer()
    fake.InferenceRequest = fake.server.request
    fake.get_output_tensor_by_name = lambda response, name: FakeTensor(name, response.outputs[name])
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    return fake


def run_snippet(snippet: str, folder, texts, placeholder: str) -> dict:
    """Run a model card's plain-library snippet on ``folder`` and ``texts``, as a user would; its variables."""
    code = snippet.removeprefix("```python\n").removesuffix("```")
    for line, value in ((f'folder = "{placeholder}"', f"folder = {str(folder)!r}"),
                        ('texts = ["a text to label"]', f"texts = {list(texts)!r}")):
        assert line in code, line
        code = code.replace(line, value, 1)
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)  # noqa: S102 (the snippet is this repository's)
    return scope

"""The registry of model-folder kinds: a kind registered in a test is opened by every route, and no other module
knows the kinds."""
from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.errors import LabelwiseError
from labelwise.model.checkpoint import CheckpointMeta
from labelwise.predict import backends
from labelwise.predict.classifier import Classifier

SRC = Path(__file__).resolve().parents[1] / "src" / "labelwise"
LABELS = ["long", "short"]


class ToyBackend:
    """Scores a text by its length: 'long' from 8 tokens on, else 'short'."""

    name = "toy"

    def logits(self, batch):
        n = batch["attention_mask"].sum(1) - 7.5
        return np.stack([n, -n], axis=1).astype(np.float32)


def _open_toy(folder, device=None, num_threads=None, precision="fp32", **_):
    from labelwise.predict.onnx_backend import load_tokenizer

    info = json.loads((folder / "toy.json").read_text(encoding="utf-8"))
    meta = CheckpointMeta(labels=info["labels"], max_seq_length=32, thresholds=[0.5, 0.5])
    return backends.Opened(ToyBackend(), load_tokenizer(folder), meta)


@pytest.fixture
def toy_folder(tiny_zh_checkpoint, tmp_path):
    kind = backends.Kind("toy", "toy model", recognise=lambda f: (f / "toy.json").exists(), open=_open_toy,
                         priority=5, make="a test")
    backends.register(kind)
    folder = tmp_path / "toy"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_zh_checkpoint / name, folder / name)
    (folder / "toy.json").write_text(json.dumps({"labels": LABELS}), encoding="utf-8")
    yield folder
    backends.unregister("toy")


def _expected(clf, texts):
    return ["long" if len(row) >= 8 else "short" for row in clf.tokenizer(texts, max_length=32)["input_ids"]]


def test_a_registered_kind_is_opened_by_the_loader(toy_folder):
    assert backends.detect(toy_folder) == "toy" and "toy" in backends.names()
    clf = Classifier.load(toy_folder)
    texts = ["婚生子由原告抚养", "被告每月支付抚养费", "离婚"]
    assert len(set(_expected(clf, texts))) == 2
    got = [p.labels for p in clf.predict(texts, top_k_min=1)]
    assert got == [[e] for e in _expected(clf, texts)]
    with pytest.raises(LabelwiseError, match="`precision` int8 needs .* is a toy model"):
        Classifier.load(toy_folder, precision="int8")
    with pytest.raises(LabelwiseError, match="gives no gradients"):
        Classifier.load(toy_folder, require=("gradients",))


def test_a_registered_kind_is_opened_by_the_cli_and_the_service(toy_folder, tmp_path):
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app

    data = tmp_path / "data.txt"
    texts = ["婚生子由原告抚养", "被告每月支付抚养费"]
    data.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--params_path", str(toy_folder), "--backend", "toy", "--data_file", str(data),
                 "--output_file", str(out), "--top_k_min", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    clf = Classifier.load(toy_folder)
    assert [r["labels"] for r in rows] == [[e] for e in _expected(clf, texts)]
    with TestClient(create_app(clf, model_path=str(toy_folder))) as client:
        answer = client.post("/predict", json={"texts": texts, "top_k_min": 1})
        assert answer.status_code == 200, answer.text
        assert [p["labels"] for p in answer.json()["predictions"]] == [r["labels"] for r in rows]


def test_a_folder_of_no_kind_names_every_kind(tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(LabelwiseError) as err:
        backends.detect(tmp_path)
    message = str(err.value)
    for kind in backends.kinds():
        assert kind.title in message
    with pytest.raises(LabelwiseError, match="unknown backend 'nope'; use one of auto, "):
        Classifier.load(tmp_path, backend="nope")
    assert main(["predict", "--params_path", str(tmp_path), "--data_file", str(tmp_path / "notes.txt"),
                 "--output_file", str(tmp_path / "o.txt")]) == 2


# Modules allowed to name a kind or an engine's files: the registry, each kind's own module, and the writers of
# exports and their settings (an exporter must name the files it writes; Triton's repository holds an ONNX graph by
# definition).
OWNERS = ("predict/backends.py", "predict/retrieval.py", "compress/export.py", "compress/openvino_export.py",
          "compress/cards.py", "compress/config.py", "cli/compress.py", "serve/triton/")


def _strings(tree: ast.AST):
    """(line, value, node) of every string constant that is not a docstring."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value, node


def test_only_the_registry_and_the_kinds_own_modules_know_the_kinds():
    kinds = set(backends.names())
    engine_files = (".onnx", "openvino_model")
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.endswith("_backend.py") or any(rel.startswith(owner) for owner in OWNERS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys if k is not None}
        keys |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
        for line, value, node in _strings(tree):
            if id(node) in keys:  # {"torch": rng_state}: a dictionary key, not a backend
                continue
            if value in kinds or any(name in value for name in engine_files):
                found.append(f"{rel}:{line}: {value[:60]!r}")
    assert not found, "modules outside predict/backends.py naming a kind or an engine's files:\n" + "\n".join(found)


def test_the_cli_choices_and_precisions_come_from_the_registry():
    from labelwise.cli.options import BACKENDS, PRECISIONS

    assert BACKENDS == ("auto", *backends.names())
    assert set(PRECISIONS) == {p for kind in backends.kinds() for p in kind.precisions}


def test_a_checkpoint_runs_in_bf16_close_to_fp32(tiny_zh_checkpoint):
    texts = ["婚生子由原告抚养", "被告每月支付抚养费", "原告要求离婚"]
    fp32 = Classifier.load(tiny_zh_checkpoint).predict_proba(texts)
    bf16 = Classifier.load(tiny_zh_checkpoint, precision="bf16")
    assert bf16.backend.precision == "bf16"
    got = bf16.predict_proba(texts)
    assert np.abs(got - fp32).max() < 0.05 and not np.array_equal(got, fp32)


def test_an_api_caller_gets_the_length_check_the_cli_has(tiny_zh_checkpoint):
    clf = Classifier.load(tiny_zh_checkpoint)
    limit = clf.tokenizer.model_max_length
    for bad in (0, limit + 1, 2.5):
        with pytest.raises(LabelwiseError, match="`max_seq_length`"):
            clf.predict_proba(["原告要求离婚"], max_seq_length=bad)
    assert clf.predict_proba(["原告要求离婚"], max_seq_length=8).shape == (1, len(clf.labels))


def test_hints_reach_only_the_kinds_that_declare_them(toy_folder, monkeypatch):
    seen = {}

    def open_recording(folder, **options):
        seen.update(options)
        return _open_toy(folder)

    kind = backends.get("toy")
    monkeypatch.setitem(backends._KINDS, "toy", dataclasses.replace(kind, open=open_recording))
    Classifier.load(toy_folder, hints={"spin_wait": False})
    assert "spin_wait" not in seen  # the toy kind declares no hints
    monkeypatch.setitem(backends._KINDS, "toy", dataclasses.replace(kind, open=open_recording, hints=("spin_wait",)))
    Classifier.load(toy_folder, hints={"spin_wait": False, "unknown": 1})
    assert seen["spin_wait"] is False and "unknown" not in seen

"""OpenVINO export: the graph agrees with PyTorch, and the folder predicts, evaluates and serves like any other."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from test_faults import copy_of

from labelwise.cli.main import main
from labelwise.compress.openvino_export import export_openvino
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.predict.openvino_backend import bf16_capable


@pytest.fixture(scope="module")
def dev_texts(divorce_small):
    return [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def ov_dir(tiny_zh_checkpoint, tmp_path_factory, dev_texts):
    folder = tmp_path_factory.mktemp("ov") / "export"
    report = export_openvino(tiny_zh_checkpoint, folder, quantize="int8", calibration_texts=dev_texts[:40])
    assert {"fp32", "int8"} <= set(report.checks)
    return folder


def test_the_folder_is_an_openvino_export_checked_against_pytorch(ov_dir):
    names = {p.name for p in ov_dir.iterdir()}
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_model.int8.xml", "openvino_model.int8.bin",
            "labelwise.json", "tokenizer.json", "export.json", "README.md"} <= names
    info = json.loads((ov_dir / "export.json").read_text(encoding="utf-8"))
    assert info["format"] == "openvino" and info["int8_mode"] == "static" and info["calibration_texts"] == 40
    assert info["checks"]["fp32"]["max_abs_logit_diff"] < 1e-4
    meta = json.loads((ov_dir / "labelwise.json").read_text(encoding="utf-8"))
    assert {"openvino_model.bin", "openvino_model.int8.bin", "openvino_model.xml"} <= set(meta["checksums"])
    card = (ov_dir / "README.md").read_text(encoding="utf-8")
    assert "## OpenVINO export" in card and "openvino_model.xml" in card and "onnxruntime" not in card


def test_probabilities_match_pytorch_at_every_precision(ov_dir, tiny_zh_checkpoint, dev_texts):
    torch_probs = Classifier.load(tiny_zh_checkpoint).predict_proba(dev_texts)
    fp32 = Classifier.load(ov_dir)
    assert fp32.backend.name == "openvino"
    np.testing.assert_allclose(fp32.predict_proba(dev_texts), torch_probs, atol=1e-4)
    int8 = Classifier.load(ov_dir, precision="int8").predict_proba(dev_texts)
    assert not np.allclose(int8, torch_probs, atol=1e-6)  # the int8 graph really is another graph
    assert np.mean((int8 >= 0.5) == (torch_probs >= 0.5)) > 0.95
    if bf16_capable():
        bf16 = Classifier.load(ov_dir, precision="bf16").predict_proba(dev_texts)
        assert np.abs(bf16 - torch_probs).max() < 0.05
    else:
        with pytest.raises(LabelwiseError, match="no bf16 units"):
            Classifier.load(ov_dir, precision="bf16")


def test_the_cli_predicts_and_evaluates_on_it(ov_dir, divorce_small, tmp_path, capsys, dev_texts):
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--model_path", str(ov_dir), "--precision", "int8", "--dataset_dir", str(divorce_small),
                 "--data_file", "dev.txt", "--output_file", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(dev_texts) and rows[0]["text"] == dev_texts[0]
    assert main(["evaluate", "--params_path", str(ov_dir), "--dataset_dir", str(divorce_small),
                 "--bad_case_file", str(tmp_path / "bad.txt")]) == 0
    assert "micro" in capsys.readouterr().out.lower()


def test_the_service_answers_from_it(ov_dir):
    from fastapi.testclient import TestClient

    from labelwise.serve.app import create_app
    from labelwise.serve.config import ServeConfig

    with TestClient(create_app(Classifier.load(ov_dir), ServeConfig().validate(), model_path=str(ov_dir))) as client:
        answer = client.post("/predict", json={"texts": ["婚生子由原告抚养", "被告每月支付抚养费"]})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
        assert client.get("/health").json()["status"] == "ok"


def test_a_precision_it_does_not_run_names_the_kinds_that_do(ov_dir):
    with pytest.raises(LabelwiseError, match="`precision` fp16 needs an ONNX export folder.*is an OpenVINO export"):
        Classifier.load(ov_dir, precision="fp16")


def test_without_the_extra_loading_and_exporting_say_which_extra(ov_dir, tiny_zh_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(LabelwiseError, match=r"pip install 'labelwise\[openvino\]'"):
        Classifier.load(ov_dir)
    with pytest.raises(LabelwiseError, match=r"pip install 'labelwise\[openvino\]'"):
        export_openvino(tiny_zh_checkpoint, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _mkdir(folder):
    folder.mkdir()
    return folder


def test_a_tampered_or_truncated_file_is_one_line(ov_dir, divorce_small, tmp_path, capsys):
    tampered = copy_of(ov_dir, _mkdir(tmp_path / "tampered"), checksums=True)
    data = bytearray((tampered / "openvino_model.bin").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # same size, other bytes
    (tampered / "openvino_model.bin").write_bytes(bytes(data))
    argv = ["predict", "--dataset_dir", str(divorce_small), "--output_file", str(tmp_path / "o.txt")]
    assert main(argv + ["--model_path", str(tampered)]) == 2
    err = capsys.readouterr().err
    assert "openvino_model.bin" in err and "SHA-256" in err and err.count("\n") == 1, err
    truncated = copy_of(ov_dir, _mkdir(tmp_path / "truncated"))
    xml = (truncated / "openvino_model.xml").read_bytes()
    (truncated / "openvino_model.xml").write_bytes(xml[: len(xml) // 2])
    assert main(argv + ["--model_path", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert "openvino_model.xml" in err and "OpenVINO cannot load it" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.txt").exists()


def test_cli_export_weights_mode_and_calibration_errors(tiny_zh_checkpoint, tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["export", "--format", "openvino", "--params_path", str(tiny_zh_checkpoint), "--output_path",
                 str(out), "--quantize", "int8", "--int8_mode", "weights"]) == 0
    assert json.loads((out / "export.json").read_text(encoding="utf-8"))["int8_mode"] == "weights"
    assert Classifier.load(out, precision="int8").backend.name == "openvino"
    meta = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))
    meta["training_args"] = {**meta["training_args"], "dataset_dir": str(tmp_path / "gone")}
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_zh_checkpoint, copy)
    (copy / "labelwise.json").write_text(json.dumps(meta), encoding="utf-8")
    assert main(["export", "--format", "openvino", "--params_path", str(copy), "--output_path",
                 str(tmp_path / "s"), "--quantize", "int8"]) == 2
    err = capsys.readouterr().err
    assert "calibration" in err and "--int8_mode weights" in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("which", ["onnx", "openvino"])
def test_the_cards_plain_library_code_gives_labelwises_probabilities(which, ov_dir, tiny_zh_checkpoint, tmp_path,
                                                                     dev_texts):
    """The snippet each export's model card shows (compress/cards.py), run as a user would, on a calibrated model."""
    from labelwise.compress import cards
    from labelwise.compress.export import export_onnx

    folder = tmp_path / which
    if which == "onnx":
        export_onnx(tiny_zh_checkpoint, folder)
    else:
        shutil.copytree(ov_dir, folder)
    meta = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))
    meta["calibration"] = {"method": "temperature", "temperatures": [1.5] * len(meta["labels"])}
    (folder / "labelwise.json").write_text(json.dumps(meta), encoding="utf-8")
    snippet = {"onnx": cards.ONNX_SNIPPET, "openvino": cards.OPENVINO_SNIPPET}[which]
    assert snippet in (folder / "README.md").read_text(encoding="utf-8")
    from conftest import run_snippet

    scope = run_snippet(snippet, folder, dev_texts[:6], "export")
    np.testing.assert_allclose(scope["probs"], Classifier.load(folder).predict_proba(dev_texts[:6]), atol=1e-4)

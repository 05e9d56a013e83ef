"""ONNX export: the graph agrees with PyTorch, the folder predicts alone, without importing torch."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from labelwise.cli.main import main
from labelwise.compress.export import export_onnx
from labelwise.data.dataset import read_texts
from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.predict.onnx_backend import OnnxTokenizer


@pytest.fixture(scope="module")
def export_dir(tiny_zh_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "export"
    report = export_onnx(tiny_zh_checkpoint, folder, quantize="int8", fp16=True)
    assert set(report.files) == {"fp32", "int8", "fp16"}
    return folder


@pytest.fixture(scope="module")
def dev_texts(divorce_small):
    return [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]


def test_export_folder_is_self_contained(export_dir, tiny_zh_checkpoint):
    names = {p.name for p in export_dir.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "model.fp16.onnx", "labelwise.json", "tokenizer.json",
            "tokenizer_config.json", "export.json"} <= names
    assert "model.safetensors" not in names
    meta = json.loads((export_dir / "labelwise.json").read_text(encoding="utf-8"))
    source = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))
    assert set(meta.pop("checksums")) == {"model.onnx", "model.int8.onnx", "model.fp16.onnx"}  # its own weights
    assert set(source.pop("checksums")) == {"encoder/model.safetensors", "head.safetensors"}
    assert meta == source  # the rest as the checkpoint has it
    info = json.loads((export_dir / "export.json").read_text(encoding="utf-8"))
    assert info["checks"]["fp32"]["max_abs_logit_diff"] < info["fp32_tolerance"] == 1e-4
    assert info["checks"]["int8"]["max_abs_prob_diff"] < 0.1


def test_onnx_graph_has_dynamic_batch_and_sequence_axes(export_dir):
    import onnxruntime as ort

    session = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs == {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert session.get_outputs()[0].shape == ["batch", 20]


@pytest.mark.parametrize("long_text", ["truncate", "slide"])
def test_onnx_probabilities_match_pytorch(export_dir, tiny_zh_checkpoint, dev_texts, long_text):
    torch_clf = Classifier.load(tiny_zh_checkpoint, backend="torch", device="cpu")
    onnx_clf = Classifier.load(export_dir)
    assert onnx_clf.backend.name == "onnx" and onnx_clf.labels == torch_clf.labels
    np.testing.assert_allclose(onnx_clf.thresholds, torch_clf.thresholds)
    options = dict(batch_size=16, long_text=long_text, max_seq_length=24 if long_text == "slide" else None)
    want = torch_clf.predict_proba(dev_texts, **options)
    got = onnx_clf.predict_proba(dev_texts, **options)
    np.testing.assert_allclose(got, want, atol=1e-5)  # fp32: same numbers up to float rounding
    int8 = Classifier.load(export_dir, backend="onnx", precision="int8").predict_proba(dev_texts, **options)
    assert np.abs(int8 - want).max() < 0.05
    fp16 = Classifier.load(export_dir, backend="onnx", precision="fp16").predict_proba(dev_texts, **options)
    assert np.abs(fp16 - want).max() < 1e-2


def test_onnx_tokenizer_matches_the_transformers_tokenizer(tiny_zh_checkpoint, export_dir, dev_texts):
    from transformers import AutoTokenizer

    from labelwise.predict.batching import encode

    hf = AutoTokenizer.from_pretrained(tiny_zh_checkpoint)
    ours = OnnxTokenizer.from_folder(export_dir)
    assert ours.pad_token_id == hf.pad_token_id
    texts = dev_texts + ["", "Mixed 中文 and English, ＦＵＬＬＷＩＤＴＨ and emoji 😀"]
    for mode, length in (("truncate", 64), ("slide", 16)):
        a, b = encode(hf, texts, length, mode), encode(ours, texts, length, mode)
        assert a.input_ids == b.input_ids and a.token_type_ids == b.token_type_ids
        assert a.owner.tolist() == b.owner.tolist()
    assert max(len(ids) for ids in b.input_ids) == 16 and len(b.owner) > len(texts)  # windows really slid


def test_predicting_from_an_export_never_imports_torch(export_dir, divorce_small, tmp_path):
    out = tmp_path / "out.txt"
    code = ("import sys\nfrom labelwise.cli import main\n"
            f"rc = main(['predict', '--model_path', {str(export_dir)!r}, '--dataset_dir', {str(divorce_small)!r}, "
            f"'--output_file', {str(out)!r}, '--top_k_min', '1'])\n"
            "assert rc == 0, rc\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    lines = out.read_text(encoding="utf-8").splitlines()
    texts = read_texts(divorce_small / "data.txt")
    assert [line.split("\t")[0] for line in lines] == texts
    want = Classifier.load(export_dir).predict(texts, top_k_min=1)
    assert [line.split("\t")[1].split(",") for line in lines] == [p.labels for p in want]


def test_perf_mode_prints_the_evaluation_and_its_speed(export_dir, divorce_small, capsys):
    """--perf's F1 are evaluate()'s on the same split, its ms/sample fits inside the command's own time."""
    import re
    import time

    from labelwise.evaluation.evaluate import evaluate

    start = time.perf_counter()
    assert main(["predict", "--model_path", str(export_dir), "--dataset_dir", str(divorce_small), "--perf",
                 "--threshold", "0.4", "--batch_size", "16"]) == 0
    wall = time.perf_counter() - start
    line = capsys.readouterr().out.strip()
    found = re.fullmatch(r"dev size (\d+)  micro-F1 ([\d.]+)  macro-F1 ([\d.]+)  ([\d.]+) ms/sample "
                         r"\(batch 16, onnx\)", line)
    assert found, line
    size, micro, macro, ms = int(found[1]), float(found[2]), float(found[3]), float(found[4])
    want = evaluate(Classifier.load(export_dir), divorce_small, threshold=0.4).metrics
    assert size == want["size"] == 80
    assert (micro, macro) == (round(want["micro"]["f1"], 2), round(want["macro"]["f1"], 2))
    assert 0 < ms * size / 1000 <= wall


def test_missing_precision_and_bad_paths_are_clear_errors(export_dir, tiny_zh_checkpoint, tmp_path, capsys):
    fp32_only = tmp_path / "fp32_only"
    export_onnx(tiny_zh_checkpoint, fp32_only)
    with pytest.raises(LabelwiseError, match="--quantize int8"):
        Classifier.load(fp32_only, backend="onnx", precision="int8")
    with pytest.raises(LabelwiseError, match="unknown precision"):
        Classifier.load(export_dir, backend="onnx", precision="int4")
    with pytest.raises(LabelwiseError, match="`device` tpu"):
        Classifier.load(export_dir, backend="onnx", device="tpu")
    # never replace a folder labelwise did not write, nor the checkpoint itself
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("keep me", encoding="utf-8")
    assert main(["export", "--params_path", str(tiny_zh_checkpoint), "--output_path", str(user_folder)]) == 2
    assert "not written by labelwise" in capsys.readouterr().err
    assert (user_folder / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert main(["export", "--params_path", str(tiny_zh_checkpoint), "--output_path", str(tiny_zh_checkpoint)]) == 2
    assert (tiny_zh_checkpoint / "head.safetensors").exists()
    assert main(["export", "--params_path", str(tmp_path / "nothing"), "--output_path", str(tmp_path / "e")]) == 2
    assert "not found" in capsys.readouterr().err


def test_reexport_replaces_an_old_export(tiny_zh_checkpoint, tmp_path, capsys):
    folder = tmp_path / "export"
    assert main(["export", "--params_path", str(tiny_zh_checkpoint), "--output_path", str(folder),
                 "--quantize", "int8"]) == 0
    assert "model.int8.onnx" in capsys.readouterr().out
    assert main(["export", "--params_path", str(tiny_zh_checkpoint), "--output_path", str(folder)]) == 0
    assert not (folder / "model.int8.onnx").exists() and (folder / "model.onnx").exists()


def test_tiny_ernie_exports_fused_and_matching(tmp_path, divorce_small):
    """ERNIE 3.0's task-type embedding breaks ONNX Runtime's embeddings + LayerNorm fusion: the export must
    still fuse what it can (attention) and match PyTorch."""
    import torch
    from transformers import AutoTokenizer, ErnieConfig, ErnieModel

    from conftest import TINY_BERT
    from labelwise.data.dataset import read_labels
    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import build_model, resolve_model_name

    encoder = tmp_path / "tiny-ernie"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("m3e-small"))
    torch.manual_seed(0)
    ernie = ErnieModel(ErnieConfig(**{**TINY_BERT, "vocab_size": len(tokenizer)}, use_task_id=True,
                                   task_type_vocab_size=3))
    with torch.no_grad():  # a task-type embedding far from zero, as in a trained ERNIE 3.0
        ernie.embeddings.task_type_embeddings.weight.normal_(0, 1.0)
    ernie.save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    labels = read_labels(divorce_small / "label.txt")
    model, tok, pooling = build_model(str(encoder), labels, "cls")
    assert model.config.model_type == "ernie"
    checkpoint = tmp_path / "checkpoint"
    save_checkpoint(checkpoint, model, tok, CheckpointMeta(labels=labels, max_seq_length=64, base_model=str(encoder),
                                                            pooling=pooling))
    report = export_onnx(checkpoint, tmp_path / "export")
    assert report.fused.get("Attention", 0) >= 1  # fused, not the plain graph
    assert "EmbedLayerNormalization" not in report.fused
    assert report.checks["fp32"]["max_abs_logit_diff"] <= 1e-4
    texts = [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()[:8]]
    np.testing.assert_allclose(Classifier.load(tmp_path / "export").predict_proba(texts),
                               Classifier.load(checkpoint).predict_proba(texts), atol=1e-4)

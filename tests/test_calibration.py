"""Calibrated scores: temperatures fitted on dev undo over-confidence, are stored in the checkpoint and applied on
every route (torch, ONNX, Triton's postprocess), and evaluate reports ECE with a reliability diagram."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from labelwise.evaluation.calibration import apply_temperatures, ece, fit_temperatures, reliability
from labelwise.evaluation.decision import logit, sigmoid
from labelwise.predict.classifier import Classifier


def _overconfident(n=4000, labels=3, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, labels))
    y = (rng.random((n, labels)) < sigmoid(z)).astype(float)  # z are the true log-odds
    return y, scale * z  # the model says 3× too much


def test_temperatures_undo_overconfidence_and_lower_ece():
    y, logits = _overconfident()
    temperatures = fit_temperatures(y, logits)
    np.testing.assert_allclose(temperatures, 3.0, rtol=0.15)
    before, _ = ece(y, sigmoid(logits))
    after, per_label = ece(y, sigmoid(apply_temperatures(logits, temperatures)))
    assert after < before / 3 and after < 0.02 and per_label.shape == (3,)
    bins = reliability(y, sigmoid(logits))
    assert sum(b["count"] for b in bins) == y.size
    top = [b for b in bins if b["low"] >= 0.9][0]
    assert top["frequency"] < top["confidence"] - 0.05  # over-confident where it is surest


def test_a_label_with_few_positives_keeps_its_scores():
    y, logits = _overconfident(n=400)
    y[:, 1] = 0
    y[:3, 1] = 1  # three positives: too little evidence to move the label
    assert fit_temperatures(y, logits)[1] == 1.0


def _with_temperatures(source, folder, value=2.0):
    shutil.copytree(source, folder)
    meta = json.loads((folder / "labelwise.json").read_text(encoding="utf-8"))
    meta["calibration"] = {"method": "temperature", "temperatures": [value] * len(meta["labels"])}
    (folder / "labelwise.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def test_every_route_applies_the_stored_temperatures(untrained_zh_checkpoint, tmp_path, dev_texts):
    from labelwise.compress.export import export_onnx

    raw = Classifier.load(untrained_zh_checkpoint).predict_proba(dev_texts)
    ckpt = _with_temperatures(untrained_zh_checkpoint, tmp_path / "ckpt")
    want = sigmoid(logit(raw, eps=1e-7) / 2.0)
    np.testing.assert_allclose(Classifier.load(ckpt).predict_proba(dev_texts), want, atol=1e-5)
    export_onnx(ckpt, tmp_path / "export")  # the export keeps labelwise.json's calibration
    np.testing.assert_allclose(Classifier.load(tmp_path / "export").predict_proba(dev_texts), want, atol=1e-4)
    bad = _with_temperatures(untrained_zh_checkpoint, tmp_path / "bad", value=-1.0)
    from labelwise.errors import LabelwiseError

    with pytest.raises(LabelwiseError, match='"calibration"'):
        Classifier.load(bad)


@pytest.fixture(scope="module")
def dev_texts(divorce_small):
    return [line.split("\t")[0] for line in (divorce_small / "dev.txt").read_text(encoding="utf-8").splitlines()]


def test_training_keeps_temperatures_only_when_they_help_and_says_so(tiny_zh_encoder, divorce_small, tmp_path):
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    common = dict(dataset_dir=str(divorce_small), model_name=str(tiny_zh_encoder), epochs=2, learning_rate=3e-3,
                  batch_size=16, max_seq_length=32, baseline=False, progress=False, seed=1)
    train(TrainConfig(save_dir=str(tmp_path / "auto"), calibration="auto", **common))
    train(TrainConfig(save_dir=str(tmp_path / "off"), calibration="off", **common))
    auto = json.loads((tmp_path / "auto" / "labelwise.json").read_text(encoding="utf-8"))
    off = json.loads((tmp_path / "off" / "labelwise.json").read_text(encoding="utf-8"))
    assert off["calibration"] is None
    if auto["calibration"] is not None:
        assert auto["calibration"]["dev_ece_after"] < auto["calibration"]["dev_ece_before"]
        assert "Calibration:" in (tmp_path / "auto" / "README.md").read_text(encoding="utf-8")
    # the same model, raw: the tuned-threshold decisions are the same, since a temperature keeps each label's order
    assert auto["metrics"]["dev@tuned"]["micro_f1"] == pytest.approx(off["metrics"]["dev@tuned"]["micro_f1"], abs=1.0)


def test_evaluate_reports_ece_and_draws_the_reliability_diagram(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    from labelwise.cli.main import main

    report = tmp_path / "report.html"
    assert main(["evaluate", "--params_path", str(tiny_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--bad_case_file", str(tmp_path / "bad.txt"), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Calibration: expected calibration error" in out
    html = report.read_text(encoding="utf-8")
    assert "id='reliability'" in html and "id='ece'" in html and "Calibration" in html

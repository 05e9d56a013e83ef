"""Model cards (labelwise.model.card): README.md of checkpoints and exports, read back with huggingface_hub."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from huggingface_hub import ModelCard

from labelwise.cli.main import main
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.model.card import (
    CARD_FILE,
    card_language,
    licence_notice,
    record_test_figures,
    write_model_card,
)
from labelwise.model.checkpoint import ENCODER_DIR, HEAD_FILE, CheckpointMeta, read_meta
from labelwise.predict.classifier import Classifier

TEXTS = ["婚生子杨某甲由原告抚养，被告每月支付抚养费。", "原、被告均同意离婚。"]


def load_card(folder):
    return ModelCard.load(folder / CARD_FILE)


def results(card, split):
    """{metric name: value} of the card's model-index results on ``split``."""
    return {r.metric_name: r.metric_value for r in card.data.eval_results or [] if r.dataset_split == split}


def python_blocks(card) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card.text, re.S)


@pytest.fixture
def checkpoint(tiny_zh_checkpoint, tmp_path):
    """A copy of the trained tiny checkpoint, free to change."""
    return shutil.copytree(tiny_zh_checkpoint, tmp_path / "checkpoint")


@pytest.fixture
def with_test_split(divorce_small, tmp_path):
    """divorce_small plus a test.txt (its dev examples), for `evaluate --split test`."""
    folder = shutil.copytree(divorce_small, tmp_path / "data")
    shutil.copyfile(folder / "dev.txt", folder / "test.txt")
    return folder


def test_training_writes_a_card_huggingface_hub_reads(tiny_zh_checkpoint):
    meta = read_meta(tiny_zh_checkpoint)
    card = load_card(tiny_zh_checkpoint)
    assert card.data.library_name == "labelwise" and card.data.language == "zh"  # Chinese label names
    assert {"text-classification", "multi-label-classification"} <= set(card.data.tags)
    assert card.data.metrics == ["f1", "accuracy"]
    dev = results(card, "dev")
    assert dev["micro-F1 (per-label thresholds)"] == round(meta.metrics["dev@tuned"]["micro_f1"], 2)
    assert dev["macro-F1 (threshold 0.5)"] == round(meta.metrics["dev@0.5"]["macro_f1"], 2)
    assert not results(card, "test")  # the dataset has no test split
    # the per-label block: every label with its dev support, F1 and threshold, from what training measured
    per_label = {r["label"]: r for r in meta.metrics["per_label"]}
    assert set(per_label) == set(meta.labels)
    dev_set = load_dataset(meta.training_args["dataset_dir"]).dev
    assert [per_label[label]["dev_support"] for label in meta.labels] == multi_hot(dev_set, meta.labels).sum(0).tolist()
    for label, threshold in zip(meta.labels, meta.thresholds):
        row = f"| {label} | {per_label[label]['dev_support']} | {per_label[label]['dev_f1']:.2f} | {threshold:.3f} |"
        assert row in card.text
    assert "* train: 300 examples" in card.text and "* dev: 80 examples" in card.text
    assert meta.metrics["sizes"] == {"train": 300, "dev": 80, "test": 0}
    assert "| `learning_rate` | 0.003 |" in card.text and "linear baseline" in card.text
    assert "See the encoder's own model card" in card.text  # a local tiny encoder: no licence known


def test_card_snippet_loads_the_checkpoint_in_plain_transformers(checkpoint):
    """The card's plain-transformers code gives labelwise's own probabilities and labels."""
    snippet = python_blocks(load_card(checkpoint))[1]
    assert f'"{{folder}}/{ENCODER_DIR}"' in snippet and f'"{{folder}}/{HEAD_FILE}"' in snippet
    scope: dict = {}
    exec(snippet.replace('folder = "checkpoint"', f'folder = "{checkpoint}"')
         .replace('texts = ["a text to label"]', f"texts = {TEXTS!r}"), scope)
    clf = Classifier.load(checkpoint)
    np.testing.assert_allclose(scope["probs"].numpy(), clf.predict_proba(TEXTS), atol=1e-5)
    assert scope["predicted"] == [p.labels for p in clf.predict(TEXTS)]


def test_a_checkpoint_without_dev_metrics_gets_a_correct_partial_card(untrained_zh_checkpoint):
    card = load_card(untrained_zh_checkpoint)  # saved by save_checkpoint with empty metrics
    meta = read_meta(untrained_zh_checkpoint)
    assert meta.metrics == {} and card.data.library_name == "labelwise"
    assert card.data.eval_results is None and card.data.metrics is None
    assert "No dev figures were recorded" in card.text and "Per-label dev figures were not recorded" in card.text
    assert f"| {meta.labels[0]} | 0.500 |" in card.text  # labels with the 0.5 threshold it predicts with
    assert "Training arguments\n\nNot recorded" in card.text and "Data sizes were not recorded" in card.text


def test_odd_metrics_make_a_partial_card_not_a_traceback(tmp_path):
    meta = CheckpointMeta(labels=["a", "b"], base_model="ernie-3.0-mini-zh", thresholds=[0.3, 0.7],
                          metrics={"epoch": 1, "dev@0.5": {"micro_f1": "n/a"}, "per_label": "broken", "sizes": [1]},
                          training_args={"dataset_dir": "data/x", "note": "a | b\nc"})
    card = ModelCard.load(write_model_card(tmp_path, meta))
    assert card.data.eval_results is None  # nothing numeric to report
    assert "| dev, threshold 0.5 | — | — | — |" in card.text
    assert "| `note` | a \\| b c |" in card.text
    assert card.data.base_model == "nghuyong/ernie-3.0-mini-zh" and "Apache-2.0" in card.text


def test_language_and_licence():
    assert card_language(["婚后有子女"]) == "zh" and card_language(["ネコ"]) == "ja"
    assert card_language(["admiration", "joy"], "all-minilm-l6-v2") == "en"
    assert card_language(["x"], "ernie-3.0-nano-zh") == "zh" and card_language(["x"], "/tmp/enc") is None
    assert "non-commercial" in licence_notice("m3e-small")
    assert "Apache-2.0" in licence_notice("nghuyong/ernie-3.0-base-zh")
    assert "https://huggingface.co/bert-base/x" not in licence_notice("./bert-base/x")  # a path, not a hub id
    assert "https://huggingface.co/org/model" in licence_notice("org/model")


def test_evaluate_on_test_adds_the_test_figures_to_the_card(checkpoint, with_test_split, tmp_path, capsys):
    argv = ["evaluate", "--dataset_dir", str(with_test_split), "--params_path", str(checkpoint),
            "--bad_case_file", str(tmp_path / "bad.txt"), "--format", "json"]
    before = (checkpoint / CARD_FILE).read_text(encoding="utf-8")
    assert main(argv) == 0  # dev: the card stays as it is
    assert (checkpoint / CARD_FILE).read_text(encoding="utf-8") == before
    capsys.readouterr()
    assert main(argv + ["--split", "test"]) == 0
    out = capsys.readouterr()
    metrics = json.loads(out.out)
    assert f"Test figures added to {checkpoint / CARD_FILE}" in out.err
    card = load_card(checkpoint)
    test = results(card, "test")
    assert test["micro-F1 (per-label thresholds)"] == round(metrics["micro"]["f1"], 2)
    assert test["exact-match accuracy (per-label thresholds)"] == round(metrics["accuracy"], 2)
    assert results(card, "dev") == results(ModelCard(before), "dev")  # the dev figures are kept
    assert "From `labelwise evaluate --split test` (torch backend): 80 examples" in card.text
    first = metrics["per_label"][0]
    assert f"| {first['label']} | {first['support']} | {first['precision']:.2f} |" in card.text
    assert main(argv + ["--split", "test"]) == 0  # again: replaced, not added twice
    again = load_card(checkpoint)
    assert again.text.count("## Test figures") == 1 and len(again.data.eval_results) == len(card.data.eval_results)
    assert card.text.split("<!-- labelwise:test -->")[0] == ModelCard(before).text.split("<!-- labelwise:test -->")[0]
    assert main(argv + ["--split", "test", "--threshold", "0.3"]) == 0  # not the model's thresholds: not recorded
    assert load_card(checkpoint).text == again.text


def test_test_figures_leave_other_readmes_alone(tmp_path):
    metrics = {"thresholds": "0.5", "size": 3, "micro": {"f1": 50.0}, "macro": {"f1": 40.0}, "accuracy": 10.0}
    assert record_test_figures(tmp_path, metrics) is None and not (tmp_path / CARD_FILE).exists()  # no card
    for text in ("# my notes\n\nhand-written\n", "---\nlibrary_name: other\n---\n<!-- labelwise:test -->\n"
                 "<!-- /labelwise:test -->\n", "---\n: : bad yaml [\n---\ntext\n"):
        (tmp_path / CARD_FILE).write_text(text, encoding="utf-8")
        assert record_test_figures(tmp_path, metrics) is None
        assert (tmp_path / CARD_FILE).read_text(encoding="utf-8") == text


def test_export_writes_its_own_card(tiny_zh_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from labelwise.compress.export import export_onnx

    folder = tmp_path / "export"
    export_onnx(tiny_zh_checkpoint, folder, quantize="int8")
    card = load_card(folder)
    assert card.data.library_name == "labelwise" and "onnx" in card.data.tags
    assert results(card, "dev") == results(load_card(tiny_zh_checkpoint), "dev")
    info = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    assert f"| int8 | `model.int8.onnx` | {info['checks']['int8']['max_abs_logit_diff']:.6f} |" in card.text
    scope: dict = {}
    exec(python_blocks(card)[1].replace('folder = "export"', f'folder = "{folder}"')
         .replace('texts = ["a text to label"]', f"texts = {TEXTS!r}"), scope)
    np.testing.assert_allclose(scope["probs"], Classifier.load(folder).predict_proba(TEXTS), atol=1e-5)


def test_a_read_only_model_folder_keeps_its_card_and_evaluation_goes_on(tmp_path, monkeypatch, caplog):
    import errno

    import labelwise.model.card as card_module

    write_model_card(tmp_path, CheckpointMeta(labels=["a"], metrics={"dev@0.5": {"micro_f1": 1.0}}))
    before = (tmp_path / CARD_FILE).read_text(encoding="utf-8")

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(card_module, "atomic_write_text", read_only)
    metrics = {"thresholds": "0.5", "size": 3, "micro": {"f1": 50.0}, "macro": {"f1": 40.0}, "accuracy": 10.0}
    with caplog.at_level("WARNING", logger="labelwise"):
        assert record_test_figures(tmp_path, metrics) is None
    assert "was not updated: Read-only file system" in caplog.text
    assert (tmp_path / CARD_FILE).read_text(encoding="utf-8") == before

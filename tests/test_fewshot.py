"""Few-shot and zero-shot: pairs, label words, and checkpoints that behave like any other."""
from __future__ import annotations

import json

import numpy as np
import pytest

from labelwise.cli.main import main
from labelwise.data.dataset import read_label_words
from labelwise.errors import DataError
from labelwise.predict.classifier import Classifier
from labelwise.training.fewshot import make_pairs
from labelwise.training.zeroshot import zero_shot
from test_inference import plain_transformers_probabilities


def test_pairs_for_multi_label_examples():
    sets = [{"a"}, {"a", "b"}, {"b"}, {"c"}, set()]
    pairs = make_pairs(sets, np.random.default_rng(0), per_text=10)
    assert pairs and all(i != j for i, j, _ in pairs)
    for i, j, target in pairs:
        if target == 1.0:
            assert sets[i] & sets[j]  # positives share at least one label (partial overlap counts)
        else:
            assert not sets[i] & sets[j]  # negatives share none
    assert all(sets[i] for i, _, _ in pairs)  # unlabelled texts only ever appear as negatives of labelled ones
    assert (0, 1, 1.0) in pairs and (1, 2, 1.0) in pairs and (3, 4, 0.0) in pairs
    assert not any(t == 1.0 for i, j, t in pairs if 4 in (i, j))


def test_label_file_maps_labels_to_words(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text("婚后有子女==子女\n准予离婚\n", encoding="utf-8")
    assert read_label_words(path) == {"婚后有子女": "子女", "准予离婚": "准予离婚"}
    path.write_text("准予离婚\n婚后有子女==\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"label\.txt:2: .*label==word"):
        read_label_words(path)


def _mapped_dataset(divorce_small, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    labels = (divorce_small / "label.txt").read_text(encoding="utf-8").splitlines()
    labels[0] = f"{labels[0]}==孩子"
    (folder / "label.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    for name in ("train.txt", "dev.txt"):
        (folder / name).write_text((divorce_small / name).read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def test_zero_shot_scores_texts_by_their_label_names(tiny_zh_encoder, divorce_small, tmp_path):
    data = _mapped_dataset(divorce_small, tmp_path)
    clf = zero_shot(str(data), str(tmp_path / "zs"), str(tiny_zh_encoder), max_seq_length=64)
    words = list(read_label_words(data / "label.txt").values())
    assert words[0] == "孩子"
    probs = clf.predict_proba(words)
    assert list(probs.argmax(0)) == list(range(len(words)))  # each label ranks its own word first
    meta = json.loads((tmp_path / "zs" / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["normalize"] is True and len(meta["thresholds"]) == len(words)  # tuned on dev
    again = Classifier.load(tmp_path / "zs")
    np.testing.assert_allclose(again.predict_proba(["孩子"]), probs[:1], atol=1e-5)
    np.testing.assert_allclose(plain_transformers_probabilities(tmp_path / "zs", words), probs, atol=1e-5)


@pytest.mark.integration  # trains a model
def test_few_shot_makes_an_ordinary_checkpoint(tiny_zh_encoder, divorce_small, tmp_path, capsys, monkeypatch):
    from labelwise.training import fewshot

    seen = []
    real = fewshot.contrastive_tune
    monkeypatch.setattr(fewshot, "contrastive_tune", lambda *a, **k: seen.append(len(a[2])) or real(*a, **k))
    from labelwise.compress.export import export_onnx

    save = tmp_path / "fs"
    assert main(["-q", "train", "--few_shot", "--dataset_dir", str(divorce_small), "--save_dir", str(save),
                 "--model_name", str(tiny_zh_encoder), "--max_train_samples", "24", "--max_seq_length", "64"]) == 0
    meta = json.loads((save / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["training_args"]["few_shot"] is True and meta["training_args"]["epochs"] >= 3
    assert "dev@0.5" in meta["metrics"] and len(meta["thresholds"]) == 20
    report = export_onnx(save, tmp_path / "export")
    assert report.checks["fp32"]["max_abs_logit_diff"] < 1e-4
    texts = ["原告要求离婚", "婚生子由原告抚养"]
    np.testing.assert_allclose(Classifier.load(tmp_path / "export").predict_proba(texts),
                               Classifier.load(save).predict_proba(texts), atol=1e-4)
    assert seen == [24 + 20]  # the contrastive stage saw the examples and the 20 label names


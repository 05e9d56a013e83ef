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


def test_pseudo_labels_are_balanced_over_labels_and_keep_the_pool_share_of_empty_texts():
    from labelwise.training.selftrain import certainty, pseudo_labels

    labels = ["common", "rare"]
    texts = [f"t{i}" for i in range(12)]
    probs = np.array([[0.99, 0.01]] * 6 + [[0.6, 0.1], [0.05, 0.9], [0.1, 0.55], [0.02, 0.03], [0.4, 0.45],
                                           [0.01, 0.02]])
    thresholds = np.array([0.5, 0.5])
    assert certainty(probs, thresholds)[0, 0] > certainty(probs, thresholds)[6, 0] > 0
    guesses = pseudo_labels(texts, probs, thresholds, labels, per_label=2)
    by_text = {g.text: g.labels for g in guesses}
    assert by_text["t0"] == ("common",) and by_text["t1"] == ("common",)  # the surest carriers of "common"
    assert by_text["t7"] == ("rare",) and by_text["t8"] == ("rare",)  # "rare" gets as many, the surest first
    assert "t6" not in by_text  # 0.6 is a weak "common": six surer texts carry it
    empty = [t for t, labs in by_text.items() if not labs]
    assert empty == ["t11"]  # 3 of 12 pool texts look empty (a quarter): 1 of the 5 guesses, the surest one
    strict = pseudo_labels(texts, probs, thresholds, labels, per_label=2, empty=False)
    assert [g.text for g in strict] == [g.text for g in guesses if g.labels]  # every text has a label: misses left out


@pytest.mark.integration  # trains two models
def test_self_training_on_a_pool_leaves_one_checkpoint(tiny_zh_encoder, divorce_small, tmp_path, caplog):
    pool = tmp_path / "pool.txt"
    train_texts = (divorce_small / "train.txt").read_text(encoding="utf-8").splitlines()
    data_texts = (divorce_small / "data.txt").read_text(encoding="utf-8").splitlines()
    pool.write_text("\n".join(data_texts + [train_texts[0].split("\t")[0]]) + "\n", encoding="utf-8")
    save = tmp_path / "runs" / "st"
    with caplog.at_level("INFO", logger="labelwise"):
        assert main(["-q", "train", "--few_shot", "--dataset_dir", str(divorce_small), "--save_dir", str(save),
                     "--model_name", str(tiny_zh_encoder), "--max_train_samples", "24", "--max_seq_length", "64",
                     "--epochs", "2", "--unlabeled_file", str(pool)]) == 0
    meta = json.loads((save / "labelwise.json").read_text(encoding="utf-8"))
    assert meta["training_args"]["init_from_ckpt"]  # the student started from the teacher
    assert meta["training_args"]["batch_size"] == 8  # and kept the few-shot batch size
    assert sorted(p.name for p in save.parent.iterdir()) == ["st"]  # the teacher's scratch folder is gone
    assert f"labelled {len(data_texts)} pool texts" in caplog.text  # the train text in the pool was left out
    Classifier.load(save).predict(["婚后生育一子"])


def test_self_training_pool_with_nothing_new_is_one_clear_line(tiny_zh_encoder, divorce_small, tmp_path, capsys):
    pool = tmp_path / "pool.txt"
    pool.write_text((divorce_small / "train.txt").read_text(encoding="utf-8"), encoding="utf-8")
    code = main(["-q", "train", "--dataset_dir", str(divorce_small), "--save_dir", str(tmp_path / "out"),
                 "--model_name", str(tiny_zh_encoder), "--unlabeled_file", str(pool)])
    err = capsys.readouterr().err
    assert code != 0 and "pool.txt: no text of the pool is new" in err and "Traceback" not in err

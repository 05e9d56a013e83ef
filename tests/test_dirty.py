"""Dirty data: representer points and confident learning find planted label errors; `data dirty` files."""
from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from labelwise.analysis import dirty
from labelwise.analysis.dirty import (
    confident_scores,
    fit_linear_head,
    out_of_fold_probs,
    representer_alpha,
    representer_scores,
)
from labelwise.cli.analysis import _dataset_output, add_dirty_arguments, cmd_dirty
from labelwise.data.dataset import read_examples
from labelwise.errors import LabelwiseError


def _planted(n=240, d=8, n_flip=6, seed=0):
    """Three well-separated clusters, label j = cluster j, and a few examples given another cluster's label."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (3, d))
    cluster = rng.integers(0, 3, n)
    features = centers[cluster] + rng.normal(0, 0.5, (n, d))
    y = np.eye(3)[cluster]
    flipped = rng.choice(n, n_flip, replace=False)
    y[flipped] = np.eye(3)[(cluster[flipped] + 1) % 3]
    return features, y, set(flipped.tolist())


def test_representer_weights_reproduce_the_refit_head_exactly():
    features, y, _ = _planted()
    lmbd = 1e-2
    w = fit_linear_head(features, y, lmbd)
    alpha = representer_alpha(features, y, lmbd)
    augmented = np.hstack([features, np.ones((len(features), 1))])
    # representer theorem at the stationary point: W = sum_i f_i alpha_i
    np.testing.assert_allclose(augmented.T @ alpha, w, atol=1e-4)


def test_representer_self_influence_ranks_planted_errors_first():
    features, y, flipped = _planted()
    alpha = representer_alpha(features, y, 1e-3)
    scores = representer_scores(alpha, features, "self")
    assert set(np.argsort(-scores)[:len(flipped)].tolist()) == flipped


def test_paddlenlp_rule_sorts_by_count_of_positive_weights_then_their_sum():
    alpha = np.array([[0.5, 0.2, -0.1], [0.6, -0.3, -0.2], [0.1, 0.1, 0.1], [0.7, -0.1, -0.1]])
    features = np.zeros((4, 2))
    assert np.argsort(-representer_scores(alpha, features, "paddlenlp", 0.0), kind="stable").tolist() == [2, 0, 3, 1]
    assert np.argsort(-representer_scores(alpha, features, "paddlenlp", 0.15), kind="stable").tolist() == [0, 3, 1, 2]
    with pytest.raises(LabelwiseError, match="representer_score"):
        representer_scores(alpha, features, "nope")


def test_confident_learning_on_out_of_fold_probs_finds_planted_errors():
    features, y, flipped = _planted(seed=1)
    probs = out_of_fold_probs(features, y, folds=4, seed=0)
    scores, issues = confident_scores(y, probs)
    assert set(np.argsort(-scores)[:len(flipped)].tolist()) == flipped
    assert flipped <= set(np.flatnonzero(issues).tolist())  # cleanlab's own filter flags them too


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_dirty_arguments(parser)
    argv = []
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return parser.parse_args(argv)


def _copy(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "data")


@pytest.mark.parametrize("method", ["representer", "confident"])
def test_data_dirty_splits_the_training_file(method, tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    data = _copy(divorce_small, tmp_path)
    args = _args(dataset_dir=data, params_path=tiny_zh_checkpoint, method=method, dirty_num=30, folds=3)
    assert cmd_dirty(args) == 0
    train = read_examples(data / "train.txt")
    flagged, rest = read_examples(data / "train_dirty.txt"), read_examples(data / "train_dirty_rest.txt")
    assert len(flagged) == 30 and len(rest) == len(train) - 30
    as_pairs = lambda examples: Counter((e.text, e.labels) for e in examples)  # noqa: E731
    assert as_pairs(flagged) + as_pairs(rest) == as_pairs(train)  # a partition, labels untouched
    out = capsys.readouterr().out
    assert f"{method}: 30 of 300 training examples flagged" in out
    assert flagged[0].text[:60] in out  # the most suspicious example is shown first


def test_data_dirty_order_matches_the_api_ranking(tiny_en_checkpoint, goemotions_small, tmp_path):
    from labelwise import Classifier
    from labelwise.data.dataset import load_dataset

    data = _copy(goemotions_small, tmp_path)
    out = tmp_path / "out"
    assert cmd_dirty(_args(dataset_dir=data, params_path=tiny_en_checkpoint, dirty_num=10,
                           dirty_file=out / "d.txt", rest_file=out / "r.txt")) == 0
    ranking = dirty.find_dirty(Classifier.load(tiny_en_checkpoint), load_dataset(data).train)
    expected = [load_dataset(data).train[i].text for i in ranking.order[:10]]
    assert [e.text for e in read_examples(out / "d.txt")] == expected
    assert not (data / "train_dirty.txt").exists()  # paths with a folder are used as given


def test_dirty_threshold_and_refusing_to_overwrite_train(tiny_zh_checkpoint, divorce_small, tmp_path):
    data = _copy(divorce_small, tmp_path)
    with pytest.raises(LabelwiseError, match="train.txt: this output is also an input"):
        cmd_dirty(_args(dataset_dir=data, params_path=tiny_zh_checkpoint, dirty_file="train.txt"))
    assert len(read_examples(data / "train.txt")) == 300
    labels = (data / "label.txt").read_text(encoding="utf-8")
    with pytest.raises(LabelwiseError, match="label.txt: this output is also an input"):
        cmd_dirty(_args(dataset_dir=data, params_path=tiny_zh_checkpoint, rest_file="label.txt"))
    assert (data / "label.txt").read_text(encoding="utf-8") == labels
    assert cmd_dirty(_args(dataset_dir=data, params_path=tiny_zh_checkpoint, method="confident",
                           dirty_threshold=1.0)) == 0  # 1 - quality never exceeds 1: nothing flagged
    assert (data / "train_dirty.txt").read_text(encoding="utf-8") == ""
    assert len(read_examples(data / "train_dirty_rest.txt")) == 300


def test_doccano_export_of_the_flagged_examples(tiny_zh_checkpoint, divorce_small, tmp_path):
    data = _copy(divorce_small, tmp_path)
    args = _args(dataset_dir=data, params_path=tiny_zh_checkpoint, dirty_num=7, doccano_file=tmp_path / "d.jsonl")
    assert cmd_dirty(args) == 0
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()]
    flagged = read_examples(data / "train_dirty.txt")
    assert len(records) == len(flagged) == 7
    assert [(r["text"], tuple(r["label"])) for r in records] == [(e.text, e.labels) for e in flagged]
    scores = [r["dirty_score"] for r in records]
    assert scores == sorted(scores, reverse=True) and all(isinstance(r["model_labels"], list) for r in records)


def _keyword_dataset(folder, n_train=160, n_flip=6, seed=3):
    """Texts of random common characters around one keyword pair (猫猫, 狗狗 or 鱼鱼) that gives the label, so a
    tiny encoder learns the rule in a few epochs; ``n_flip`` training examples get the next label instead."""
    import random

    from labelwise.data.dataset import Example, save_dataset

    filler = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行"
    keyword = {"甲": "猫猫", "乙": "狗狗", "丙": "鱼鱼"}
    labels = list(keyword)
    rng = random.Random(seed)

    def make(n):
        out = []
        for _ in range(n):
            label = rng.choice(labels)
            chars = [rng.choice(filler) for _ in range(rng.randint(5, 10))]
            chars.insert(rng.randrange(len(chars) + 1), keyword[label])
            out.append(Example("".join(chars), (label,)))
        return out

    train, dev = make(n_train), make(40)
    flipped = rng.sample(range(n_train), n_flip)
    true_labels = {i: train[i].labels for i in flipped}
    for i in flipped:
        train[i] = Example(train[i].text, (labels[(labels.index(train[i].labels[0]) + 1) % 3],))
    save_dataset(folder, labels, {"train": train, "dev": dev})
    return labels, true_labels


@pytest.mark.integration  # fine-tunes K (here 2) tiny fold models: seconds
def test_confident_with_fine_tuned_fold_models_finds_planted_errors(tiny_zh_encoder, tmp_path):
    import torch

    from labelwise import Classifier
    from labelwise.data.dataset import load_dataset
    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import build_model

    labels, true_labels = _keyword_dataset(tmp_path / "data")
    torch.manual_seed(0)  # the checkpoint only names the kind of model each fold fine-tunes, and its recipe
    model, tokenizer, _ = build_model(str(tiny_zh_encoder), labels)
    recipe = {"learning_rate": 3e-3, "batch_size": 8, "max_seq_length": 24}
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, CheckpointMeta(
        labels=labels, max_seq_length=24, base_model=str(tiny_zh_encoder), training_args=recipe))
    train = load_dataset(tmp_path / "data").train
    ranking = dirty.find_dirty(Classifier.load(tmp_path / "ckpt"), train, "confident", cl_model="finetune",
                               folds=2, cl_epochs=16, dataset_dir=tmp_path / "data")
    probs = ranking.detail["pred_probs"]
    assert probs.shape == (160, 3) and np.all((probs > 0) & (probs < 1))
    given = np.array([labels.index(e.labels[0]) for e in train])
    assert np.mean(probs.argmax(axis=1) == given) > 0.85  # the fold models learnt the keyword rule out of fold
    top = set(ranking.order[:12].tolist())  # 12 of 160: by chance about 0.5 of the 6 planted errors land here
    assert len(top & set(true_labels)) >= 5, sorted(ranking.order.tolist().index(i) for i in true_labels)
    fixed = [i for i, label in true_labels.items() if tuple(ranking.suggested[i]) == label]
    assert len(fixed) >= 4  # and the out-of-fold model suggests the label each one had before it was flipped


def test_bad_flags_are_one_line_errors(tiny_zh_checkpoint, tiny_en_checkpoint, divorce_small, tmp_path):
    from labelwise import Classifier
    from labelwise.data.dataset import load_dataset

    clf, train = Classifier.load(tiny_zh_checkpoint), load_dataset(divorce_small).train
    with pytest.raises(LabelwiseError, match="`folds`"):
        dirty.find_dirty(clf, train, "confident", folds=1)
    with pytest.raises(LabelwiseError, match="`lmbd`"):
        dirty.find_dirty(clf, train, lmbd=0)
    with pytest.raises(LabelwiseError, match="labels differ") as err:
        cmd_dirty(_args(dataset_dir=_copy(divorce_small, tmp_path), params_path=tiny_en_checkpoint))
    assert str(tmp_path / "data" / "label.txt") in str(err.value) and str(tiny_en_checkpoint) in str(err.value)


def test_bare_output_names_go_into_the_dataset_folder():
    from pathlib import Path

    assert _dataset_output("data", "train_dirty.txt") == Path("data/train_dirty.txt")
    assert _dataset_output("data", "./train_dirty.txt") == Path("train_dirty.txt")
    assert _dataset_output("data", "out/d.txt") == Path("out/d.txt")

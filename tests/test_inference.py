"""Classifier and checkpoint format: thresholds, never-empty predictions, long texts, plain transformers loading."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO
from labelwise import Classifier
from labelwise.evaluation.decision import chosen_ids, decide, decision_matrix
from labelwise.evaluation.metrics import apply_thresholds, tune_thresholds
from labelwise.predict.batching import encode, length_grouped_batches


def test_decide_thresholds_and_top_k():
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.3, 0.1], [0.7, 0.8, 0.75]])
    assert decide(probs, 0.5) == [[0, 1], [], [1, 2, 0]]
    assert decide(probs, [0.95, 0.5, 0.05]) == [[1, 2], [2], [1, 2]]
    assert decide(probs, 0.5, top_k_min=1) == [[0, 1], [1], [1, 2, 0]]
    assert decide(probs, 0.5, top_k_max=1) == [[0], [], [1]]


def test_decision_matrix_is_decide_as_a_matrix():
    rng = np.random.default_rng(0)
    probs = rng.random((300, 6)).astype(np.float32)
    probs[:20] = np.float32(0.5)  # ties and values exactly at the threshold
    thresholds = rng.choice([0.0, 0.3, 0.5, 0.9, 1.0], size=6)
    for top_k_min, top_k_max in [(0, None), (1, None), (3, None), (0, 1), (1, 2), (2, 2)]:
        matrix = decision_matrix(probs, thresholds, top_k_min, top_k_max)
        ids = decide(probs, thresholds, top_k_min, top_k_max)
        assert matrix.dtype == np.int8 and matrix.shape == probs.shape
        assert [sorted(row) for row in ids] == [np.flatnonzero(row).tolist() for row in matrix]
        assert chosen_ids(probs, matrix) == ids  # same order too: most probable first
        counts = matrix.sum(axis=1)
        assert counts.min() >= min(top_k_min, 6) and (top_k_max is None or counts.max() <= top_k_max)


@pytest.mark.parametrize("top_k, message", [({"top_k_min": -1}, "`top_k_min` must be a whole number"),
                                            ({"top_k_max": 0}, "`top_k_max` must be a whole number"),
                                            ({"top_k_min": 1.5}, "`top_k_min` must be a whole number"),
                                            ({"top_k_min": 3, "top_k_max": 2}, "must not be smaller")])
def test_bad_top_k_is_refused_everywhere(top_k, message):
    from labelwise.errors import LabelwiseError

    for decision in (decide, decision_matrix, apply_thresholds):
        with pytest.raises(LabelwiseError, match=message):
            decision(np.full((2, 3), 0.5), 0.5, **top_k)


def test_tune_thresholds_finds_the_separating_point():
    y = np.array([[1], [1], [0], [0], [1]])
    probs = np.array([[0.35], [0.4], [0.2], [0.1], [0.9]])
    assert 0.2 < tune_thresholds(y, probs)[0] <= 0.35
    assert tune_thresholds(np.zeros((3, 1)), np.ones((3, 1)) * 0.9)[0] == 0.5  # no positives: keep 0.5


def test_length_grouped_batches_cover_every_row_once():
    lengths = np.random.default_rng(0).integers(3, 120, size=203)
    for shuffle in (False, True):
        batches = length_grouped_batches(lengths, 16, shuffle=shuffle, rng=np.random.default_rng(1))
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(203))
        # grouping keeps padding low: the spread inside a batch is far below the global spread
        spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
        assert spread < 0.5 * (lengths.max() - lengths.min())



def test_tight_batches_split_where_padding_would_grow():
    # a server gathers 32 texts of any length: one long text must not make 31 short ones pad to 120
    lengths = np.array([120] + [20] * 30 + [118])
    batches = length_grouped_batches(lengths, 32, tight=True)
    assert [sorted(b.tolist()) for b in batches] == [[0, 31], list(range(1, 31))]
    assert sum(len(b) for b in length_grouped_batches(np.arange(3, 300), 16, tight=True)) == 297
    rng_lengths = np.random.default_rng(0).integers(3, 128, size=500)
    for b in length_grouped_batches(rng_lengths, 32, tight=True):
        longest = rng_lengths[b].max()
        assert len(b) <= 32 and longest - rng_lengths[b].min() <= max(8, 0.1 * longest)

def plain_transformers_probabilities(checkpoint, texts):
    """A checkpoint's probabilities from the model card's plain-transformers code (model/card.py's
    CHECKPOINT_SNIPPET, shown verbatim in docs/training.md), run here: transformers + safetensors only."""
    from conftest import run_snippet
    from labelwise.model.card import CHECKPOINT_SNIPPET

    return run_snippet(CHECKPOINT_SNIPPET, checkpoint, texts, "checkpoint")["probs"].numpy()


def test_the_docs_show_the_model_cards_plain_transformers_code():
    from labelwise.model.card import CHECKPOINT_SNIPPET

    assert CHECKPOINT_SNIPPET in (REPO / "docs" / "training.md").read_text(encoding="utf-8")


def test_checkpoint_is_plain_files_and_plain_transformers_reproduces_it(tiny_zh_checkpoint):
    texts = ["婚生子杨某甲由原告抚养，被告每月支付抚养费。", "双方均认可价值6万元。", "准予离婚"]
    expected = Classifier.load(tiny_zh_checkpoint).predict_proba(texts)
    np.testing.assert_allclose(plain_transformers_probabilities(tiny_zh_checkpoint, texts), expected, atol=1e-5)
    assert {p.name for p in tiny_zh_checkpoint.iterdir()} >= {"encoder", "head.safetensors", "labelwise.json",
                                                               "tokenizer.json"}
    assert not list(tiny_zh_checkpoint.rglob("*.bin")) and not list(tiny_zh_checkpoint.rglob("*.pt"))
    meta = json.loads((tiny_zh_checkpoint / "labelwise.json").read_text(encoding="utf-8"))
    assert len(meta["thresholds"]) == 20 and meta["max_seq_length"] == 64 and meta["pooling"] in ("mean", "cls")
    assert meta["training_args"]["epochs"] == 3 and "dev@0.5" in meta["metrics"]
    assert not (tiny_zh_checkpoint.parent / "checkpoint.train_state").exists()  # cleaned after success


def test_stock_sequence_classification_class_refuses_the_checkpoint(tiny_zh_checkpoint):
    # it would compute another head (pooler + random layer): it must fail rather than give other probabilities
    from transformers import AutoModelForSequenceClassification

    with pytest.raises((OSError, ValueError)):  # no config.json at the top of the folder
        AutoModelForSequenceClassification.from_pretrained(tiny_zh_checkpoint)


def test_cls_pooling_checkpoint_is_reproduced_too(tmp_path, tiny_zh_encoder, divorce_small):
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    train(TrainConfig(dataset_dir=str(divorce_small), save_dir=str(tmp_path / "ck"), model_name=str(tiny_zh_encoder),
                      pooling="cls", epochs=1, batch_size=32, max_seq_length=32, learning_rate=1e-3,
                      max_train_samples=64, progress=False, baseline=False))
    texts = ["婚生子杨某甲由原告抚养", "双方均认可价值6万元。"]
    expected = Classifier.load(tmp_path / "ck").predict_proba(texts)
    np.testing.assert_allclose(plain_transformers_probabilities(tmp_path / "ck", texts), expected, atol=1e-5)


def test_checkpoint_of_the_first_format_fails_with_one_line(tmp_path, tiny_zh_encoder):
    from transformers import BertConfig, BertForSequenceClassification

    from labelwise.errors import LabelwiseError

    old = tmp_path / "old"
    BertForSequenceClassification(BertConfig.from_pretrained(tiny_zh_encoder, num_labels=2)).save_pretrained(old)
    (old / "labelwise.json").write_text('{"labels": ["a", "b"], "format_version": 1}', encoding="utf-8")
    with pytest.raises(LabelwiseError, match="first format.*train again"):
        Classifier.load(old)


def test_predict_returns_names_scores_and_never_empty(tiny_zh_checkpoint):
    clf = Classifier.load(tiny_zh_checkpoint)
    texts = ["婚生子杨某甲由原告抚养", "双方均认可价值6万元。"]
    probs = clf.predict_proba(texts)
    assert probs.shape == (2, 20) and np.all((probs > 0) & (probs < 1))
    never_empty = clf.predict(texts, threshold=1.0, top_k_min=1)
    assert all(len(p.labels) == 1 for p in never_empty)
    assert never_empty[0].labels[0] == clf.labels[int(np.argmax(probs[0]))]
    everything = clf.predict(texts, threshold=0.0, top_k_max=3)
    assert all(len(p.labels) == 3 and p.scores == sorted(p.scores, reverse=True) for p in everything)
    assert set(everything[0].probabilities) == set(clf.labels)


def test_batching_does_not_change_predictions(tiny_zh_checkpoint):
    clf = Classifier.load(tiny_zh_checkpoint)
    texts = ["短", "婚生子杨某甲由原告抚养，高中阶段之前的相关费用由原告承担", "双方均认可价值6万元。"] * 3
    together = clf.predict_proba(texts, batch_size=4)
    one_by_one = np.vstack([clf.predict_proba([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_sliding_windows_see_the_end_of_a_long_text(tiny_zh_checkpoint):
    clf = Classifier.load(tiny_zh_checkpoint)
    enc = encode(clf.tokenizer, ["字" * 300, "短句"], max_length=64, long_text="slide", stride=16)
    assert enc.owner.tolist().count(0) > 1 and enc.owner.tolist().count(1) == 1
    assert max(len(ids) for ids in enc.input_ids) <= 64


class _KeywordBackend:
    """Logit +5 for label 0 when token ``keyword`` is in the row, else -5: makes windowing observable."""

    name = "fake"

    def __init__(self, keyword: int, n_labels: int):
        self.keyword, self.n_labels = keyword, n_labels

    def logits(self, batch):
        hit = (batch["input_ids"] == self.keyword).any(axis=1)
        out = np.full((len(hit), self.n_labels), -5.0)
        out[:, 0] = np.where(hit, 5.0, -5.0)
        return out


def test_sliding_windows_find_a_keyword_past_the_cut(tiny_zh_checkpoint):
    real = Classifier.load(tiny_zh_checkpoint)
    keyword = real.tokenizer.convert_tokens_to_ids("婚")
    clf = Classifier(_KeywordBackend(keyword, len(real.labels)), real.tokenizer, real.meta)
    long_text = "双方均认可价值6万元。" * 20 + "婚"  # the keyword sits after token 200; max_seq_length is 64
    truncated = clf.predict_proba([long_text, "婚"])
    slid = clf.predict_proba([long_text, "婚"], long_text="slide")
    assert truncated[0, 0] < 0.01 and slid[0, 0] > 0.99  # only the windows see it
    assert truncated[1, 0] > 0.99 and slid[1, 0] > 0.99  # short texts: one window, same result
    assert clf.predict([long_text], long_text="slide")[0].labels == [real.labels[0]]


def test_features_are_the_heads_input(tiny_zh_checkpoint):
    import torch

    clf = Classifier.load(tiny_zh_checkpoint)
    texts = ["婚生子杨某甲由原告抚养", "双方均认可价值6万元。"]
    feats = clf.features(texts)
    head = clf.backend.head()
    with torch.no_grad():
        logits = head(torch.from_numpy(feats)).numpy()
    probs = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-5)


def test_tuned_thresholds_never_lower_the_objective_on_their_data():
    from labelwise.evaluation.metrics import f1_scores

    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < [0.5, 0.3, 0.1, 0.03, 0.01, 0.2]).astype(int)
    probs = np.clip(0.35 * y + rng.random(y.shape) * 0.6, 0, 1)  # weak, shifted scores
    base = sum(f1_scores(y, (probs >= 0.5).astype(int)))
    tuned = sum(f1_scores(y, (probs >= tune_thresholds(y, probs, prior_strength=0)).astype(int)))
    assert tuned >= base and tuned > base + 1  # a real gain on miscalibrated scores


def test_thresholds_of_labels_with_few_positives_are_pulled_to_the_shared_one():
    from labelwise.evaluation.metrics import shared_threshold

    rng = np.random.default_rng(1)
    y = np.zeros((2000, 2), dtype=int)
    y[:1000, 0] = 1  # a label with 1000 positives: its own threshold should stand
    y[:3, 1] = 1  # one with 3: its own threshold is noise
    probs = np.where(y == 1, 0.3, 0.1) + rng.random(y.shape) * 0.2  # positives in [0.3, 0.5], negatives below
    own = tune_thresholds(y, probs, prior_strength=0)
    shrunk = tune_thresholds(y, probs, prior_strength=10)
    shared = shared_threshold(y, probs)
    assert abs(shrunk[0] - own[0]) < 0.01 * abs(own[0] - shared) + 1e-3
    assert shrunk[1] == pytest.approx((3 * own[1] + 10 * shared) / 13)
    assert tune_thresholds(np.zeros((3, 2)), np.full((3, 2), 0.9))[0] == 0.5  # nothing to learn from: 0.5


def test_one_loader_one_precision_rule(tiny_zh_checkpoint, divorce_small, tmp_path, capsys):
    """--precision int8 is refused for a checkpoint by every command (it used to be ignored by predict/evaluate)."""
    from labelwise.cli import main
    from labelwise.errors import LabelwiseError
    from labelwise.predict.backends import detect

    assert detect(tiny_zh_checkpoint) == "torch"
    with pytest.raises(LabelwiseError, match="int8 needs .*an ONNX export folder.* is a PyTorch checkpoint"):
        Classifier.load(tiny_zh_checkpoint, precision="int8")
    commands = {
        "predict": ["predict", "--dataset_dir", str(divorce_small), "--params_path", str(tiny_zh_checkpoint),
                    "--output_file", str(tmp_path / "out.txt")],
        "evaluate": ["evaluate", "--dataset_dir", str(divorce_small), "--params_path", str(tiny_zh_checkpoint),
                     "--bad_case_file", str(tmp_path / "bad.txt")],
    }
    for name, argv in commands.items():
        assert main(argv + ["--precision", "int8"]) == 2, name
        err = capsys.readouterr().err
        assert "--precision int8 needs" in err and "an ONNX export folder" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "bad.txt").exists()


def test_bad_cases_and_predict_make_the_same_decisions(untrained_zh_checkpoint, divorce_small, tmp_path):
    """evaluate(top_k_min=1): bad_case.txt, the metrics and predict() give every text the same labels.

    The evaluation used to decide by threshold alone, so a text with no label above threshold was
    shown as predicted-nothing in bad_case.txt while `labelwise predict --top_k_min 1` gave it a label.
    """
    from sklearn.metrics import f1_score

    from labelwise.data.dataset import Example, multi_hot, read_examples, read_labels
    from labelwise.evaluation.evaluate import evaluate, write_bad_cases

    clf = Classifier.load(untrained_zh_checkpoint, device="cpu")  # a random head: probabilities differ by text
    examples = read_examples(divorce_small / "dev.txt")
    texts = [e.text for e in examples]
    best = clf.predict_proba(texts).max(axis=1)
    threshold = float(np.median(best))  # about half the texts have no label at or above it
    nothing_above = {t for t, p in zip(texts, best) if p < threshold}
    assert nothing_above
    predictions = clf.predict(texts, threshold=threshold, top_k_min=1)
    predicted = {t: p.labels for t, p in zip(texts, predictions)}
    assert all(len(predicted[t]) == 1 for t in nothing_above)  # the top label, below threshold

    ev = evaluate(clf, divorce_small, threshold=threshold, top_k_min=1)
    assert ev.predicted_labels() == [p.labels for p in predictions]
    assert write_bad_cases(ev, tmp_path / "bad.txt") > 0
    lines = (tmp_path / "bad.txt").read_text(encoding="utf-8").splitlines()[1:]
    shown = {}
    for line in lines:
        text, _gold, prediction = line.split("\t")
        shown[text] = prediction.split(",") if prediction else []
        assert shown[text] == predicted[text], text
    assert nothing_above & set(shown)  # such a text is a bad case with its top label, not with nothing
    wrong = {t for t, e in zip(texts, examples) if set(predicted[t]) != set(e.labels)}
    assert set(shown) == wrong

    labels = read_labels(divorce_small / "label.txt")
    y_pred = multi_hot([Example(t, tuple(predicted[t])) for t in texts], labels)
    y_true = multi_hot(examples, labels)
    assert ev.metrics["micro"]["f1"] == pytest.approx(100 * f1_score(y_true, y_pred, average="micro"))
    assert ev.metrics["macro"]["f1"] == pytest.approx(100 * f1_score(y_true, y_pred, average="macro",
                                                                     zero_division=0))
    assert ev.metrics["top_k_min"] == 1


def test_perf_mode_on_a_checkpoint_prints_its_evaluation(untrained_zh_checkpoint, divorce_small, capsys):
    """`predict --perf` on a checkpoint: the micro/macro-F1 it prints are evaluate()'s on the same data."""
    import re
    import time

    from labelwise.cli import main
    from labelwise.evaluation.evaluate import evaluate

    clf = Classifier.load(untrained_zh_checkpoint, device="cpu")
    threshold = float(np.median(clf.predict_proba([e.split("\t")[0] for e in (divorce_small / "dev.txt").read_text(
        encoding="utf-8").splitlines()])))  # a random head: about half the labels chosen, F1 far from 0 and 100
    want = evaluate(clf, divorce_small, threshold=threshold).metrics
    start = time.perf_counter()
    assert main(["predict", "--params_path", str(untrained_zh_checkpoint), "--dataset_dir", str(divorce_small),
                 "--perf", "--threshold", repr(threshold), "--device", "cpu"]) == 0
    wall = time.perf_counter() - start
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(r"dev size (\d+)  micro-F1 ([\d.]+)  macro-F1 ([\d.]+)  ([\d.]+) ms/sample "
                         r"\(batch \d+, torch\)", line)
    assert found, line
    size, micro, macro, ms = int(found[1]), float(found[2]), float(found[3]), float(found[4])
    assert size == want["size"] == 80
    assert (micro, macro) == (round(want["micro"]["f1"], 2), round(want["macro"]["f1"], 2))
    assert micro != macro  # two different numbers, not one printed twice
    assert 0 < ms * size / 1000 <= wall

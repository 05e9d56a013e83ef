"""Feature similarity and sentence-level interpretation (labelwise.analysis.similarity)."""
from __future__ import annotations

import numpy as np
import pytest

from labelwise.analysis.similarity import (
    SupportIndex,
    format_interpretation,
    interpret_examples,
    logits_from_features,
    read_interpret_input,
)
from labelwise.data.dataset import load_dataset
from labelwise.errors import DataError
from labelwise.evaluation.decision import sigmoid
from labelwise.predict.classifier import Classifier
from labelwise.predict.search import top_k_cosine


def test_top_k_cosine_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, keys = rng.normal(size=(7, 5)), rng.normal(size=(40, 5))
    idx, scores = top_k_cosine(queries, keys, 4, chunk_size=3)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    k = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    sims = q @ k.T
    expected = np.argsort(-sims, axis=1)[:, :4]
    assert (idx == expected).all()
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, axis=1), rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()  # best first


def test_top_k_cosine_k_larger_than_pool_and_scale_invariance():
    keys = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    idx, scores = top_k_cosine(np.array([[10.0, 0.1]]), keys, 10)
    assert idx.tolist() == [[0, 1, 2]]
    assert scores[0, 0] == pytest.approx(0.99995, abs=1e-4) and scores[0, 2] == pytest.approx(-0.99995, abs=1e-4)


def test_head_on_features_equals_predict_proba(untrained_zh_checkpoint, divorce_small):
    clf = Classifier.load(untrained_zh_checkpoint)
    texts = [e.text for e in load_dataset(divorce_small).dev[:12]]
    probs = sigmoid(logits_from_features(clf, clf.features(texts)))
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-5)


@pytest.mark.parametrize("model, dataset", [("untrained_zh_checkpoint", "divorce_small"),
                                            ("untrained_en_checkpoint", "goemotions_small")])
def test_a_training_text_is_its_own_best_support(model, dataset, request):
    clf = Classifier.load(request.getfixturevalue(model))
    ds = load_dataset(request.getfixturevalue(dataset))
    train = ds.train[:120]
    index = SupportIndex.build(clf, train)
    picks = [3, 40, 77, 101]
    items = interpret_examples(clf, train, [train[i].text for i in picks], top_k=3, index=index)
    for i, item in zip(picks, items):
        assert item.supports[0].text == train[i].text
        assert item.supports[0].labels == train[i].labels
        assert item.supports[0].score == pytest.approx(1.0, abs=1e-4)
        assert item.supports[0].score >= item.supports[1].score >= item.supports[2].score
        assert len({s.index for s in item.supports}) == 3
    # the prediction is the model's own decision rule on these texts
    assert items[0].predicted == clf.predict([train[3].text])[0].labels


def test_format_is_paddlenlps_layout():
    from labelwise.analysis.similarity import Interpretation, Support

    item = Interpretation("双方分居至今。", ("婚后分居",), ["婚后分居", "准予离婚"],
                          [Support(4, "原、被告分居至今。", ("婚后分居",), 0.999421),
                           Support(9, "婚生一女。", ("婚后有子女", "准予离婚"), 0.91)])
    assert format_interpretation([item]).splitlines() == [
        "text: 双方分居至今。", "predict label: 婚后分居,准予离婚", "label: 婚后分居",
        "examples with positive influence",
        "support1 text: 原、被告分居至今。\tlabel: 婚后分居\tscore: 0.99942",
        "support2 text: 婚生一女。\tlabel: 婚后有子女,准予离婚\tscore: 0.91000"]
    assert item.to_json()["supports"][1] == {"index": 9, "text": "婚生一女。", "labels": ["婚后有子女", "准予离婚"],
                                             "score": 0.91}


def test_read_interpret_input_accepts_the_three_formats(tmp_path):
    bad = tmp_path / "bad_case.txt"
    bad.write_text("Text\tLabel\tPrediction\n甲\ta,b\ta\n乙\t\tb\n", encoding="utf-8")
    assert read_interpret_input(bad, ["a", "b"]) == [("甲", ("a", "b")), ("乙", ())]
    two = tmp_path / "two.txt"
    two.write_text("丙\tb\n", encoding="utf-8")
    assert read_interpret_input(two) == [("丙", ("b",))]
    bare = tmp_path / "bare.txt"
    bare.write_text("only text\nanother\n", encoding="utf-8")
    assert read_interpret_input(bare) == [("only text", None), ("another", None)]


def test_read_interpret_input_errors_name_the_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("ok\ta\nbad\tz\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"in.txt:2: label 'z' is not one of the model's labels"):
        read_interpret_input(path, ["a"])
    path.write_text("a\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"in.txt:1: 3 tabs"):
        read_interpret_input(path)

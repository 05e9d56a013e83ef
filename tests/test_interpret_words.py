"""Word-level interpretation: input formats, sub-token → word merging, captum attributions, HTML + TSV."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_bert
from labelwise.analysis.interpret_words import (
    InterpretInput,
    TokenAttributor,
    WordAttribution,
    interpret,
    merge_to_words,
    read_interpret_input,
    word_spans,
)
from labelwise.cli.analysis import add_interpret_words_arguments, cmd_interpret_words
from labelwise.data.dataset import read_labels
from labelwise.errors import DataError, LabelwiseError
from labelwise.settings import check_args

DATA = Path(__file__).resolve().parents[1] / "data"


def _live_checkpoint(folder, base: str, dataset) -> str:
    """An untrained 2-layer BERT with large random weights: its outputs really depend on the input.

    (A briefly trained tiny model predicts the same probabilities for every text, which would make any
    attribution vanish.)
    """
    from transformers import AutoTokenizer

    from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
    from labelwise.model.encoders import resolve_model_name
    from labelwise.model.network import MultiLabelModel

    labels = read_labels(dataset / "label.txt")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(base))
    # thresholds of 0.9: a few predicted labels per text, so the tests stay fast
    meta = CheckpointMeta(labels=labels, max_seq_length=48, thresholds=[0.9] * len(labels), base_model=base)
    encoder = tiny_bert(len(tokenizer), initializer_range=0.3)  # seeded; the head below draws right after it
    save_checkpoint(folder, MultiLabelModel(encoder, len(labels), "mean"), tokenizer, meta)
    return str(folder)


@pytest.fixture(scope="module")
def live_zh(tmp_path_factory):
    return _live_checkpoint(tmp_path_factory.mktemp("live_zh") / "ckpt", "m3e-small", DATA / "divorce")


@pytest.fixture(scope="module")
def live_en(tmp_path_factory):
    return _live_checkpoint(tmp_path_factory.mktemp("live_en") / "ckpt", "all-minilm-l6-v2", DATA / "goemotions")


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_interpret_words_arguments(parser)
    argv = []
    for key, value in overrides.items():
        for item in value if isinstance(value, list) else [value]:
            argv += [f"--{key}", str(item)]
    return parser.parse_args(argv)


# ---- pure parts ------------------------------------------------------------------------------------------
def test_reads_bad_cases_labelled_and_bare_lines(tmp_path):
    labels = ["a", "b", "c"]
    bad = tmp_path / "bad_case.txt"
    bad.write_text("Text\tLabel\tPrediction\nfirst\ta,b\tb\nsecond\t\tc\n", encoding="utf-8")
    assert read_interpret_input(bad, labels) == [InterpretInput("first", ["a", "b"]), InterpretInput("second", [])]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\ufefflabelled\tc\r\nbare text\n", encoding="utf-8")
    assert read_interpret_input(mixed, labels) == [InterpretInput("labelled", ["c"]),
                                                   InterpretInput("bare text", None)]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("ok\ta\nnot ok\tzzz\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong.txt:2: label 'zzz' is not one of the model's labels"):
        read_interpret_input(wrong, labels)
    wrong.write_text("a\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong.txt:1: 3 tabs"):
        read_interpret_input(wrong, labels)


def test_word_spans_jieba_for_chinese_and_pre_tokenizer_words_for_english():
    zh = "原告与被告于2010年登记结婚"
    assert [zh[a:b] for a, b in word_spans(zh)] == ["原告", "与", "被告", "于", "2010", "年", "登记", "结婚"]
    en = "Unbelievable, she didn't call!"
    assert [en[a:b] for a, b in word_spans(en)] == ["Unbelievable", ",", "she", "didn", "'", "t", "call", "!"]


def test_merge_sums_sub_tokens_per_word_and_skips_special_tokens():
    text = "原告登记结婚"  # jieba: 原告 / 登记 / 结婚
    offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 0)]  # [CLS] 原 告 登 记 结 [SEP]: 婚 cut off
    scores = np.array([9.0, 1.0, 2.0, 0.5, 0.5, -1.0, 9.0])
    words, word_scores, covered = merge_to_words(text, offsets, scores)
    assert words == ["原告", "登记", "结婚"] and word_scores.tolist() == [3.0, 1.0, -1.0] and covered == 5
    assert merge_to_words(text, offsets, scores, "mean")[1].tolist() == [1.5, 0.5, -1.0]


def test_min_max_importance_and_top_words():
    r = WordAttribution("t", "a", "predicted", 0.9, ["a"], ["a"], ["x", "，", "y", "x", "z"],
                        np.array([2.0, 5.0, -2.0, 1.0, 0.0]))
    assert r.importance.tolist() == [4 / 7, 1.0, 0.0, 3 / 7, 2 / 7]
    assert r.top_words(2) == [("x", 4 / 7), ("z", 2 / 7)]  # punctuation skipped, each word once


# ---- attributions on a model whose output depends on the input -------------------------------------------
def test_integrated_gradients_are_complete(live_zh):
    """IG's completeness axiom: token attributions sum to logit(text) - logit(all-[PAD] baseline)."""
    import torch

    from labelwise import Classifier

    clf = Classifier.load(live_zh)
    text = "原告与被告于2010年登记结婚，婚后生有一女。"
    offsets, attributions = TokenAttributor(clf, "ig", n_steps=64)(text, [0, 7])
    enc = clf.tokenizer(text, truncation=True, max_length=48, return_special_tokens_mask=True)
    ids = torch.tensor([enc["input_ids"]])
    baseline = torch.where(torch.tensor([enc["special_tokens_mask"]]).bool(), ids, torch.zeros_like(ids))
    with torch.no_grad():
        delta = (clf.backend.model(input_ids=ids).logits - clf.backend.model(input_ids=baseline).logits)[0, [0, 7]]
    assert np.abs(delta.numpy()).min() > 1e-2  # the model is really input-dependent
    np.testing.assert_allclose(attributions.sum(axis=1), delta.numpy(), rtol=0.05, atol=1e-3)
    assert attributions[:, 0].tolist() == [0.0, 0.0] and len(offsets) == attributions.shape[1]


def test_the_three_methods_broadly_agree(live_zh):
    from scipy.stats import spearmanr

    from labelwise import Classifier

    clf = Classifier.load(live_zh)
    text = "婚生子杨某甲由原告抚养，被告每月支付抚养费500元。"
    words = {}
    for method, options in (("ig", {"n_steps": 32}), ("shap", {"n_samples": 32}), ("lime", {"n_samples": 300})):
        offsets, attributions = TokenAttributor(clf, method, **options)(text, [3])
        words[method] = merge_to_words(text, offsets, attributions[0], "mean" if method == "lime" else "sum")[1]
    assert spearmanr(words["ig"], words["shap"])[0] > 0.5
    assert spearmanr(words["ig"], words["lime"])[0] > 0.3



def test_sampling_methods_are_reproducible_whatever_the_global_random_state(live_zh):
    from labelwise import Classifier

    clf = Classifier.load(live_zh)
    text = "婚生子杨某甲由原告抚养，被告每月支付抚养费500元。"
    for method in ("shap", "lime"):
        attributor = TokenAttributor(clf, method, n_samples=16)
        np.random.seed(1)
        first = attributor(text, [3])[1]
        np.random.seed(2)  # captum's SHAP draws from np.random: the attributor must not depend on it
        assert np.array_equal(attributor(text, [3])[1], first)
        assert not np.array_equal(TokenAttributor(clf, method, n_samples=16, seed=4)(text, [3])[1], first)

def test_interpret_explains_predicted_and_missed_labels(live_zh):
    from labelwise import Classifier

    clf = Classifier.load(live_zh)
    inputs = [InterpretInput("原告与被告于2010年登记结婚。", ["准予离婚", "婚后有子女"]),
              InterpretInput("双方均认可价值6万元。")]
    results = interpret(clf, inputs, "ig", n_steps=8)
    predicted = [p.labels for p in clf.predict([x.text for x in inputs])]
    first = [r for r in results if r.text == inputs[0].text]
    expected = predicted[0] + [g for g in inputs[0].gold if g not in predicted[0]]
    assert [r.label for r in first] == expected
    for r in first:
        assert r.kind == ("missed" if r.label not in predicted[0] else "predicted" if r.label in inputs[0].gold
                          else "wrong")
        assert "".join(r.words) == inputs[0].text and r.truncated == ""
    second = [r for r in results if r.text == inputs[1].text]
    assert {r.kind for r in second} <= {"predicted?"} and len(second) == max(1, len(predicted[1]))


# ---- the command, end to end ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["ig", "shap", "lime"])
def test_interpret_words_on_bad_cases_of_evaluate(method, live_zh, divorce_small, tmp_path, capsys):
    from labelwise.cli.main import main

    bad = tmp_path / "bad_case.txt"
    assert main(["-q", "evaluate", "--dataset_dir", str(divorce_small), "--params_path", live_zh,
                 "--bad_case_file", str(bad)]) == 0
    html = tmp_path / "words.html"
    args = _args(params_path=live_zh, dataset_dir=divorce_small, interpret_input_file=bad, interpret_result_file=html,
                 method=method, max_examples=2, n_steps=4, n_samples=12, top_words=3)
    assert cmd_interpret_words(args) == 0
    rows = [line.split("\t") for line in (tmp_path / "words.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["Text", "Label", "Kind", "Probability", "Top words"]
    cases = [line.split("\t") for line in bad.read_text(encoding="utf-8").splitlines()[1:3]]
    labels = read_labels(divorce_small / "label.txt")
    for text, gold, _ in cases:
        explained = [r for r in rows[1:] if r[0] == text]
        assert explained and {r[1] for r in explained} >= set(filter(None, gold.split(",")))
        for r in explained:
            assert r[1] in labels and r[2] in ("predicted", "wrong", "missed") and 0 < float(r[3]) < 1
            top = [w.rsplit(":", 1) for w in r[4].split(" ")]
            assert 1 <= len(top) <= 3 and all(w in text and 0 <= float(v) <= 1 for w, v in top)
    page = html.read_text(encoding="utf-8")
    marked = re.findall(r"<mark[^>]*>([^<]*)</mark>", page)
    assert "".join(marked).startswith(cases[0][0][:10]) and f"Word importance per label ({method})" in page
    assert f"-> {html}" in capsys.readouterr().out


def test_interpret_words_english_text_merges_word_pieces(live_en, tmp_path):
    from transformers import AutoTokenizer

    text = "Unbelievably thoughtful gift, thanks!"
    tokens = AutoTokenizer.from_pretrained(live_en).tokenize(text)
    assert any(t.startswith("##") for t in tokens)  # the text really has word pieces
    args = _args(params_path=live_en, text=[text], interpret_result_file=tmp_path / "en.html",
                 top_words_file=tmp_path / "top.tsv", n_steps=4)
    assert cmd_interpret_words(args) == 0
    page = (tmp_path / "en.html").read_text(encoding="utf-8")
    assert re.findall(r"<mark[^>]*>([^<]*)</mark>", page)[:6] == ["Unbelievably", "thoughtful", "gift", ",",
                                                                   "thanks", "!"]
    rows = (tmp_path / "top.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert rows and all(r.split("\t")[2] == "predicted?" for r in rows)


def test_missing_input_and_onnx_are_clear_errors(live_zh, tmp_path):
    with pytest.raises(DataError, match="run `labelwise evaluate` first"):
        cmd_interpret_words(_args(params_path=live_zh, interpret_input_file=tmp_path / "nope.txt"))
    with pytest.raises(LabelwiseError, match="`max_examples` must be at least 1, got 0"):
        check_args(_args(params_path=live_zh, text=["x"], max_examples=0))  # what the command line runs first

    class _Onnx:
        backend = object()

    with pytest.raises(LabelwiseError, match="PyTorch checkpoint"):
        TokenAttributor(_Onnx(), "ig")

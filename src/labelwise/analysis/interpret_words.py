"""Word-level interpretation: which words pushed the model toward (or away from) each label.

For every input text and every label the model predicts, and every gold label it missed, captum attributes
the label's logit to the input tokens, with respect to the word embeddings:

* ``ig`` (default): integrated gradients (``LayerIntegratedGradients`` on the word-embedding layer) from a
  baseline where every non-special token is [PAD], ``--n_steps`` steps;
* ``shap``: gradient SHAP (expected gradients) in word-embedding space, baselines all-[PAD] and all-[UNK],
  ``--n_samples`` random points;
* ``lime``: LIME with whole words as the interpretable features (a dropped word becomes [PAD]), a ridge
  surrogate over ``--n_samples`` perturbations weighted by how many words they keep.

Sub-tokens are merged into words (jieba for text with CJK characters, else words and punctuation) by summing their
attributions (LIME scores words directly), then min-max normalised per text and label, as in PaddleNLP: 1 is the
word that pushes most toward the label, 0 the one that pushes most against it. Output: an HTML heatmap (word
background = normalised importance) and a TSV of the top words.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.evaluation.report import escape
from labelwise.files import atomic_write_text

__all__ = ["InterpretInput", "WordAttribution", "read_interpret_input", "word_spans", "token_words",
           "merge_to_words", "TokenAttributor", "interpret", "write_html", "write_tsv", "KIND_NOTE", "METHODS"]

METHODS = ("ig", "lime", "shap")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@dataclass
class InterpretInput:
    text: str
    gold: list[str] | None = None  # None: the input gave no gold labels


@dataclass
class WordAttribution:
    text: str
    label: str
    kind: str  # predicted (and gold) | wrong (predicted, not gold) | missed (gold only) | predicted? (no gold given)
    probability: float
    gold: list[str] | None
    predicted: list[str]
    words: list[str]
    scores: np.ndarray  # raw attribution per word (sum over its sub-tokens)
    truncated: str = ""  # text beyond max_seq_length, not attributed
    importance: np.ndarray = field(init=False)  # min-max normalised to [0, 1]

    def __post_init__(self):
        low, high = (float(self.scores.min()), float(self.scores.max())) if len(self.scores) else (0.0, 0.0)
        self.importance = (self.scores - low) / (high - low) if high > low else np.zeros_like(self.scores)

    def top_words(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` words with the highest attribution (punctuation skipped, each word once)."""
        seen, out = set(), []
        for i in np.argsort(-self.scores, kind="stable"):
            word = self.words[i].strip()
            if word in seen or not any(ch.isalnum() for ch in word):
                continue
            seen.add(word)
            out.append((word, float(self.importance[i])))
            if len(out) == k:
                break
        return out


# ---- input ----------------------------------------------------------------------------------------------
def read_interpret_input(path: str | os.PathLike, labels: Sequence[str]) -> list[InterpretInput]:
    """bad_case.txt (``Text\tLabel\tPrediction`` header), ``text\tlabel,label`` or bare text lines.

    The reader is shared with ``labelwise interpret examples`` (:mod:`labelwise.analysis.similarity`).
    """
    from labelwise.analysis.similarity import read_interpret_input as read_items

    return [InterpretInput(text, list(gold) if gold is not None else None)
            for text, gold in read_items(path, labels)]


# ---- tokens → words ------------------------------------------------------------------------------------
def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text``: jieba when it has CJK characters, else words and punctuation
    marks split as BERT's pre-tokenizer does (so word pieces ``##`` merge back into their word)."""
    if CJK.search(text):
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        return [(start, end) for word, start, end in jieba.tokenize(text) if word.strip()]
    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


def token_words(spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Index of the word each token starts in; -1 for special tokens (empty offsets)."""
    starts = np.array([s for s, _ in spans])
    return [max(0, int(np.searchsorted(starts, start, side="right")) - 1) if end > start else -1
            for start, end in offsets]


def merge_to_words(text: str, offsets: Sequence[tuple[int, int]], token_scores: np.ndarray,
                   reduce: str = "sum") -> tuple[list[str], np.ndarray, int]:
    """(words, word scores, index of the first character not covered by any token) from token scores."""
    spans = word_spans(text)
    sums, counts = np.zeros(len(spans)), np.zeros(len(spans))
    for w, score in zip(token_words(spans, offsets), token_scores):
        if w >= 0:
            sums[w] += score
            counts[w] += 1
    covered = max((end for start, end in offsets if end > start), default=0)
    keep = counts > 0
    scores = sums if reduce == "sum" else np.divide(sums, np.maximum(counts, 1))
    return [text[s:e] for (s, e), k in zip(spans, keep) if k], scores[keep], covered


# ---- attributions ---------------------------------------------------------------------------------------
class TokenAttributor:
    """Attribution of label logits to the tokens of one text, with captum."""

    def __init__(self, classifier, method: str = "ig", n_steps: int = 20, n_samples: int | None = None,
                 max_seq_length: int | None = None, seed: int = 3):
        if method not in METHODS:
            raise LabelwiseError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
        if not hasattr(classifier.backend, "model"):
            raise LabelwiseError("word interpretation needs a PyTorch checkpoint, not an ONNX export")
        if n_steps < 1 or (n_samples is not None and n_samples < 2):
            raise LabelwiseError("`n_steps` must be >= 1 and `n_samples` >= 2")
        self.model, self.tokenizer = classifier.backend.model, classifier.tokenizer
        self.method, self.n_steps, self.seed = method, n_steps, seed
        self.n_samples = n_samples or {"lime": 200, "shap": 20}.get(method, 0)
        self.max_seq_length = max_seq_length or classifier.max_seq_length
        self.device = next(self.model.parameters()).device

    def encode(self, text: str) -> dict:
        return self.tokenizer(text, truncation=True, max_length=self.max_seq_length, return_offsets_mapping=True,
                              return_special_tokens_mask=True)

    def __call__(self, text: str, targets: Sequence[int]) -> tuple[list[tuple[int, int]], np.ndarray]:
        """(token offsets, attributions of shape (len(targets), n_tokens)); LIME gives each word's score.

        Reproducible: SHAP and LIME sample from torch's and numpy's global generators (captum draws
        SHAP's interpolation points with ``np.random``), so both are seeded here and restored after.
        """
        import torch

        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                np.random.seed(self.seed)
                return self._attribute(text, targets)
        finally:
            np.random.set_state(numpy_state)

    def _attribute(self, text: str, targets: Sequence[int]) -> tuple[list[tuple[int, int]], np.ndarray]:
        import torch

        enc = self.encode(text)
        ids = torch.tensor([enc["input_ids"]], device=self.device)
        special = torch.tensor([enc["special_tokens_mask"]], device=self.device).bool()
        pad = self.tokenizer.pad_token_id or 0
        baseline = torch.where(special, ids, torch.full_like(ids, pad))
        extra = self._extra_args(enc)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        if self.method == "ig":
            from captum.attr import LayerIntegratedGradients

            n = len(targets)
            lig = LayerIntegratedGradients(self._forward_ids, self.model.get_input_embeddings())
            attr = lig.attribute(ids.expand(n, -1), baselines=baseline.expand(n, -1), target=list(targets),
                                 additional_forward_args=tuple(a.expand(n, -1) for a in extra),
                                 n_steps=self.n_steps, internal_batch_size=max(self.n_steps, n))
            return offsets, attr.sum(-1).detach().cpu().numpy()
        if self.method == "shap":
            return offsets, self._gradient_shap(ids, baseline, extra, targets)
        return offsets, self._lime(text, ids, baseline, extra, offsets, targets)

    # model calls captum differentiates --------------------------------------------------------------------
    def _extra_args(self, enc) -> tuple:
        import torch

        args = [torch.ones(1, len(enc["input_ids"]), dtype=torch.long, device=self.device)]
        if "token_type_ids" in enc:
            args.append(torch.tensor([enc["token_type_ids"]], device=self.device))
        return tuple(args)

    def _forward_ids(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    def _forward_embeds(self, inputs_embeds, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **extra).logits

    def _gradient_shap(self, ids, baseline, extra, targets) -> np.ndarray:
        import torch
        from captum.attr import GradientShap

        embed = self.model.get_input_embeddings()
        unk = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None else baseline[0, 1].item()
        unk_baseline = torch.where(ids != baseline, torch.full_like(ids, unk), baseline)  # special tokens kept
        with torch.no_grad():
            baselines = embed(torch.cat([baseline, unk_baseline]))
            inputs = embed(ids)
        n = len(targets)
        attr = GradientShap(self._forward_embeds).attribute(
            inputs.expand(n, -1, -1), baselines=baselines, target=list(targets), n_samples=self.n_samples,
            stdevs=0.0, additional_forward_args=tuple(a.expand(n, -1) for a in extra))
        return attr.sum(-1).detach().cpu().numpy()

    def _lime(self, text, ids, baseline, extra, offsets, targets) -> np.ndarray:
        import torch
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime

        # one interpretable feature per word; special tokens form a last group (dropping them changes nothing)
        spans = word_spans(text)
        groups = [w if w >= 0 else len(spans) for w in token_words(spans, offsets)]
        mask = torch.tensor([groups], device=self.device)

        def similarity(_original, _perturbed, interpretable, **_kwargs):
            kept = float(interpretable.float().mean())  # cosine distance of the binary vector to all-ones
            return float(np.exp(-((1 - np.sqrt(kept)) ** 2) / 0.25 ** 2))

        lime = Lime(self._forward_ids, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity)
        rows = [lime.attribute(ids, baselines=baseline, target=int(t), additional_forward_args=extra,
                               feature_mask=mask, n_samples=self.n_samples, perturbations_per_eval=16)
                for t in targets]
        return torch.cat(rows).detach().cpu().numpy()


def _kind(label: str, gold: list[str] | None, predicted: list[str]) -> str:
    if gold is None:
        return "predicted?"
    if label in predicted:
        return "predicted" if label in gold else "wrong"
    return "missed"


def interpret(classifier, inputs: Sequence[InterpretInput], method: str = "ig", n_steps: int = 20,
              n_samples: int | None = None, max_seq_length: int | None = None, progress: bool = False,
              seed: int = 3) -> list[WordAttribution]:
    """Word attributions for each predicted label and each missed gold label of every input.

    When nothing is predicted and no gold label is given, the most probable label is explained.
    """
    attributor = TokenAttributor(classifier, method, n_steps, n_samples, max_seq_length, seed)
    labels = classifier.labels
    probs = classifier.predict_proba([x.text for x in inputs], max_seq_length=attributor.max_seq_length)
    items = zip(inputs, probs, classifier.decode(probs))
    if progress:
        from labelwise.progress import progress as progress_bar

        items = progress_bar(items, f"interpret ({method})", unit="text", total=len(inputs))
    out = []
    for item, row, prediction in items:
        predicted = prediction.labels
        if item.gold:  # a label tree: gold listing only a leaf (bad cases shown as leaves) gets its parents back
            item = InterpretInput(item.text, list(classifier.hierarchy.complete(item.gold)[0]))
        explain = predicted + [g for g in (item.gold or []) if g not in predicted]
        if not explain:
            explain = [labels[int(np.argmax(row))]]
        targets = [labels.index(label) for label in explain]
        offsets, attributions = attributor(item.text, targets)
        for label, target, token_scores in zip(explain, targets, attributions):
            words, scores, covered = merge_to_words(item.text, offsets, token_scores,
                                                    "mean" if method == "lime" else "sum")
            out.append(WordAttribution(item.text, label, _kind(label, item.gold, predicted), float(row[target]),
                                       item.gold, predicted, words, scores, item.text[covered:]))
    return out


# ---- output ---------------------------------------------------------------------------------------------
KIND_NOTE = {"predicted": "predicted, correct", "wrong": "predicted, not gold", "missed": "gold, missed",
             "predicted?": "predicted (no gold given)"}


def write_tsv(results: Sequence[WordAttribution], path: str | os.PathLike, top_words: int = 5) -> Path:
    """``Text\\tLabel\\tKind\\tProbability\\tTop words`` (``word:importance`` separated by spaces)."""
    lines = ["Text\tLabel\tKind\tProbability\tTop words"]
    for r in results:
        words = " ".join(f"{w}:{v:.2f}" for w, v in r.top_words(top_words))
        lines.append(f"{r.text}\t{r.label}\t{r.kind}\t{r.probability:.4f}\t{words}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_html(results: Sequence[WordAttribution], path: str | os.PathLike, top_words: int = 5,
               method: str = "ig") -> Path:
    """A self-contained HTML table: label / gold / prediction / key words / the text as a heatmap."""
    rows = []
    for n, r in enumerate(results):
        marks = "".join(f"<mark style='background:rgba(220,38,38,{0.85 * v:.2f})' title='{v:.2f} (raw {s:.3g})'>"
                        f"{escape(w)}</mark>" for w, v, s in zip(r.words, r.importance, r.scores))
        rest = f"<span class='cut' title='beyond max_seq_length, not attributed'>{escape(r.truncated)}</span>" \
            if r.truncated else ""
        key = " ".join(escape(w) for w, _ in r.top_words(top_words))
        shared = ""  # gold and prediction once per text (results of one text are consecutive)
        if n == 0 or results[n - 1].text != r.text:
            span = next((k for k in range(n, len(results)) if results[k].text != r.text), len(results)) - n
            gold = "—" if r.gold is None else escape(",".join(r.gold)) or "(none)"
            shared = (f"<td rowspan='{span}'>{gold}</td>"
                      f"<td rowspan='{span}'>{escape(', '.join(r.predicted)) or '(none)'}</td>")
        rows.append(f"<tr class='{r.kind.rstrip('?')}'><td><b>{escape(r.label)}</b><br><small>{KIND_NOTE[r.kind]}, "
                    f"p={r.probability:.2f}</small></td>{shared}<td class='key'>{key}</td>"
                    f"<td class='text'>{marks}{rest}</td></tr>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>labelwise word interpretation</title><style>"
        "body{font-family:system-ui,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:24px;color:#1f2328}"
        "table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #d0d7de;padding:6px 8px;"
        "vertical-align:top;text-align:left}th{background:#f6f8fa}td.text{max-width:760px;line-height:1.9}"
        "mark{color:inherit;padding:1px 1px;border-radius:2px}.cut{color:#8c959f}td.key{max-width:180px}"
        "tr.missed td:first-child{border-left:4px solid #cf222e}tr.wrong td:first-child{border-left:4px solid #bc4c00}"
        "tr.predicted td:first-child{border-left:4px solid #1a7f37}</style></head><body>"
        f"<h1>Word importance per label ({escape(method)})</h1><p>Darker red = the word pushes the label's score up more "
        "(min-max normalised per row); pale words push it down or not at all. Hover a word for its value.</p>"
        "<table id='interpretation'><tr><th>Label explained</th><th>Gold</th><th>Prediction</th><th>Key words</th>"
        f"<th>Text</th></tr>{''.join(rows)}</table></body></html>\n")
    return atomic_write_text(path, page)

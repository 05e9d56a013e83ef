"""Few examples per label, or none: contrastive few-shot training and zero-shot models from label names.

* ``train(dataset, few_shot=True)`` / ``labelwise train --few_shot``: (1) :func:`contrastive_stage` tunes the
  encoder on pairs of examples, SetFit's way: the cosine of two texts that share a label is pulled to 1, of two
  texts with no label in common to 0. Each label's name (or its ``label==word`` from label.txt) joins the
  examples as a text carrying that one label, an anchor. (2) :func:`labelwise.training.train` starts from that
  model and fine-tunes it with its usual recipe on the examples plus the anchors. The output is an ordinary
  checkpoint.
* :func:`zero_shot` / ``labelwise zeroshot``: no labelled examples at all; each label's logit is the text's
  cosine to the label name's vector, scaled (the head reads unit-length vectors: ``normalize``); per-label
  thresholds tuned on dev when there is one. Also an ordinary checkpoint.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from labelwise.data.dataset import Dataset, Example, read_label_words
from labelwise.data.hierarchy import Hierarchy
from labelwise.errors import LabelwiseError
from labelwise.model.encoders import build_model
from labelwise.model.network import MultiLabelModel
from labelwise.predict.batching import encode, pad_batch
from labelwise.training.loop import StepLoop

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("labelwise")
PAIRS_PER_TEXT = 10  # positive (and as many negative) pairs drawn per text (SetFit's default is 20)
MAX_PAIR_STEPS = 400  # keeps the contrastive stage to minutes on a CPU


def anchors(label_words: dict[str, str], hierarchy: Hierarchy | None = None) -> list[Example]:
    """Each label's word as a text carrying that one label (and, in a label tree, its ancestors)."""
    return [Example(word, hierarchy.complete((label,))[0] if hierarchy else (label,))
            for label, word in label_words.items()]


def make_pairs(label_sets: list[set[str]], rng: np.random.Generator, per_text: int | None = None
               ) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: target 1 for texts sharing a label, 0 for texts with none in common.

    Texts without labels take part only as negatives of labelled ones (two unlabelled texts say nothing about
    each other); pairs that share some labels but not all count as positives.
    """
    per_text = per_text or PAIRS_PER_TEXT
    pairs = []
    for i, labels in enumerate(label_sets):
        if not labels:
            continue
        positives = [j for j, other in enumerate(label_sets) if j != i and labels & other]
        negatives = [j for j, other in enumerate(label_sets) if not labels & other]
        for pool, target in ((positives, 1.0), (negatives, 0.0)):
            if pool:
                pairs += [(i, int(j), target) for j in rng.choice(pool, size=min(per_text, len(pool)), replace=False)]
    rng.shuffle(pairs)
    return pairs


def _embed(model, tokenizer, texts: list[str], max_len: int, device: str) -> torch.Tensor:
    enc = encode(tokenizer, texts, max_len)
    batch = pad_batch(enc, list(range(len(texts))), tokenizer.pad_token_id or 0)
    return model.pooled(**{k: torch.from_numpy(v).to(device) for k, v in batch.items()})


def contrastive_tune(model, tokenizer, examples: list[Example], *, max_len: int = 128, batch_size: int = 16,
                     learning_rate: float = 2e-5, seed: int = 3, device: str = "cpu", show: bool = True,
                     tracker=None, logging_steps: int = 5) -> float:
    """One pass over sampled pairs, MSE between their cosine and the target (SetFit's loss); the mean loss.

    ``tracker`` (:mod:`labelwise.training.tracking`) gets the loss and learning rate under ``contrastive/``."""
    rng = np.random.default_rng(seed)
    pairs = make_pairs([set(e.labels) for e in examples], rng)[: MAX_PAIR_STEPS * batch_size]
    if not pairs:
        raise LabelwiseError("few-shot training needs examples of at least two labels")
    texts = [e.text for e in examples]

    def pair_loss(chunk: list[tuple[int, int, float]]) -> torch.Tensor:
        left = _embed(model, tokenizer, [texts[i] for i, _, _ in chunk], max_len, device)
        right = _embed(model, tokenizer, [texts[j] for _, j, _ in chunk], max_len, device)
        target = torch.tensor([t for _, _, t in chunk], device=device)
        return torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(left, right), target)

    optimizer = torch.optim.AdamW(model.encoder.parameters(), lr=learning_rate, weight_decay=0.01)
    chunks = [pairs[start:start + batch_size] for start in range(0, len(pairs), batch_size)]
    model.train()
    loop = StepLoop(model, optimizer, show=show, logging_steps=logging_steps)
    if tracker is not None:
        loop.tracker, tracker.stage = tracker, "contrastive"
    try:
        losses = loop.epoch(chunks, pair_loss, "contrastive pairs")["loss"]
    finally:
        if tracker is not None:
            tracker.stage = "train"
    model.eval()
    return float(np.mean(losses))


@dataclass
class FewShotStart:
    """What the contrastive stage hands fine-tuning: the tuned model and the label names as examples."""

    model: MultiLabelModel
    tokenizer: PreTrainedTokenizerBase
    anchors: list[Example]


def contrastive_stage(cfg, ds: Dataset, train_set: list[Example], device: str, tracker=None) -> FewShotStart:
    """``train(..., few_shot=True)``'s first stage: a fresh ``cfg.model_name`` tuned on pairs of the examples
    and the label names; :func:`labelwise.training.train` fine-tunes it, with the anchors added to the examples.

    ``cfg`` is a :class:`~labelwise.training.TrainConfig`; torch is seeded already.
    """
    if cfg.init_from_ckpt or cfg.resume:
        raise LabelwiseError("`few_shot` starts from `model_name`; it does not combine with `init_from_ckpt` or "
                             "`resume`")
    label_file = Path(cfg.dataset_dir) / cfg.label_file
    from labelwise.training.zeroshot import label_texts

    label_words = read_label_words(label_file) if ds.root and label_file.exists() else {l: l for l in ds.labels}
    label_words = label_texts(label_words, ds.hierarchy)  # a tree label's path → its words
    model, tokenizer, pooling = build_model(cfg.model_name, ds.labels, cfg.pooling)
    label_anchors = anchors(label_words, ds.hierarchy)
    log.info("few-shot: contrastive pairs of %d examples + %d label names (%s, %s pooling)", len(train_set),
             len(label_words), cfg.model_name, pooling)
    start = time.perf_counter()
    loss = contrastive_tune(model.to(device), tokenizer, list(train_set) + label_anchors, max_len=cfg.max_seq_length or 128,
                            seed=cfg.seed, device=device, show=cfg.progress, tracker=tracker,
                            logging_steps=cfg.logging_steps)
    log.info("few-shot: contrastive stage done in %.0f s (loss %.4f); fine-tuning on the examples and label names",
             time.perf_counter() - start, loss)
    return FewShotStart(model.cpu(), tokenizer, label_anchors)


__all__ = ['FewShotStart', 'anchors', 'contrastive_stage', 'contrastive_tune', 'make_pairs']

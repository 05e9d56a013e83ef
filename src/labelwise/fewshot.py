"""Few examples per label, or none: contrastive few-shot training and zero-shot models from label names.

Both make an ordinary checkpoint (evaluate, predict, export, serve take it) whose head reads unit-length text
vectors (``normalize``), so each logit is a scaled cosine similarity to a learned label direction.

* ``train(dataset, few_shot=True)`` / ``labelwise train --few_shot``: SetFit-style. (1) Contrastive tuning of
  the encoder on pairs of examples: the cosine of two texts that share a label is pulled to 1, of two texts
  with no label in common to 0. Each label's name (or its ``label==word`` from label.txt) joins the examples as
  a text carrying that one label, an anchor. (2) The head, on the frozen encoder's vectors, starts at the
  label names' directions and is fitted with binary cross-entropy. (3) Thresholds tuned on dev.
* :func:`zero_shot` / ``labelwise zeroshot``: no labelled examples at all; each label's logit is the text's
  cosine to the label name's vector, scaled; per-label thresholds tuned on dev when there is one.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .batching import encode, pad_batch
from .data import Example, load_dataset, multi_hot, read_label_words
from .errors import LabelwiseError
from .inference import Classifier, TorchBackend, resolve_device
from .models import DEFAULT_MODEL, CheckpointMeta, build_model, save_checkpoint
from .progress import progress

log = logging.getLogger("labelwise")

SCALE = 20.0  # logit = SCALE × (cosine − offset): cosines live in [-1, 1], probabilities need a wider range
PAIRS_PER_TEXT = 20  # SetFit's default number of positive (and as many negative) pairs drawn per text
MAX_PAIR_STEPS = 400  # keeps the contrastive stage to minutes on a CPU


def anchors(label_words: dict[str, str]) -> list[Example]:
    """Each label's word as a text carrying that one label."""
    return [Example(word, (label,)) for label, word in label_words.items()]


def make_pairs(label_sets: list[set[str]], rng: np.random.Generator, per_text: int = PAIRS_PER_TEXT
               ) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: target 1 for texts sharing a label, 0 for texts with none in common.

    Texts without labels take part only as negatives of labelled ones (two unlabelled texts say nothing about
    each other); pairs that share some labels but not all count as positives.
    """
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
                     learning_rate: float = 2e-5, seed: int = 3, device: str = "cpu", show: bool = True) -> float:
    """One pass over sampled pairs, MSE between their cosine and the target (SetFit's loss); the mean loss."""
    rng = np.random.default_rng(seed)
    pairs = make_pairs([set(e.labels) for e in examples], rng)[: MAX_PAIR_STEPS * batch_size]
    if not pairs:
        raise LabelwiseError("few-shot training needs examples of at least two labels")
    texts = [e.text for e in examples]
    optimizer = torch.optim.AdamW(model.encoder.parameters(), lr=learning_rate, weight_decay=0.01)
    model.train()
    losses = []
    steps = range(0, len(pairs), batch_size)
    for start in progress(steps, "contrastive pairs", show):
        chunk = pairs[start:start + batch_size]
        left = _embed(model, tokenizer, [texts[i] for i, _, _ in chunk], max_len, device)
        right = _embed(model, tokenizer, [texts[j] for _, j, _ in chunk], max_len, device)
        target = torch.tensor([t for _, _, t in chunk], device=device)
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(left, right), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return float(np.mean(losses))


def fit_head(model, features: np.ndarray, y: np.ndarray, label_vectors: np.ndarray, *, steps: int = 300,
             weight_decay: float = 1e-3) -> None:
    """The head on fixed unit vectors: starts at SCALE × each label's direction, fitted with BCE (full batch)."""
    x, targets = torch.from_numpy(features), torch.from_numpy(y.astype(np.float32))
    weight = torch.nn.Parameter(SCALE * torch.from_numpy(label_vectors).float())
    start_bias = -SCALE * (x @ weight.detach().T / SCALE).quantile(0.9, dim=0)  # top 10% of texts start positive
    bias = torch.nn.Parameter(start_bias.clone())
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weight.T + bias, targets)
        loss = loss + weight_decay * (weight - SCALE * torch.from_numpy(label_vectors)).pow(2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)


def _label_vectors(clf: Classifier, label_words: dict[str, str]) -> np.ndarray:
    return clf.features(list(label_words.values()))


def _finish(model, tokenizer, meta: CheckpointMeta, ds, dev, save_dir, epoch: int, device: str):
    """Tune thresholds on dev (when there is one), score, save; a Classifier of the result."""
    from .training import evaluate_model, score_checkpoint

    if dev:
        probs, _ = evaluate_model(model, tokenizer, meta, dev, meta.labels, 32)
        score_checkpoint(model, tokenizer, meta, probs, dev, ds.test, epoch)
    model.eval()
    save_checkpoint(save_dir, model, tokenizer, meta)
    return Classifier(TorchBackend(model, device), tokenizer, meta, path=save_dir)


def train_few_shot(cfg, ds) -> "TrainResult":  # noqa: F821 (labelwise.training.TrainResult)
    """``train(..., few_shot=True)``: see the module doc. ``cfg`` is a :class:`~labelwise.training.TrainConfig`."""
    from .training import TrainResult

    start = time.perf_counter()
    ignored = [f"`{name}`" for name in ("epochs", "head_learning_rate", "init_from_ckpt", "resume", "pos_weight")
               if getattr(cfg, name)]
    if ignored:
        log.warning("few-shot training ignores %s (one contrastive pass, then the head)", ", ".join(ignored))
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    label_words = read_label_words(Path(cfg.dataset_dir) / cfg.label_file) if ds.root else {l: l for l in ds.labels}
    model, tokenizer, pooling = build_model(cfg.model_name, ds.labels, cfg.pooling)
    model.normalize = True
    model.to(device)
    examples = ds.train + anchors(label_words)
    log.info("few-shot: %s (%s pooling) on %d examples + %d label names", cfg.model_name, pooling, len(ds.train),
             len(label_words))
    loss = contrastive_tune(model, tokenizer, examples, max_len=cfg.max_seq_length, seed=cfg.seed, device=device,
                            learning_rate=cfg.learning_rate or 2e-5, show=cfg.progress)
    meta = CheckpointMeta(labels=ds.labels, max_seq_length=cfg.max_seq_length, base_model=cfg.model_name,
                          pooling=pooling, training_args={**dataclasses.asdict(cfg), "route": "few-shot",
                                                          "contrastive_loss": round(loss, 4)})
    clf = Classifier(TorchBackend(model, device), tokenizer, meta)
    features = clf.features([e.text for e in examples])
    fit_head(model, features, multi_hot(examples, ds.labels), _label_vectors(clf, label_words))
    result = _finish(model, tokenizer, meta, ds, ds.dev, Path(cfg.save_dir), 1, device)
    seconds = time.perf_counter() - start
    log.info("few-shot model saved to %s in %.0f s", cfg.save_dir, seconds)
    return TrainResult(Path(cfg.save_dir), 1, meta.metrics, [], seconds, len(examples) / seconds, result)


def zero_shot(dataset_dir: str, save_dir: str = "checkpoint", model_name: str = DEFAULT_MODEL,
              pooling: str = "auto", max_seq_length: int = 128, device: str | None = None,
              label_file: str = "label.txt") -> Classifier:
    """A classifier from label names alone; thresholds tuned on dev.txt when the folder has one."""
    device = resolve_device(device)
    ds = load_dataset(dataset_dir, label_file=label_file, require=())
    label_words = read_label_words(Path(dataset_dir) / label_file)
    model, tokenizer, pooling = build_model(model_name, ds.labels, pooling)
    model.normalize = True
    model.to(device).eval()
    meta = CheckpointMeta(labels=ds.labels, max_seq_length=max_seq_length, base_model=model_name, pooling=pooling,
                          training_args={"route": "zero-shot", "label_words": label_words})
    clf = Classifier(TorchBackend(model, device), tokenizer, meta)
    vectors = _label_vectors(clf, label_words)
    texts = [e.text for e in ds.train + ds.dev] or list(label_words.values())
    cosines = clf.features(texts) @ vectors.T
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(SCALE * vectors))
        model.head.bias.copy_(torch.from_numpy(-SCALE * np.quantile(cosines, 0.9, axis=0)).float())
    if not ds.dev:
        log.warning("zero-shot: no dev.txt in %s, so every label keeps threshold 0.5", dataset_dir)
    return _finish(model, tokenizer, meta, ds, ds.dev, Path(save_dir), 0, device)


__all__ = ["anchors", "make_pairs", "contrastive_tune", "fit_head", "train_few_shot", "zero_shot"]

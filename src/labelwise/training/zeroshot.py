"""Zero-shot: a classifier from label names alone (``labelwise zeroshot``).

Each label's logit is the text's cosine to the label name's vector, scaled (the head reads unit-length
vectors: ``normalize``); per-label thresholds are tuned on dev when there is one. The output is an ordinary
checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from labelwise.data.dataset import load_dataset, read_label_words
from labelwise.files import CHECKPOINT, prepare_output_dir
from labelwise.model.checkpoint import CheckpointMeta, save_checkpoint
from labelwise.model.device import resolve_device
from labelwise.model.encoders import DEFAULT_MODEL, build_model
from labelwise.predict.classifier import Classifier, TorchBackend

log = logging.getLogger("labelwise")

SCALE = 20.0  # logit = SCALE × (cosine − offset): cosines live in [-1, 1], probabilities need a wider range


def zero_shot(dataset_dir: str, save_dir: str = "checkpoint", model_name: str = DEFAULT_MODEL,
              pooling: str = "auto", max_seq_length: int = 128, device: str | None = None,
              label_file: str = "label.txt", overwrite: bool = False) -> Classifier:
    """A classifier from label names alone; thresholds tuned on dev.txt when the folder has one.

    ``save_dir`` must be missing, empty or a checkpoint; ``overwrite`` allows any other folder but the dataset's
    (:func:`labelwise.files.prepare_output_dir`).
    """
    from labelwise.training.scoring import evaluate_model, score_checkpoint

    prepare_output_dir(save_dir, CHECKPOINT, overwrite=overwrite, inputs={"dataset_dir": dataset_dir})
    device = resolve_device(device)
    ds = load_dataset(dataset_dir, label_file=label_file, require=())
    label_words = read_label_words(Path(dataset_dir) / label_file)
    model, tokenizer, pooling = build_model(model_name, ds.labels, pooling)
    model.normalize = True
    model.to(device).eval()
    meta = CheckpointMeta(labels=ds.labels, max_seq_length=max_seq_length, base_model=model_name, pooling=pooling,
                          training_args={"route": "zero-shot", "label_words": label_words})
    clf = Classifier(TorchBackend(model, device), tokenizer, meta)
    vectors = clf.features(list(label_words.values()))
    texts = [e.text for e in ds.train + ds.dev] or list(label_words.values())
    cosines = clf.features(texts) @ vectors.T
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(SCALE * vectors))
        model.head.bias.copy_(torch.from_numpy(-SCALE * np.quantile(cosines, 0.9, axis=0)).float())
    if ds.dev:
        probs, _ = evaluate_model(model, tokenizer, meta, ds.dev, meta.labels, 32)
        # per-label thresholds, unshrunk: each label's cosine offset is its own, so one shared threshold means
        # nothing here (measured: shrinking cost 4.4 micro-F1 on divorce, 1.8 on GoEmotions; benchmarks/RESULTS.md)
        score_checkpoint(model, tokenizer, meta, probs, ds.dev, ds.test, 0, prior_strength=0)
    else:
        log.warning("zero-shot: no dev.txt in %s, so every label keeps threshold 0.5", dataset_dir)
    model.eval()
    save_checkpoint(save_dir, model, tokenizer, meta, overwrite=overwrite)
    return Classifier(TorchBackend(model, device), tokenizer, meta, path=Path(save_dir))


__all__ = ['zero_shot']


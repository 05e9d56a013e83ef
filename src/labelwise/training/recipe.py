"""The automatic parts of the training recipe, and the linear baseline trained beside every run.

Settings left at ``None`` in :class:`labelwise.training.TrainConfig` follow the encoder and the data
(measured: benchmarks/RESULTS.md, "Training recipe ablation"):

* the encoder's learning rate: 1e-4 up to 512 hidden units (m3e-small, MiniLM), 3e-5 above (PaddleNLP's);
* the head's: ``HEAD_LR_MULTIPLIER`` × the encoder's — a fresh layer needs larger steps than pretrained weights;
* batch size: 32, or 8 for ``few_shot`` runs (a hundred examples; measured on divorce and GoEmotions: +1.2 / +0.6
  and +0.8 / -0.1 micro / macro-F1 over 32, benchmarks/RESULTS.md, "Few-shot recipe ablation");
* epochs: enough for ``MIN_STEPS`` optimiser steps, between ``MIN_EPOCHS`` and ``MAX_EPOCHS``, so a small dataset
  is not left after a few dozen updates while a large one is not trained for hours.
"""
from __future__ import annotations

import dataclasses
import logging

log = logging.getLogger("labelwise")

HEAD_LR_MULTIPLIER = 30
BATCH_SIZE, FEW_SHOT_BATCH_SIZE = 32, 8
MIN_STEPS = 600
MIN_EPOCHS, MAX_EPOCHS = 3, 40

__all__ = ['HEAD_LR_MULTIPLIER', 'MIN_STEPS', 'auto_batch_size', 'auto_epochs', 'auto_learning_rate', 'with_defaults']


def auto_learning_rate(hidden_size: int) -> float:
    """Encoder learning rate: 1e-4 for small encoders (hidden ≤ 512, e.g. m3e-small, MiniLM), 3e-5 above."""
    return 1e-4 if hidden_size <= 512 else 3e-5


def auto_batch_size(few_shot: bool) -> int:
    """Batch size when none is given: 32; 8 for few-shot runs, where 32 leaves a few steps per epoch."""
    return FEW_SHOT_BATCH_SIZE if few_shot else BATCH_SIZE


def auto_epochs(steps_per_epoch: int) -> int:
    """Enough epochs for MIN_STEPS optimiser steps, at least MIN_EPOCHS, at most MAX_EPOCHS."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, -(-MIN_STEPS // max(1, steps_per_epoch)))))


def with_defaults(cfg, hidden_size: int, pooling: str, steps_per_epoch: int):
    """A copy of ``cfg`` (a TrainConfig) with the automatic settings filled in."""
    lr = cfg.learning_rate or auto_learning_rate(hidden_size)
    return dataclasses.replace(cfg, learning_rate=lr, head_learning_rate=cfg.head_learning_rate or HEAD_LR_MULTIPLIER * lr,
                               epochs=cfg.epochs or auto_epochs(steps_per_epoch), pooling=pooling)

"""The pieces of an optimisation loop that fine-tuning, pruning's distillation and few-shot share."""
from __future__ import annotations

import logging

import numpy as np
import torch

from labelwise.training.config import TrainConfig

log = logging.getLogger("labelwise")


def random_subset(examples, limit: int | None, rng: np.random.Generator):
    """``limit`` examples drawn at random, in their original order; all of them when ``limit`` is None."""
    if limit is None or limit >= len(examples):
        return examples
    idx = np.sort(rng.choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in idx]


def adamw(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; decay on the encoder's weight matrices only; the head in its own group at the head rate."""
    decay, no_decay, head = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            head.append(param)
        elif name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"params": head, "weight_decay": 0.0, "lr": cfg.head_learning_rate}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def linear_schedule(optimizer, total_steps: int, warmup: int = 0):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total_steps``."""
    def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = ['linear_schedule', 'random_subset']


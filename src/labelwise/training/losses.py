"""Multi-label losses over logits: BCE (optionally class-weighted), focal, asymmetric."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from labelwise.training.config import LOSSES  # the names, declared with TrainConfig.loss


def auto_pos_weight(y: np.ndarray, max_weight: float = 50.0) -> np.ndarray:
    """Per-label weight of positives = negatives / positives, clipped to [1, max_weight]."""
    pos = y.sum(axis=0)
    neg = len(y) - pos
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, max_weight).astype(np.float32)


class MultiLabelLoss(torch.nn.Module):
    """``kind``: bce | focal (gamma=2) | asymmetric (Ridnik et al. 2021: gamma-=4, gamma+=0, clip 0.05)."""

    def __init__(self, kind: str = "bce", pos_weight: torch.Tensor | None = None,
                 gamma: float = 2.0, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
        self.kind, self.gamma, self.gamma_neg, self.gamma_pos, self.clip = kind, gamma, gamma_neg, gamma_pos, clip
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        if self.kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)
        p = torch.sigmoid(logits)
        if self.kind == "focal":
            bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight, reduction="none")
            p_true = p * targets + (1 - p) * (1 - targets)
            return ((1 - p_true) ** self.gamma * bce).mean()
        # asymmetric: shift the negatives' probability down by `clip`, focus harder on negatives
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        log_pos = torch.log(p.clamp(min=1e-8))
        log_neg = torch.log((1 - p_neg).clamp(min=1e-8))
        if self.pos_weight is not None:
            log_pos = log_pos * self.pos_weight
        loss = targets * (1 - p) ** self.gamma_pos * log_pos + (1 - targets) * p_neg ** self.gamma_neg * log_neg
        return -loss.mean()

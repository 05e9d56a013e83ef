"""Predict from an export folder with ONNX Runtime and the `tokenizers` library: no torch, no transformers.

An export folder (written by ``labelwise export``) holds::

    model.onnx          fp32 graph, dynamic batch and sequence axes
    model.int8.onnx     optional: dynamic int8 quantization (CPU)
    model.fp16.onnx     optional: fp16 weights, fp32 inputs/outputs (GPU)
    labelwise.json      labels, thresholds, max_seq_length (as in a checkpoint)
    tokenizer.json, tokenizer_config.json
    export.json         how it was made and the ONNX-vs-PyTorch check

``transformers.AutoTokenizer`` imports torch, so the tokenizer here is a small wrapper around
``tokenizers.Tokenizer`` that answers the calls :mod:`labelwise.predict.batching` makes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.model.checkpoint import META_FILE, brief, damaged, read_json_file, read_meta
from labelwise.model.integrity import verify_checksums
from labelwise.predict.backends import GraphBackend, Kind, Opened, register

__all__ = ["KIND", "MODEL_FILES", "OnnxBackend", "OnnxTokenizer", "WEIGHT_PATTERNS", "load_tokenizer", "model_file"]

# precision → file name inside an export folder
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
WEIGHT_PATTERNS = ("*.onnx", "*.onnx.data", "*.onnx_data")  # what an export's checksums cover
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
EXPORT_AGAIN = "restore the folder from a copy, or export again (labelwise export)"


def model_file(folder: str | os.PathLike, precision: str = "fp32") -> Path:
    """The ONNX file of ``precision`` in an export folder, with a clear error when it is missing."""
    if precision not in MODEL_FILES:
        raise LabelwiseError(f"unknown precision {precision!r}; use one of {', '.join(MODEL_FILES)}")
    path = Path(folder) / MODEL_FILES[precision]
    if not path.exists():
        how = {"fp32": "labelwise export --params_path CHECKPOINT --output_path EXPORT",
               "int8": "export again: labelwise export ... --quantize int8",
               "fp16": "export again: labelwise export ... --fp16"}[precision]
        raise LabelwiseError(f"{path}: not found; is {folder} an export folder? ({how})")
    return path


class OnnxTokenizer:
    """A fast (Rust) tokenizer from ``tokenizer.json``, called like a Hugging Face fast tokenizer.

    Supports what inference needs: truncation to ``max_length``, overflowing windows with ``stride``
    (``overflow_to_sample_mapping``), ``token_type_ids``, ``pad_token_id``. No padding: batches are
    padded later, per length group.
    """

    def __init__(self, tokenizer, pad_token: str | None = None, model_max_length: int = 512):
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.model_max_length = model_max_length
        self.pad_token_id = tokenizer.token_to_id(pad_token) if pad_token else None

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "OnnxTokenizer":
        from tokenizers import Tokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").exists():
            raise LabelwiseError(f"{folder / 'tokenizer.json'}: not found (export folders carry the checkpoint's "
                                 "fast tokenizer); restore it, or export again with `labelwise export`")
        config = {}
        if (folder / "tokenizer_config.json").exists():
            config = read_json_file(folder / "tokenizer_config.json", EXPORT_AGAIN)
            if not isinstance(config, dict):
                raise damaged(folder / "tokenizer_config.json", "not a JSON object", EXPORT_AGAIN)
        pad = config.get("pad_token")
        if isinstance(pad, dict):  # older configs store AddedToken objects
            pad = pad.get("content")
        max_len = config.get("model_max_length") or 512
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # tokenizers raises a bare Exception for a damaged file
            raise damaged(folder / "tokenizer.json", f"unreadable ({brief(err)})", EXPORT_AGAIN) from None
        if not isinstance(max_len, (int, float)):
            raise damaged(folder / "tokenizer_config.json", "model_max_length is not a number", EXPORT_AGAIN)
        return cls(tokenizer, pad, int(min(max_len, 10**6)))

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: str | Sequence[str], truncation: bool = True, max_length: int | None = None,
                 padding: bool = False, return_attention_mask: bool = True,
                 return_overflowing_tokens: bool = False, stride: int = 0, **_ignored) -> dict:
        if padding:
            raise ValueError("OnnxTokenizer does not pad; labelwise.predict.batching pads per batch")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if truncation:
            self._tokenizer.enable_truncation(max_length or self.model_max_length, stride=stride)
        else:
            self._tokenizer.no_truncation()
        encodings, owner = [], []
        for i, enc in enumerate(self._tokenizer.encode_batch(texts)):
            windows = [enc] + (list(enc.overflowing) if return_overflowing_tokens else [])
            encodings.extend(windows)
            owner.extend([i] * len(windows))
        out = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings]}
        if return_attention_mask:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = owner
        return out


def load_tokenizer(folder: str | os.PathLike) -> OnnxTokenizer:
    return OnnxTokenizer.from_folder(folder)


def _providers(device: str | None) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in (None, "auto"):
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("gpu", "cuda") or device.startswith(("gpu:", "cuda:")):
        if "CUDAExecutionProvider" not in available:
            raise LabelwiseError(f"`device` {device}: this onnxruntime has no CUDA provider "
                                 "(pip install onnxruntime-gpu, or set `device` to cpu)")
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise LabelwiseError(f"`device` {device}: use cpu, gpu or gpu:N")


class OnnxBackend(GraphBackend):
    """Runs an exported ONNX graph with ONNX Runtime: padded int64 arrays in, logits out."""

    name, engine, export_hint = "onnx", "ONNX Runtime", "labelwise export ... --features"

    def __init__(self, session, precision: str = "fp32"):
        self.session, self.precision = session, precision
        self.input_names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        self.features_name = "features" if "features" in outputs else None  # `labelwise export --features`

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | None = None, num_threads: int | None = None,
             precision: str = "fp32", spin_wait: bool = True) -> "OnnxBackend":
        """``precision``: fp32 (model.onnx), int8 (model.int8.onnx) or fp16 (model.fp16.onnx). ``spin_wait``:
        ONNX Runtime's threads busy-wait for the next pass (its default; best offline); off, they sleep, which
        leaves the cores to a service's HTTP loop between passes."""
        import onnxruntime as ort

        path = model_file(folder, precision)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
        if not spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=_providers(device))
        except Exception as err:  # onnxruntime raises its own exception types
            raise damaged(path, f"ONNX Runtime cannot load it ({brief(err)})", EXPORT_AGAIN) from None
        backend = cls(session, precision)
        backend.check_outputs(path)
        return backend

    def check_outputs(self, path: Path) -> None:
        """The graph's logits must have one column per label of the folder's labelwise.json."""
        width = [o.shape for o in self.session.get_outputs() if o.name == self.output_name][0]
        meta = path.parent / META_FILE
        if not width or not isinstance(width[-1], int) or not meta.is_file():
            return
        labels = read_json_file(meta, EXPORT_AGAIN)
        labels = labels.get("labels") if isinstance(labels, dict) else None
        if isinstance(labels, list) and width[-1] != len(labels):
            raise damaged(path, f"its graph gives {width[-1]} outputs, but {META_FILE} lists {len(labels)} labels "
                          "(a graph from another export?)", EXPORT_AGAIN)

    def _infer(self, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run([output], feeds)[0], dtype=np.float32)


def is_export(folder: Path) -> bool:
    return (folder / "export.json").exists() or any(folder.glob("*.onnx"))


def _open(folder, device=None, num_threads=None, precision="fp32", **options) -> Opened:
    meta = read_meta(folder)
    verify_checksums(folder, meta.checksums)
    backend = OnnxBackend.load(folder, device=device, num_threads=num_threads, precision=precision, **options)
    return Opened(backend, load_tokenizer(folder), meta)


KIND = register(Kind("onnx", "ONNX export", recognise=is_export, open=_open, precisions=tuple(MODEL_FILES),
                     abilities=frozenset({"features"}), extra="onnx", priority=30,
                     make="`labelwise export`", hints=("spin_wait",)))

"""Predict from an OpenVINO export folder (``labelwise export --format openvino``) with the OpenVINO runtime.

An OpenVINO export folder holds::

    openvino_model.xml / .bin           the fp32 graph (dynamic batch and sequence axes)
    openvino_model.int8.xml / .bin      optional: int8 (NNCF: calibrated post-training quantisation, or weights)
    labelwise.json, tokenizer.json, tokenizer_config.json, export.json, README.md   as in an ONNX export

Precisions: fp32 and int8 pick a file; bf16 runs the fp32 file with OpenVINO's bf16 precision hint, on CPUs
with bf16 units only (AVX-512 BF16 or AMX). fp32 is asked for explicitly: on such CPUs OpenVINO would
otherwise run bf16 by itself. The tokenizer is the same torch-free one the ONNX backend uses.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.model.checkpoint import brief, damaged, read_meta
from labelwise.model.integrity import verify_checksums
from labelwise.predict.backends import GraphBackend, Kind, Opened, register
from labelwise.predict.onnx_backend import load_tokenizer

__all__ = ["KIND", "MODEL_FILES", "OpenVinoBackend", "WEIGHT_PATTERNS", "bf16_capable", "model_file"]

MODEL_FILES = {"fp32": "openvino_model.xml", "int8": "openvino_model.int8.xml"}  # bf16: the fp32 file
PRECISIONS = ("fp32", "bf16", "int8")
WEIGHT_PATTERNS = ("openvino_model*.xml", "openvino_model*.bin")  # what the export's checksums cover
EXPORT_AGAIN = "restore the folder from a copy, or export again (labelwise export --format openvino)"


def model_file(folder: str | os.PathLike, precision: str = "fp32") -> Path:
    if precision not in PRECISIONS:
        raise LabelwiseError(f"unknown precision {precision!r}; an OpenVINO export runs {', '.join(PRECISIONS)}")
    path = Path(folder) / MODEL_FILES["int8" if precision == "int8" else "fp32"]
    if not path.exists():
        how = "export again with --quantize int8" if precision == "int8" else EXPORT_AGAIN
        raise LabelwiseError(f"{path}: not found; is {folder} an OpenVINO export folder? ({how})")
    return path


def bf16_capable() -> bool:
    """Whether OpenVINO's CPU plugin has bf16 kernels on this CPU."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(GraphBackend):
    """Runs an OpenVINO graph on the CPU: padded int64 arrays in, logits out (one infer request per thread)."""

    name, engine, export_hint = "openvino", "OpenVINO", "labelwise export --format openvino ... --features"

    def __init__(self, compiled, precision: str = "fp32"):
        self.compiled, self.precision = compiled, precision
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        outputs = {o.get_any_name() for o in compiled.outputs}
        self.output_name = "logits" if "logits" in outputs else compiled.outputs[0].get_any_name()
        self.features_name = "features" if "features" in outputs else None
        self._local = threading.local()

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | None = None, num_threads: int | None = None,
             precision: str = "fp32") -> "OpenVinoBackend":
        import openvino as ov

        if device not in (None, "auto", "cpu"):
            raise LabelwiseError(f"`device` {device}: an OpenVINO export runs on the CPU here; use a PyTorch "
                                 "checkpoint or an ONNX export for a GPU")
        path = model_file(folder, precision)
        if precision == "bf16" and not bf16_capable():
            raise LabelwiseError("`precision` bf16: this CPU has no bf16 units (AVX-512 BF16 or AMX) that OpenVINO "
                                 "uses; run fp32 or int8")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            core = ov.Core()
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError for a damaged .xml or .bin
            raise damaged(path, f"OpenVINO cannot load it ({brief(err)})", EXPORT_AGAIN) from None
        return cls(compiled, precision)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _infer(self, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = self._request().infer(feeds)
        return np.array(result[output], dtype=np.float32)  # a copy: the request reuses its buffers


def _open(folder, device=None, num_threads=None, precision="fp32", **options) -> Opened:
    meta = read_meta(folder)
    verify_checksums(folder, meta.checksums)
    backend = OpenVinoBackend.load(folder, device=device, num_threads=num_threads, precision=precision, **options)
    return Opened(backend, load_tokenizer(folder), meta)


def _is_openvino_export(folder: Path) -> bool:
    return (folder / MODEL_FILES["fp32"]).exists()


KIND = register(Kind("openvino", "OpenVINO export", recognise=_is_openvino_export, open=_open, precisions=PRECISIONS,
                     abilities=frozenset({"features"}), extra="openvino", priority=25,
                     make="`labelwise export --format openvino`"))

"""Checkpoint → OpenVINO export folder (fp32, optional int8), checked against PyTorch like the ONNX export.

>>> report = export_openvino("checkpoint", "export-ov", quantize="int8")
>>> report.checks["fp32"]["max_abs_logit_diff"] < 1e-4
True

The graph goes through the same ONNX graph the ONNX export writes (``torch.onnx.export``), unfused: OpenVINO
fuses attention, LayerNorm and GELU itself. int8 comes from NNCF (the ``openvino`` extra): ``static`` is
post-training quantisation calibrated on texts (the checkpoint's dev split by default): int8 matrix products
on VNNI / AMX units; ``weights`` compresses only the weights (no texts needed; the products run in fp32).
See :mod:`labelwise.predict.openvino_backend` for the folder's layout.
"""
from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labelwise.compress.cards import openvino_card
from labelwise.compress.export import (
    CHECK_TEXTS,
    EXPORT_INFO,
    FP32_TOLERANCE,
    ExportReport,
    _check_batches,
    _copy_side_files,
    _export_graph,
    _torch_logits,
    agreement,
)
from labelwise.errors import LabelwiseError
from labelwise.files import TOKENIZER_FILES, OutputKind, atomic_dir, atomic_write_json, folder_size, prepare_output_dir
from labelwise.locks import locks_output
from labelwise.model.card import write_model_card
from labelwise.model.checkpoint import META_FILE, read_meta
from labelwise.model.integrity import checksums
from labelwise.predict.openvino_backend import MODEL_FILES, WEIGHT_PATTERNS, OpenVinoBackend, bf16_capable

log = logging.getLogger("labelwise")

__all__ = ["INT8_MODES", "OPENVINO_EXPORT", "export_openvino"]

OPENVINO_EXPORT = OutputKind("OpenVINO export", EXPORT_INFO, (*WEIGHT_PATTERNS, EXPORT_INFO, META_FILE, "README.md",
                                                           "config.json", "baseline", *TOKENIZER_FILES))
INT8_MODES = ("static", "weights")
CALIBRATION_TEXTS = 300  # NNCF's default subset size


@locks_output("output_path")  # one run at a time writes the folder
def export_openvino(params_path: str | os.PathLike, output_path: str | os.PathLike, *, quantize: str | None = None,
                    int8_mode: str = "static", calibration_texts: Sequence[str] | None = None,
                    check_texts: Sequence[str] = CHECK_TEXTS, atol: float = FP32_TOLERANCE, features: bool = False,
                    overwrite: bool = False) -> ExportReport:
    """Export checkpoint ``params_path`` to the OpenVINO folder ``output_path`` (replaced as a whole, atomically).

    The fp32 graph must match PyTorch within ``atol`` on every logit of the check inputs, or the export fails;
    bf16 (on CPUs with bf16 units) and int8 are approximations: their differences are reported in export.json.
    ``calibration_texts`` (int8 static): default the first 300 texts of the checkpoint's dev split."""
    try:
        import openvino as ov
    except ImportError:
        raise LabelwiseError("the OpenVINO export needs the openvino extra: pip install 'labelwise[openvino]'") \
            from None
    from labelwise.model.checkpoint import load_checkpoint

    if quantize not in (None, "int8"):
        raise LabelwiseError(f"`quantize` {quantize}: only int8 is supported")
    if int8_mode not in INT8_MODES:
        raise LabelwiseError(f"`int8_mode` {int8_mode}: use one of {', '.join(INT8_MODES)}")
    start = time.perf_counter()
    params_path = Path(params_path)
    prepare_output_dir(output_path, OPENVINO_EXPORT, overwrite=overwrite, inputs={"params_path": params_path})
    model, tokenizer, meta = load_checkpoint(params_path)
    calibration = None
    if quantize == "int8" and int8_mode == "static":  # before any work: a missing dev split is one line
        calibration = list(calibration_texts) if calibration_texts is not None else _dev_texts(params_path, meta)
    samples = _check_batches(tokenizer, check_texts, meta.max_seq_length, model.config.vocab_size)
    reference = [_torch_logits(model, batch) for batch in samples]
    report = ExportReport(Path(output_path))
    size = int(folder_size(params_path) * (1.5 if quantize else 1))
    with atomic_dir(output_path, OPENVINO_EXPORT, size_hint=size) as tmp, tempfile.TemporaryDirectory() as scratch:
        onnx_graph = Path(scratch) / "graph.onnx"
        _export_graph(model, samples[0], onnx_graph, 17, features)
        ov_model = ov.convert_model(str(onnx_graph))
        ov.save_model(ov_model, str(tmp / MODEL_FILES["fp32"]), compress_to_fp16=False)
        report.checks["fp32"] = _compare(tmp, "fp32", samples, reference)
        if report.checks["fp32"]["max_abs_logit_diff"] > atol:
            raise LabelwiseError(f"OpenVINO export does not match PyTorch: max |logit diff| "
                                 f"{report.checks['fp32']['max_abs_logit_diff']:.2e} > {atol:.0e}")
        if bf16_capable():
            report.checks["bf16"] = _compare(tmp, "bf16", samples, reference)
        if quantize == "int8":
            int8 = quantize_int8(ov_model, int8_mode, tokenizer, calibration, meta.max_seq_length)
            ov.save_model(int8, str(tmp / MODEL_FILES["int8"]), compress_to_fp16=False)
            report.checks["int8"] = _compare(tmp, "int8", samples, reference)
        _copy_side_files(params_path, tmp)
        meta = read_meta(tmp)
        meta.checksums = checksums(tmp, WEIGHT_PATTERNS)  # the export's own weight files, verified at load
        atomic_write_json(tmp / META_FILE, meta.to_json())
        atomic_write_json(tmp / EXPORT_INFO, _info(params_path, atol, report, quantize and int8_mode, calibration))
        write_model_card(tmp, meta, kind="export", export=openvino_card(tmp))
    report.files = {p: report.output_path / MODEL_FILES["fp32" if p == "bf16" else p] for p in report.checks}
    report.seconds = time.perf_counter() - start
    return report


def _dev_texts(params_path: Path, meta) -> list[str]:
    """The first texts of the dev split the checkpoint was trained with (for int8 calibration)."""
    from labelwise.data.dataset import read_texts
    from labelwise.data.tables import columns_of, table_file

    args = meta.training_args if isinstance(meta.training_args, dict) else {}
    folder = Path(str(args.get("dataset_dir") or ""))
    name = str(args.get("dev_file") or "dev.txt")
    path = folder / name if (folder / name).exists() else table_file(folder, name) if folder.is_dir() else None
    if not args.get("dataset_dir") or path is None or not Path(path).exists():
        raise LabelwiseError(f"{params_path}: int8 calibration needs texts, and the dev split it was trained with "
                             f"({folder / name}) is not here; pass calibration texts (--calibration_file FILE, one "
                             "text a line), or use --int8_mode weights (needs none)")
    return read_texts(path, columns_of(args))[:CALIBRATION_TEXTS]


def quantize_int8(ov_model, mode: str, tokenizer, texts: Sequence[str] | None, max_length: int):
    """NNCF int8: ``static`` (activations and weights, calibrated on ``texts``) or ``weights`` (weights only)."""
    try:
        import nncf
    except ImportError:
        raise LabelwiseError("int8 for OpenVINO needs NNCF: pip install 'labelwise[openvino]'") from None
    from labelwise.predict.batching import encode, pad_batch

    logging.getLogger("nncf").setLevel(logging.ERROR)
    if mode == "weights":
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    if not texts:
        raise LabelwiseError("int8 calibration needs at least one text")
    encoded = encode(tokenizer, list(texts), max_length)
    names = {i.get_any_name() for i in ov_model.inputs}
    items = []
    for i in range(len(texts)):
        batch = pad_batch(encoded, [i], tokenizer.pad_token_id or 0)
        if "token_type_ids" in names and "token_type_ids" not in batch:
            batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
        items.append({k: v for k, v in batch.items() if k in names})
    return nncf.quantize(ov_model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(items))


def _compare(folder: Path, precision: str, batches: list[dict], reference: list[np.ndarray]) -> dict:
    return agreement(OpenVinoBackend.load(folder, precision=precision), batches, reference)


def _info(params_path: Path, atol: float, report: ExportReport, int8_mode, calibration) -> dict:
    import openvino
    import torch

    meta = read_meta(params_path)
    return {"format": "openvino", "source_checkpoint": str(params_path.resolve()),
            "files": {p: MODEL_FILES["fp32" if p == "bf16" else p] for p in report.checks},
            "inputs": [n for n in ("input_ids", "attention_mask", "token_type_ids")], "output": "logits",
            "fp32_tolerance": atol, "checks": report.checks, "int8_mode": int8_mode or None,
            "calibration_texts": len(calibration) if calibration else None, "labels": len(meta.labels),
            "max_seq_length": meta.max_seq_length, "torch": torch.__version__, "openvino": openvino.__version__,
            "python": platform.python_version(), "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

"""Checkpoint → ONNX export folder (fp32, optional int8 / fp16), checked against PyTorch.

>>> report = export_onnx("checkpoint", "export", quantize="int8")
>>> report.checks["fp32"]["max_abs_logit_diff"] < 1e-4
True

The folder is enough to predict or serve without torch: see :mod:`labelwise.predict.onnx_backend` for
its layout. Export uses ``torch.onnx.export(dynamo=False)`` (the TorchScript exporter: reliable for
BERT-style encoders with dynamic batch and sequence axes), opset 17 by default.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.files import (
    TOKENIZER_FILES as TOKENIZER_NAMES,
    OutputKind,
    apply_umask,
    atomic_dir,
    atomic_write_json,
    folder_size,
    human_size,
    prepare_output_dir,
)
from labelwise.compress.cards import onnx_card
from labelwise.locks import locks_output
from labelwise.model.card import write_model_card
from labelwise.model.blend import BASELINE_DIR
from labelwise.model.checkpoint import META_FILE, read_meta
from labelwise.model.integrity import checksums
from labelwise.predict.onnx_backend import MODEL_FILES, TOKENIZER_FILES, WEIGHT_PATTERNS, OnnxBackend

log = logging.getLogger("labelwise")

EXPORT_INFO = "export.json"
EXPORT = OutputKind("ONNX export", EXPORT_INFO, ("model*.onnx", *WEIGHT_PATTERNS, EXPORT_INFO, META_FILE, "README.md",
                                                "config.json", BASELINE_DIR, *TOKENIZER_NAMES))
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
FUSABLE_MODEL_TYPES = {"bert", "ernie", "roberta", "xlm-roberta", "camembert", "electra"}
FP32_TOLERANCE = 1e-4  # max |logit difference| allowed between ONNX Runtime fp32 and PyTorch
# Texts for the check (mixed scripts and lengths), on top of random token ids of every length.
CHECK_TEXTS = ("婚生子杨某甲由原告抚养，被告每月支付抚养费一千元。", "原、被告婚后感情尚可，后因生活琐事发生矛盾。",
               "I am so happy for you, this is wonderful news!", "ok", "双方同意离婚 " * 40)


@dataclass
class ExportReport:
    output_path: Path
    files: dict[str, Path] = field(default_factory=dict)  # precision → model file
    checks: dict[str, dict] = field(default_factory=dict)  # precision → agreement with PyTorch
    fused: dict[str, int] = field(default_factory=dict)  # ONNX Runtime operator → how many were fused
    seconds: float = 0.0

    def summary(self) -> str:
        fused = ", ".join(f"{n} {op}" for op, n in self.fused.items()) or "none (plain graph)"
        lines = [f"exported to {self.output_path} in {self.seconds:.1f} s; fused operators: {fused}"]
        for precision, path in self.files.items():
            size = path.stat().st_size / 2**20
            check = self.checks.get(precision, {})
            detail = ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in check.items())
            lines.append(f"  {precision:<5} {path.name:<17} {size:7.1f} MiB  {detail}")
        return "\n".join(lines)


@locks_output("output_path")  # one run at a time writes the folder
def export_onnx(params_path: str | os.PathLike, output_path: str | os.PathLike, *, quantize: str | None = None,
                fp16: bool = False, opset: int = 17, optimize: bool = True, check_texts: Sequence[str] = CHECK_TEXTS,
                atol: float = FP32_TOLERANCE, features: bool = False, overwrite: bool = False) -> ExportReport:
    """Export checkpoint ``params_path`` to ``output_path`` (replaced as a whole, atomically).

    ``output_path`` must be missing, empty or an export; ``overwrite`` allows any other folder, and then only the
    files of the names an export has are replaced (:func:`labelwise.files.prepare_output_dir`).

    With ``optimize``, BERT-style subgraphs (attention, embeddings + layer norm, GELU) are fused into
    ONNX Runtime's own operators, which run faster; if fusion fails or changes the outputs, the plain
    graph is kept. The fp32 graph must match PyTorch within ``atol`` on every logit of the check
    inputs, or the export fails. int8 and fp16 are approximations: their differences are reported.
    With ``features``, the graph has a second output, ``features``: the pooled text vectors the head reads,
    so ONNX Runtime can embed texts (a retrieval index on an export, see :mod:`labelwise.predict.retrieval`).
    """
    from labelwise.model.checkpoint import load_checkpoint

    if quantize not in (None, "int8"):
        raise LabelwiseError(f"`quantize` {quantize}: only int8 is supported")
    if opset < 14:
        raise LabelwiseError(f"`opset` {opset}: use 14 or newer (attention needs it)")
    start = time.perf_counter()
    params_path = Path(params_path)
    prepare_output_dir(output_path, EXPORT, overwrite=overwrite, inputs={"params_path": params_path})
    model, tokenizer, meta = load_checkpoint(params_path)
    samples = _check_batches(tokenizer, check_texts, meta.max_seq_length, model.config.vocab_size)
    reference = [_torch_logits(model, batch) for batch in samples]
    report = ExportReport(Path(output_path))
    size = folder_size(params_path) * (1 + (quantize == "int8") / 4 + fp16 / 2)  # fp32 graph + int8 + fp16 copies
    _check_space(Path(output_path), int(size), folder_size(params_path) * (1 + 2 * (quantize == "int8")))
    with atomic_dir(output_path, EXPORT, size_hint=int(size)) as tmp, tempfile.TemporaryDirectory() as scratch:
        _export_graph(model, samples[0], tmp / MODEL_FILES["fp32"], opset, features)
        report.checks["fp32"] = _compare(tmp, "fp32", samples, reference)
        if optimize and report.checks["fp32"]["max_abs_logit_diff"] <= atol:
            # all fusions first; then without the embeddings + LayerNorm one (ERNIE's extra task-type embedding
            # does not survive it: logits moved by up to 0.39); else the plain graph, restored from a copy
            plain = Path(scratch) / "plain.onnx"
            shutil.copyfile(tmp / MODEL_FILES["fp32"], plain)
            for embed_layer_norm in (True, False):
                report.fused = fuse_graph(tmp / MODEL_FILES["fp32"], model.config, embed_layer_norm)
                if not report.fused:  # nothing to fuse in this architecture
                    break
                fused_check = _compare(tmp, "fp32", samples, reference)
                if fused_check["max_abs_logit_diff"] <= atol:
                    report.checks["fp32"] = fused_check
                    break
                log.warning("fused graph%s differs from PyTorch (%.1e); %s", "" if embed_layer_norm else
                            " without the embedding fusion", fused_check["max_abs_logit_diff"],
                            "trying without it" if embed_layer_norm else "keeping the plain graph")
                shutil.copyfile(plain, tmp / MODEL_FILES["fp32"])
                report.fused = {}
        if report.checks["fp32"]["max_abs_logit_diff"] > atol:
            raise LabelwiseError(f"ONNX export does not match PyTorch: max |logit diff| "
                                 f"{report.checks['fp32']['max_abs_logit_diff']:.2e} > {atol:.0e}")
        if quantize == "int8":
            quantize_int8(tmp / MODEL_FILES["fp32"], tmp / MODEL_FILES["int8"])
            report.checks["int8"] = _compare(tmp, "int8", samples, reference)
        if fp16:
            convert_fp16(tmp / MODEL_FILES["fp32"], tmp / MODEL_FILES["fp16"])
            report.checks["fp16"] = _compare(tmp, "fp16", samples, reference)
        _copy_side_files(params_path, tmp)
        meta = read_meta(tmp)
        meta.checksums = checksums(tmp, WEIGHT_PATTERNS)  # the export's own weight files, verified at load
        atomic_write_json(tmp / META_FILE, meta.to_json())
        atomic_write_json(tmp / EXPORT_INFO, _export_info(params_path, opset, atol, report))
        write_model_card(tmp, meta, kind="export", export=onnx_card(tmp))
    report.files = {p: report.output_path / MODEL_FILES[p] for p in report.checks}
    report.seconds = time.perf_counter() - start
    return report


def _check_space(output_path: Path, result: int, scratch: int) -> None:
    """Refuse before any work when the disks cannot hold the export while it is written: the folder (``result``
    bytes) and the temporary copies of the graph in ``TMPDIR`` (``scratch``: the unfused graph, int8's prepared
    and shape-inferred graphs). Half-way, a full disk makes ONNX tools write truncated graphs and fail obscurely."""
    folder = Path(os.path.abspath(output_path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    temp = Path(tempfile.gettempdir())
    try:
        same = os.stat(folder).st_dev == os.stat(temp).st_dev
        needs = [(folder, result + scratch)] if same else [(folder, result), (temp, scratch)]
        free = {where: shutil.disk_usage(where).free for where, _ in needs}
        short = [(where, n, free[where]) for where, n in needs if free[where] < n]
    except OSError:  # cannot tell: let the write say
        return
    if short:
        where, n, available = short[0]
        what = "the export and its temporary copies" if same else "the export's temporary copies" \
            if where == temp else "the export"
        raise LabelwiseError(f"{output_path}: not enough free space: {what} need about {human_size(n)} in {where}, "
                             f"and {human_size(available)} are free; free some space, write the export elsewhere, or "
                             "set TMPDIR to a folder on a larger disk for the temporary copies")


def _export_graph(model, sample: dict[str, np.ndarray], path: Path, opset: int, features: bool = False) -> None:
    import torch

    names = [n for n in INPUT_NAMES if n in sample]
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    outputs = ["logits", "features"] if features else ["logits"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({o: {0: "batch"} for o in outputs})

    class LogitsOnly(torch.nn.Module):  # positional inputs in INPUT_NAMES order → logits (and pooled vectors)
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            pooled = self.inner.pooled(**dict(zip(names, inputs)))
            logits = self.inner.head(pooled)  # eval mode: the dropout before the head is the identity
            return (logits, pooled) if features else logits

    if hasattr(model, "set_attn_implementation"):  # plain attention ops: the pattern the fuser knows
        model.set_attn_implementation("eager")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python branches
        torch.onnx.export(LogitsOnly(model.eval()), args, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def fuse_graph(path: Path, config, embed_layer_norm: bool = True) -> dict[str, int]:
    """Fuse a BERT-style graph in place with ONNX Runtime's transformer optimizer; {} when not applicable.

    ``embed_layer_norm=False`` leaves the embeddings + LayerNorm subgraph as it is (attention, GELU, the
    other LayerNorms are still fused).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if config.model_type not in FUSABLE_MODEL_TYPES or not heads or not hidden:
        return {}
    attention_log = logging.getLogger("fusion_attention")
    attention_level = attention_log.level
    if getattr(config, "attention_head_size", None):  # fewer heads than the width holds (pruned): the fuser
        hidden = heads * config.attention_head_size  # wants q/k/v's width, and warns that it differs
        attention_log.setLevel(logging.ERROR)
    with _quiet_logging():
        try:
            options = FusionOptions("bert")
            options.enable_embed_layer_norm = embed_layer_norm
            fused = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden,
                                   optimization_options=options)
        except Exception as err:  # noqa: BLE001 (any failure of the fuser: the plain graph is still correct)
            log.warning("graph fusion skipped (%s: %s)", type(err).__name__, err)
            return {}
        finally:
            attention_log.setLevel(attention_level)
        counts = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        if counts:
            fused.save_model_to_file(str(path))
    return counts


@contextmanager
def _quiet_logging():
    """ONNX Runtime's Python tools log every step at INFO; keep warnings only while they run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights of MatMul/Gemm/Attention, activations quantized at run time.

    Weights are quantized per output channel to 7 bits (``reduce_range``). On CPUs without VNNI (AVX2 only)
    ONNX Runtime multiplies uint8 activations by int8 weights with 16-bit intermediate sums, which saturate
    with full 8-bit per-channel weights: on the divorce dev set per-channel 8-bit fell to 36 macro-F1, per-tensor
    8-bit lost 2.1 macro-F1, per-channel 7-bit lost 0.6 at the same speed (benchmarks/RESULTS.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet_logging(), tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception as err:  # noqa: BLE001 (pre-processing only helps; quantize the raw graph)
            log.warning("int8: pre-processing skipped (%s)", err)
            prepared = source
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                         extra_options={"DefaultTensorType": 1})  # fused ops' outputs: float


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights and activations, fp32 inputs/outputs kept (for the CUDA provider)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def _check_batches(tokenizer, texts: Sequence[str], max_length: int, vocab_size: int) -> list[dict]:
    """Padded batches to compare on: the check texts, and random ids at lengths 1..max_length."""
    from labelwise.predict.batching import encode, pad_batch

    encoded = encode(tokenizer, list(texts), max_length)
    batches = [pad_batch(encoded, list(range(len(texts))), tokenizer.pad_token_id or 0)]
    rng = np.random.default_rng(0)
    for rows, width in ((1, 1), (3, max(2, max_length // 3)), (4, max_length)):
        ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(rows, width), dtype=np.int64)
        mask = (np.arange(width)[None, :] < rng.integers(1, width + 1, size=(rows, 1))).astype(np.int64)
        batch = {"input_ids": np.where(mask == 1, ids, tokenizer.pad_token_id or 0), "attention_mask": mask}
        if "token_type_ids" in batches[0]:
            batch["token_type_ids"] = np.zeros_like(ids)
        batches.append(batch)
    return batches


def _torch_logits(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()


def _compare(folder: Path, precision: str, batches: list[dict], reference: list[np.ndarray]) -> dict:
    return agreement(OnnxBackend.load(folder, device="cpu", precision=precision), batches, reference)


def agreement(backend, batches: list[dict], reference: list[np.ndarray]) -> dict:
    """How an exported graph (any backend) agrees with PyTorch's logits ``reference`` on ``batches``: the largest
    logit and probability differences, and how often the 0.5 decision agrees."""
    from labelwise.evaluation.decision import sigmoid

    got = np.concatenate([backend.logits(b) for b in batches])
    want = np.concatenate(reference)
    return {"max_abs_logit_diff": float(np.abs(got - want).max()),
            "max_abs_prob_diff": float(np.abs(sigmoid(got) - sigmoid(want)).max()),
            "decisions_agree": float(np.mean((got >= 0) == (want >= 0)))}


def _copy_side_files(params_path: Path, target: Path) -> None:
    for name in (META_FILE, "config.json", *TOKENIZER_FILES):
        if (params_path / name).exists():
            shutil.copy2(params_path / name, target / name)
    if (params_path / BASELINE_DIR).is_dir():  # the blend's linear baseline: applied after the graph's logits
        shutil.copytree(params_path / BASELINE_DIR, target / BASELINE_DIR)
    if not (target / "tokenizer.json").exists():
        raise LabelwiseError(f"{params_path}: no tokenizer.json; the ONNX runtime needs a fast tokenizer "
                             "(re-save the checkpoint with a recent transformers)")


def _export_info(params_path: Path, opset: int, atol: float, report: ExportReport) -> dict:
    import onnxruntime
    import torch

    meta = read_meta(params_path)
    return {"source_checkpoint": str(params_path.resolve()), "opset": opset, "files": {
        p: MODEL_FILES[p] for p in report.checks}, "inputs": list(INPUT_NAMES), "output": "logits",
        "fused_operators": report.fused, "fp32_tolerance": atol, "checks": report.checks, "labels": len(meta.labels),
        "max_seq_length": meta.max_seq_length, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def make_readable(folder: Path) -> None:
    """Temporary folders and files are created owner-only; give them the modes of the user's other files."""
    apply_umask(folder)


def read_export_info(folder: str | os.PathLike) -> dict:
    path = Path(folder) / EXPORT_INFO
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

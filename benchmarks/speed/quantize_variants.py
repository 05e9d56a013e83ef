"""Which int8 dynamic-quantization settings keep accuracy on this CPU? (the choice behind `--quantize int8`)

    python benchmarks/speed/quantize_variants.py --export_dir runs/deploy2/acc-export [--write]

Takes the fp32 ``model.onnx`` of an export folder, quantizes it with several ONNX Runtime
``quantize_dynamic`` settings (per-tensor / per-channel weights, 8-bit / 7-bit ``reduce_range``,
int8 or uint8 weights, some layers left in fp32, GELU replaced by its tanh approximation), and predicts the dev
split with each (batch 32, best of 2 rounds; the default setting also at --batch_sizes): samples/s and micro/macro
F1 at the export's tuned thresholds, beside fp32. --only NAME ... runs the named settings alone.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish  # noqa: E402
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.evaluation.metrics import apply_thresholds, evaluate_predictions
from labelwise.predict.classifier import Classifier

ALL_OPS = ["MatMul", "Gemm", "Attention"]


def ffn_output_nodes(graph) -> list[str]:
    """The feed-forward down-projections (input: GELU output, the widest activation range)."""
    return [n.name for n in graph.node if n.name.endswith("output/dense/MatMul") and "attention" not in n.name]


def head_nodes(graph) -> list[str]:
    """The pooler and the classification layer: 20 output logits read straight off these two layers."""
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")
            and ("pooler" in n.name or "classifier" in n.name)]


def variants(graph) -> dict[str, dict]:
    """Keyword arguments of ``quantize_dynamic`` per setting; weights are int8 unless a setting says otherwise."""
    from onnxruntime.quantization import QuantType

    return {
        "per-tensor 8-bit (previous default)": dict(per_channel=False, op_types_to_quantize=ALL_OPS),
        "per-channel 8-bit": dict(per_channel=True, op_types_to_quantize=ALL_OPS),
        "per-tensor 7-bit": dict(per_channel=False, reduce_range=True, op_types_to_quantize=ALL_OPS),
        "per-channel 7-bit (default)": dict(per_channel=True, reduce_range=True, op_types_to_quantize=ALL_OPS),
        "per-tensor 8-bit, FFN output fp32": dict(per_channel=False, op_types_to_quantize=ALL_OPS,
                                                  nodes_to_exclude=ffn_output_nodes(graph)),
        "per-channel 7-bit, attention fp32": dict(per_channel=True, reduce_range=True,
                                                  op_types_to_quantize=["MatMul", "Gemm"]),
        "per-channel 7-bit, pooler + classifier fp32": dict(per_channel=True, reduce_range=True,
                                                            op_types_to_quantize=ALL_OPS,
                                                            nodes_to_exclude=head_nodes(graph)),
        "per-channel 8-bit, uint8 weights": dict(per_channel=True, op_types_to_quantize=ALL_OPS,
                                                 weight_type=QuantType.QUInt8),
        GELU_APPROX: dict(per_channel=True, reduce_range=True, op_types_to_quantize=ALL_OPS),
    }


GELU_APPROX = "per-channel 7-bit, GELU as FastGelu (tanh approximation)"
DEFAULT = "per-channel 7-bit (default)"


def approximate_gelu(path: Path, target: Path) -> None:
    """ONNX Runtime's own pass: Gelu / BiasGelu → FastGelu (the tanh formula, cheaper than erf)."""
    import onnx
    from onnxruntime.transformers.onnx_model_bert import BertOnnxModel

    model = BertOnnxModel(onnx.load(str(path)))
    model.gelu_approximation()
    onnx.save(model.model, str(target))


def score(folder: Path, precision: str, texts, y_true, labels, threads: int, rounds: int, batch_size: int = 32) -> dict:
    clf = Classifier.load(folder, backend="onnx", precision=precision, num_threads=threads)
    clf.predict_proba(texts[:64])  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        probs = clf.predict_proba(texts, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    m = evaluate_predictions(y_true, probs, labels, clf.thresholds)
    return {"sps": len(texts) / best, "micro": m["micro"]["f1"], "macro": m["macro"]["f1"],
            "decisions": apply_thresholds(probs, clf.thresholds)}


def main(argv=None) -> str:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export_dir", required=True, help="export folder with model.onnx")
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--num_threads", type=int, default=None)
    p.add_argument("--only", nargs="+", default=None, help="these settings only (names as in the table)")
    p.add_argument("--batch_sizes", nargs="*", type=int, default=[], help="also run the default setting at these")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    threads = args.num_threads or os.cpu_count()
    export = Path(args.export_dir)
    ds = load_dataset(args.dataset_dir, require=("dev",))
    texts, y_true = [e.text for e in ds.dev], multi_hot(ds.dev, ds.labels)
    rows = [("fp32 (no quantization)", score(export, "fp32", texts, y_true, ds.labels, threads, args.rounds))]
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(export / "model.onnx"), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        settings = variants(graph)
        unknown = set(args.only or []) - set(settings)
        if unknown:
            sys.exit(f"unknown setting(s) {sorted(unknown)}; choose from {list(settings)}")
        for name, options in settings.items():
            if args.only and name not in args.only:
                continue
            folder = Path(scratch) / f"v{len(rows)}"
            folder.mkdir()
            for f in export.iterdir():  # the side files; the int8 file is this variant's
                if f.name != "model.int8.onnx":
                    (folder / f.name).symlink_to(f.resolve())
            source = prepared
            if name == GELU_APPROX:
                source = Path(scratch) / "fastgelu.onnx"
                approximate_gelu(prepared, source)
            quantize_dynamic(str(source), str(folder / "model.int8.onnx"),
                             extra_options={"DefaultTensorType": 1}, **{"weight_type": QuantType.QInt8, **options})
            sizes = [32] + (args.batch_sizes if name == DEFAULT else [])
            for size in sizes:
                label = name if size == 32 else f"{name}, batch {size}"
                rows.append((label, score(folder, "int8", texts, y_true, ds.labels, threads, args.rounds, size)))
                r = rows[-1][1]
                print(f"{label}: {r['sps']:.1f}/s {r['micro']:.2f}/{r['macro']:.2f}", file=sys.stderr, flush=True)
    section = report(args, rows, len(texts), threads)
    return publish(section, args.write)


def _flags(args) -> str:
    only = " --only " + " ".join(f'"{n}"' for n in args.only) if args.only else ""
    return only + (" --batch_sizes " + " ".join(map(str, args.batch_sizes)) if args.batch_sizes else "")


def report(args, rows, n: int, threads: int) -> str:
    fp32 = rows[0][1]
    lines = [f"## int8 quantization settings on this CPU ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
             "UTC)", "", f"Command: `python benchmarks/speed/quantize_variants.py --export_dir {args.export_dir} "
             f"--dataset_dir {args.dataset_dir}{_flags(args)}{' --write' if args.write else ''}`  ",
             f"Machine: {machine()}; inference threads: {threads}; load average (1 min) {os.getloadavg()[0]:.1f}  ",
             f"Data: {args.dataset_dir} dev, {n} texts, batch 32, the export's tuned thresholds; best of "
             f"{args.rounds} rounds", "",
             "| model | samples/s | vs fp32 | micro-F1 | macro-F1 | Δ micro | Δ macro | label decisions changed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        changed = int((r["decisions"] != fp32["decisions"]).sum())
        lines.append(f"| {name} | {r['sps']:.1f} | {r['sps'] / fp32['sps']:.2f}x | {r['micro']:.2f} | "
                     f"{r['macro']:.2f} | {r['micro'] - fp32['micro']:+.2f} | {r['macro'] - fp32['macro']:+.2f} | "
                     f"{changed} of {fp32['decisions'].size} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Inference speed and accuracy of one checkpoint: PyTorch eager fp32 vs ONNX Runtime fp32 vs int8.

    python benchmarks/infer_speed.py --params_path runs/deploy/ckpt --dataset_dir data/divorce [--write]

Exports the checkpoint (fp32 + int8) to --export_dir, then predicts the whole split with each
backend at --batch_size, in rounds (the order rotates each round; the best round counts, since
the machine is shared). F1 at the checkpoint's tuned thresholds and at 0.5 (PaddleNLP's setting), and
how many label decisions each backend changes against eager. Prints a Markdown section;
--write appends it to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, machine  # noqa: E402
from labelwise.compress.export import export_onnx
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.evaluation.metrics import apply_thresholds, evaluate_predictions
from labelwise.predict.classifier import Classifier

CONFIGS = [("PyTorch eager fp32", "torch", {}), ("ONNX Runtime fp32", "onnx", {"precision": "fp32"}),
           ("ONNX Runtime int8", "onnx", {"precision": "int8"})]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params_path", required=True, help="checkpoint folder")
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--split", choices=["dev", "test"], default="dev")
    p.add_argument("--export_dir", default="runs/deploy/bench-export")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max_samples", type=int, default=None, help="first N examples of the split only")
    p.add_argument("--num_threads", type=int, default=None, help="default: every core")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def int8_breakdown(export_dir: str, clf, texts, batch_size: int, threads: int) -> str:
    """Where the int8 predictor's time goes: tokenizing + batching, and the graph's operators (ORT profiler)."""
    import collections
    import json

    import onnxruntime as ort

    from labelwise.predict.batching import encode, iter_batches
    from labelwise.predict.onnx_backend import OnnxBackend

    start = time.perf_counter()
    encoded = encode(clf.tokenizer, texts, clf.max_seq_length)
    batches = list(iter_batches(encoded, batch_size, clf.tokenizer.pad_token_id or 0))
    prep = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.enable_profiling = threads, True
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "int8")
        backend = OnnxBackend(ort.InferenceSession(str(Path(export_dir) / "model.int8.onnx"), options,
                                                   providers=["CPUExecutionProvider"]), "int8")
        start = time.perf_counter()
        for _, batch in batches:
            backend.logits(batch)
        run = time.perf_counter() - start
        events = json.loads(Path(backend.session.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    ops = ", ".join(f"{op} {100 * t / total:.1f}%" for op, t in per_op.most_common(6))
    return (f"int8 time breakdown: tokenizing and batching {prep:.2f} s vs {run:.2f} s in ONNX Runtime "
            f"({100 * prep / (prep + run):.1f}% of the two); operators (ONNX Runtime profiler): {ops}.")


def main(argv=None) -> str:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    threads = args.num_threads or os.cpu_count()
    report = export_onnx(args.params_path, args.export_dir, quantize="int8")
    print(report.summary(), file=sys.stderr)
    ds = load_dataset(args.dataset_dir, require=(args.split,))
    examples = ds.split(args.split)[:args.max_samples]
    texts, y_true = [e.text for e in examples], multi_hot(examples, ds.labels)
    models = {}
    for name, backend, options in CONFIGS:
        path = args.params_path if backend == "torch" else args.export_dir
        models[name] = Classifier.load(path, backend=backend, device="cpu", num_threads=threads, **options)
        models[name].predict_proba(texts[:64], batch_size=args.batch_size)  # warm-up
    seconds = {name: [] for name in models}
    probs = {}
    for r in range(args.rounds):
        order = list(models)[r % len(models):] + list(models)[:r % len(models)]
        for name in order:
            start = time.perf_counter()
            out = models[name].predict_proba(texts, batch_size=args.batch_size)
            seconds[name].append(time.perf_counter() - start)
            probs.setdefault(name, out)
            print(f"round {r + 1}: {name}: {seconds[name][-1]:.1f} s", file=sys.stderr)
    rows, eager = [], min(seconds[CONFIGS[0][0]])
    reference = probs[CONFIGS[0][0]]
    for name, clf in models.items():
        m = evaluate_predictions(y_true, probs[name], ds.labels, clf.thresholds)
        half = evaluate_predictions(y_true, probs[name], ds.labels, 0.5)
        best = min(seconds[name])
        rows.append({"name": name, "sps": len(texts) / best, "ms": 1000 * best / len(texts), "speedup": eager / best,
                     "micro": m["micro"]["f1"], "macro": m["macro"]["f1"],
                     "micro05": half["micro"]["f1"], "macro05": half["macro"]["f1"],
                     "flips": int((apply_thresholds(probs[name], clf.thresholds)
                                   != apply_thresholds(reference, clf.thresholds)).sum()),
                     "decisions": probs[name].size,
                     "diff": float(np.abs(probs[name] - reference).max())})
    breakdown = int8_breakdown(args.export_dir, models[CONFIGS[2][0]], texts, args.batch_size, threads)
    section = format_section(args, rows, len(texts), threads, load_before, os.getloadavg()[0], report)
    section += "\n" + breakdown + "\n"
    print(section)
    if args.write:
        append_results(section)
    return section


def format_section(args, rows, n, threads, load_before, load_after, report) -> str:
    fp32, int8 = rows[1], rows[2]
    speed_ok = int8["speedup"] >= 3
    def f1_ok(suffix: str) -> str:
        ok = all(abs(int8[k + suffix] - fp32[k + suffix]) <= 0.5 for k in ("micro", "macro"))
        return (f"**{'met' if ok else 'not met'}** (micro {int8['micro' + suffix] - fp32['micro' + suffix]:+.2f}, "
                f"macro {int8['macro' + suffix] - fp32['macro' + suffix]:+.2f})")
    cmd = "python benchmarks/infer_speed.py " + " ".join(sys.argv[1:])
    lines = [f"## Inference speed: PyTorch eager vs ONNX Runtime fp32 / int8 ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"Command: `{cmd}`  ", f"Machine: {machine()}; inference threads: {threads}  ",
             f"Data: {args.dataset_dir} {args.split}, {n} texts, batch {args.batch_size}, length-grouped batches, "
             f"max_seq_length of the checkpoint; best of {args.rounds} rounds  ",
             f"Load average (1 min) before/after: {load_before:.1f} / {load_after:.1f} "
             "(the machine is shared: other jobs ran at the same time)", "",
             "| backend | samples/s | ms/sample | speed-up vs eager | micro-F1 | macro-F1 | micro / macro at 0.5 "
             "| max abs prob diff vs eager | label decisions changed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['sps']:.1f} | {r['ms']:.2f} | {r['speedup']:.2f}x | {r['micro']:.2f} | "
                     f"{r['macro']:.2f} | {r['micro05']:.2f} / {r['macro05']:.2f} | {r['diff']:.2g} | "
                     f"{r['flips']} of {r['decisions']} |")
    sizes = ", ".join(f"{p} {path.stat().st_size / 2**20:.1f} MiB" for p, path in report.files.items())
    lines += ["", f"Model files: {sizes}. Export check (fp32 vs PyTorch, max abs logit diff): "
              f"{report.checks['fp32']['max_abs_logit_diff']:.1e}.", "",
              f"Targets: int8 ≥ 3x eager throughput: **{'met' if speed_ok else 'not met'}** "
              f"({int8['speedup']:.2f}x); int8 F1 within 0.5 point of ONNX fp32: at the tuned thresholds "
              f"{f1_ok('')}, at 0.5 {f1_ok('05')}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

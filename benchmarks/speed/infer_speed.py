"""Inference speed and accuracy of one checkpoint on every engine: PyTorch fp32 / bf16, ONNX Runtime fp32 / int8,
OpenVINO fp32 / bf16 / int8 (calibrated static, and weights only).

    python benchmarks/speed/infer_speed.py --params_path runs/deploy/ckpt --dataset_dir data/divorce [--write]

Exports the checkpoint (ONNX fp32 + int8 to --export_dir, OpenVINO to --export_dir-openvino and, int8 weights
only, --export_dir-openvino-w) then predicts the whole split with each engine at --batch_size, in rounds (the
order rotates each round; the best round counts), and the first --latency_texts texts one at a time (batch 1).
bf16 rows appear where the CPU has bf16 units. F1 at the checkpoint's tuned thresholds and at 0.5 (PaddleNLP's setting), and
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, verdict  # noqa: E402
from labelwise.compress.export import export_onnx
from labelwise.data.dataset import load_dataset, multi_hot
from labelwise.evaluation.metrics import apply_thresholds, evaluate_predictions
from labelwise.predict.classifier import Classifier

CONFIGS = [("PyTorch eager fp32", "torch", "", {}), ("PyTorch bf16 (autocast)", "torch", "", {"precision": "bf16"}),
           ("ONNX Runtime fp32", "onnx", "", {"precision": "fp32"}),
           ("ONNX Runtime int8 (dynamic)", "onnx", "", {"precision": "int8"}),
           ("OpenVINO fp32", "openvino", "-openvino", {"precision": "fp32"}),
           ("OpenVINO bf16", "openvino", "-openvino", {"precision": "bf16"}),
           ("OpenVINO int8 (NNCF static, dev-calibrated)", "openvino", "-openvino", {"precision": "int8"}),
           ("OpenVINO int8 (NNCF weights only)", "openvino", "-openvino-w", {"precision": "int8"})]
EAGER, ONNX_FP32 = CONFIGS[0][0], CONFIGS[2][0]


def bf16_cpu() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    p.add_argument("--latency_texts", type=int, default=200, help="texts timed one at a time (batch 1)")
    p.add_argument("--only", nargs="+", default=None, help="names of the rows to run (eager always runs)")
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
    report = export_onnx(args.params_path, args.export_dir, quantize="int8", overwrite=True)
    print(report.summary(), file=sys.stderr)
    from labelwise.compress.openvino_export import export_openvino

    ov_reports = {"-openvino": export_openvino(args.params_path, args.export_dir + "-openvino", quantize="int8",
                                               overwrite=True),
                  "-openvino-w": export_openvino(args.params_path, args.export_dir + "-openvino-w", quantize="int8",
                                                 int8_mode="weights", overwrite=True)}
    for r in ov_reports.values():
        print(r.summary(), file=sys.stderr)
    ds = load_dataset(args.dataset_dir, require=(args.split,))
    examples = ds.split(args.split)[:args.max_samples]
    texts, y_true = [e.text for e in examples], multi_hot(examples, ds.labels)
    models, sizes = {}, {}
    for name, backend, suffix, options in CONFIGS:
        if "bf16" in name and not bf16_cpu() or (args.only and name != EAGER and name not in args.only):
            continue
        path = args.params_path if backend == "torch" else args.export_dir + suffix
        models[name] = Classifier.load(path, backend=backend, device="cpu", num_threads=threads, **options)
        models[name].predict_proba(texts[:64], batch_size=args.batch_size)  # warm-up
        sizes[name] = model_size(path, backend, options.get("precision", "fp32"))
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
    latency = {}
    for name, clf in models.items():  # batch 1: one text a call, as a service sees a lone request
        start = time.perf_counter()
        for text in texts[:args.latency_texts]:
            clf.predict_proba([text], batch_size=1)
        latency[name] = 1000 * (time.perf_counter() - start) / min(len(texts), args.latency_texts)
    rows, eager = [], min(seconds[EAGER])
    reference = probs[EAGER]
    for name, clf in models.items():
        m = evaluate_predictions(y_true, probs[name], ds.labels, clf.thresholds)
        half = evaluate_predictions(y_true, probs[name], ds.labels, 0.5)
        best = min(seconds[name])
        rows.append({"name": name, "sps": len(texts) / best, "ms": 1000 * best / len(texts), "speedup": eager / best,
                     "micro": m["micro"]["f1"], "macro": m["macro"]["f1"],
                     "micro05": half["micro"]["f1"], "macro05": half["macro"]["f1"],
                     "flips": int((apply_thresholds(probs[name], clf.thresholds)
                                   != apply_thresholds(reference, clf.thresholds)).sum()),
                     "decisions": probs[name].size, "ms1": latency[name], "mib": sizes[name],
                     "diff": float(np.abs(probs[name] - reference).max())})
    int8_name = CONFIGS[3][0]
    breakdown = int8_breakdown(args.export_dir, models[int8_name], texts, args.batch_size, threads) \
        if int8_name in models else ""
    section = format_section(args, rows, len(texts), threads, load_before, os.getloadavg()[0], report)
    section += "\n" + breakdown + "\n"
    return publish(section, args.write)


def model_size(path: str, backend: str, precision: str) -> float:
    """MiB of the weight files the row runs."""
    folder = Path(path)
    if backend == "torch":
        files = list(folder.rglob("*.safetensors"))
    elif backend == "onnx":
        files = [folder / {"fp32": "model.onnx", "int8": "model.int8.onnx"}[precision]]
    else:
        stem = "openvino_model.int8" if precision == "int8" else "openvino_model"
        files = [folder / f"{stem}.xml", folder / f"{stem}.bin"]
    return sum(f.stat().st_size for f in files) / 2**20


def format_section(args, rows, n, threads, load_before, load_after, report) -> str:
    by_name = {r["name"]: r for r in rows}
    fp32 = by_name.get(ONNX_FP32, rows[0])
    int8 = max((r for r in rows if "int8" in r["name"]), key=lambda r: r["sps"], default=rows[0])
    speed_ok = int8["speedup"] >= 3
    def f1_ok(suffix: str) -> str:
        ok = all(abs(int8[k + suffix] - fp32[k + suffix]) <= 0.5 for k in ("micro", "macro"))
        return (f"{verdict(ok)} (micro {int8['micro' + suffix] - fp32['micro' + suffix]:+.2f}, "
                f"macro {int8['macro' + suffix] - fp32['macro' + suffix]:+.2f})")
    cmd = "python benchmarks/speed/infer_speed.py " + " ".join(sys.argv[1:])
    lines = [f"## Inference speed: every engine, PyTorch / ONNX Runtime / OpenVINO ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"Command: `{cmd}`  ", f"Machine: {machine()}; inference threads: {threads}  ",
             f"Data: {args.dataset_dir} {args.split}, {n} texts, batch {args.batch_size}, length-grouped batches, "
             f"max_seq_length of the checkpoint; best of {args.rounds} rounds  ",
             f"Load average (1 min) before/after: {load_before:.1f} / {load_after:.1f} "
             "(the machine is shared: other jobs ran at the same time)", "",
             f"| engine | samples/s (batch {args.batch_size}) | ms/sample | speed-up vs eager | ms/text at batch 1 "
             "| micro-F1 | macro-F1 | micro / macro at 0.5 | max abs prob diff vs eager | label decisions changed "
             "| model MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['sps']:.1f} | {r['ms']:.2f} | {r['speedup']:.2f}x | {r['ms1']:.2f} | "
                     f"{r['micro']:.2f} | {r['macro']:.2f} | {r['micro05']:.2f} / {r['macro05']:.2f} | "
                     f"{r['diff']:.2g} | {r['flips']} of {r['decisions']} | {r['mib']:.1f} |")
    check = report.checks["fp32"]["max_abs_logit_diff"]
    targets = (f"Targets (fastest int8 row, {int8['name']}): ≥ 3x eager throughput: {verdict(speed_ok)} "
               f"({int8['speedup']:.2f}x); F1 within 0.5 point of ONNX fp32: at the tuned thresholds {f1_ok('')}, "
               f"at 0.5 {f1_ok('05')}.")
    lines += ["", f"ONNX export check (fp32 vs PyTorch, max abs logit diff): {check:.1e}.", "", targets]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

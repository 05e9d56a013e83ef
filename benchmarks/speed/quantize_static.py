"""Static (calibrated, QDQ) int8 against labelwise's dynamic int8 and fp32, speed first.

    python benchmarks/speed/quantize_static.py --dataset_dir data/divorce [--export_dir export] [--write]

Takes an export folder's fp32 ``model.onnx`` (default: benchmarks/service/serve_wrk.py's m3e-small with a random head:
speed does not depend on the weights), quantizes it statically with ONNX Runtime (`quantize_static`, QDQ format,
activations calibrated on --calibration dev texts, per-channel 7-bit int8 weights like the dynamic default), and
times fp32 / dynamic int8 (`model.int8.onnx`) / static int8 on the same dev texts at batch 32, rounds
alternating. Also reported: the largest probability difference of each int8 graph to fp32. F1 at the stored
thresholds needs a trained export (pass --export_dir): printed when its labelwise.json has thresholds.
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
from _common import machine, publish, run_started  # noqa: E402


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--export_dir", default=None)
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--calibration", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)

    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from labelwise.data.dataset import multi_hot, read_examples, read_labels
    from labelwise.evaluation.decision import sigmoid
    from labelwise.evaluation.metrics import evaluate_predictions
    from labelwise.model.checkpoint import read_meta
    from labelwise.predict.batching import encode, pad_batch
    from labelwise.predict.onnx_backend import load_tokenizer
    from serve_wrk import default_export

    started, load_before = run_started()
    export = Path(args.export_dir) if args.export_dir else default_export(args.dataset_dir)
    labels = read_labels(Path(args.dataset_dir) / "label.txt")
    dev = read_examples(Path(args.dataset_dir) / "dev.txt", labels)
    meta = read_meta(export)
    tokenizer = load_tokenizer(export)
    order = np.argsort([len(e.text) for e in dev[:args.texts]])  # length-grouped, as labelwise predicts
    texts = [dev[i].text for i in order]
    enc = encode(tokenizer, texts, meta.max_seq_length)
    batches = [pad_batch(enc, list(range(i, min(i + 32, len(texts)))), tokenizer.pad_token_id or 0)
               for i in range(0, len(texts), 32)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            rows = list(range(0, len(texts), max(1, len(texts) // args.calibration)))[:args.calibration]
            self.items = iter([pad_batch(enc, rows[i:i + 16], tokenizer.pad_token_id or 0)
                               for i in range(0, len(rows), 16)])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared, static = Path(tmp) / "prepared.onnx", Path(tmp) / "model.static.onnx"
        quant_pre_process(str(export / "model.onnx"), str(prepared), skip_symbolic_shape=True)
        start = time.perf_counter()
        quantize_static(str(prepared), str(static), Reader(), quant_format=QuantFormat.QDQ,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"],
                        extra_options={"QuantizeBias": False})
        calibrate_s = time.perf_counter() - start
        symmetric = Path(tmp) / "model.static-s8.onnx"  # int8 activations too (S8S8), symmetric
        quantize_static(str(prepared), str(symmetric), Reader(), quant_format=QuantFormat.QDQ,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"],
                        extra_options={"QuantizeBias": False, "ActivationSymmetric": True})
        models = {"fp32": export / "model.onnx", "dynamic int8 (labelwise's)": export / "model.int8.onnx",
                  "static int8 (QDQ, uint8 activations)": static, "static int8 (QDQ, int8 symmetric activations)":
                  symmetric}
        sessions = {}
        for name, path in models.items():
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = os.cpu_count() or 1
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(session):
            wanted = {i.name for i in session.get_inputs()}
            return np.concatenate([session.run(None, {k: v for k, v in b.items() if k in wanted})[0] for b in batches])

        probs = {name: sigmoid(run(s)) for name, s in sessions.items()}
        seconds = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                start = time.perf_counter()
                run(session)
                seconds[name].append(time.perf_counter() - start)
    y = multi_hot([dev[i] for i in order], labels)
    rows = []
    for name in sessions:
        best = min(seconds[name])
        f1 = ""
        if meta.thresholds:
            m = evaluate_predictions(y, probs[name], labels, meta.thresholds)
            f1 = f"{m['micro']['f1']:.2f} / {m['macro']['f1']:.2f}"
        rows.append(f"| {name} | {len(texts) / best:.1f} | {min(seconds['fp32']) / best:.2f}× | "
                    f"{np.abs(probs[name] - probs['fp32']).max():.4f} | {f1 or 'n/a (untrained head)'} |")
    lines = [f"## int8: static (QDQ, calibrated) vs dynamic ({started})", "",
             f"Command: `python benchmarks/speed/quantize_static.py {' '.join(sys.argv[1:])}`  ", f"Machine: {machine()}  ",
             f"Model: {export}; {len(texts)} dev texts, batch 32, length-grouped, tokenization excluded, best of "
             f"{args.rounds} alternating rounds; calibration on {args.calibration} texts took {calibrate_s:.0f} s; "
             f"load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}", "",
             "| graph | texts/s | vs fp32 | max abs prob diff to fp32 | micro / macro-F1 at the stored thresholds |",
             "|---|---:|---:|---:|---|", *rows]
    return publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()

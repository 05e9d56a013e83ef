"""labelwise beside PaddleNLP's own engine, on the same randomly initialised ERNIE 3.0-shaped classifier.

    python benchmarks/speed/vs_paddlenlp.py --paddle_python venv-paddle/bin/python [--shape mini] [--write]

PaddleNLP runs in its own virtual environment (it pins an older huggingface_hub than transformers 5 accepts):

    python -m venv venv-paddle && venv-paddle/bin/pip install --group paddle    # pip >= 25.1

(the `paddle` dependency group in pyproject.toml: paddlepaddle 3.3.1, paddlenlp 2.8.1 and the older
huggingface_hub, aistudio-sdk, datasets and pyarrow they work with). benchmarks/speed/paddle_side.py does PaddleNLP's part
there; this script runs in labelwise's environment and times the ONNX graphs of both sides with one ONNX Runtime.

Both sides get one vocabulary (m3e-small's) and the very same token ids (made once here by the transformers
tokenizer; PaddleNLP's own tokenizer is used only in the "tokenization included" timing, and how often its ids
agree is reported). The rounds alternate the two engines:
* training: one epoch on --train_samples divorce examples, batch 32, max length 128; PaddleNLP's dygraph loop
  (AdamW, BCE, shuffled batches padded to their longest, as its collator does) with Paddle's tuned CPU settings
  (MKL_DEBUG_CPU_TYPE=5, two OpenMP threads) and, once, with its defaults; labelwise's loop (length-grouped batches).
* inference on --dev_samples divorce dev texts, batch 32, 2 threads: PaddleNLP's static graph through Paddle
  Inference and through paddle2onnx + ONNX Runtime, fp32 and its `--use_quantize` dynamic int8, every batch
  padded to 128 as its deploy predictor does; labelwise's ONNX fp32 and int8 exports with its length-grouped
  batches; tokenization excluded and, for the main paths, included. One more row feeds labelwise's fp32 graph
  the same 128-padded batches: equal shapes, the engines alone.
The inference model is one labelwise checkpoint (trained briefly from the random start) whose weights are copied
into PaddleNLP's ErnieForSequenceClassification (labelwise's `--pooling cls` is the same pooler + linear head), so
both engines compute the same function: the largest logit difference is reported, and F1 and changed decisions
say what int8 costs on each side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish  # noqa: E402

SHAPES = {  # ERNIE 3.0 sizes: layers, hidden, heads, intermediate
    "medium": (6, 768, 12, 3072), "mini": (6, 384, 12, 1536), "micro": (4, 384, 12, 1536), "nano": (4, 312, 12, 1248)}
TUNED_ENV = {"MKL_DEBUG_CPU_TYPE": "5", "OMP_NUM_THREADS": "2"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paddle_python", default=os.environ.get("PADDLE_PYTHON", "venv-paddle/bin/python"))
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--shape", choices=SHAPES, default="mini")
    p.add_argument("--train_samples", type=int, default=320)
    p.add_argument("--infer_train_samples", type=int, default=1500, help="examples for the inference checkpoint")
    p.add_argument("--dev_samples", type=int, default=800)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default="runs/vs_paddlenlp")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def paddle_job(args, job: dict, name: str, tuned: bool = True) -> dict:
    """Run one benchmarks/speed/paddle_side.py task in the Paddle environment; its JSON answer."""
    path = Path(args.work_dir) / f"{name}.json"
    path.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in TUNED_ENV}
    env.update(TUNED_ENV if tuned else {})
    out = subprocess.run([args.paddle_python, str(Path(__file__).with_name("paddle_side.py")), str(path)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"paddle_side.py {job['task']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_encoder(args, folder: Path) -> tuple[dict, Path]:
    """A random ERNIE encoder (transformers) with m3e-small's tokenizer; PaddleNLP's config; the vocab file."""
    import shutil

    import torch
    from transformers import ErnieConfig, ErnieModel

    from labelwise.model.encoders import resolve_model_name

    source = Path(resolve_model_name("m3e-small"))
    vocab = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    layers, hidden, heads, inner = SHAPES[args.shape]
    common = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=inner, max_position_embeddings=2048, type_vocab_size=4, use_task_id=True,
                  task_type_vocab_size=3, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)
    torch.manual_seed(0)
    ErnieModel(ErnieConfig(**common)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8")
    return common, vocab_file


def paddle_weights(checkpoint: Path, out: Path, layers: int) -> None:
    """labelwise checkpoint (transformers names) → PaddleNLP ErnieForSequenceClassification names (.npz)."""
    from safetensors.numpy import load_file

    enc = load_file(str(checkpoint / "encoder" / "model.safetensors"))
    head = load_file(str(checkpoint / "head.safetensors"))
    names = {"embeddings.LayerNorm": "embeddings.layer_norm", "pooler.dense": "pooler.dense"}
    for i in range(layers):
        a, b = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        names.update({a + "attention.self.query": b + "self_attn.q_proj", a + "attention.self.key": b + "self_attn.k_proj",
                      a + "attention.self.value": b + "self_attn.v_proj", a + "attention.output.dense": b + "self_attn.out_proj",
                      a + "attention.output.LayerNorm": b + "norm1", a + "intermediate.dense": b + "linear1",
                      a + "output.dense": b + "linear2", a + "output.LayerNorm": b + "norm2"})
    weights = {"classifier.weight": head["weight"].T, "classifier.bias": head["bias"]}
    for key, value in enc.items():
        module, _, param = key.rpartition(".")
        if module.startswith("embeddings.") and module.endswith("_embeddings"):
            weights["ernie." + key] = value
            continue
        target = names[module]
        linear = param == "weight" and "norm" not in target
        weights[f"ernie.{target}.{param}"] = value.T if linear else value  # Paddle stores Linear as [in, out]
    np.savez(out, **{k: np.ascontiguousarray(v) for k, v in weights.items()})


def save_ids(path: Path, sequences) -> None:
    offsets = np.cumsum([0] + [len(s) for s in sequences])
    np.savez(path, ids=np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]), offsets=offsets)


def fixed_batches(encoded, pad_id: int, width: int = 128, batch_size: int = 32) -> list[dict]:
    """PaddleNLP's deploy predictor: batches in input order, every one padded to ``width``."""
    from labelwise.predict.batching import pad_batch

    n = len(encoded.input_ids)
    return [pad_batch(encoded, range(i, min(i + batch_size, n)), pad_id, pad_to=width) for i in range(0, n, batch_size)]


def run_batches(backend, batches: list[dict]) -> np.ndarray:
    """Logits of ``batches`` in order (the graph's own inputs; token_type_ids default to zeros)."""
    return np.concatenate([backend.logits(batch) for batch in batches])


def timed(fn, rounds_out: list):
    start = time.perf_counter()
    value = fn()
    rounds_out.append(time.perf_counter() - start)
    return value


def main(argv=None) -> str:
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from transformers import AutoTokenizer

    from labelwise.compress.export import export_onnx
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.evaluation.decision import sigmoid
    from labelwise.evaluation.metrics import apply_thresholds, evaluate_predictions
    from labelwise.predict.batching import encode, iter_batches
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.onnx_backend import OnnxBackend
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train
    from labelwise.training.loop import random_subset

    args = parse_args(argv)
    if not Path(args.paddle_python).exists():
        sys.exit(f"--paddle_python {args.paddle_python} not found: create the Paddle environment (see the top of this file)")
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    load_before, date = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    common, vocab_file = build_encoder(args, work / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(work / "encoder")
    ds = load_dataset(args.dataset_dir)
    n_labels = len(ds.labels)
    paddle_config = {**common, "num_labels": n_labels}

    # training speed, alternating; the labelwise arm trains on the same subset (same seed, same rule)
    train_set = random_subset(ds.train, args.train_samples, np.random.default_rng(3))
    save_ids(work / "train_ids.npz", encode(tokenizer, [e.text for e in train_set], 128).input_ids)
    np.save(work / "train_labels.npy", multi_hot(train_set, ds.labels))
    train_job = {"task": "train", "config": paddle_config, "ids": str(work / "train_ids.npz"),
                 "labels": str(work / "train_labels.npy"), "batch_size": 32, "learning_rate": 1e-4, "seed": 3}
    speeds = {"paddle": [], "paddle_default": [], "labelwise": []}
    lw_config = dict(dataset_dir=args.dataset_dir, model_name=str(work / "encoder"), pooling="cls", batch_size=32,
                     max_seq_length=128, learning_rate=1e-4, progress=False, baseline=False)
    for r in range(args.rounds):
        speeds["paddle"].append(paddle_job(args, train_job, "train")["samples_per_second"])
        result = train(TrainConfig(save_dir=str(work / "lw_speed"), epochs=1, max_train_samples=args.train_samples,
                                   max_dev_samples=16, threshold_tuning=False, **lw_config))
        speeds["labelwise"].append(result.train_samples_per_second)
        print(f"round {r + 1}: training samples/s paddle {speeds['paddle'][-1]:.1f}, "
              f"labelwise {speeds['labelwise'][-1]:.1f}", file=sys.stderr, flush=True)
    speeds["paddle_default"].append(paddle_job(args, train_job, "train_default", tuned=False)["samples_per_second"])

    # one inference checkpoint, exported by labelwise and copied into PaddleNLP's model
    ckpt = work / "checkpoint"
    train(TrainConfig(save_dir=str(ckpt), epochs=2, max_train_samples=args.infer_train_samples, **lw_config))
    export_onnx(ckpt, work / "lw_export", quantize="int8")
    paddle_weights(ckpt, work / "paddle_weights.npz", common["num_hidden_layers"])
    paddle_dir = work / "paddle_export"
    paddle_dir.mkdir(exist_ok=True)
    paddle_job(args, {"task": "export", "config": paddle_config, "weights": str(work / "paddle_weights.npz"),
                      "out_dir": str(paddle_dir)}, "export")
    quantize_dynamic(str(paddle_dir / "model.onnx"), str(paddle_dir / "model.int8.onnx"))  # its --use_quantize

    dev = ds.dev[:args.dev_samples]
    texts, y = [e.text for e in dev], multi_hot(dev, ds.labels)
    lw = {p: Classifier.load(work / "lw_export", backend="onnx", device="cpu", num_threads=args.threads, precision=p)
          for p in ("fp32", "int8")}
    backends = {p: clf.backend for p, clf in lw.items()}
    paddle_backends = {p: OnnxBackend.load(paddle_dir, num_threads=args.threads, precision=p) for p in ("fp32", "int8")}
    pad_id = lw["fp32"].tokenizer.pad_token_id or 0
    encoded = encode(lw["fp32"].tokenizer, texts, 128)
    batches = list(iter_batches(encoded, 32, pad_id))
    fixed = fixed_batches(encoded, pad_id)
    np.save(work / "dev_padded.npy", np.concatenate([b["input_ids"] for b in fixed]))
    (work / "dev_texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    infer_job = {"task": "infer", "out_dir": str(paddle_dir), "threads": args.threads,
                 "padded_ids": str(work / "dev_padded.npy"), "texts": str(work / "dev_texts.json"),
                 "vocab_file": str(vocab_file), "batch_size": 32, "max_seq_length": 128, "rounds": 1}

    def lw_excluded(precision):
        logits = np.zeros((len(texts), n_labels), dtype=np.float32)
        for rows, batch in batches:
            logits[rows] = backends[precision].logits(batch)
        return logits

    seconds, logits = {}, {}
    paths = {
        "PaddleNLP: paddle2onnx + ONNX Runtime fp32": lambda: run_batches(paddle_backends["fp32"], fixed),
        "PaddleNLP: paddle2onnx + ONNX Runtime int8 (--use_quantize)": lambda: run_batches(paddle_backends["int8"], fixed),
        "labelwise: ONNX Runtime fp32": lambda: lw_excluded("fp32"),
        "labelwise: ONNX Runtime int8": lambda: lw_excluded("int8"),
        "labelwise: ONNX Runtime fp32, every batch padded to 128": lambda: run_batches(backends["fp32"], fixed),
        "labelwise: ONNX Runtime fp32, tokenization included": lambda: lw["fp32"].predict_proba(texts, batch_size=32),
        "labelwise: ONNX Runtime int8, tokenization included": lambda: lw["int8"].predict_proba(texts, batch_size=32),
    }
    for fn in paths.values():
        fn()  # warm-up
    paddle_infer = {"seconds_excluded": [], "seconds_included": []}
    for r in range(args.rounds):
        answer = paddle_job(args, infer_job, "infer")
        for key in paddle_infer:
            paddle_infer[key] += answer[key]
        for name, fn in paths.items():
            logits[name] = timed(fn, seconds.setdefault(name, []))
        print(f"round {r + 1}: " + ", ".join(f"{k.split(': ')[1]} {v[-1]:.1f}s" for k, v in seconds.items()),
              file=sys.stderr, flush=True)
    seconds["PaddleNLP: Paddle Inference fp32"] = paddle_infer["seconds_excluded"]
    seconds["PaddleNLP: Paddle Inference fp32, tokenization included"] = paddle_infer["seconds_included"]
    logits["PaddleNLP: Paddle Inference fp32"] = np.load(paddle_dir / "paddle_inference_logits.npy")
    same_ids = np.mean([list(a) == list(b) for a, b in zip(answer["own_ids"], encoded.input_ids)])
    reference = logits["labelwise: ONNX Runtime fp32"]
    thresholds = lw["fp32"].thresholds  # tuned on dev by the inference checkpoint's training run
    rows = []
    for name, secs in seconds.items():
        row = {"name": name, "sps": len(texts) / min(secs)}
        if name in logits:
            probs = logits[name] if name.endswith("included") else sigmoid(logits[name])
            ref_probs = sigmoid(reference)
            m = evaluate_predictions(y, probs, ds.labels, thresholds)
            row.update(f1=(m["micro"]["f1"], m["macro"]["f1"]),
                       flips=int((apply_thresholds(probs, thresholds) != apply_thresholds(ref_probs, thresholds)).sum()),
                       diff=float(np.abs(probs - ref_probs).max()))
        rows.append(row)
    section = format_section(args, date, speeds, rows, len(texts), same_ids, load_before)
    return publish(section, args.write)


def format_section(args, date, speeds, rows, n, same_ids, load_before) -> str:
    med = {k: float(np.median(v)) for k, v in speeds.items()}
    layers, hidden, heads, inner = SHAPES[args.shape]
    by_name = {r["name"]: r for r in rows}
    paddle_best = max(r["sps"] for r in rows if r["name"].startswith("PaddleNLP") and "included" not in r["name"])
    lines = [f"## labelwise vs PaddleNLP's engine, ERNIE 3.0 {args.shape.title()} shape ({date})", "",
             f"Command: `python benchmarks/speed/vs_paddlenlp.py --shape {args.shape} --train_samples {args.train_samples} "
             f"--dev_samples {args.dev_samples} --rounds {args.rounds} --write`  ",
             f"Machine: {machine()}; {args.threads} threads on both sides  ",
             f"Model: random ERNIE ({layers} layers, hidden {hidden}, {heads} heads, intermediate {inner}, 20 labels), "
             f"m3e-small's vocabulary; PaddleNLP 2.8.1 on PaddlePaddle 3.3.1; load average before/after "
             f"{load_before:.1f} / {os.getloadavg()[0]:.1f}", "",
             f"Training, one epoch on {args.train_samples} divorce examples, batch 32, max length 128 "
             "(samples/s, each round):", "",
             "| loop | padding | samples/s | median |", "|---|---|---|---:|",
             f"| PaddleNLP dygraph, MKL_DEBUG_CPU_TYPE=5 + 2 OpenMP threads | longest in a shuffled batch | "
             f"{', '.join(f'{v:.1f}' for v in speeds['paddle'])} | {med['paddle']:.1f} |",
             f"| PaddleNLP dygraph, Paddle's defaults | longest in a shuffled batch | "
             f"{', '.join(f'{v:.1f}' for v in speeds['paddle_default'])} | {med['paddle_default']:.1f} |",
             f"| labelwise | longest in a length-grouped batch | {', '.join(f'{v:.1f}' for v in speeds['labelwise'])} "
             f"| {med['labelwise']:.1f} |", "",
             f"Training speed-up: **{med['labelwise'] / med['paddle']:.2f}×** PaddleNLP's tuned loop "
             f"({med['labelwise'] / med['paddle_default']:.2f}× its defaults); target ≥ 3×.", "",
             f"Inference on {n} divorce dev texts, batch 32, best of {args.rounds} rounds. F1 at the checkpoint's "
             f"stored thresholds: it was trained {args.infer_train_samples} examples × 2 epochs from random weights, so "
             "only the differences between rows mean anything; changed label decisions and the largest probability "
             "difference are against labelwise's ONNX fp32:", "",
             "| path | samples/s | ms/sample | vs PaddleNLP's best | micro / macro-F1 | decisions changed | max prob diff |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f1 = f"{r['f1'][0]:.2f} / {r['f1'][1]:.2f}" if "f1" in r else "–"
        flips = f"{r['flips']} of {n * 20}" if "flips" in r else "–"
        diff = f"{r['diff']:.1e}" if "diff" in r else "–"
        lines.append(f"| {r['name']} | {r['sps']:.1f} | {1000 / r['sps']:.2f} | {r['sps'] / paddle_best:.2f}× | "
                     f"{f1} | {flips} | {diff} |")
    lw_int8 = by_name["labelwise: ONNX Runtime int8"]["sps"]
    lines += ["", f"labelwise int8 vs PaddleNLP's best path (tokenization excluded, its int8 included): "
              f"**{lw_int8 / paddle_best:.2f}×** (target ≥ 3×). PaddleNLP's tokenizer gave the same ids as the shared "
              f"transformers tokenizer for {100 * same_ids:.1f}% of the dev texts (only the tokenization-included "
              "timing uses its ids)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

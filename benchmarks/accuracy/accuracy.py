"""Full fine-tune accuracy with labelwise's defaults, beside its built-in linear baseline and PaddleNLP's table.

    python benchmarks/accuracy/accuracy.py --dataset_dir data/divorce [--write]
    python benchmarks/accuracy/accuracy.py --dataset_dir data/goemotions --model_name all-minilm-l6-v2 [--write]

Recipe flags left out use `labelwise train`'s defaults (the point of the benchmark). Dev metrics at threshold
0.5 of the best epoch by dev macro-F1 are PaddleNLP's protocol; metrics with thresholds tuned on dev are
optimistic (tuned on the same data) and said so; test figures (where the folder has test.txt) are honest.
It also measures a blend: the average of the transformer's and the linear baseline's probabilities (the
baseline's SVM decision d read as sigmoid(2d)), with the weight and thresholds chosen on dev.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import append_results, machine  # noqa: E402

PADDLENLP_TABLE = [  # PaddleNLP multi_label README, CAIL2019 divorce dev, V100
    ("ERNIE 1.0 Large Cw", 91.14, 81.68), ("ERNIE 3.0 Base", 90.38, 80.14), ("ERNIE 3.0 Medium", 90.57, 79.36),
    ("ERNIE 3.0 Mini", 89.27, 76.78), ("ERNIE 3.0 Micro", 89.43, 77.20), ("ERNIE 3.0 Nano", 85.39, 75.07)]
BLEND_WEIGHTS = np.round(np.arange(0.0, 1.01, 0.1), 2)  # weight of the transformer


def _score(y, probs, thresholds) -> dict:
    from labelwise.evaluation.metrics import evaluate_predictions

    m = evaluate_predictions(y, probs, [str(i) for i in range(y.shape[1])], thresholds)
    return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"]}


def measure_blend(save_dir: str, dataset_dir: str) -> dict:
    """Transformer alone vs blended with the linear baseline; weight + thresholds tuned on dev."""
    from labelwise import Classifier
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.evaluation.decision import sigmoid
    from labelwise.evaluation.metrics import tune_thresholds
    from labelwise.training.baseline import LinearBaseline

    ds = load_dataset(dataset_dir)
    clf = Classifier.load(save_dir)
    base = LinearBaseline().fit([e.text for e in ds.train], multi_hot(ds.train, ds.labels))
    splits = {"dev": ds.dev, **({"test": ds.test} if ds.test else {})}
    y = {k: multi_hot(v, ds.labels) for k, v in splits.items()}
    p_model = {k: clf.predict_proba([e.text for e in v], batch_size=64) for k, v in splits.items()}
    p_lin = {k: sigmoid(2 * base.decision_function([e.text for e in v])) for k, v in splits.items()}
    out = {}
    best = None
    for w in BLEND_WEIGHTS:
        blend = {k: w * p_model[k] + (1 - w) * p_lin[k] for k in splits}
        thr = tune_thresholds(y["dev"], blend["dev"])
        dev = _score(y["dev"], blend["dev"], thr)
        row = {"weight": float(w), "dev@tuned": dev,
               **({"test@tuned": _score(y["test"], blend["test"], thr)} if "test" in splits else {})}
        if w == 1.0:
            out["model_only"] = row
        if best is None or dev["micro_f1"] + dev["macro_f1"] > best["dev@tuned"]["micro_f1"] + best["dev@tuned"]["macro_f1"]:
            best = row
    out["blend"] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--model_name", default="m3e-small")
    ap.add_argument("--epochs", type=int, default=None, help="default: labelwise's (by dataset size)")
    ap.add_argument("--learning_rate", type=float, default=None, help="default: labelwise's (by encoder size)")
    ap.add_argument("--save_dir", default=None, help="default runs/accuracy-<dataset>-<model>")
    ap.add_argument("--json", default=None, help="default <save_dir>.json")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no_blend", dest="blend", action="store_false")
    ap.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = ap.parse_args()

    import logging

    logging.basicConfig(format="%(message)s", level=logging.INFO)
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    save_dir = args.save_dir or f"runs/accuracy-{Path(args.dataset_dir).name}-{args.model_name}"
    cfg = TrainConfig(dataset_dir=args.dataset_dir, save_dir=save_dir, model_name=args.model_name,
                      epochs=args.epochs, learning_rate=args.learning_rate, resume=args.resume, progress=False)
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    blend = measure_blend(save_dir, args.dataset_dir) if args.blend else None
    targs = json.loads((Path(save_dir) / "labelwise.json").read_text())["training_args"]
    out = {"date": datetime.date.today().isoformat(), "machine": machine(), "args": vars(args),
           "metrics": result.metrics, "history": result.history, "blend": blend,
           "best_epoch": result.best_epoch, "train_seconds": result.train_seconds, "wall_seconds": wall,
           "train_samples_per_second": result.train_samples_per_second, "training_args": targs}
    Path(args.json or f"{save_dir}.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))

    m, flags = result.metrics, ""
    if args.model_name != "m3e-small":
        flags += f" --model_name {args.model_name}"
    if args.epochs:
        flags += f" --epochs {args.epochs}"
    if args.learning_rate:
        flags += f" --learning_rate {args.learning_rate}"
    lines = [f"## Accuracy with the defaults: {args.model_name} on {args.dataset_dir}", "",
             f"Command: `python benchmarks/accuracy/accuracy.py --dataset_dir {args.dataset_dir}{flags}`  ",
             f"Machine: {machine()}; date {out['date']}.  ",
             f"Recipe used: {targs['pooling']} pooling, learning rate {targs['learning_rate']:g} (head "
             f"{targs['head_learning_rate']:g}), {targs['epochs']} epochs, batch {targs['batch_size']}, "
             f"max_seq_length {targs['max_seq_length']}.", "",
             "| model | split | micro F1 | macro F1 | note |", "|---|---|---:|---:|---|"]
    for split in ("dev", "test"):
        if f"{split}@0.5" not in m:
            continue
        d = m[f"{split}@0.5"]
        lines.append(f"| labelwise {args.model_name}, threshold 0.5 | {split} | {d['micro_f1']:.2f} | {d['macro_f1']:.2f} | "
                     f"best epoch {result.best_epoch} of {targs['epochs']} by dev macro-F1 |")
        if f"{split}@tuned" in m:
            t = m[f"{split}@tuned"]
            note = "thresholds tuned on dev itself: optimistic" if split == "dev" else "thresholds tuned on dev"
            lines.append(f"| labelwise {args.model_name}, per-label thresholds | {split} | {t['micro_f1']:.2f} | "
                         f"{t['macro_f1']:.2f} | {note} |")
        b = m.get("baseline", {}).get(f"{split}@0.5")
        if b:
            lines.append(f"| {m['baseline']['model']} (built-in baseline) | {split} | {b['micro_f1']:.2f} | "
                         f"{b['macro_f1']:.2f} | {m['baseline']['fit_seconds']:.0f} s to fit |")
    if blend:
        for name, row in (("transformer alone", blend["model_only"]), (f"blend, weight {blend['blend']['weight']}", blend["blend"])):
            for split in ("dev", "test"):
                if f"{split}@tuned" in row:
                    r = row[f"{split}@tuned"]
                    lines.append(f"| {name} (tuned thresholds) | {split} | {r['micro_f1']:.2f} | {r['macro_f1']:.2f} | "
                                 "weight and thresholds chosen on dev |")
    if "divorce" in args.dataset_dir:
        for name, micro, macro in PADDLENLP_TABLE:
            lines.append(f"| PaddleNLP {name} (published) | dev | {micro:.2f} | {macro:.2f} | threshold 0.5, V100 |")
    lines += ["", f"Training: {result.train_seconds / 60:.1f} min of training steps "
              f"({result.train_samples_per_second:.1f} samples/s), {wall / 60:.1f} min wall with evaluation.", "",
              "Per epoch (dev, threshold 0.5): " + "; ".join(
                  f"{h['epoch']}: {h['dev_micro_f1']:.2f}/{h['dev_macro_f1']:.2f}" for h in result.history), ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()

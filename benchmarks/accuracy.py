"""Full fine-tune accuracy on a dataset folder, beside a TF-IDF + linear SVM baseline and the seed's table.

    python benchmarks/accuracy.py --dataset_dir data/divorce [--epochs 4] [--learning_rate 1e-4]

Prints a Markdown section and appends it to benchmarks/RESULTS.md (with --write); the JSON of every
number goes to --json. Dev metrics at threshold 0.5 are comparable with the seed's published table;
metrics with thresholds tuned on dev are optimistic (tuned on the same data) and said so.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, machine  # noqa: E402

SEED_TABLE = [  # PaddleNLP multi_label README, CAIL2019 divorce dev, V100
    ("ERNIE 1.0 Large Cw", 91.14, 81.68), ("ERNIE 3.0 Base", 90.38, 80.14), ("ERNIE 3.0 Medium", 90.57, 79.36),
    ("ERNIE 3.0 Mini", 89.27, 76.78), ("ERNIE 3.0 Micro", 89.43, 77.20), ("ERNIE 3.0 Nano", 85.39, 75.07)]


def tfidf_svm(dataset_dir: str) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    from labelwise.data import load_dataset, multi_hot
    from labelwise.metrics import evaluate_predictions

    ds = load_dataset(dataset_dir)
    start = time.perf_counter()
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform([e.text for e in ds.train])
    clf = OneVsRestClassifier(LinearSVC(C=0.5)).fit(x_train, multi_hot(ds.train, ds.labels))
    scores = clf.decision_function(vec.transform([e.text for e in ds.dev]))
    m = evaluate_predictions(multi_hot(ds.dev, ds.labels), (scores > 0).astype(np.float32), ds.labels, 0.5)
    return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"], "accuracy": m["accuracy"],
            "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--model_name", default="m3e-small")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--learning_rate", type=float, default=1e-4)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--save_dir", default="runs/accuracy-checkpoint")
    ap.add_argument("--json", default="runs/accuracy.json")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = ap.parse_args()

    import logging

    logging.basicConfig(format="%(message)s", level=logging.INFO)
    from labelwise.training import TrainConfig, train

    baseline = tfidf_svm(args.dataset_dir)
    print(f"TF-IDF + linear SVM: {baseline}", flush=True)
    cfg = TrainConfig(dataset_dir=args.dataset_dir, save_dir=args.save_dir, model_name=args.model_name,
                      epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                      max_seq_length=args.max_seq_length, warmup=True, resume=args.resume, progress=False)
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    out = {"date": datetime.date.today().isoformat(), "machine": machine(), "args": vars(args),
           "baseline": baseline, "metrics": result.metrics, "history": result.history,
           "best_epoch": result.best_epoch, "train_seconds": result.train_seconds, "wall_seconds": wall,
           "train_samples_per_second": result.train_samples_per_second}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False))
    m = result.metrics
    lines = [f"## Accuracy: {args.model_name} on {args.dataset_dir} (dev)", "",
             f"Command: `python benchmarks/accuracy.py --dataset_dir {args.dataset_dir} --epochs {args.epochs} "
             f"--learning_rate {args.learning_rate}`  ", f"Machine: {machine()}; date {out['date']}.", "",
             "| model | micro F1 | macro F1 | accuracy | note |", "|---|---|---|---|---|"]
    d = m["dev@0.5"]
    lines.append(f"| labelwise {args.model_name} (24M), threshold 0.5 | {d['micro_f1']:.2f} | {d['macro_f1']:.2f} | "
                 f"{d['accuracy']:.2f} | best epoch {result.best_epoch} of {args.epochs}, comparable with the seed |")
    if "dev@tuned" in m:
        t = m["dev@tuned"]
        lines.append(f"| labelwise {args.model_name}, per-label thresholds | {t['micro_f1']:.2f} | {t['macro_f1']:.2f} | "
                     f"{t['accuracy']:.2f} | thresholds tuned on dev itself: optimistic |")
    lines.append(f"| TF-IDF char 1-3gram + linear SVM | {baseline['micro_f1']:.2f} | {baseline['macro_f1']:.2f} | "
                 f"{baseline['accuracy']:.2f} | same script, {baseline['seconds']:.0f} s |")
    for name, micro, macro in SEED_TABLE:
        lines.append(f"| seed: {name} (published) | {micro:.2f} | {macro:.2f} | | PaddleNLP README, V100 |")
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

"""The training-recipe ablation: what each change to the default recipe buys, on a fixed divorce subset.

    python benchmarks/accuracy/recipe.py --dataset_dir data/divorce [--write]

2,000 training and 800 dev examples drawn by the training code's own subset rule (seed 3), m3e-small,
batch 32, warm-up. Rows 1-5 train 3 epochs and report dev F1 at threshold 0.5 after the last epoch; the
"new default" row is `labelwise train` with no recipe flags (its epochs follow the data size) and reports
the best epoch; the last row is the TF-IDF + LinearSVC baseline labelwise trains beside every run. Each
finished row is cached in --work_dir/rows.json, so a cut-off run continues where it stopped.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import append_results, machine  # noqa: E402

# name → TrainConfig overrides (None: the default is used)
ROWS = [
    ("previous default: [CLS] + BERT pooler, lr 3e-5, head at encoder lr, bias 0",
     dict(pooling="cls", learning_rate=3e-5, head_learning_rate=3e-5, head_prior=False, weight_decay=0.0, epochs=3)),
    ("[CLS] + pooler, lr 1e-4",
     dict(pooling="cls", learning_rate=1e-4, head_learning_rate=1e-4, head_prior=False, weight_decay=0.0, epochs=3)),
    ("masked mean pooling, lr 1e-4",
     dict(pooling="mean", learning_rate=1e-4, head_learning_rate=1e-4, head_prior=False, weight_decay=0.0, epochs=3)),
    ("masked mean pooling, lr 3e-4",
     dict(pooling="mean", learning_rate=3e-4, head_learning_rate=3e-4, head_prior=False, weight_decay=0.0, epochs=3)),
    ("mean + head bias at label priors + head lr x30 (3e-3) + weight decay 0.01, lr 1e-4",
     dict(pooling="mean", learning_rate=1e-4, epochs=3)),
    ("new default (no flags: the same, epochs by data size)", dict()),
]


def run_row(dataset_dir: str, work: Path, index: int, overrides: dict, args) -> dict:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    cfg = TrainConfig(dataset_dir=dataset_dir, save_dir=str(work / f"row{index}"), model_name=args.model_name,
                      max_train_samples=args.train_size, max_dev_samples=args.dev_size, seed=3, progress=False,
                      baseline=index == len(ROWS) - 1, **overrides)
    start = time.perf_counter()
    result = train(cfg)
    last = result.history[-1]
    meta = json.loads((work / f"row{index}" / "labelwise.json").read_text())
    shutil.rmtree(work / f"row{index}", ignore_errors=True)
    return {"last": {"micro_f1": last["dev_micro_f1"], "macro_f1": last["dev_macro_f1"]},
            "best": result.metrics["dev@0.5"], "best_epoch": result.best_epoch, "epochs": len(result.history),
            "learning_rate": meta["training_args"]["learning_rate"], "baseline": result.metrics.get("baseline"),
            "minutes": (time.perf_counter() - start) / 60, "history": result.history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", default="data/divorce")
    ap.add_argument("--model_name", default="m3e-small")
    ap.add_argument("--train_size", type=int, default=2000)
    ap.add_argument("--dev_size", type=int, default=800)
    ap.add_argument("--rows", default=None, help="comma-separated row numbers to run (1-based; default all)")
    ap.add_argument("--work_dir", default="runs/recipe")
    ap.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = ap.parse_args()
    logging.basicConfig(format="%(message)s", level=logging.INFO)

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "rows.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    wanted = [int(r) - 1 for r in args.rows.split(",")] if args.rows else range(len(ROWS))
    for i in wanted:
        name, overrides = ROWS[i]
        if name in done:
            continue
        print(f"== row {i + 1}: {name}", flush=True)
        done[name] = run_row(args.dataset_dir, work, i, overrides, args)
        cache.write_text(json.dumps(done, indent=2, ensure_ascii=False))

    lines = [f"## Training recipe ablation: {args.model_name}, {args.train_size} train / {args.dev_size} dev "
             f"examples of {args.dataset_dir}", "",
             f"Command: `python benchmarks/accuracy/recipe.py --dataset_dir {args.dataset_dir}`  ",
             f"Machine: {machine()}; date {datetime.date.today().isoformat()}.", "",
             "Batch 32, warm-up 10%, dev F1 at threshold 0.5 (rows 1-5: after the last of 3 epochs; the default "
             "row: its best epoch by dev macro-F1, as `labelwise train` keeps).", "",
             "| recipe | micro-F1 | macro-F1 | epochs | minutes |", "|---|---:|---:|---:|---:|"]
    baseline = None
    for i, (name, _) in enumerate(ROWS):
        row = done.get(name)
        if row is None:
            continue
        figures = row["best"] if i == len(ROWS) - 1 else row["last"]
        note = f" (best epoch {row['best_epoch']})" if i == len(ROWS) - 1 else ""
        lines.append(f"| {name}{note} | {figures['micro_f1']:.2f} | {figures['macro_f1']:.2f} | {row['epochs']} | "
                     f"{row['minutes']:.1f} |")
        baseline = row.get("baseline") or baseline
    if baseline:
        b = baseline["dev@0.5"]
        lines.append(f"| {baseline['model']} (labelwise's built-in baseline) | {b['micro_f1']:.2f} | "
                     f"{b['macro_f1']:.2f} | | {baseline['fit_seconds'] / 60:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()

"""Small real datasets: `labelwise train`'s defaults vs the built-in TF-IDF + linear SVM on 1–2k training examples.

    python benchmarks/small_data.py --dataset_dir data/divorce --size 1500 --draws 2 [--write]
    python benchmarks/small_data.py --dataset_dir data/goemotions --model_name all-minilm-l6-v2 --size 1500 --draws 2

Each draw (seed = draw number): ``--size`` random training examples (the user's labelled data, as it comes, rare
labels rare) and ``--dev_size`` other training examples for dev; test is the dataset's test split, or its dev
split where it has no test (divorce). Routes: `default` (`labelwise train` with its defaults) and the baseline
every `labelwise train` fits beside the model. Reported: test micro/macro-F1 at each route's own decision (tuned thresholds for the
models, the SVM's sign for the baseline), mean ± std over draws, and the test F1 of the rarest labels (fewest
examples in the draw's train).
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
from _common import append_results, machine, read_draws, run_started, write_draws  # noqa: E402
from few_shot import write_draw  # noqa: E402

RAREST = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--model_name", default="m3e-small")
    p.add_argument("--size", type=int, default=1500)
    p.add_argument("--dev_size", type=int, default=300)
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--routes", nargs="+", default=["default"], choices=["default"])
    p.add_argument("--out", default=None, help="also write the per-draw numbers here (JSON); draws already there "
                   "are kept and not run again, and the section covers them all")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def per_label_f1(y, predicted) -> np.ndarray:
    from sklearn.metrics import f1_score

    return 100 * f1_score(y, predicted, average=None, zero_division=0)


def run_draw(args, ds, seed: int, work: Path) -> dict:
    from labelwise.data.dataset import multi_hot
    from labelwise.training.baseline import LinearBaseline
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.train))
    train_idx, dev_idx = order[:args.size], order[args.size:args.size + args.dev_size]
    test = ds.test or ds.dev
    folder = work / f"draw{seed}"
    train_set = [ds.train[i] for i in train_idx]
    write_draw(folder, args.dataset_dir, train_set, [ds.train[i] for i in dev_idx])
    texts, y = [e.text for e in test], multi_hot(test, ds.labels).astype(bool)
    counts = multi_hot(train_set, ds.labels).sum(0)
    rarest = [int(j) for j in np.argsort(counts, kind="stable")[:RAREST]]
    out = {"draw": seed, "train": len(train_set), "test": len(test),
           "rarest": [{"label": ds.labels[j], "train": int(counts[j]), "test": int(y[:, j].sum())} for j in rarest]}

    def record(name, predicted, minutes):
        from sklearn.metrics import f1_score

        f1 = per_label_f1(y, predicted)
        out[name] = {"micro": 100 * f1_score(y, predicted, average="micro", zero_division=0),
                     "macro": 100 * f1_score(y, predicted, average="macro", zero_division=0),
                     "rarest": [float(f1[j]) for j in rarest], "minutes": minutes}
        print(f"draw {seed} {name}: {out[name]}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    base = LinearBaseline().fit([e.text for e in train_set], multi_hot(train_set, ds.labels))
    record("TF-IDF + linear SVM", base.predict(texts) >= 0.5, (time.perf_counter() - start) / 60)
    for route in args.routes:
        start = time.perf_counter()
        clf = train(TrainConfig(dataset_dir=str(folder), save_dir=str(folder / route), model_name=args.model_name,
                                progress=False, seed=seed, baseline=False)).classifier
        probs = clf.predict_proba(texts, batch_size=64)
        record(route, probs >= np.asarray(clf.thresholds), (time.perf_counter() - start) / 60)
    return out


def main(argv=None) -> str:
    from labelwise.data.dataset import load_dataset

    args = parse_args(argv)
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    draws = read_draws(args.out)
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.draws):
            if any(d["draw"] == seed for d in draws):
                continue
            draws.append(run_draw(args, ds, seed, Path(scratch)))
            if args.out:
                write_draws(args.out, draws)
    draws.sort(key=lambda d: d["draw"])
    section = format_section(args, draws, started, load_before, os.getloadavg()[0])
    print(section)
    if args.write:
        append_results(section)
    return section


def format_section(args, draws, started, load_before, load_after) -> str:
    cmd = "python benchmarks/small_data.py " + " ".join(sys.argv[1:])
    routes = ["TF-IDF + linear SVM", *args.routes]
    lines = [f"## Small data: {Path(args.dataset_dir).name}, {args.size} training examples, defaults vs the baseline "
             f"({started})", "", f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Encoder: {args.model_name}. Per draw: train {args.size} random training examples, dev {args.dev_size} "
             f"others, test {draws[0]['test']} (the dataset's {'test' if 'goemotions' in args.dataset_dir else 'dev'} "
             f"split); {len(draws)} draws (seeds {', '.join(str(d['draw']) for d in draws)}); load average before/after "
             f"{load_before:.1f} / {load_after:.1f}", "",
             "| route | test micro-F1 | test macro-F1 | minutes per run |", "|---|---:|---:|---:|"]
    for route in routes:
        def stat(metric):
            values = [d[route][metric] for d in draws]
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        lines.append(f"| {route} | {stat('micro')} | {stat('macro')} | "
                     f"{np.mean([d[route]['minutes'] for d in draws]):.1f} |")
    lines += ["", f"Rarest {RAREST} labels of each draw (examples in train / in test): test F1 per route", "",
              "| draw | label | train / test | " + " | ".join(routes) + " |", "|---|---|---:|" + "---:|" * len(routes)]
    for d in draws:
        for k, rare in enumerate(d["rarest"]):
            lines.append(f"| {d['draw']} | {rare['label']} | {rare['train']} / {rare['test']} | "
                         + " | ".join(f"{d[r]['rarest'][k]:.1f}" for r in routes) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The stopping signal of `labelwise select`, simulated: does "successive models agree on the pool" say when more
labels stop paying?

    python benchmarks/label_efficiency/stopping.py --dataset_dir data/divorce [--budget 4000] [--write]
    python benchmarks/label_efficiency/stopping.py --dataset_dir data/goemotions --model_name all-minilm-l6-v2 --max_pool 12000

active_learning.py's simulation (PaddleNLP's few-shot draw to start, --step texts a round chosen by `select`'s auto
strategy and annotated with their gold labels, a logistic head on frozen vectors retrained each round), run past
the usual budget. Each round, the head's decisions on the texts still in the pool are compared with the previous
round's head on the same texts with labelwise.select.stopping (Cohen's kappa over every text × label, as `select`
prints it). The table: when the rule (kappa >= 0.99 three rounds in a row) fires, and how much test micro / macro-F1
the rest of the budget still added after that round (the "x" of "more labels are unlikely to move macro-F1 by more
than x"), per seed and at other kappa levels.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, parser, publish, run_started  # noqa: E402
from active_learning import dev_threshold, f1s, fit_predict, frozen_vectors, pool_and_test  # noqa: E402
from few_shot import draw  # noqa: E402

LEVELS = (0.95, 0.97, 0.98, 0.99)


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "seeds", "write")
    p.add_argument("--step", type=int, default=100)
    p.add_argument("--budget", type=int, default=4000)
    p.add_argument("--max_pool", type=int, default=None)
    p.add_argument("--cache", default="runs/al_cache")
    return p.parse_args(argv)


def run_seed(seed, x_pool, y_pool, x_test, y_test, args) -> list[dict]:
    from labelwise.select.stopping import cohen_kappa
    from labelwise.select.strategies import rank

    rng = np.random.default_rng(1000 + seed)
    start, dev = draw_indices(y_pool, seed)
    labelled, outside, rows, previous = list(start), np.asarray(sorted(dev)), [], None
    mean_labels = float(y_pool[start].sum(1).mean())
    while True:
        rest = np.setdiff1d(np.setdiff1d(np.arange(len(x_pool)), labelled), outside)
        probs_test, probs_rest, probs_dev = fit_predict(x_pool[labelled], y_pool[labelled],
                                                        [x_test, x_pool[rest], x_pool[outside]])
        threshold = dev_threshold(y_pool[outside], probs_dev)
        decisions = probs_rest >= threshold
        kappa = None
        if previous is not None:  # the texts both heads decided on: the rest of the pool now
            old_rest, old_decisions = previous
            _, here, there = np.intersect1d(rest, old_rest, return_indices=True)
            kappa = cohen_kappa(decisions[here], old_decisions[there])
        micro, macro = f1s(y_test, probs_test, threshold)
        rows.append({"labelled": len(labelled), "kappa": kappa, "micro": micro, "macro": macro})
        if len(labelled) >= args.budget or not len(rest):
            return rows
        previous = (rest, decisions)
        chosen, _ = rank("auto", min(args.step, len(rest)), probs=probs_rest,
                         thresholds=np.full(y_pool.shape[1], threshold), mean_labels=mean_labels, rng=rng)
        labelled += [int(rest[i]) for i in chosen]


def draw_indices(y_pool, seed):
    from labelwise.data.dataset import Example

    labels = [str(j) for j in range(y_pool.shape[1])]
    examples = [Example(str(i), tuple(str(j) for j in np.flatnonzero(row))) for i, row in enumerate(y_pool)]
    return draw(examples, labels, 4, np.random.default_rng(seed))


def fires(rows: list[dict], level: float, window: int = 3) -> int | None:
    """Index of the round at which ``window`` successive kappas reach ``level`` (None: never)."""
    run = 0
    for i, row in enumerate(rows):
        run = run + 1 if row["kappa"] is not None and row["kappa"] >= level else 0
        if run >= window:
            return i
    return None


def main(argv=None) -> str:
    from labelwise.data.dataset import load_dataset, multi_hot

    args = parse_args(argv)
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    name = Path(args.dataset_dir).name
    pool, test, _ = pool_and_test(ds, args.max_pool)
    x_pool, x_test = frozen_vectors(args, name, pool, test)
    y_pool, y_test = multi_hot(pool, ds.labels), multi_hot(test, ds.labels)
    runs = []
    for seed in range(args.seeds):
        runs.append(run_seed(seed, x_pool, y_pool, x_test, y_test, args))
        print(f"seed {seed}: {[round(r['kappa'], 3) if r['kappa'] else None for r in runs[-1]]}", file=sys.stderr)
    return publish(format_section(args, runs, name, len(pool), len(test), started, load_before), args.write)


def format_section(args, runs, name, pool_size, test_size, started, load_before) -> str:
    lines = [f"## Stopping signal, simulated: {name}, auto strategy ({started})", "",
             f"Command: `python benchmarks/label_efficiency/stopping.py {' '.join(sys.argv[1:])}`  ", f"Machine: {machine()}  ",
             f"Load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}. Pool {pool_size:,} texts, "
             f"test {test_size:,}; start: 4 per label; {args.step} texts a round up to {args.budget}; frozen "
             f"{args.model_name} vectors + logistic head (active_learning.py's simulation); {len(runs)} seeds.", "",
             "| rule: kappa ≥ level, 3 rounds in a row | fired at (labels, per seed) | micro-F1 still gained by the "
             f"end ({args.budget}) | macro-F1 still gained | labels saved |", "|---|---|---:|---:|---:|"]
    for level in LEVELS:
        at, micro, macro, saved = [], [], [], []
        for rows in runs:
            i = fires(rows, level)
            if i is None:
                at.append("never")
                continue
            at.append(str(rows[i]["labelled"]))
            micro.append(rows[-1]["micro"] - rows[i]["micro"])
            macro.append(rows[-1]["macro"] - rows[i]["macro"])
            saved.append(rows[-1]["labelled"] - rows[i]["labelled"])
        gain = (lambda v: f"{np.mean(v):+.2f} (max {max(v):+.2f})" if v else "")
        lines.append(f"| {level} | {', '.join(at)} | {gain(micro)} | {gain(macro)} | "
                     f"{np.mean(saved):.0f} |" if saved else f"| {level} | {', '.join(at)} | | | |")
    lines += ["", "Per round (seed 0): labels → kappa with the previous round, test micro / macro-F1:", "",
              "| labels | kappa | micro / macro |", "|---:|---:|---:|"]
    for row in runs[0][::max(1, len(runs[0]) // 16)]:
        kappa = f"{row['kappa']:.3f}" if row["kappa"] is not None else ""
        lines.append(f"| {row['labelled']} | {kappa} | {row['micro']:.2f} / {row['macro']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

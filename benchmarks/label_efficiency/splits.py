"""Annotation splits: random vs stratified train/dev/test splits of divorce, as `labelwise doccano --splits` makes them.

    python benchmarks/label_efficiency/splits.py [--dataset_dir data/divorce] [--splits 0.8 0.1 0.1] [--seeds 10]
                                [--pools 0 2000 500] [--write]

divorce's train and dev are pooled and written as a doccano JSONL export, read back with ``read_doccano``
(as an annotation import would), and split at ``--splits`` with ``--seeds`` random seeds by three methods:
``random`` (a seeded shuffle cut at the ratios: `--stratify false`), ``iterstrat`` (iterative stratification
alone, the ``iterative-stratification`` package) and ``stratified`` (labelwise's default: iterative
stratification, then a label with at least as many examples as splits swaps one example into a split that has
none). ``--pools``: the number of pooled examples split (a seeded random subset; 0 = all), since rare labels
only go missing from small data. No model is trained: it runs in seconds.

Per method and pool, means over the random seeds: labels with no dev example and with no test example (and the most in
any seed), the per-label proportion error (how far each label's share of its examples in a split is from that
split's ratio, in percentage points, averaged over labels and splits; and the worst label), and the split sizes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import publish, run_started  # noqa: E402

NAMES = ("train", "dev", "test")


def iterstrat_only(examples, splits, seed: int) -> list[np.ndarray]:
    """Iterative stratification without labelwise's swap for labels a split lacks (same shuffle and seed)."""
    from iterstrat.ml_stratifiers import IterativeStratification

    from labelwise.data.annotation import label_matrix

    order = np.random.default_rng(seed).permutation(len(examples))
    y = label_matrix(examples, sorted({label for e in examples for label in e.labels}))
    split_of = np.empty(len(examples), dtype=int)
    split_of[order] = IterativeStratification(labels=y[order], r=np.asarray(splits, dtype=float),
                                              random_state=np.random.RandomState(seed))
    return [order[split_of[order] == k] for k in range(len(splits))]


def measure(examples, labels, parts, splits) -> dict:
    """Labels missing per split, the per-label proportion error (percentage points) and the split sizes."""
    from labelwise.data.annotation import label_counts

    names = NAMES[:len(splits)]
    counts = label_counts(examples, labels, dict(zip(names, parts)))
    errors = np.array([[100 * abs(c[name] / max(1, sum(c.values())) - ratio) for name, ratio in zip(names, splits)]
                       for c in counts.values()])  # labels × splits
    out = {f"no_{name}": sum(1 for c in counts.values() if not c[name]) for name in names[1:]}
    return out | {"error": float(errors.mean()), "worst": float(errors.max()), "sizes": [len(p) for p in parts]}


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--splits", type=float, nargs="+", default=[0.8, 0.1, 0.1])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--pools", type=int, nargs="+", default=[0, 2000, 500], help="examples split (0 = all)")
    p.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args(argv)

    from labelwise.data.annotation import check_splits, read_doccano, split_indices, write_doccano
    from labelwise.data.dataset import load_dataset

    splits = check_splits(args.splits)
    if len(splits) != 3:
        raise SystemExit("--splits: give train, dev and test ratios")
    started, _ = run_started()
    ds = load_dataset(args.dataset_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the pooled data as an annotation tool exports it
        pooled = read_doccano(write_doccano(Path(tmp) / "doccano.jsonl", ds.train + ds.dev))
    methods = {"random": lambda ex, seed: split_indices(ex, splits, seed=seed, stratify=False),
               "iterstrat": lambda ex, seed: iterstrat_only(ex, splits, seed),
               "stratified": lambda ex, seed: split_indices(ex, splits, seed=seed)}
    rows = []
    for pool in args.pools:
        for seed in range(args.seeds):
            subset = np.random.default_rng(1000 + seed).permutation(len(pooled))[:pool] if pool else range(len(pooled))
            examples = [pooled[i] for i in subset]
            labels = sorted({label for e in examples for label in e.labels})
            rarest = min(sum(label in e.labels for e in examples) for label in labels)
            for method, split in methods.items():
                rows.append({"pool": len(examples), "method": method, "seed": seed, "labels": len(labels),
                             "rarest": rarest, **measure(examples, labels, split(examples, seed), splits)})
        print(f"pool {pool or len(pooled)}: done", file=sys.stderr, flush=True)

    ratios = " / ".join(f"{r:g}" for r in splits)
    name = Path(args.dataset_dir).name
    lines = [f"## Annotation splits: random vs stratified, {name} train + dev pooled ({started})",
             "", f"Command: `{' '.join(['python benchmarks/label_efficiency/splits.py', *sys.argv[1:]])}`  ",
             f"{len(pooled):,} examples ({len(ds.train):,} train + {len(ds.dev):,} dev, read back from a doccano "
             "export), "
             f"{len(ds.labels)} labels, split {ratios} with {args.seeds} random seeds; pools under the full size are "
             "random subsets (one per seed). Means over the random seeds (most in one random seed in brackets). "
             "Proportion error: "
             "how far a label's share of its examples in a split is from the split's ratio, in percentage points, "
             "mean over labels and splits (worst label in one random seed in brackets). No model is involved.", "",
             "| pooled examples (rarest label) | method | labels with no dev example | no test example | "
             "proportion error, pp | dev size | test size |", "|---|---|---:|---:|---:|---:|---:|"]
    for pool in dict.fromkeys(r["pool"] for r in rows):
        for method in methods:
            group = [r for r in rows if r["pool"] == pool and r["method"] == method]
            rarest = f"{min(r['rarest'] for r in group)}–{max(r['rarest'] for r in group)}"

            def mean_max(key, group=group):
                values = [r[key] for r in group]
                return f"{np.mean(values):.1f} ({max(values)})"

            dev = [r["sizes"][1] for r in group]
            test = [r["sizes"][2] for r in group]
            lines.append(f"| {pool:,} ({rarest}) | {method} | {mean_max('no_dev')} | {mean_max('no_test')} | "
                         f"{np.mean([r['error'] for r in group]):.2f} ({max(r['worst'] for r in group):.1f}) | "
                         f"{min(dev)}–{max(dev)} | {min(test)}–{max(test)} |")
    return publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()

"""Small real datasets: `labelwise train`'s defaults vs the built-in TF-IDF + linear SVM on 1–2k training examples.

    python benchmarks/accuracy/small_data.py --dataset_dir data/divorce --size 1500 --draws 2 [--write]
    python benchmarks/accuracy/small_data.py --dataset_dir data/goemotions --size 1500 --draws 2

Each draw (seed = draw number): ``--size`` random training examples (the user's labelled data, as it comes, rare
labels rare) and ``--dev_size`` other training examples for dev; test is the dataset's test split, or its dev
split where it has no test (divorce). Routes: `default` (`labelwise train` with its defaults) and the baseline
every `labelwise train` fits beside the model; from the same trained model, the blend with that baseline
(labelwise.model.blend) turned off, and refitted with other shrinkage strengths. Reported: test micro/macro-F1 at each route's own decision (tuned thresholds for the
models, the SVM's sign for the baseline), mean ± std over draws, and the test F1 of the rarest labels (fewest
examples in the draw's train).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import parser, publish, read_draws, run_started, section_head, write_draws  # noqa: E402
from few_shot import write_draw  # noqa: E402

RAREST = 3
RARE_TRAIN = 50  # the blend variants that leave labels with this many training examples or more to the model


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir")
    p.add_argument("--model_name", default=None, help="default: as `labelwise train` chooses (the texts' script)")
    p.add_argument("--size", type=int, default=1500)
    p.add_argument("--dev_size", type=int, default=300)
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--routes", nargs="+", default=["default"], choices=["default"])
    p.add_argument("--out", default=None, help="also write the per-draw numbers here (JSON); draws already there "
                   "are kept and not run again, and the section covers them all")
    p.add_argument("--keep_probs", default=None, metavar="DIR", help="save each draw's dev/test probabilities and "
                   "baseline decisions here (.npz), to compare blend rules without training again")
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
                                progress=False, seed=seed, blend="on")).classifier
        assert (clf.blend is None) == (not clf.meta.blend), "the trained model in memory predicts as its folder"
        minutes = (time.perf_counter() - start) / 60
        probs = clf.predict_proba(texts, batch_size=64)
        record(f"{route}, blend on", probs >= np.asarray(clf.thresholds), minutes)
        out[f"{route}, blend on"]["blended_labels"] = clf.blend.blended if clf.blend else 0
        out["encoder"] = clf.meta.base_model
        keep = Path(args.keep_probs) / f"{Path(args.dataset_dir).name}-draw{seed}.npz" if args.keep_probs else None
        blend_variants(clf, base.scorer(), [ds.train[i] for i in dev_idx], texts, ds.labels, record, route, counts,
                       keep)
        out[route]["minutes"] = minutes  # the same model's training time
    return out


def blend_variants(clf, scorer, dev_set, texts, labels, record, route, train_counts, keep=None) -> None:
    """The same trained model without the blend, and with other shrinkage strengths, each with thresholds tuned
    on dev as training tunes them."""
    from labelwise.data.dataset import multi_hot
    from labelwise.evaluation.decision import logit, sigmoid
    from labelwise.evaluation.metrics import tune_thresholds
    from labelwise.model.blend import fit_blend

    clf.blend = None
    dev_texts, y_dev = [e.text for e in dev_set], multi_hot(dev_set, labels)
    dev_p, test_p = clf.predict_proba(dev_texts, batch_size=64), clf.predict_proba(texts, batch_size=64)
    record(route, test_p >= tune_thresholds(y_dev, dev_p), None)  # the default: blend off

    svm_dev, svm_test = scorer.decision_function(dev_texts), scorer.decision_function(texts)
    dev_z, test_z = logit(dev_p, eps=1e-7), logit(test_p, eps=1e-7)  # as training inverts them (training.scoring)
    if keep:  # what every blend variant is computed from, to try others without training again
        np.savez_compressed(keep, dev_probs=dev_p, test_probs=test_p, dev_svm=svm_dev, y_dev=y_dev,
                            test_svm=svm_test, train_counts=train_counts)
    rare = train_counts < RARE_TRAIN
    for name, k, eligible in (("k 0 (own weight)", 0.0, None), ("k ∞ (one shared weight)", 1e12, None),
                              (f"k 10, labels with < {RARE_TRAIN} training examples", 10.0, rare),
                              (f"k 0, labels with < {RARE_TRAIN} training examples", 0.0, rare)):
        b = fit_blend(dev_z, svm_dev, y_dev, scorer, shrinkage=k, eligible=eligible)
        if b is None:
            record(f"{route}, blend on, {name}", test_p >= tune_thresholds(y_dev, dev_p), None)
            continue
        dev_b, test_b = sigmoid(b.mix(dev_z, svm_dev)), sigmoid(b.mix(test_z, svm_test))
        record(f"{route}, blend on, {name}", test_b >= tune_thresholds(y_dev, dev_b), None)


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
    return publish(section, args.write)


def format_section(args, draws, started, load_before, load_after) -> str:
    routes = ["TF-IDF + linear SVM"] + [name for r in args.routes for name in draws[0] if name.startswith(r)]
    lines = section_head(f"Small data: {Path(args.dataset_dir).name}, {args.size} training examples, defaults vs the "
                         "baseline", started, load_before)
    test_split = "test" if "goemotions" in args.dataset_dir else "dev"
    lines += [f"Encoder: {draws[0].get('encoder', args.model_name)}. Per draw: train {args.size} random training "
              f"examples, dev {args.dev_size} others, test {draws[0]['test']} (the dataset's {test_split} split); "
              f"{len(draws)} draws (seeds {', '.join(str(d['draw']) for d in draws)}).", "",
              "| route | test micro-F1 | test macro-F1 | minutes per run |", "|---|---:|---:|---:|"]
    for route in routes:
        def stat(metric):
            values = [d[route][metric] for d in draws]
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        minutes = [d[route]["minutes"] for d in draws if d.get(route, {}).get("minutes") is not None]
        lines.append(f"| {route} | {stat('micro')} | {stat('macro')} | "
                     f"{f'{np.mean(minutes):.1f}' if minutes else 'same run'} |")
    lines += ["", f"Rarest {RAREST} labels of each draw (examples in train / in test): test F1 per route", "",
              "| draw | label | train / test | " + " | ".join(routes) + " |", "|---|---|---:|" + "---:|" * len(routes)]
    for d in draws:
        for k, rare in enumerate(d["rarest"]):
            lines.append(f"| {d['draw']} | {rare['label']} | {rare['train']} / {rare['test']} | "
                         + " | ".join(f"{d[r]['rarest'][k]:.1f}" for r in routes) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

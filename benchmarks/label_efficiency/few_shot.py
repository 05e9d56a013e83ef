"""Few-shot and zero-shot vs plain fine-tuning on a few examples per label (PaddleNLP's few-shot protocol).

    python benchmarks/label_efficiency/few_shot.py --dataset_dir data/divorce [--draws 5] [--write]
    python benchmarks/label_efficiency/few_shot.py --dataset_dir data/goemotions --model_name all-minilm-l6-v2 [--write]

Each draw (seed = draw number): --per_label examples of every label for train (4 × 20 labels = 80 on divorce),
as many other examples per label for dev, and the test set from the remaining training examples (PaddleNLP
uses all of them; here a random --test_size of them, the same for every route of a draw, to keep a draw to
minutes on a CPU). Routes: `labelwise train` with its defaults (plain fine-tuning, the accuracy issue's
recipe), `labelwise train --few_shot`, `labelwise zeroshot` (label names only; dev used for thresholds), and the
built-in TF-IDF + linear SVM baseline. Test micro/macro-F1 at the thresholds each route tuned on its dev (honest:
test is separate) and at 0.5; mean ± std over draws; minutes per run.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import parser, publish, run_started, section_head  # noqa: E402

PADDLENLP = {"fine-tuning": (74.19, 51.05), "prompt learning": (78.38, 69.85)}  # its few-shot README, divorce


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "per_label", "draws", "first_draw", "test_size", "out", "write")
    p.add_argument("--routes", nargs="+", default=["plain", "few-shot", "zero-shot"],
                   choices=["plain", "few-shot", "few-shot+augment", "zero-shot"])
    p.add_argument("--create_n", type=int, default=4, help="few-shot+augment: new texts per example (synonym mix)")
    p.add_argument("--probs", default=None, help="keep each route's dev and test probabilities here (npz)")
    return p.parse_args(argv)


def draw(examples, labels, per_label: int, rng) -> tuple[list[int], list[int]]:
    """Indices of train and dev: for each label in turn, ``per_label`` unused examples that carry it."""
    order = rng.permutation(len(examples))
    used, train, dev = set(), [], []
    for split in (train, dev):
        for label in labels:
            picked = [i for i in order if i not in used and label in examples[i].labels][:per_label]
            split += picked
            used.update(picked)
    return train, dev


def split_draw(ds, per_label: int, test_size: int, seed: int):
    """(train, dev, test) indices into ds.train of draw ``seed``."""
    rng = np.random.default_rng(seed)
    train_idx, dev_idx = draw(ds.train, ds.labels, per_label, rng)
    rest = np.setdiff1d(np.arange(len(ds.train)), train_idx + dev_idx)
    test_idx = rng.choice(rest, size=min(test_size, len(rest)), replace=False)
    return train_idx, dev_idx, test_idx


def write_split(folder: Path, name: str, examples) -> None:
    folder.joinpath(name).write_text("".join(f"{e.text}\t{','.join(e.labels)}\n" for e in examples), encoding="utf-8")


def write_draw(folder: Path, dataset_dir, train, dev) -> None:
    """A draw's dataset folder: the dataset's label.txt, and the draw's train and dev examples."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.txt").write_text((Path(dataset_dir) / "label.txt").read_text(encoding="utf-8"), encoding="utf-8")
    write_split(folder, "train.txt", train)
    write_split(folder, "dev.txt", dev)


def augmented_draw(folder: Path, dataset_dir, train, dev, create_n: int, seed: int) -> None:
    """The draw with each training example followed by ``create_n`` rewrites of it (``labelwise data augment``'s
    synonym mix: substitute, insert, delete, swap in turn); dev is left as it is."""
    from labelwise.analysis.augment import WordAugmenter, augment_examples

    created, _ = augment_examples(train, WordAugmenter("mix", "synonym", create_n=create_n, seed=seed))
    write_draw(folder, dataset_dir, list(train) + created, dev)


def score(y, probs, labels, thresholds) -> dict:
    from labelwise.evaluation.metrics import evaluate_predictions

    m = evaluate_predictions(y, probs, labels, thresholds)
    return {"micro": m["micro"]["f1"], "macro": m["macro"]["f1"]}


def keep_probs(args, seed: int, route: str, clf, test_probs, y_test, dev, ds, train=(), test=()) -> None:
    """With --probs DIR: the route's dev and test probabilities, labels and thresholds (float16), to compare
    decision rules afterwards without training again; for the few-shot route also the text vectors the head
    reads (test, dev, train, and the label names), to try other heads on the tuned encoder."""
    if not args.probs:
        return
    from labelwise.data.dataset import multi_hot, read_label_words

    vectors = {}
    if route == "few-shot":
        names = list(read_label_words(Path(args.dataset_dir) / "label.txt").values())
        vectors = {f"f_{split}": clf.features([e.text for e in examples]).astype(np.float16)
                   for split, examples in (("test", test), ("dev", dev), ("train", train))}
        vectors.update(f_names=clf.features(names).astype(np.float16), y_train=multi_hot(train, ds.labels).astype(bool))
    Path(args.probs).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(args.probs) / f"draw{seed}-{route}.npz", test=test_probs.astype(np.float16),
                        y_test=y_test.astype(bool), dev=clf.predict_proba([e.text for e in dev]).astype(np.float16),
                        y_dev=multi_hot(dev, ds.labels).astype(bool), thresholds=np.asarray(clf.thresholds), **vectors)


def run_draw(args, ds, seed: int, work: Path) -> dict:
    from labelwise.data.dataset import multi_hot
    from labelwise.training.baseline import LinearBaseline
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train
    from labelwise.training.zeroshot import zero_shot

    train_idx, dev_idx, test_idx = split_draw(ds, args.per_label, args.test_size, seed)
    train_set, dev_set, test = ([ds.train[i] for i in idx] for idx in (train_idx, dev_idx, test_idx))
    folder = work / f"draw{seed}"
    write_draw(folder, args.dataset_dir, train_set, dev_set)
    texts, y = [e.text for e in test], multi_hot(test, ds.labels)
    out = {"train": len(train_idx), "dev": len(dev_idx), "test": len(test)}
    for route in args.routes:
        start = time.perf_counter()
        data = folder
        if route == "few-shot+augment":
            data = work / f"draw{seed}-augment"
            augmented_draw(data, args.dataset_dir, train_set, dev_set, args.create_n, seed)
        if route == "zero-shot":
            clf = zero_shot(str(folder), str(folder / route), args.model_name)
        else:
            clf = train(TrainConfig(dataset_dir=str(data), save_dir=str(folder / route), model_name=args.model_name,
                                    few_shot=route.startswith("few-shot"), progress=False, seed=seed,
                                    baseline=route == "plain")).classifier
        probs = clf.predict_proba(texts)
        keep_probs(args, seed, route, clf, probs, y, dev_set, ds, train=train_set, test=test)
        out[route] = {"tuned": score(y, probs, ds.labels, clf.thresholds), "0.5": score(y, probs, ds.labels, 0.5),
                      "minutes": (time.perf_counter() - start) / 60}
        print(f"draw {seed} {route}: {out[route]}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    base = LinearBaseline().fit([e.text for e in train_set], multi_hot(train_set, ds.labels))
    predicted = base.predict(texts)
    out["TF-IDF + linear SVM"] = {"tuned": score(y, predicted, ds.labels, 0.5), "0.5": score(y, predicted, ds.labels, 0.5),
                                  "minutes": (time.perf_counter() - start) / 60}
    return out


def main(argv=None) -> str:
    from labelwise.data.dataset import load_dataset

    args = parse_args(argv)
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    with tempfile.TemporaryDirectory() as scratch:
        draws = [run_draw(args, ds, seed, Path(scratch))
                 for seed in range(args.first_draw, args.first_draw + args.draws)]
    if args.out:
        Path(args.out).write_text(json.dumps(draws, ensure_ascii=False, indent=2))
    section = format_section(args, draws, started, load_before, os.getloadavg()[0])
    return publish(section, args.write)


def format_section(args, draws, started, load_before, load_after) -> str:
    first = draws[0]
    lines = section_head(f"Few-shot and zero-shot: {Path(args.dataset_dir).name}, {args.per_label} examples per "
                         "label", started, load_before)
    seeds = f"{args.first_draw}..{args.first_draw + len(draws) - 1}"
    lines += [f"Encoder: {args.model_name}. Per draw: train {first['train']}, dev {first['dev']}, test {first['test']} "
              f"(random, from the remaining training examples); {len(draws)} draws (seeds {seeds}).", "",
              "| route | test micro-F1 (dev-tuned thresholds) | test macro-F1 (dev-tuned) | micro / macro at 0.5 "
              "| minutes per run |", "|---|---:|---:|---:|---:|"]
    for route in [*args.routes, "TF-IDF + linear SVM"]:
        def stat(setting, metric):
            values = [d[route][setting][metric] for d in draws]
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        minutes = np.mean([d[route]["minutes"] for d in draws])
        lines.append(f"| {route} | {stat('tuned', 'micro')} | {stat('tuned', 'macro')} | {stat('0.5', 'micro')} / "
                     f"{stat('0.5', 'macro')} | {minutes:.1f} |")
    if "divorce" in str(args.dataset_dir):
        for name, (micro, macro) in PADDLENLP.items():
            lines.append(f"| PaddleNLP {name} (published: ERNIE 3.0 Base, V100, mean of 10) | {micro:.2f} | "
                         f"{macro:.2f} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

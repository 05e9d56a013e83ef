"""Label trees with a fine-tuned model: flat vs consistent decisions (and a leaves-only model), per level.

    python benchmarks/accuracy/hierarchy.py --dataset_dir data/goemotions_ekman --model_name all-minilm-l6-v2 [--write]
    python benchmarks/accuracy/hierarchy.py --dataset_dir data/divorce_tree [--write]
    python benchmarks/accuracy/hierarchy.py --dataset_dir data/goemotions_ekman --model_name all-minilm-l6-v2 --zeroshot_names

Fine-tuning: one model trained with `labelwise train`'s defaults on every node of the tree (PaddleNLP's
hierarchical recipe: the paths flattened into one multi-label problem). Its test probabilities (dev for a folder
without test.txt) then go through each setting of the decision rule (labelwise.evaluation.decision):

* ``none``: the raw per-label decisions, what a flat multi-label model outputs (a child may come without its parent);
* ``consistent`` with each rule for a child chosen without its parent: ``add`` (the child brings its parent),
  ``drop`` (the child goes) and ``sum`` (the ancestor-closed label set with the largest sum of margins); the
  table marks labelwise's default rule.

Each at the thresholds tuned on dev by training (the checkpoint's) and at 0.5. ``--leaf_model`` also trains a
second model on the leaves alone (parent labels taken out of the data, ``--hierarchy_sep none``) whose parents
are then the parents of its predicted leaves: consistent by construction, and a tree-aware alternative to
training every node. Figures: micro/macro-F1 and exact-match accuracy over every node, the same per level
(PaddleNLP's "Level N Label Performance"), and how many texts the raw decisions gave a child without its parent.

Fine-tuning all of GoEmotions takes hours on 2 CPU cores: ``--max_train`` (a seeded random subset, as
``labelwise train --max_train_samples``), ``--max_eval`` (the first N test texts are scored; training picks its
epoch and tunes thresholds on a random N of dev, ``--max_dev_samples``) and ``--epochs`` make cheaper runs; the
section says which were used.

``--zeroshot_names``: no fine-tuning; `labelwise zeroshot` twice, embedding a tree label as the last element of
its path (``amusement``) or as the whole path in words (``joy amusement``), on the first ``--max_train`` (default
here 1000) train, ``--max_eval`` dev (thresholds) and test texts; the same figures, consistent decisions.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, parser, publish, run_started  # noqa: E402

SETTINGS = (("none", "add"), ("consistent", "add"), ("consistent", "drop"), ("consistent", "sum"))


def parse_args(argv=None) -> argparse.Namespace:
    p = parser(__doc__, "dataset_dir", "model_name", dataset_dir="data/divorce_tree")
    p.add_argument("--epochs", type=int, default=None, help="default: labelwise's (by dataset size)")
    p.add_argument("--max_train", type=int, default=None, help="train on a seeded random subset of this size")
    p.add_argument("--max_eval", type=int, default=None, help="score the first N test texts; tune on N of dev")
    p.add_argument("--leaf_model", action="store_true", help="also train a model on the leaves alone")
    p.add_argument("--zeroshot_names", action="store_true", help="zero-shot label names: last element vs path")
    p.add_argument("--save_dir", default=None, help="default runs/hierarchy-<dataset>-<model>")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    return p.parse_args(argv)


def scores(y: np.ndarray, chosen: np.ndarray, tree) -> dict:
    """Every-node and per-level figures of a 0/1 decision matrix (percent)."""
    from labelwise.evaluation.levels import level_metrics
    from labelwise.evaluation.metrics import f1_scores

    micro, macro = f1_scores(y, chosen)
    return {"micro": micro, "macro": macro, "accuracy": 100 * float(np.mean(np.all(y == chosen, axis=1))),
            "levels": level_metrics(y, chosen, tree), "inconsistent": int(tree.inconsistent(chosen).sum())}


def decide_all(y, probs, tuned, tree) -> list[dict]:
    from labelwise.evaluation.decision import DEFAULT_RULE, decision_matrix

    rows = []
    for name, thresholds in (("tuned on dev", tuned), ("0.5", 0.5)):
        raw = decision_matrix(probs, thresholds, hierarchy=tree, mode="none")
        for mode, rule in SETTINGS:
            chosen = decision_matrix(probs, thresholds, hierarchy=tree, mode=mode, rule=rule)
            label = f"{rule}{' (default)' if rule == DEFAULT_RULE else ''}" if mode == "consistent" else "none (flat)"
            rows.append({"decision": label, "thresholds": name,
                         "broken": int(tree.inconsistent(raw).sum()), **scores(y, chosen, tree)})
    return rows


def subset(examples: list, n: int | None) -> list:
    return list(examples) if n is None else list(examples)[:n]


def leaf_rows(args, ds, eval_set, y, save_dir: Path) -> list[dict]:
    """A model trained on the leaves alone; each predicted leaf brings its ancestors."""
    from labelwise import Classifier
    from labelwise.data.dataset import Example, save_dataset
    from labelwise.evaluation.decision import decision_matrix
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    tree = ds.hierarchy
    leaves = [label for i, label in enumerate(ds.labels) if not tree.children(i)]
    keep = set(leaves)
    folder = save_dir.parent / f"{save_dir.name}-leaves-data"
    splits = {name: [Example(e.text, tuple(x for x in e.labels if x in keep)) for e in split]
              for name, split in (("train", ds.train), ("dev", ds.dev), ("test", ds.test or [])) if split}
    save_dataset(folder, leaves, splits)
    train(TrainConfig(dataset_dir=str(folder), save_dir=str(save_dir) + "-leaves", model_name=args.model_name,
                      epochs=args.epochs, max_train_samples=args.max_train, max_dev_samples=args.max_eval,
                      seed=args.seed, hierarchy_sep="none", progress=False))
    clf = Classifier.load(str(save_dir) + "-leaves")
    probs = clf.predict_proba([e.text for e in eval_set], batch_size=64)
    rows = []
    for name, thresholds in (("tuned on dev", clf.thresholds), ("0.5", 0.5)):
        chosen_leaves = decision_matrix(probs, thresholds)
        chosen = np.zeros((len(eval_set), len(ds.labels)), dtype=np.int8)
        chosen[:, [ds.labels.index(x) for x in leaves]] = chosen_leaves
        rows.append({"decision": "leaves-only model, parents from leaves", "thresholds": name, "broken": 0,
                     **scores(y, tree.close(chosen), tree)})
    return rows


def fine_tune(args) -> tuple[list[dict], dict]:
    from labelwise import Classifier
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    ds = load_dataset(args.dataset_dir)
    save_dir = Path(args.save_dir or f"runs/hierarchy-{Path(args.dataset_dir).name}-{Path(args.model_name).name}")
    start = time.perf_counter()
    result = train(TrainConfig(dataset_dir=args.dataset_dir, save_dir=str(save_dir), model_name=args.model_name,
                               epochs=args.epochs, max_train_samples=args.max_train, max_dev_samples=args.max_eval,
                               seed=args.seed, progress=False))
    split = "test" if ds.test else "dev"
    eval_set = subset(ds.test or ds.dev, args.max_eval)
    clf = Classifier.load(save_dir)
    y = multi_hot(eval_set, ds.labels).astype(np.int8)
    rows = decide_all(y, clf.predict_proba([e.text for e in eval_set], batch_size=64), clf.thresholds, ds.hierarchy)
    if args.leaf_model:
        rows += leaf_rows(args, ds, eval_set, y, save_dir)
    targs = json.loads((save_dir / "labelwise.json").read_text())["training_args"]
    info = {"split": split, "size": len(eval_set), "epochs": targs["epochs"], "best_epoch": result.best_epoch,
            "train_size": len(ds.train) if args.max_train is None else min(args.max_train, len(ds.train)),
            "minutes": (time.perf_counter() - start) / 60, "tree": ds.hierarchy}
    return rows, info


def zero_shot_names(args) -> tuple[list[dict], dict]:
    import tempfile

    from labelwise.data.dataset import load_dataset, multi_hot, save_dataset
    from labelwise.evaluation.decision import decision_matrix
    from labelwise.training.zeroshot import LABEL_NAMINGS, zero_shot

    ds = load_dataset(args.dataset_dir)
    n_eval = args.max_eval or 1000
    dev, test = subset(ds.dev, n_eval), subset(ds.test, n_eval) if ds.test else None
    if test is None:  # no test split: the first half of the dev texts tunes, the second half scores
        dev, test = dev[:len(dev) // 2], dev[len(dev) // 2:]
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="labelwise-zs-") as work:
        folder = save_dataset(Path(work) / "data", ds.labels, {
            "train": subset(ds.train, args.max_train or 1000), "dev": dev})  # test scored here, once
        y = multi_hot(test, ds.labels).astype(np.int8)
        for naming in LABEL_NAMINGS:
            clf = zero_shot(str(folder), str(Path(work) / naming), args.model_name, label_naming=naming)
            probs = clf.predict_proba([e.text for e in test], batch_size=64)
            chosen = decision_matrix(probs, clf.thresholds, hierarchy=ds.hierarchy)
            rows.append({"decision": f"names: {naming}", "thresholds": "tuned on dev", "broken": 0,
                         **scores(y, chosen, ds.hierarchy)})
    return rows, {"split": "test" if ds.test else "dev (second half)", "size": len(test), "tree": ds.hierarchy,
                  "minutes": (time.perf_counter() - start) / 60}


def section(args, rows: list[dict], info: dict, started: str, load: float, argv) -> str:
    tree = info["tree"]
    command = "python benchmarks/accuracy/hierarchy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.zeroshot_names:
        title = f"Zero-shot names of tree labels: {args.model_name} on {args.dataset_dir} ({started})"
        how = ("`labelwise zeroshot` (no fine-tuning), consistent decisions at the thresholds it tunes on dev. "
               "*last*: a tree label is embedded as its path's last element; *path*: as the whole path in words.")
    else:
        title = f"Label trees, fine-tuned: {args.model_name} on {args.dataset_dir} ({started})"
        how = (f"`labelwise train` defaults on every node, epochs: {info['epochs']} (best {info['best_epoch']}), "
               f"{info['train_size']} training texts{' (a random subset)' if args.max_train else ''}. *broken*: "
               "texts whose raw decisions had a label without its parent (0 after every rule but none).")
    levels = " | ".join(f"level {k + 1} micro / macro / acc" for k in range(tree.depth))
    out = [f"## {title}", "", f"Command: `{command.strip()}`  ", f"Machine: {machine()}; load average {load:.1f} "
           f"at the start; {info['minutes']:.1f} min.  ",
           f"Scored on {info['split']}, {info['size']} texts; {len(tree.labels)} labels "
           f"({' + '.join(str(len(ids)) for ids in tree.levels)} per level). {how}", "",
           f"| decision | thresholds | micro-F1 | macro-F1 | accuracy | {levels} | broken |",
           "|---|---|---:|---:|---:|" + "---|" * tree.depth + "---:|"]
    for r in rows:
        per_level = " | ".join(f"{lv['micro_f1']:.2f} / {lv['macro_f1']:.2f} / {lv['accuracy']:.2f}"
                               for lv in r["levels"])
        out.append(f"| {r['decision']} | {r['thresholds']} | {r['micro']:.2f} | {r['macro']:.2f} | "
                   f"{r['accuracy']:.2f} | {per_level} | {r['broken']} |")
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    started, load = run_started()
    rows, info = zero_shot_names(args) if args.zeroshot_names else fine_tune(args)
    publish(section(args, rows, info, started, load, argv), args.write)
    return rows


if __name__ == "__main__":
    main()

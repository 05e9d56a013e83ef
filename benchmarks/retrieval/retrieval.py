"""Retrieval-based classification vs the fine-tuned classifier, and labels added to an index without training.

    python benchmarks/retrieval/retrieval.py --dataset_dir data/divorce --params_path runs/accuracy-divorce-m3e-small [--write]
    python benchmarks/retrieval/retrieval.py --dataset_dir data/goemotions --params_path runs/accuracy-goemotions-default \
        --encoder all-minilm-l6-v2 [--write]

1. Indexes of the training set (plus label names): built on the bare sentence encoder (--encoder) and on the
   fine-tuned checkpoint's vectors (--params_path); dev micro/macro-F1 at the thresholds the index tuned on dev
   (k chosen there too; optimistic, like the classifier's dev@tuned) and at the fine-tuned classifier's own
   stored dev@tuned; ms/query (batch 32, embedding included), index build time, index size.
2. Open labels: the two --open_labels are removed from the training texts of an encoder index (rows carrying them
   go, label-name rows too); their dev F1 is measured; then their training examples are added with
   `add_to_index` (no training) and their dev F1 measured again.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, publish, run_started  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--params_path", default="runs/accuracy-divorce-m3e-small", help="fine-tuned checkpoint")
    p.add_argument("--encoder", default="m3e-small", help="bare sentence encoder for the untrained index")
    p.add_argument("--open_labels", nargs=2, default=None, help="default: the 2nd and 3rd most frequent labels")
    p.add_argument("--write", action="store_true")
    return p.parse_args(argv)


def folder_size(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir()) / 2**20


def per_label_f1(clf, dev, labels, names) -> dict:
    from labelwise.data.dataset import multi_hot
    from labelwise.evaluation.metrics import evaluate_predictions

    probs = clf.predict_proba([e.text for e in dev])
    y = multi_hot(dev, clf.labels)
    m = evaluate_predictions(y, probs, clf.labels, clf.thresholds)
    f1 = {row["label"]: row["f1"] for row in m["per_label"]}
    return {name: f1[name] for name in names}, m


def main(argv=None) -> str:
    from labelwise.data.dataset import load_dataset
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.retrieval import Encoder
    from labelwise.training.index import add_to_index, build_index

    args = parse_args(argv)
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    dev_texts = [e.text for e in ds.dev]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, source in (("index on the bare encoder", args.encoder),
                             ("index on the fine-tuned checkpoint", args.params_path)):
            start = time.perf_counter()
            clf = build_index(source, args.dataset_dir, str(scratch / name.replace(" ", "_")), vector_db="file",
                              progress=False)
            build = time.perf_counter() - start
            start = time.perf_counter()
            clf.predict_proba(dev_texts)
            ms = 1000 * (time.perf_counter() - start) / len(dev_texts)
            dev = clf.meta.metrics["dev@tuned"]
            rows.append((name, dev["micro_f1"], dev["macro_f1"], ms, build, folder_size(clf.path),
                         f"k {clf.backend.k}, {clf.backend.size} vectors"))
        fine = Classifier.load(args.params_path)
        start = time.perf_counter()
        fine.predict_proba(dev_texts)
        ms = 1000 * (time.perf_counter() - start) / len(dev_texts)
        dev = fine.meta.metrics["dev@tuned"]
        rows.append(("fine-tuned classifier (PyTorch)", dev["micro_f1"], dev["macro_f1"], ms, None, None, ""))

        counts = {l: sum(l in e.labels for e in ds.train) for l in ds.labels}
        opened = args.open_labels or sorted(ds.labels, key=counts.get, reverse=True)[1:3]
        kept = scratch / "kept"
        kept.mkdir()
        (kept / "label.txt").write_text("\n".join(l for l in ds.labels if l not in opened) + "\n", encoding="utf-8")
        is_open = [bool(set(e.labels) & set(opened)) for e in ds.train]
        removed = [e for e, flag in zip(ds.train, is_open) if flag]
        (kept / "train.txt").write_text("".join(f"{e.text}\t{','.join(e.labels)}\n"
                                                for e, flag in zip(ds.train, is_open) if not flag), encoding="utf-8")
        (kept / "dev.txt").write_text("".join(f"{e.text}\t{','.join(l for l in e.labels if l not in opened)}\n"
                                              for e in ds.dev), encoding="utf-8")
        before_clf = build_index(args.encoder, str(kept), str(scratch / "open"), vector_db="file", progress=False)
        before = {name: 0.0 for name in opened}  # not in the index: never predicted
        more = scratch / "more.txt"
        more.write_text("".join(f"{e.text}\t{','.join(e.labels)}\n" for e in removed), encoding="utf-8")
        start = time.perf_counter()
        add_to_index(str(scratch / "open"), str(more), progress=False)
        add_seconds = time.perf_counter() - start
        after, _ = per_label_f1(Classifier.load(scratch / "open", encoder=Encoder(
            before_clf.backend.encoder, before_clf.tokenizer, before_clf.meta)), ds.dev,
                                ds.labels, opened)
    section = format_section(args, rows, opened, before, after, len(removed), add_seconds, started, load_before,
                             os.getloadavg()[0], len(ds.dev))
    return publish(section, args.write)


def format_section(args, rows, opened, before, after, n_removed, add_seconds, started, load_before, load_after,
                   n_dev) -> str:
    cmd = "python benchmarks/retrieval/retrieval.py " + " ".join(sys.argv[1:])
    lines = [f"## Retrieval-based classification: {Path(args.dataset_dir).name} ({started})", "",
             f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Dev: {n_dev} texts; F1 at thresholds tuned on dev (optimistic for every row alike); ms/query at "
             f"batch 32 with embedding; load average before/after {load_before:.1f} / {load_after:.1f}", "",
             "| model | dev micro-F1 | dev macro-F1 | ms/query | build s | index MiB | notes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, micro, macro, ms, build, size, notes in rows:
        lines.append(f"| {name} | {micro:.2f} | {macro:.2f} | {ms:.2f} | {'' if build is None else f'{build:.0f}'} | "
                     f"{'' if size is None else f'{size:.1f}'} | {notes} |")
    lines += ["", f"Open labels ({args.encoder} index, no training): {', '.join(opened)} removed from the index "
              f"({n_removed} training texts and their label names), then those texts added with `labelwise index "
              f"--add` in {add_seconds:.0f} s. Dev F1 (median threshold of the other labels) before → after: "
              + "; ".join(f"{name} {before[name]:.2f} → {after[name]:.2f}" for name in opened) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Long documents: `labelwise train`'s defaults (windows over the whole text) vs truncation at 128 tokens.

    python benchmarks/accuracy/long_docs.py --build runs/long_divorce            # make the data set (seconds)
    python benchmarks/accuracy/long_docs.py --dataset_dir runs/long_divorce --routes truncate128 default [--write]

The data set is made from divorce, as a user with court judgments would have it: runs of 5–30 consecutive
sentences (uniform, seed 0) become one document, labelled with the union of its sentences' labels. Documents
of train.txt's sentences are split 80 / 20 into train and dev (by document); documents of dev.txt's sentences
are the test split, so no sentence of a test document is in train or dev. Mean ~17 sentences, ~960 tokens.

Routes: ``truncate128`` (``--long_text truncate --max_seq_length 128``: the first 128 tokens, labelwise before
windows), ``default`` (nothing set: the defaults decide), ``slide-mean`` (windows, mean of their logits), and
``slide256`` (windows of 256 tokens). Reported: test micro / macro-F1 at the tuned thresholds, dev at 0.5,
the minutes of each run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import append_results, machine, run_started  # noqa: E402

ROUTES = {
    "truncate128": {"long_text": "truncate", "max_seq_length": 128},
    "default": {},
    "slide-mean": {"long_text": "slide", "window_pool": "mean"},
    "slide-max": {"long_text": "slide", "window_pool": "max"},
    "slide256": {"long_text": "slide", "max_seq_length": 256},
}


def read_lines(path: Path) -> list[tuple[str, list[str]]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, labels = line.partition("\t")
        rows.append((text, [x for x in labels.split(",") if x]))
    return rows


def documents(rows, rng: np.random.Generator, low: int = 5, high: int = 30) -> list[tuple[str, list[str]]]:
    """Consecutive runs of ``low``–``high`` sentences, joined, with the union of their labels (in first-seen order)."""
    docs, i = [], 0
    while i < len(rows):
        n = int(rng.integers(low, high + 1))
        part = rows[i:i + n]
        i += n
        if len(part) < low:  # the short tail joins the document before it
            if not docs:
                break
            text, labels = docs.pop()
            part = [(text, labels)] + part
        labels = list(dict.fromkeys(label for _, ls in part for label in ls))
        docs.append(("".join(t for t, _ in part), labels))
    return docs


def build(source: Path, out: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    train_docs = documents(read_lines(source / "train.txt"), rng)
    test_docs = documents(read_lines(source / "dev.txt"), rng)
    order = rng.permutation(len(train_docs))
    cut = int(0.8 * len(order))
    splits = {"train": [train_docs[i] for i in order[:cut]], "dev": [train_docs[i] for i in order[cut:]],
              "test": test_docs}
    out.mkdir(parents=True, exist_ok=True)
    for name, docs in splits.items():
        (out / f"{name}.txt").write_text("".join(f"{t}\t{','.join(ls)}\n" for t, ls in docs), encoding="utf-8")
    (out / "label.txt").write_text((source / "label.txt").read_text(encoding="utf-8"), encoding="utf-8")
    stats = {name: {"documents": len(docs), "mean_chars": round(float(np.mean([len(t) for t, _ in docs])), 1),
                    "mean_labels": round(float(np.mean([len(ls) for _, ls in docs])), 2)}
             for name, docs in splits.items()}
    (out / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return stats


def run_route(args, route: str) -> dict:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    save_dir = Path(args.work) / route
    started = time.perf_counter()
    result = train(TrainConfig(dataset_dir=args.dataset_dir, save_dir=str(save_dir), overwrite=True,
                               model_name=args.model_name, **ROUTES[route]))
    minutes = (time.perf_counter() - started) / 60
    meta = json.loads((save_dir / "labelwise.json").read_text(encoding="utf-8"))
    m = result.metrics
    return {"route": route, "minutes": round(minutes, 1),
            "test_micro": m["test@tuned"]["micro_f1"], "test_macro": m["test@tuned"]["macro_f1"],
            "dev_micro": m["dev@0.5"]["micro_f1"], "dev_macro": m["dev@0.5"]["macro_f1"],
            "epochs": meta["training_args"]["epochs"], "max_seq_length": meta["max_seq_length"],
            "long_text": meta.get("long_text", "truncate"), "window_pool": meta.get("window_pool", "max")}


def section(args, rows: list[dict], started: str, load: float) -> str:
    lines = [f"## Long documents: windows vs truncation at 128 ({started})", "",
             f"Command: `python benchmarks/accuracy/long_docs.py --dataset_dir {args.dataset_dir} --routes "
             f"{' '.join(r['route'] for r in rows)}`; data made by `--build` from data/divorce (see the script's "
             f"docstring). Machine: {machine()}; load average {load:.2f} at the start. Encoder: "
             f"{args.model_name or 'the default (m3e-small for these Chinese texts)'}.", "",
             "| route | long_text | window pool | max_seq_length | epochs | test micro / macro-F1 (tuned) | "
             "dev micro / macro-F1 at 0.5 | minutes |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['route']} | {r['long_text']} | {r['window_pool']} | {r['max_seq_length']} | "
                     f"{r['epochs']} | {r['test_micro']:.2f} / {r['test_macro']:.2f} | "
                     f"{r['dev_micro']:.2f} / {r['dev_macro']:.2f} | {r['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default=None, help="write the long-document data set to this folder and stop")
    p.add_argument("--source", default="data/divorce")
    p.add_argument("--dataset_dir", default="runs/long_divorce")
    p.add_argument("--model_name", default=None, help="default: what labelwise train picks")
    p.add_argument("--routes", nargs="+", default=["truncate128", "default"], choices=list(ROUTES))
    p.add_argument("--work", default="runs/long_docs")
    p.add_argument("--out", default=None, help="also write the rows here (JSON)")
    p.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    if args.build:
        print(json.dumps(build(Path(args.source), Path(args.build)), indent=1))
        return
    started, load = run_started()
    import logging
    logging.getLogger("labelwise").setLevel(logging.INFO)
    rows = []
    for route in args.routes:
        rows.append(run_route(args, route))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    text = section(args, rows, started, load)
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()

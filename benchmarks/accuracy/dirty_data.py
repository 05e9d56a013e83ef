"""Dirty data: inject label errors, find them again, and measure what cleaning buys (PaddleNLP's experiment).

    python benchmarks/accuracy/dirty_data.py [--dataset_dir data/divorce] [--train_size 1000] [--noise 50] [--write]

1. A fixed random subset of ``--train_size`` training examples and of ``--dev_size`` dev examples.
2. ``--noise`` of the training examples get a wrong label set: the label set of another random example
   of the subset whose labels differ (so label frequencies stay natural and every error is a real change).
3. Models are fine-tuned side by side with the same settings and seed on: the clean subset, the noisy subset,
   the noisy subset minus the injected errors (oracle), and the noisy subset after cleaning the top 25 / 50 /
   100 examples flagged by each method, either removed or re-annotated (PaddleNLP's cleaning: the injected
   errors among them get their true labels back). Dev micro/macro F1 at threshold 0.5 (PaddleNLP's way).
   ``--spread_seeds`` retrains the noisy subset with other seeds, to show how much F1 moves by chance.
4. Each method ranks the noisy training set using the model trained on it: how many injected errors fall in
   its top 100 (precision@100, recall) — representer points (self-influence and PaddleNLP's rule) and confident
   learning (head over frozen features; optionally K fine-tuned fold models).

Every trained model is cached under --work_dir (result.json), so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import append_results, machine  # noqa: E402

PADDLENLP_RESULTS = [  # PaddleNLP multi_label analysis README: 500 training examples, 50 of them mislabelled
    ("500 with 50 dirty", 82.89, 47.83), ("+ cleaning 25", 82.42, 49.57), ("+ cleaning 50", 83.38, 50.40),
    ("+ cleaning 100", 84.50, 51.28)]


def inject_label_noise(examples, n_noise: int, seed: int):
    """(noisy copy of examples, sorted indices changed): each chosen example takes another's label set."""
    from labelwise.data.dataset import Example

    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(examples), size=n_noise, replace=False))
    noisy = list(examples)
    for i in chosen:
        while True:
            donor = examples[int(rng.integers(len(examples)))]
            if set(donor.labels) != set(examples[i].labels):
                break
        noisy[i] = Example(examples[i].text, donor.labels, examples[i].line)
    return noisy, [int(i) for i in chosen]


def make_dataset(folder: Path, labels, train, dev) -> Path:
    from labelwise.data.dataset import write_examples

    folder.mkdir(parents=True, exist_ok=True)
    write_examples(folder / "train.txt", train)
    write_examples(folder / "dev.txt", dev)
    (folder / "label.txt").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return folder


def fine_tune(name: str, folder: Path, args, seed: int | None = None) -> dict:
    """Train on folder/train.txt, score folder/dev.txt at 0.5; cached in work_dir/name/result.json."""
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    out = Path(args.work_dir) / name
    cache = out / "result.json"
    if cache.exists():
        return json.loads(cache.read_text())
    start = time.perf_counter()
    result = train(TrainConfig(dataset_dir=str(folder), save_dir=str(out / "checkpoint"), model_name=args.model_name,
                               epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                               warmup=True, max_seq_length=128, seed=args.seed if seed is None else seed,
                               progress=False))
    dev = result.metrics["dev@0.5"]
    record = {"name": name, "train_size": sum(1 for _ in open(folder / "train.txt", encoding="utf-8")),
              "micro_f1": dev["micro_f1"], "macro_f1": dev["macro_f1"], "best_epoch": result.best_epoch,
              "seconds": time.perf_counter() - start}
    cache.write_text(json.dumps(record, indent=2))
    print(f"[{name}] train {record['train_size']}  dev micro-F1 {record['micro_f1']:.2f}  macro-F1 "
          f"{record['macro_f1']:.2f}  ({record['seconds']:.0f} s)", flush=True)
    return record


# (slug, row name, find_dirty options); PaddleNLP's rule is ranked only: it mostly counts gold labels
METHODS = [("rep-self", "representer (self-influence)", dict(method="representer", representer_score="self")),
           ("rep-paddlenlp", "representer (PaddleNLP's rule)", dict(method="representer", representer_score="paddlenlp")),
           ("cl-head", "confident learning (head, 5 folds)", dict(method="confident", cl_model="head", folds=5)),
           ("cl-finetune", "confident learning (fine-tuned, 5 folds)",
            dict(method="confident", cl_model="finetune", folds=5))]


def rankings(noisy_ckpt: Path, noisy, noisy_dir: Path, args) -> dict[str, np.ndarray]:
    """slug → example indices, most suspicious first, from the model trained with the noise."""
    from labelwise.analysis.dirty import find_dirty
    from labelwise.predict.classifier import Classifier

    clf = Classifier.load(noisy_ckpt, backend="torch")
    out = {}
    for slug, name, options in METHODS:
        if slug == "cl-finetune":
            if not args.cl_finetune:
                continue
            options = {**options, "cl_epochs": args.epochs, "dataset_dir": noisy_dir}
        cache = Path(args.work_dir) / f"ranking-{slug}.npy"
        if not cache.exists():
            start = time.perf_counter()
            np.save(cache, find_dirty(clf, noisy, seed=args.seed, **options).order)
            print(f"[{name}] ranked in {time.perf_counter() - start:.0f} s", flush=True)
        out[slug] = np.load(cache)
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cleaning_runs(args, orders, train, noisy, injected, dev, labels) -> dict:
    """(slug, mode, k) → dev F1 after cleaning the top k of a ranking and retraining.

    ``remove``: the flagged examples are dropped. ``relabel``: a re-annotator fixes the flagged examples
    (the injected errors among them get their true labels back; the others are confirmed as they are),
    PaddleNLP's "cleaning". PaddleNLP's rule and the fine-tuned confident learning are only ranked (time);
    confident learning with the head is cleaned at the largest k.
    """
    bad, work, out = set(injected), Path(args.work_dir), {}
    nums = _ints(args.clean_nums)
    for slug, order in orders.items():
        for k in {"rep-self": nums, "rep-paddlenlp": [], "cl-finetune": []}.get(slug, nums[-1:]):
            flagged = {int(i) for i in order[:k]}
            for mode in args.cleaning.split(","):
                if mode == "remove":
                    examples = [e for i, e in enumerate(noisy) if i not in flagged]
                else:
                    examples = [train[i] if i in flagged else e for i, e in enumerate(noisy)]
                folder = make_dataset(work / f"data-{slug}-{mode}-{k}", labels, examples, dev)
                name = f"{slug}-{k}" if mode == "remove" else f"{slug}-{mode}-{k}"  # remove: the first runs' names
                out[(slug, mode, k)] = {**fine_tune(name, folder, args), "fixed": len(bad & flagged)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", default="data/divorce")
    ap.add_argument("--train_size", type=int, default=1000)
    ap.add_argument("--dev_size", type=int, default=500)
    ap.add_argument("--noise", type=int, default=50)
    ap.add_argument("--top", type=int, default=100, help="precision@top / recall@top")
    ap.add_argument("--clean_nums", default="25,50,100")
    ap.add_argument("--cleaning", default="remove,relabel", help="remove and/or relabel the flagged examples")
    ap.add_argument("--spread_seeds", default="", help="also train the noisy set with these seeds (e.g. 4,5) "
                    "to show how much F1 moves with PaddleNLP alone")
    ap.add_argument("--model_name", default="m3e-small")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--learning_rate", type=float, default=2e-4)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--cl_finetune", action="store_true", help="also confident learning with 5 fine-tuned fold models")
    ap.add_argument("--work_dir", default="runs/analysis/dirty_bench")
    ap.add_argument("--write", action="store_true", help="append the section to benchmarks/RESULTS.md")
    args = ap.parse_args()
    started = time.perf_counter()
    import logging

    logging.basicConfig(format="%(message)s", level=logging.INFO)  # one line per epoch from the trainer

    from labelwise.data.dataset import load_dataset

    ds = load_dataset(args.dataset_dir)
    rng = np.random.default_rng(args.seed)
    train = [ds.train[i] for i in np.sort(rng.choice(len(ds.train), args.train_size, replace=False))]
    dev = [ds.dev[i] for i in np.sort(rng.choice(len(ds.dev), min(args.dev_size, len(ds.dev)), replace=False))]
    noisy, injected = inject_label_noise(train, args.noise, args.seed)
    work = Path(args.work_dir)
    clean_dir = make_dataset(work / "data-clean", ds.labels, train, dev)
    noisy_dir = make_dataset(work / "data-noisy", ds.labels, noisy, dev)

    results = {"clean": fine_tune("clean", clean_dir, args), "noisy": fine_tune("noisy", noisy_dir, args)}
    keep = sorted(set(range(len(noisy))) - set(injected))
    oracle_dir = make_dataset(work / "data-oracle", ds.labels, [noisy[i] for i in keep], dev)
    results["oracle"] = fine_tune("oracle", oracle_dir, args)

    orders = rankings(work / "noisy" / "checkpoint", noisy, noisy_dir, args)
    bad = set(injected)
    detection = {}
    for slug, order in orders.items():
        hits = len(bad & {int(i) for i in order[:args.top]})
        detection[slug] = {"hits": hits, "precision": 100 * hits / args.top, "recall": 100 * hits / len(bad),
                           "hits@50": len(bad & {int(i) for i in order[:50]})}
    cleaned = cleaning_runs(args, orders, train, noisy, injected, dev, ds.labels)
    spread = [fine_tune(f"noisy-seed{seed}", noisy_dir, args, seed) for seed in _ints(args.spread_seeds)]

    section = report(args, results, detection, cleaned, spread, len(noisy), time.perf_counter() - started)
    print(section)
    (work / "results.json").write_text(json.dumps(
        {"results": results, "detection": detection, "injected": injected,
         "cleaned": {f"{slug}-{mode}-{k}": v for (slug, mode, k), v in cleaned.items()}, "spread": spread},
        indent=2, ensure_ascii=False))
    if args.write:
        append_results(section)


def report(args, results, detection, cleaned, spread, n_train, seconds) -> str:
    runs = [*results.values(), *cleaned.values(), *spread]
    train_min = sum(r["seconds"] for r in runs) / 60
    cmd = ("python benchmarks/accuracy/dirty_data.py --dataset_dir {d} --train_size {t} --dev_size {v} --noise {n} "
           "--epochs {e} --learning_rate {lr} --batch_size {b} --seed {s} --cleaning {c}{sp}{cl}").format(
        d=args.dataset_dir, t=args.train_size, v=args.dev_size, n=args.noise, e=args.epochs, lr=args.learning_rate,
        b=args.batch_size, s=args.seed, c=args.cleaning, cl=" --cl_finetune" if args.cl_finetune else "",
        sp=f" --spread_seeds {args.spread_seeds}" if args.spread_seeds else "")
    lines = [f"## Dirty data: finding {args.noise} injected label errors in {n_train} training examples",
             "", f"`{cmd}`", "", f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. "
             f"Training time, all {len(runs)} fine-tunes together (cached runs included): {train_min:.0f} min; "
             f"this invocation {seconds / 60:.1f} min.", "",
             f"{args.model_name}, {args.epochs} epochs, learning rate {args.learning_rate}, warm-up, "
             f"batch {args.batch_size}, "
             f"best epoch by dev macro-F1; dev = a fixed random {args.dev_size} of {args.dataset_dir}/dev.txt, "
             "F1 at threshold 0.5. An injected error replaces an example's label set by another example's.", "",
             f"### Detection (top {args.top} of {n_train}; random ranking would find "
             f"{args.top * args.noise / n_train:.0f})", "",
             f"| method | injected errors in top {args.top} | precision@{args.top} | recall | in top 50 |",
             "|---|---:|---:|---:|---:|"]
    names = {slug: name for slug, name, _ in METHODS}
    for slug, d in detection.items():
        lines.append(f"| {names[slug]} | {d['hits']} | {d['precision']:.0f}% | {d['recall']:.0f}% | {d['hits@50']} |")
    lines += ["", "### Dev F1 after cleaning (model retrained)", "",
              "*remove*: the flagged examples are dropped; *relabel*: they are re-annotated (the injected errors "
              "among them get their true labels back, the others stay), as in PaddleNLP.", "",
              "| training set | size | injected errors left | micro-F1 | macro-F1 |", "|---|---:|---:|---:|---:|",
              _row("clean subset (before injection)", results["clean"], 0),
              _row(f"with {args.noise} injected errors", results["noisy"], args.noise),
              _row("minus the injected errors (oracle)", results["oracle"], 0)]
    for (slug, mode, k), r in cleaned.items():
        lines.append(_row(f"{mode} top {k} of {names[slug]}", r, args.noise - r["fixed"]))
    if spread:
        runs = [results["noisy"]] + spread
        seeds = ", ".join(str(s) for s in [args.seed] + _ints(args.spread_seeds))
        lines += ["", f"Seed-to-seed spread of the noisy training set alone (seeds {seeds}): micro-F1 "
                  f"{min(r['micro_f1'] for r in runs):.2f}–{max(r['micro_f1'] for r in runs):.2f}, macro-F1 "
                  f"{min(r['macro_f1'] for r in runs):.2f}–{max(r['macro_f1'] for r in runs):.2f}."]
    lines += ["", "PaddleNLP's published experiment (500 training examples, 50 dirty, ERNIE 3.0, cleaning = the flagged "
              "examples re-annotated; different data size and model, so only the trend compares):", "",
              "| PaddleNLP run | micro-F1 | macro-F1 |", "|---|---:|---:|"]
    lines += [f"| {name} | {mi:.2f} | {ma:.2f} |" for name, mi, ma in PADDLENLP_RESULTS]
    return "\n".join(lines)


def _row(name: str, r: dict, left: int) -> str:
    return f"| {name} | {r['train_size']} | {left} | {r['micro_f1']:.2f} | {r['macro_f1']:.2f} |"


if __name__ == "__main__":
    main()

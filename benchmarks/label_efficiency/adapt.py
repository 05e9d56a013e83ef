"""Domain adaptation (`labelwise adapt`) before few-shot training, on few_shot.py's draws.

    python benchmarks/label_efficiency/adapt.py --dataset_dir data/divorce --objective contrastive --draws 5 [--write]
    python benchmarks/label_efficiency/adapt.py --dataset_dir data/divorce --cost_only --objective mlm   # minutes per 10k texts only

The pool: every training text that is in none of the draws' dev or test sets (the draws' 80 training examples may
be in it, as a user's own unlabelled texts would hold them), plus the dataset's dev.txt texts, which few_shot.py
never uses. So no draw's test or dev text is ever seen by the adapted encoder. The encoder is adapted once on that
pool, then each draw trains `labelwise train --few_shot` from it (few_shot.py's route, the same seeds) and is scored
on the draw's 2,000 test texts. The rows without adaptation are taken from `--base FILE` (few_shot.py's --out of the
same draws) or, when not given, the 5-draw CPU run in history/log.md (2026-12-03, same code path and seeds).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import machine, parser, publish, read_draws, run_started, write_draws  # noqa: E402
from few_shot import run_draw, split_draw  # noqa: E402

# `labelwise train --few_shot` on m3e-small, draws 0-4, dev-tuned test micro / macro (history/log.md, 2026-12-03)
BASE_DIVORCE = [(78.92, 57.03), (74.94, 56.21), (78.41, 59.19), (73.48, 58.81), (75.82, 58.32)]
TARGET = (78.39, 60.03)  # PaddleNLP prompt learning, ERNIE 3.0 Base (published)


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "draws", "first_draw", "per_label", "test_size")
    p.add_argument("--objective", default="contrastive", choices=["mlm", "contrastive", "both"])
    p.add_argument("--adapt_epochs", type=int, default=1)
    p.add_argument("--learning_rate", type=float, default=3e-5)
    p.add_argument("--cost_only", action="store_true", help="adapt for --cost_steps steps and report the time only")
    p.add_argument("--cost_steps", type=int, default=40)
    p.add_argument("--adapted", default=None, help="an adapted encoder folder to reuse (skips the adaptation)")
    p.add_argument("--base", default=None, help="few_shot.py --out JSON of the same draws without adaptation")
    p.add_argument("--out", default="runs/adapt_draws.json", help="per-draw results (kept as each draw ends)")
    p.add_argument("--work", default="runs/adapt-work")
    p.add_argument("--write", action="store_true")
    return p.parse_args(argv)


def build_pool(args, ds) -> list[str]:
    held = set()
    for seed in range(args.first_draw, args.first_draw + args.draws):
        _, dev_idx, test_idx = split_draw(ds, args.per_label, args.test_size, seed)
        held.update(ds.train[i].text for i in list(dev_idx) + list(test_idx))
    pool = [e.text for e in ds.train if e.text not in held] + [e.text for e in ds.dev if e.text not in held]
    return list(dict.fromkeys(pool))


def main(argv=None) -> str:
    from labelwise.data.dataset import load_dataset
    from labelwise.training.adapt import adapt
    from labelwise.training.config import AdaptConfig

    args = parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO)  # adapt's progress and its one-line summary
    started, load_before = run_started()
    ds = load_dataset(args.dataset_dir)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool = build_pool(args, ds)
    pool_file = work / "pool.txt"
    pool_file.write_text("".join(t + "\n" for t in pool), encoding="utf-8")
    folder = Path(args.adapted or work / f"adapted-{args.objective}")
    info = None
    if not args.adapted:
        result = adapt(AdaptConfig(pool_file=str(pool_file), model_name=args.model_name, save_dir=str(folder),
                                   objective=args.objective, epochs=args.adapt_epochs, overwrite=True,
                                   learning_rate=args.learning_rate,
                                   max_steps=args.cost_steps if args.cost_only else None))
        info = result.info
    if args.cost_only:
        return publish(cost_section(args, info, started, load_before), args.write)
    if info is None:
        import json

        info = json.loads((folder / "adapt.json").read_text(encoding="utf-8"))
    done = {d["draw"]: d for d in read_draws(args.out) if d.get("adapted") == str(folder)}
    shim = argparse.Namespace(dataset_dir=args.dataset_dir, model_name=str(folder), per_label=args.per_label,
                              test_size=args.test_size, routes=["few-shot"], probs=None, create_n=0)
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.first_draw, args.first_draw + args.draws):
            if seed not in done:
                done[seed] = {"draw": seed, "adapted": str(folder), **run_draw(shim, ds, seed, Path(scratch))}
                write_draws(args.out, list(done.values()))
    base = {d["draw"]: (d["few-shot"]["tuned"]["micro"], d["few-shot"]["tuned"]["macro"])
            for d in read_draws(args.base)} if args.base else dict(enumerate(BASE_DIVORCE))
    section = format_section(args, info, [done[s] for s in sorted(done)], base, len(pool), started, load_before)
    return publish(section, args.write)


def cost_section(args, info, started, load_before) -> str:
    return "\n".join([
        f"## Adaptation cost: {args.objective} on {Path(args.dataset_dir).name} ({started})", "",
        f"Command: `python benchmarks/label_efficiency/adapt.py {' '.join(sys.argv[1:])}`  ", f"Machine: {machine()}  ",
        f"Load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}", "",
        "| objective | steps × batch | minutes | minutes per 10k texts (one pass) |", "|---|---:|---:|---:|",
        f"| {args.objective} | {info['steps']} × {info['settings']['batch_size']} | {info['minutes']} | "
        f"**{info['minutes_per_10k_texts_per_epoch']}** |", ""])


def format_section(args, info, draws, base, pool_size, started, load_before) -> str:
    rows, adapted = [], []
    for d in draws:
        got = (d["few-shot"]["tuned"]["micro"], d["few-shot"]["tuned"]["macro"])
        adapted.append(got)
        was = base.get(d["draw"])
        rows.append(f"| {d['draw']} | {was[0]:.2f} / {was[1]:.2f} | {got[0]:.2f} / {got[1]:.2f} | "
                    f"{got[0] - was[0]:+.2f} / {got[1] - was[1]:+.2f} | {d['few-shot']['minutes']:.1f} |"
                    if was else f"| {d['draw']} | | {got[0]:.2f} / {got[1]:.2f} | | {d['few-shot']['minutes']:.1f} |")
    mean = np.mean(adapted, axis=0)
    pairs = [base[d["draw"]] for d in draws if d["draw"] in base]
    base_mean = np.mean(pairs, axis=0) if pairs else (float("nan"),) * 2
    held = info["held_out_loss"]
    return "\n".join([
        f"## Domain adaptation before few-shot: {Path(args.dataset_dir).name}, {args.objective} ({started})", "",
        f"Command: `python benchmarks/label_efficiency/adapt.py {' '.join(sys.argv[1:])}`  ", f"Machine: {machine()}  ",
        f"Load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}  ",
        f"Adaptation: {args.model_name}, objective {args.objective}, {info['texts']:,} pool texts (+{info['held_out']} "
        f"held back; none is a dev or test text of any draw), {info['steps']} steps, {info['minutes']} min "
        f"({info['minutes_per_10k_texts_per_epoch']} min per 10k texts); held-back loss before "
        f"{held['before']} → after {held['after']}.  ",
        f"Protocol: few_shot.py's draws (seed = draw number; 4 per label train, 4 per label dev, 2,000 test). "
        f"Without adaptation: {'--base ' + args.base if args.base else 'the 5-draw CPU run of 2026-12-03'}.", "",
        "| draw | `--few_shot` micro / macro | adapted, then `--few_shot` | difference | minutes |",
        "|---:|---:|---:|---:|---:|", *rows,
        f"| mean | {base_mean[0]:.2f} / {base_mean[1]:.2f} | **{mean[0]:.2f} / {mean[1]:.2f}** | "
        f"{mean[0] - base_mean[0]:+.2f} / {mean[1] - base_mean[1]:+.2f} | |",
        f"| PaddleNLP prompt learning (published) | | {TARGET[0]:.2f} / {TARGET[1]:.2f} | | |", ""])


if __name__ == "__main__":
    main()

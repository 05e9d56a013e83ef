"""Few-shot recipe ablation: several variants × many draws, in parallel worker processes (for a GPU machine).

    python benchmarks/label_efficiency/few_shot_grid.py --dataset_dir data/divorce --draws 10 --workers 8 --out grid.json

The protocol is benchmarks/label_efficiency/few_shot.py's (PaddleNLP's: --per_label examples of every label for train, as many
for dev, test from the remaining training examples). Each job is one (variant, draw); a variant is a route
(plain, few-shot, zero-shot) with TrainConfig settings and labelwise.training.fewshot constants changed. Beside the
test F1 at the thresholds the route tuned on dev, every job also reports the test F1 of other threshold rules
fit on the same dev probabilities (0.5; one threshold for all labels), and saves its dev and test
probabilities (float16) and the draw's indices to --probs (npz), so further rules can be scored later without
training again. Printing the table: --from_json grid.json [...].
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import parser, run_jobs  # noqa: E402

VARIANTS = {  # name: (route, TrainConfig settings, labelwise.training.fewshot constants)
    "plain": ("plain", {}, {}),
    "few-shot": ("few-shot", {}, {}),
    "zero-shot": ("zero-shot", {}, {}),
    "few-shot, 20 pairs/text": ("few-shot", {}, {"PAIRS_PER_TEXT": 20, "MAX_PAIR_STEPS": 2000}),
    "few-shot, auto pos weight": ("few-shot", {"pos_weight": "auto"}, {}),
    "few-shot, lr 5e-5": ("few-shot", {"learning_rate": 5e-5}, {}),
    "few-shot, 10 epochs": ("few-shot", {"epochs": 10}, {}),
    "few-shot, batch 8": ("few-shot", {"batch_size": 8}, {}),
}


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "per_label", "draws", "test_size", draws=10)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="few_shot_grid.json")
    p.add_argument("--probs", default=None, help="folder for each job's probabilities (npz)")
    p.add_argument("--from_json", nargs="+", default=None, help="only print the table of these result files")
    return p.parse_args(argv)


def job(args_dict: dict, variant: str, seed: int) -> dict:
    import torch

    torch.set_num_threads(args_dict["threads"])
    from few_shot import draw, score, write_split
    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.evaluation.metrics import shared_threshold
    from labelwise.training import fewshot
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    route, settings, constants = VARIANTS[variant]
    for name, value in constants.items():
        setattr(fewshot, name, value)
    ds = load_dataset(args_dict["dataset_dir"])
    rng = np.random.default_rng(seed)
    train_idx, dev_idx = draw(ds.train, ds.labels, args_dict["per_label"], rng)
    rest = np.setdiff1d(np.arange(len(ds.train)), train_idx + dev_idx)
    test_idx = rng.choice(rest, size=min(args_dict["test_size"], len(rest)), replace=False)
    test, dev = [ds.train[i] for i in test_idx], [ds.train[i] for i in dev_idx]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "label.txt").write_text((Path(args_dict["dataset_dir"]) / "label.txt").read_text(encoding="utf-8"),
                                          encoding="utf-8")
        write_split(folder, "train.txt", [ds.train[i] for i in train_idx])
        write_split(folder, "dev.txt", dev)
        if route == "zero-shot":
            clf = fewshot.zero_shot(str(folder), str(folder / "model"), args_dict["model_name"],
                                    device=args_dict["device"])
        else:
            clf = train(TrainConfig(dataset_dir=str(folder), save_dir=str(folder / "model"),
                                    model_name=args_dict["model_name"], few_shot=route == "few-shot", progress=False,
                                    seed=seed, baseline=False, device=args_dict["device"], **settings)).classifier
        minutes = (time.perf_counter() - start) / 60
        test_probs = clf.predict_proba([e.text for e in test])
        dev_probs = clf.predict_proba([e.text for e in dev])
    y_test, y_dev = multi_hot(test, ds.labels), multi_hot(dev, ds.labels)
    one = shared_threshold(y_dev, dev_probs)
    out = {"variant": variant, "seed": seed, "minutes": minutes, "train": len(train_idx), "dev": len(dev_idx),
           "test": len(test), "global_threshold": one,
           "tuned": score(y_test, test_probs, ds.labels, clf.thresholds),
           "0.5": score(y_test, test_probs, ds.labels, 0.5),
           "global": score(y_test, test_probs, ds.labels, one)}
    if args_dict["probs"]:
        name = f"{variant.replace(' ', '_').replace(',', '').replace('/', '-')}_{seed}.npz"
        np.savez_compressed(Path(args_dict["probs"]) / name, test=test_probs.astype(np.float16),
                            dev=dev_probs.astype(np.float16), train_idx=np.array(train_idx),
                            dev_idx=np.array(dev_idx), test_idx=test_idx,
                            thresholds=np.asarray(clf.thresholds if clf.thresholds is not None else []))
    return out


def table(results: list[dict]) -> str:
    lines = ["| variant | draws | test micro (dev-tuned) | test macro (dev-tuned) | one threshold micro / macro "
             "| at 0.5 micro / macro | minutes |", "|---|---:|---:|---:|---:|---:|---:|"]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]

        def stat(rule, metric):
            values = [r[rule][metric] for r in rows]
            return f"{np.mean(values):.2f} ± {np.std(values):.2f}"
        lines.append(f"| {variant} | {len(rows)} | {stat('tuned', 'micro')} | {stat('tuned', 'macro')} | "
                     f"{stat('global', 'micro')} / {stat('global', 'macro')} | {stat('0.5', 'micro')} / "
                     f"{stat('0.5', 'macro')} | {np.mean([r['minutes'] for r in rows]):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.from_json:
        results = [r for f in args.from_json for r in json.loads(Path(f).read_text())]
        print(table(results))
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.probs:
        Path(args.probs).mkdir(parents=True, exist_ok=True)
    jobs = [(vars(args), v, s) for s in range(args.draws) for v in args.variants]
    results = run_jobs(job, jobs, args.workers, args.out, describe=lambda r: (
        f"{r['variant']} draw {r['seed']}: tuned {r['tuned']} global {r['global']} 0.5 {r['0.5']} "
        f"({r['minutes']:.2f} min)"))
    results.sort(key=lambda r: (args.variants.index(r["variant"]), r["seed"]))
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()

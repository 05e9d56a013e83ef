"""Training throughput: labelwise's loop vs. a plain Hugging Face Trainer padding to max_seq_length.

    python benchmarks/train_speed.py --dataset_dir data/divorce [--samples 640] [--rounds 2] [--write]

Both train the same model (m3e-small + linear head) on the same examples with the same batch size, learning
rate and max_seq_length; the rounds alternate (labelwise, Trainer, labelwise, Trainer, ...) so machine noise
hits both alike. Reported: training samples/s of each (steps only: the Trainer's evaluation is off and
labelwise's dev pass is excluded by its own timer) and their ratio.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_results, machine  # noqa: E402


def run_labelwise(dataset_dir, samples, args, out_dir) -> float:
    from labelwise.training import TrainConfig, train

    result = train(TrainConfig(dataset_dir=dataset_dir, save_dir=str(Path(out_dir) / "lw"), epochs=1,
                               batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                               learning_rate=1e-4, max_train_samples=samples, max_dev_samples=16,
                               threshold_tuning=False, progress=False))
    return result.train_samples_per_second


def run_hf_trainer(dataset_dir, samples, args, out_dir) -> float:
    import torch
    from transformers import Trainer, TrainingArguments

    from labelwise.data import load_dataset, multi_hot
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from labelwise.models import resolve_model_name
    from labelwise.training import _subset

    ds = load_dataset(dataset_dir)
    train_set = _subset(ds.train, samples, 3)
    source = resolve_model_name("m3e-small")  # the same encoder; the stock class computes its own loss
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(ds.labels),
                                                               problem_type="multi_label_classification")
    enc = tokenizer([e.text for e in train_set], truncation=True, max_length=args.max_seq_length,
                    padding="max_length")
    y = multi_hot(train_set, ds.labels)

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(train_set)

        def __getitem__(self, i):
            item = {k: torch.tensor(v[i]) for k, v in enc.items()}
            item["labels"] = torch.from_numpy(y[i])
            return item

    targs = TrainingArguments(output_dir=str(Path(out_dir) / "hf"), per_device_train_batch_size=args.batch_size,
                              num_train_epochs=1, learning_rate=1e-4, report_to=[], save_strategy="no",
                              logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=3,
                              dataloader_num_workers=0)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows())
    start = time.perf_counter()
    trainer.train()
    return len(train_set) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset_dir", required=True)
    ap.add_argument("--samples", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(run_labelwise(args.dataset_dir, args.samples, args, tmp))
            theirs.append(run_hf_trainer(args.dataset_dir, args.samples, args, tmp))
            print(f"round {r + 1}: labelwise {ours[-1]:.1f} samples/s, HF Trainer {theirs[-1]:.1f} samples/s",
                  flush=True)
    a, b = float(np.median(ours)), float(np.median(theirs))
    cmd = (f"python benchmarks/train_speed.py --dataset_dir {args.dataset_dir} --samples {args.samples} "
           f"--rounds {args.rounds}")
    text = "\n".join([
        "## Training speed: labelwise vs. Hugging Face Trainer (m3e-small)", "",
        f"Command: `{cmd}`  ", f"Machine: {machine()}; date {datetime.date.today().isoformat()}.", "",
        f"{args.samples} training examples of {args.dataset_dir}, batch {args.batch_size}, max_seq_length "
        f"{args.max_seq_length}, one epoch each, rounds alternated; median of {args.rounds} rounds.", "",
        "| loop | padding | samples/s (each round) | median |", "|---|---|---|---|",
        f"| labelwise | to the longest in a length-grouped batch | {', '.join(f'{x:.1f}' for x in ours)} | {a:.1f} |",
        f"| HF Trainer | every batch to max_seq_length | {', '.join(f'{x:.1f}' for x in theirs)} | {b:.1f} |",
        "", f"Speed-up: **{a / b:.2f}×** (target ≥ 1.5×).", ""])
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()

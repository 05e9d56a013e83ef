"""Training throughput: labelwise's loop (fp32, and with --bf16) vs. a plain Hugging Face Trainer.

    python benchmarks/speed/train_speed.py --dataset_dir data/divorce [--samples 640] [--rounds 2] [--bf16] [--write]

Both train the same model (m3e-small + linear head) on the same examples with the same batch size, learning
rate and max_seq_length; the rounds alternate (labelwise, Trainer, labelwise, Trainer, ...) so machine noise
hits both alike. Reported: training samples/s of each (steps only: the Trainer's evaluation is off and
labelwise's dev pass is excluded by its own timer) and their ratio. With --bf16 a third arm, labelwise with
bfloat16 autocast, joins each round (it needs a CPU with AVX-512 BF16 or AMX; elsewhere it runs fp32 and says so).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common puts every concern's folder on the path
from _common import append_results, machine  # noqa: E402


def run_labelwise(dataset_dir, samples, args, out_dir, bf16: bool = False) -> float:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    result = train(TrainConfig(dataset_dir=dataset_dir, save_dir=str(Path(out_dir) / "lw"), epochs=1,
                               batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                               learning_rate=1e-4, max_train_samples=samples, max_dev_samples=16,
                               model_name=args.model_name, threshold_tuning=False, progress=False, baseline=False, bf16=bf16))
    return result.train_samples_per_second


def run_hf_trainer(dataset_dir, samples, args, out_dir) -> float:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    from labelwise.data.dataset import load_dataset, multi_hot
    from labelwise.model.encoders import resolve_model_name
    from labelwise.training.loop import random_subset

    ds = load_dataset(dataset_dir)
    train_set = random_subset(ds.train, samples, np.random.default_rng(3))  # the examples labelwise's arm trains on
    source = resolve_model_name(args.model_name)  # the same encoder; the stock class computes its own loss
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
    ap.add_argument("--model_name", default="m3e-small", help="an encoder alias or folder (both arms)")
    ap.add_argument("--samples", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_seq_length", type=int, default=128)
    ap.add_argument("--bf16", action="store_true", help="add labelwise with bfloat16 autocast to each round")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    import os

    from labelwise.model.device import bf16_supported

    load_before = os.getloadavg()[0]
    ours, theirs, halves = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(run_labelwise(args.dataset_dir, args.samples, args, tmp))
            if args.bf16:
                halves.append(run_labelwise(args.dataset_dir, args.samples, args, tmp, bf16=True))
            theirs.append(run_hf_trainer(args.dataset_dir, args.samples, args, tmp))
            print(f"round {r + 1}: labelwise {ours[-1]:.1f} samples/s, bf16 {halves[-1] if halves else 0:.1f}, "
                  f"HF Trainer {theirs[-1]:.1f} samples/s", flush=True)
    a, b = float(np.median(ours)), float(np.median(theirs))
    model = f" --model_name {args.model_name}" if args.model_name != "m3e-small" else ""
    cmd = (f"python benchmarks/speed/train_speed.py --dataset_dir {args.dataset_dir}{model} --samples {args.samples} "
           f"--rounds {args.rounds}{' --bf16' if args.bf16 else ''}")
    bf16_row = []
    if halves:
        c = float(np.median(halves))
        native = "native" if bf16_supported("cpu") else "NOT supported here: ran fp32"
        bf16_row = [f"| labelwise --bf16 ({native}) | to the longest in a length-grouped batch | "
                    f"{', '.join(f'{x:.1f}' for x in halves)} | {c:.1f} |"]
    text = "\n".join([
        f"## Training speed: labelwise vs. Hugging Face Trainer ({Path(args.model_name).name})", "",
        f"Command: `{cmd}`  ", f"Machine: {machine()}; date {datetime.date.today().isoformat()}.", "",
        f"{args.samples} training examples of {args.dataset_dir}, batch {args.batch_size}, max_seq_length "
        f"{args.max_seq_length}, one epoch each, rounds alternated; median of {args.rounds} rounds.", "",
        "| loop | padding | samples/s (each round) | median |", "|---|---|---|---|",
        f"| labelwise | to the longest in a length-grouped batch | {', '.join(f'{x:.1f}' for x in ours)} | {a:.1f} |",
        *bf16_row,
        f"| HF Trainer | every batch to max_seq_length | {', '.join(f'{x:.1f}' for x in theirs)} | {b:.1f} |",
        "", f"Speed-up: **{a / b:.2f}×** (target ≥ 1.5×)"
        + (f"; bf16 vs fp32 {float(np.median(halves)) / a:.2f}×, bf16 vs HF Trainer {float(np.median(halves)) / b:.2f}×"
           if halves else "") + f". Load average before/after {load_before:.1f} / {os.getloadavg()[0]:.1f}.", ""])
    print(text)
    if args.write:
        append_results(text)


if __name__ == "__main__":
    main()

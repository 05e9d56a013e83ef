"""``labelwise demo`` (``make demo``): a short fine-tune on the bundled divorce data, then evaluate and predict."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from labelwise.settings import add_flags, setting
from labelwise.training.config import TrainConfig

@dataclass
class DemoOptions:
    work_dir: str = setting("runs/demo", help="checkpoint, bad cases and predictions go here")


DEMO_DEFAULTS = {"dataset_dir": "data/divorce", "max_train_samples": 2000, "epochs": 2}


def register(sub) -> None:
    p = sub.add_parser("demo", help="train briefly on the bundled divorce data, evaluate and predict")
    add_flags(p, TrainConfig, only=DEMO_DEFAULTS, defaults=DEMO_DEFAULTS)
    add_flags(p, DemoOptions)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    run_demo(args.dataset_dir, args.work_dir, args.max_train_samples, args.epochs, progress=not args.quiet)
    return 0


def run_demo(dataset_dir: str = "data/divorce", work_dir: str = "runs/demo", max_train_samples: int = 2000,
             epochs: int = 2, progress: bool = True) -> dict:
    """`make demo`: a short fine-tune of m3e-small on the bundled divorce data, then evaluate and predict."""
    from labelwise.evaluation.evaluate import evaluate, format_report, write_bad_cases
    from labelwise.predict.classifier import Classifier
    from labelwise.predict.output import predict_file
    from labelwise.training.finetune import train

    work = Path(work_dir)
    start = time.perf_counter()
    print(f"== 1/3 train: m3e-small on {max_train_samples} examples of {dataset_dir}, {epochs} epoch(s)")
    result = train(TrainConfig(dataset_dir=dataset_dir, save_dir=str(work / "checkpoint"), epochs=epochs,
                               max_train_samples=max_train_samples, progress=progress))
    clf = Classifier.load(result.save_dir)
    print("\n== 2/3 evaluate on dev")
    ev = evaluate(clf, dataset_dir)
    print(format_report(ev.metrics))
    n_bad = write_bad_cases(ev, work / "bad_case.txt")
    print(f"{n_bad} bad cases written to {work / 'bad_case.txt'}")
    print("\n== 3/3 predict data.txt")
    predictions = predict_file(clf, Path(dataset_dir) / "data.txt", work / "output.txt", with_scores=True,
                               top_k_min=1)
    print((work / "output.txt").read_text(encoding="utf-8"))
    print(f"demo done in {time.perf_counter() - start:.0f} s ({len(predictions)} texts predicted).")
    print("The full job (all 14,377 examples, the defaults; about half an hour on 2 CPU cores):\n"
          f"  labelwise train --dataset_dir {dataset_dir}")
    return ev.metrics

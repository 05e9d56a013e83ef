"""Experiment tracking: ``--report_to none | tensorboard | mlflow`` (the Hugging Face Trainer's convention).

A tracker gets, from ``train`` (and ``train --few_shot``, which runs the same loop) and ``prune`` (one loss and
one set of dev figures per shape, named after its folder, at each evaluation step): the config as parameters,
every ``logging_steps`` optimiser steps the training loss and learning rate (:class:`labelwise.training.loop.StepLoop`
calls :meth:`Tracker.step`), after every epoch the dev micro / macro-F1 and each label's F1, and at the end the
tuned thresholds and the checkpoint's model card and ``labelwise.json``.

* tensorboard: event files under ``logging_dir`` (default ``<save_dir>_logs``, beside the checkpoint, whose
  folder is replaced whole at each save): ``tensorboard --logdir <save_dir>_logs``. Needs ``tensorboard``.
* mlflow: a run in ``$MLFLOW_TRACKING_URI`` when set, else a local store under ``logging_dir``:
  ``sqlite:///<logging_dir>/mlflow.db`` with full mlflow, ``<logging_dir>/mlruns`` with mlflow-skinny
  (``mlflow ui --backend-store-uri ...``); the experiment is the dataset folder's name. Needs ``mlflow`` (or
  ``mlflow-skinny``). Metric names keep letters, digits and ``_ - . / :``; other characters of a label become ``_``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from labelwise.errors import LabelwiseError

__all__ = ["REPORT_TO", "Tracker", "mlflow_uri", "open_tracker"]

REPORT_TO = ("none", "tensorboard", "mlflow")


class Tracker:
    """The ``none`` tracker: every call does nothing.

    ``stage``: the name steps are logged under (``train``; few-shot's first stage logs under ``contrastive``)."""

    stage = "train"

    def params(self, config: dict) -> None: ...

    def step(self, step: int, losses: dict[str, float], learning_rate: float) -> None: ...

    def epoch(self, epoch: int, metrics: dict, prefix: str = "dev") -> None: ...

    def finish(self, folder: Path, labels: list[str], thresholds, name: str | None = None) -> None: ...

    def close(self) -> None: ...


def _name(text: str) -> str:
    return re.sub(r"[^\w\-./: ]", "_", str(text))


def _per_label(metrics: dict, prefix: str = "dev") -> dict[str, float]:
    return {f"{prefix}_f1/{_name(r['label'])}": float(r["f1"]) for r in metrics.get("per_label", []) if "f1" in r}


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LabelwiseError("`report_to` tensorboard needs the tensorboard package: pip install tensorboard") \
                from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def params(self, config):
        self.writer.add_text("config", "```\n" + json.dumps(config, ensure_ascii=False, indent=1, default=str)
                             + "\n```")

    def step(self, step, losses, learning_rate):
        for name, value in losses.items():
            self.writer.add_scalar(f"{self.stage}/{name}", value, step)
        self.writer.add_scalar(f"{self.stage}/learning_rate", learning_rate, step)

    def epoch(self, epoch, metrics, prefix="dev"):
        self.writer.add_scalar(f"{prefix}/micro_f1", metrics["micro"]["f1"], epoch)
        self.writer.add_scalar(f"{prefix}/macro_f1", metrics["macro"]["f1"], epoch)
        for name, value in _per_label(metrics, prefix).items():
            self.writer.add_scalar(name, value, epoch)

    def finish(self, folder, labels, thresholds, name=None):
        where = f"{name}/" if name else ""
        rows = "\n".join(f"| {label} | {t:.3f} |" for label, t in zip(labels, thresholds))
        self.writer.add_text(f"{where}thresholds", "| label | threshold |\n|---|---|\n" + rows)
        card = folder / "README.md"
        if card.is_file():
            self.writer.add_text(f"{where}model_card", card.read_text(encoding="utf-8"))

    def close(self):
        self.writer.close()


def mlflow_uri(log_dir: Path) -> str:
    """The local store under ``log_dir``: SQLite where SQLAlchemy is installed (full mlflow), else the file store
    (mlflow-skinny), which MLflow 3 keeps in maintenance and allows once asked to."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return (Path(log_dir) / "mlruns").resolve().as_uri()
    return f"sqlite:///{(Path(log_dir) / 'mlflow.db').resolve()}"


class MlflowTracker(Tracker):
    def __init__(self, log_dir: Path, experiment: str, run_name: str):
        try:
            import mlflow
        except ImportError:
            raise LabelwiseError("`report_to` mlflow needs mlflow: pip install mlflow (or mlflow-skinny)") from None
        self.mlflow = mlflow
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or mlflow_uri(log_dir))
        mlflow.set_experiment(_name(experiment) or "labelwise")
        self.run = mlflow.start_run(run_name=run_name)

    def params(self, config):
        self.mlflow.log_params({k: json.dumps(v, ensure_ascii=False, default=str)[:500] if not isinstance(
            v, (str, int, float, bool, type(None))) else v for k, v in config.items()})

    def step(self, step, losses, learning_rate):
        self.mlflow.log_metrics({**{f"{self.stage}/{k}": v for k, v in losses.items()},
                                 f"{self.stage}/learning_rate": learning_rate}, step=step)

    def epoch(self, epoch, metrics, prefix="dev"):
        self.mlflow.log_metrics({f"{_name(prefix)}/micro_f1": metrics["micro"]["f1"],
                                 f"{_name(prefix)}/macro_f1": metrics["macro"]["f1"],
                                 **_per_label(metrics, _name(prefix))}, step=epoch)

    def finish(self, folder, labels, thresholds, name=None):
        where = f"{name}/" if name else ""
        self.mlflow.log_dict({label: float(t) for label, t in zip(labels, thresholds)}, f"{where}thresholds.json")
        for file in ("README.md", "labelwise.json"):
            if (folder / file).is_file():
                self.mlflow.log_artifact(str(folder / file), artifact_path=name)

    def close(self):
        self.mlflow.end_run()


def open_tracker(report_to: str, save_dir: str, logging_dir: str | None = None, experiment: str = "labelwise",
                 enabled: bool = True) -> Tracker:
    """The tracker ``report_to`` names (``enabled`` False, as on DDP ranks but the first: none)."""
    if report_to not in REPORT_TO:
        raise LabelwiseError(f"`report_to` must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
    if report_to == "none" or not enabled:
        return Tracker()
    folder = Path(logging_dir) if logging_dir else Path(f"{os.path.abspath(save_dir)}_logs")
    folder.mkdir(parents=True, exist_ok=True)
    if report_to == "tensorboard":
        return TensorBoardTracker(folder)
    return MlflowTracker(folder, experiment, Path(save_dir).name)

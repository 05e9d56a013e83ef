"""TrainConfig: every setting of ``labelwise train``, with its default, in one place."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from labelwise.errors import LabelwiseError
from labelwise.model.encoders import DEFAULT_MODEL, POOLINGS
from labelwise.training.losses import LOSSES

log = logging.getLogger("labelwise")


@dataclass
class TrainConfig:
    dataset_dir: str
    save_dir: str = "checkpoint"
    model_name: str = DEFAULT_MODEL
    max_seq_length: int = 128
    batch_size: int | None = None  # None → 32, or 8 with few_shot (see auto_batch_size)
    learning_rate: float | None = None  # None → by encoder size (see auto_learning_rate)
    head_learning_rate: float | None = None  # None → HEAD_LR_MULTIPLIER × learning_rate
    epochs: int | None = None  # None → by dataset size (see auto_epochs)
    pooling: str = "auto"  # auto | mean | cls
    head_prior: bool = True  # start the head's bias at each label's log-odds in train (else 0)
    early_stop: bool = False
    early_stop_nums: int = 4
    logging_steps: int = 5
    weight_decay: float = 0.01  # encoder weights only; never biases, LayerNorm or the head
    warmup: bool = True
    warmup_steps: int = 0  # > 0 wins; else --warmup means warmup_proportion of all steps
    warmup_proportion: float = 0.1
    max_grad_norm: float = 1.0
    init_from_ckpt: str | None = None
    resume: bool = False
    seed: int = 3
    device: str | None = None
    loss: str = "bce"
    pos_weight: str | None = None  # None | "auto"
    threshold_tuning: bool = True
    baseline: bool = True  # train the TF-IDF + linear SVM baseline first and report it beside the model
    few_shot: bool = False  # a few examples per label: contrastive pairs + label names (labelwise.training.fewshot)
    bf16: bool | None = None  # bfloat16 autocast; None = where it was measured faster (CPUs with AMX), see bf16_auto
    max_train_samples: int | None = None  # a random subset, for quick runs
    max_dev_samples: int | None = None
    train_file: str = "train.txt"
    dev_file: str = "dev.txt"
    test_file: str = "test.txt"
    label_file: str = "label.txt"
    progress: bool = True

    def validate(self) -> None:
        positive = ("max_seq_length", "batch_size", "epochs", "early_stop_nums", "logging_steps")
        for name in positive:
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise LabelwiseError(f"`{name}` must be positive, got {getattr(self, name)}")
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise LabelwiseError(f"`{name}` must be in (0, 1), got {value}")
        if self.pooling not in POOLINGS:
            raise LabelwiseError(f"`pooling` must be one of {', '.join(POOLINGS)}")
        if self.loss not in LOSSES:
            raise LabelwiseError(f"`loss` must be one of {', '.join(LOSSES)}")
        if self.pos_weight not in (None, "auto"):
            raise LabelwiseError("`pos_weight` takes only 'auto'")


__all__ = ['TrainConfig']


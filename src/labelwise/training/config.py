"""TrainConfig and AdaptConfig: every setting of ``labelwise train`` and ``labelwise adapt``, with its default and
help, in one place.

The ``train`` command's flags are made from these fields (:mod:`labelwise.settings`); this module imports no torch,
so the command line can build its parser without it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from labelwise.data.tables import DatasetFiles, TableColumns
from labelwise.errors import LabelwiseError
from labelwise.model.encoders import POOLINGS
from labelwise.predict.batching import LONG_TEXT_MODES, WINDOW_POOLS
from labelwise.settings import check_fields, same_setting, setting
from labelwise.training.tracking import REPORT_TO

log = logging.getLogger("labelwise")

OBJECTIVES = ("mlm", "contrastive", "both")  # of labelwise adapt (labelwise.training.adapt)
LOSSES = ("bce", "focal", "asymmetric")  # implemented in labelwise.training.losses
LONG_TEXT_CHOICES = ("auto",) + LONG_TEXT_MODES


@dataclass
class TrainConfig:
    dataset_dir: str = setting(help="folder with train.txt, dev.txt, label.txt (or train.csv / .tsv / .jsonl / "
                                    ".parquet ..., or a Hugging Face dataset saved with save_to_disk)")
    save_dir: str = setting("checkpoint", help="where the best checkpoint goes")
    text_column: str | None = same_setting(TableColumns, "text_column")  # tables: labelwise.data.tables
    label_column: str | None = same_setting(TableColumns, "label_column")
    label_columns: list[str] | None = same_setting(TableColumns, "label_columns")
    label_sep: str = same_setting(TableColumns, "label_sep")
    overwrite: bool = setting(False, help="write into --save_dir even when it is a folder labelwise did not write "
                              "(its files of other names stay; the dataset folder is always refused)")
    model_name: str | None = setting(
        None, help="default: the offline encoder for the training texts' script (mostly Chinese characters → "
                   "m3e-small, else all-minilm-l6-v2, English); m3e-small, all-minilm-l6-v2, ernie-3.0-medium-zh "
                   "etc. (hub, needs internet), any hub id or local folder")
    max_seq_length: int | None = setting(
        None, help="tokens per window; default: the shortest of 128 / 256 / 512 that holds 90%% of the training texts "
                   "whole, else 128 (long texts are then read in windows, see --long_text)", minimum=1)
    long_text: str = setting("auto", choices=LONG_TEXT_CHOICES,
                             help="texts longer than max_seq_length: truncate (read the first tokens), slide (read "
                                  "overlapping windows and pool their logits, in training and prediction alike) or "
                                  "auto: slide when at least 10%% of the training texts are longer (default)")
    window_pool: str = setting("max", choices=WINDOW_POOLS, help="with windows: a text's logit per label is the "
                               "max (default) or the mean of its windows'")
    batch_size: int | None = setting(None, help="default 32; 8 with --few_shot", minimum=1)
    learning_rate: float | None = setting(
        None, help="encoder learning rate (default: 1e-4 for encoders up to 512 wide, 3e-5 for larger ones)")
    head_learning_rate: float | None = setting(
        None, help="learning rate of the new linear head (default: 30 × --learning_rate)")
    epochs: int | None = setting(
        None, help="default: enough for 600 optimiser steps, at least 3 and at most 40 epochs", minimum=1)
    pooling: str = setting("auto", choices=POOLINGS,
                           help="how the head reads the encoder: mean over tokens, or the [CLS] vector (through the "
                                "encoder's pooler); auto = mean for sentence encoders (m3e, MiniLM), cls otherwise")
    head_prior: bool = setting(True, cli=False,
                               help="start the head's bias at each label's log-odds in train (else 0)")
    early_stop: bool = setting(False, help="stop after --early_stop_nums epochs without gain")
    early_stop_nums: int = setting(4, help="epochs without gain before --early_stop stops", minimum=1)
    logging_steps: int = setting(5, help="log the loss every this many steps", minimum=1)
    weight_decay: float = setting(0.01, help="AdamW decay of the encoder's weight matrices (never biases, "
                                  "LayerNorm or the head)", minimum=0)
    warmup: bool = setting(True, action="bool",
                           help="warm the learning rate up over --warmup_proportion (default on; --no-warmup turns "
                                "it off)")
    warmup_steps: int = setting(0, help="warm-up steps; above 0 it wins over --warmup_proportion", minimum=0)
    warmup_proportion: float = setting(0.1, help="share of all steps spent warming up", minimum=0, maximum=1)
    max_grad_norm: float = setting(1.0, help="gradients are clipped to this norm", cli=False)
    init_from_ckpt: str | None = setting(None, help="start from the weights of this checkpoint folder")
    resume: bool = setting(False, help="continue an interrupted run of the same --save_dir")
    seed: int = setting(3, help="random seed")
    device: str | None = setting(None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    loss: str = setting("bce", help="bce, focal or asymmetric", choices=LOSSES)
    pos_weight: str | None = setting(None, help="auto: weight positives by neg/pos per label", choices=("auto",))
    threshold_tuning: bool = setting(True, flags=["--no_threshold_tuning"],
                                     help="keep 0.5 for every label instead of tuning per-label thresholds on dev")
    baseline: bool = setting(True, flags=["--no_baseline"],
                             help="skip the TF-IDF + linear SVM baseline trained (in seconds) beside the model")
    blend: str = setting("off", choices=("off", "on"),
                         help="on: mix the baseline's scores into the model's, per label, where that helps on dev "
                              "(labelwise.model.blend; measured: +0.75 micro-F1, -0.6 macro-F1 on small data, so "
                              "off by default)")
    calibration: str = setting("off", choices=("auto", "off"),
                               help="auto: per-label temperature scaling fitted on dev, kept where it lowers dev's "
                                    "expected calibration error (labelwise.evaluation.calibration); off (default: "
                                    "measured -0.16 micro-F1 on divorce, +0.40 macro on GoEmotions): raw scores")
    adapt_pool: str | None = setting(None, help="unlabelled texts (a file, one a line, or a table) to adapt the "
                                     "encoder on first (labelwise adapt, into <save_dir>.adapted; see docs/few-shot.md)")
    adapt_objective: str = setting("contrastive", choices=OBJECTIVES, help="with --adapt_pool: the objective")
    few_shot: bool = setting(False, help="for a few examples per label: contrastive pairs + label names, then the "
                             "head (see docs/few-shot.md)")
    bf16: bool | None = setting(None, action="bool",
                                help="bfloat16 autocast (GPUs with bf16, CPUs with AVX-512 BF16 or AMX; fp32 "
                                     "elsewhere, with a warning). Default: on only on CPUs with AMX, where it was "
                                     "measured faster; --no-bf16: off")
    max_train_samples: int | None = setting(None, help="train on a random subset", minimum=1)
    max_dev_samples: int | None = setting(None, help="evaluate on a random subset", minimum=1)
    report_to: str = setting("none", choices=REPORT_TO, help="experiment tracking: none, tensorboard or mlflow "
                             "(per step loss and learning rate, per epoch dev F1s, the config, thresholds, model card)")
    logging_dir: str | None = setting(None, help="where --report_to writes (default: <save_dir>_logs; mlflow: "
                                                 "$MLFLOW_TRACKING_URI when set)")
    train_file: str = same_setting(DatasetFiles, "train_file")
    dev_file: str = same_setting(DatasetFiles, "dev_file")
    test_file: str = same_setting(DatasetFiles, "test_file")
    label_file: str = same_setting(DatasetFiles, "label_file")
    hierarchy_sep: str = setting("##", help="separator of label paths in label.txt and the data (体育##足球: a tree; "
                                 "stored with the model); none: read every label as a flat name")
    progress: bool = setting(True, help="progress bars (the command line's --quiet turns them off)", cli=False)

    def validate(self) -> "TrainConfig":
        check_fields(self)
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise LabelwiseError(f"`{name}` must be in (0, 1), got {value}")
        return self


@dataclass
class AdaptConfig:
    pool_file: str | None = setting(None, help="unlabelled texts: one a line (text<TAB>labels lines give their "
                                               "text), or a CSV / JSONL / Parquet table's text column")
    dataset_dir: str | None = same_setting(DatasetFiles, "dataset_dir", help="a dataset folder: its train (and "
                                           "data.txt) texts join the pool, and its dev and test texts are kept out "
                                           "of it")
    save_dir: str = setting("adapted", help="where the adapted encoder folder goes")
    model_name: str | None = setting(None, help="the encoder to adapt (default: the offline encoder for the "
                                                "pool's script, as train picks it)")
    objective: str = setting("contrastive", choices=OBJECTIVES,
                             help="mlm (masked tokens), contrastive (SimCSE: dropout noise) or both")
    epochs: int = setting(1, help="passes over the pool", minimum=1)
    max_steps: int | None = setting(None, help="stop after this many steps (default: the epochs' worth)", minimum=1)
    batch_size: int = setting(32, help="texts per step (contrastive: also the negatives of each text)", minimum=2)
    learning_rate: float = setting(3e-5, help="AdamW learning rate", minimum=0)
    max_seq_length: int = setting(128, help="tokens per text (longer texts are cut)", minimum=8)
    mlm_probability: float = setting(0.15, help="share of tokens masked for mlm", minimum=0.01, maximum=0.9)
    temperature: float = setting(0.05, help="contrastive: softmax temperature of the cosine similarities",
                                 minimum=0.001)
    pooling: str = setting("auto", choices=("auto", "mean", "cls"), help="contrastive: how a text's vector is read "
                           "(auto: as train reads the encoder)")
    held_out: float = setting(0.05, help="share of the pool (at most 500 texts) kept back to measure the losses "
                                         "before and after", minimum=0, maximum=0.5)
    save_steps: int = setting(500, help="write the resume state every this many steps", minimum=1)
    resume: bool = setting(False, help="continue an interrupted run of the same --save_dir")
    overwrite: bool = setting(False, help="write into --save_dir even when labelwise did not write it")
    seed: int = setting(3, help="random seed")
    device: str | None = setting(None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    text_column: str | None = same_setting(TableColumns, "text_column")

    def validate(self) -> "AdaptConfig":
        check_fields(self)
        if not self.pool_file and not self.dataset_dir:
            raise LabelwiseError("give the unlabelled texts: `pool_file` FILE and/or `dataset_dir` DIR")
        return self


__all__ = ["AdaptConfig", "LOSSES", "OBJECTIVES", "TrainConfig"]

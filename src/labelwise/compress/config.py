"""PruneConfig and ExportConfig: every setting of ``labelwise prune`` and ``labelwise export``, with its default and
help (the flags come from these fields).

Apart from :mod:`labelwise.compress.prune` and the exporters (which import torch), so that the command line builds
its parser without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from labelwise.errors import LabelwiseError
from labelwise.predict.onnx_backend import MODEL_FILES
from labelwise.settings import check_fields, same_setting, setting
from labelwise.training.config import TrainConfig


@dataclass
class PruneConfig:
    dataset_dir: str = setting(help="folder with train.txt, dev.txt, label.txt")
    params_path: str = setting("checkpoint", help="the fine-tuned checkpoint to prune",
                               flags=["--params_path", "--params_dir"])
    output_dir: str = setting("prune", help="one folder per shape goes here")
    overwrite: bool = setting(False, help="write a shape's folder even when labelwise did not write it (its files "
                                          "of other names stay)")
    width_mult_list: Sequence[str | float] = setting(
        ("3/4", "1/2"), nargs="+", metavar="RATIO", type=str,
        help="share of attention heads and FFN neurons kept, e.g. 3/4 1/2 (ratio × heads must be whole)")
    depth_mult_list: Sequence[str | float] = setting(
        ("1",), nargs="+", metavar="RATIO", type=str,
        help="share of layers kept (the most useful ones), e.g. 1/2; every width × depth is trained")
    learning_rate: float = setting(3e-5, help="learning rate (PaddleNLP's; measured on divorce, see docs/pruning.md)")
    batch_size: int = setting(32, help="texts per training step", minimum=1,
                              flags=["--per_device_train_batch_size", "--batch_size"])
    eval_batch_size: int = setting(32, help="texts per evaluation batch", minimum=1,
                                   flags=["--per_device_eval_batch_size"])
    epochs: int = setting(10, help="default %(default)s (PaddleNLP's); on a CPU 3 did, see docs/pruning.md",
                          minimum=1, flags=["--num_train_epochs", "--epochs"])
    max_seq_length: int | None = setting(None, help="default: the checkpoint's", minimum=1)
    logging_steps: int = setting(5, help="log the loss every this many steps", minimum=1)
    save_steps: int = setting(100, help="evaluate every shape (and keep its best) this often", minimum=1)
    seed: int = setting(3, help="random seed")
    device: str | None = setting(None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    max_train_samples: int | None = same_setting(TrainConfig, "max_train_samples",
                                                 help="distil on a random subset of train")
    max_dev_samples: int | None = same_setting(TrainConfig, "max_dev_samples",
                                               help="rank and evaluate on a random subset of dev")
    report_to: str = same_setting(TrainConfig, "report_to", help="experiment tracking: none, tensorboard or mlflow "
                                  "(each shape's distillation loss and dev F1s, the config, thresholds, model cards)")
    logging_dir: str | None = same_setting(TrainConfig, "logging_dir", help="where --report_to writes (default: "
                                           "<output_dir>_logs; mlflow: $MLFLOW_TRACKING_URI when set)")
    progress: bool = setting(True, help="progress bars (the command line's --quiet turns them off)", cli=False)

    def validate(self) -> PruneConfig:
        check_fields(self)
        if not 0 < self.learning_rate < 1:
            raise LabelwiseError(f"`learning_rate` must be in (0, 1), got {self.learning_rate}")
        if not self.width_mult_list or not self.depth_mult_list:
            raise LabelwiseError("`width_mult_list` and `depth_mult_list` need at least one ratio each")
        return self


@dataclass
class ExportConfig:
    """What ``labelwise export`` writes besides the model folder it reads (``--params_path``) and, for Triton, an
    existing export (``--model_path``)."""

    format: str = setting("onnx", choices=("onnx", "openvino"),
                          help="onnx (ONNX Runtime; default) or openvino (the OpenVINO runtime, CPUs; the openvino "
                               "extra)")
    output_path: str = setting("export", help="export folder to write (replaced as a whole)")
    quantize: str | None = setting(None, choices=("int8",), help="also write an int8 model (CPU): model.int8.onnx, "
                                   "or openvino_model.int8.xml")
    int8_mode: str = setting("static", choices=("static", "weights"),
                             help="OpenVINO int8: static (calibrated on texts; int8 matrix products, default) or "
                                  "weights (weights only, no texts needed)")
    calibration_file: str | None = setting(None, help="OpenVINO int8 static: texts to calibrate on (one a line, or "
                                           "a table); default the first 300 of the checkpoint's dev split")
    fp16: bool = setting(False, help="also write model.fp16.onnx (GPU)")
    features: bool = setting(False, help="add a second output, the pooled text vectors, so `labelwise index` can "
                             "embed with ONNX Runtime")
    opset: int = setting(17, help="ONNX opset (at least 14)", minimum=14)
    optimize: bool = setting(True, flags=["--no_optimize"],
                             help="keep the plain graph (default: fuse attention/layer-norm/GELU with ONNX Runtime's "
                                  "optimizer)")
    triton: str | None = setting(None, metavar="REPO", help="also write a Triton model repository here")
    triton_precision: str = setting("fp32", choices=tuple(MODEL_FILES),
                                    help="which of the export's ONNX files goes in the repository")
    triton_name: str = setting("cls_multi_label", help="ensemble name")
    triton_device: str | None = setting(None, choices=("cpu", "gpu"),
                                        help="where Triton runs the ONNX model (default: gpu for fp16, else cpu)")
    max_batch_size: int = setting(64, help="Triton max_batch_size", minimum=1)

    def validate(self) -> ExportConfig:
        check_fields(self)
        if self.format == "openvino" and (self.fp16 or self.triton):
            raise LabelwiseError("`fp16` and `triton` are for format onnx (an OpenVINO export runs fp32, bf16 or "
                                 "int8)")
        return self


__all__ = ["PruneConfig", "ExportConfig"]

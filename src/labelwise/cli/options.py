"""Flags that several commands share and no config holds, each declared once (as :mod:`labelwise.settings` fields).

A command takes the ones it needs with ``add_flags(parser, ModelSource, only=...)``, saying where its meaning
differs (``required``, ``defaults``, ``help_overrides``), and reads them back with ``from_args``. The settings
of ``train``, ``prune``, ``data sparse`` and ``serve`` live in their configs (TrainConfig, PruneConfig, SparseConfig,
ServeConfig), not here.
"""
from __future__ import annotations

from dataclasses import dataclass

from labelwise.data.tables import DatasetFiles  # noqa: F401  (declared beside the table columns)
from labelwise.evaluation.decision import HIERARCHY_MODES
from labelwise.predict import backends
from labelwise.settings import setting

PRECISIONS = backends.precisions()  # for help texts; the registry checks the value against the folder's kind
BACKENDS = ("auto",) + backends.names()


@dataclass
class ModelSource:
    """Which model a command opens, and how it runs it."""

    params_path: str = setting("checkpoint", help="checkpoint folder from `labelwise train`")
    model_path: str | None = setting(None, help="an export folder (`labelwise export`) instead of a checkpoint")
    index_dir: str | None = setting(None, help="a retrieval index from `labelwise index` instead of a model")
    backend: str = setting("auto", help=f"how to run the model: auto (by what the folder holds) or one of "
                                        f"{', '.join(BACKENDS[1:])}")
    precision: str = setting("fp32", help=f"which model file of an export: {', '.join(PRECISIONS)}")
    device: str | None = setting(None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    num_threads: int | None = setting(None, help="CPU threads for inference")
    batch_size: int = setting(32, help="texts per forward pass")
    max_seq_length: int | None = setting(None, help="default: the one the model was trained with")

    def source(self) -> tuple[str, str]:
        """(folder, backend): an index wins, then ``model_path`` (an export), then ``params_path``."""
        if self.index_dir:
            return self.index_dir, backends.for_option("index_dir")
        return self.model_path or self.params_path, self.backend

    def load(self):
        """The :class:`~labelwise.predict.classifier.Classifier`, opened the one way every command uses."""
        from labelwise.predict.classifier import Classifier

        path, backend = self.source()
        clf = Classifier.load(path, backend=backend, device=self.device, num_threads=self.num_threads,
                              precision=self.precision)
        if self.max_seq_length is not None:  # every text the commands score is cut (or windowed) at this length
            clf.max_seq_length = clf.check_length(self.max_seq_length)
        return clf


@dataclass
class Decision:
    """Which labels a text gets from its probabilities."""

    threshold: float | None = setting(
        None, help="one threshold for every label (default: the checkpoint's tuned thresholds, else 0.5)")
    top_k_min: int = setting(0, help="always return at least this many labels (1 = never empty)")
    top_k_max: int | None = setting(None, help="return at most this many labels")
    long_text: str = setting("auto", choices=("auto", "truncate", "slide"),
                             help="texts longer than max_seq_length: auto = as the model was trained (cut, or read "
                                  "in windows: labelwise.json's long_text); truncate = cut (PaddleNLP's way); slide = "
                                  "overlapping windows, each label's logit pooled as in training (max by default)")
    hierarchy: str = setting("consistent", choices=HIERARCHY_MODES,
                             help="label trees (体育##足球): consistent = a child only with its parent, a predicted "
                                  "child brings its parent; leaves = print only the deepest predicted labels; none "
                                  "= each label on its own (default consistent; flat labels: no effect)")

    def options(self) -> dict:
        return {"threshold": self.threshold, "top_k_min": self.top_k_min, "top_k_max": self.top_k_max,
                "long_text": self.long_text, "hierarchy": self.hierarchy}


@dataclass
class LabelPaths:
    """How label names spell a label tree (``体育##足球``), for the commands that read labels but train nothing."""

    hierarchy_sep: str = setting("##", help="separator of label paths (体育##足球: a tree; each path brings its "
                                 "parents); none: read every label as a flat name")
    label_naming: str = setting("last", choices=("last", "path"),  # labelwise.training.zeroshot.LABEL_NAMINGS
                                help="how a tree label is put in words for the encoder: last = its last path "
                                     "element (足球), path = the whole path joined by spaces (体育 足球)")


@dataclass
class RunOptions:
    """Odds and ends that many commands have."""

    seed: int = setting(3, help="random seed")
    overwrite: bool = setting(False, help="replace existing output files")
    format: str = setting("text", help="how results are printed", choices=("text", "json"))


@dataclass
class InterpretFiles:
    """What ``interpret words`` and ``interpret examples`` explain, and where they write."""

    interpret_input_file: str = setting("bad_case.txt", help="bad_case.txt from `labelwise evaluate`, "
                                        "text<TAB>labels lines or bare texts")
    text: list | None = setting(None, action="append",
                                help="a text to interpret (repeatable; replaces --interpret_input_file)")
    interpret_result_file: str = setting("sent_interpret.txt", help="output")


@dataclass
class GlobalOptions:
    """The flags of ``labelwise`` itself, before the command."""

    quiet: bool = setting(False, flags=["-q", "--quiet"], help="no progress bars, warnings only")


@dataclass
class HubDataset:
    """A Hugging Face dataset in place of ``--dataset_dir`` (:mod:`labelwise.data.hf`)."""

    hf_dataset: str | None = setting(None, metavar="NAME_OR_PATH",
                                     help="a Hugging Face dataset instead of --dataset_dir: a hub name (needs "
                                          "internet) or a local path datasets.load_dataset reads; saved once under "
                                          "$LABELWISE_CACHE (~/.cache/labelwise)")
    hf_config: str | None = setting(None, help="the --hf_dataset configuration (e.g. simplified)")


__all__ = ["GlobalOptions", "HubDataset", "DatasetFiles", "ModelSource", "Decision", "LabelPaths", "RunOptions", "InterpretFiles", "PRECISIONS",
           "BACKENDS"]

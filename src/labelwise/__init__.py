"""labelwise: multi-label text classification, from labelled text files to a served model.

``import labelwise`` does not import torch: :func:`train` and :class:`TrainConfig` (``labelwise.training``)
are loaded on first use.

The package's folders follow the flow: ``data`` → ``model`` → ``predict`` → ``training`` → ``compress`` /
``analysis`` → ``serve`` → ``cli``, with ``evaluation`` (metrics and the decision rule, no model code) below
``predict``. A module imports only from its own folder, from folders before it, and from the ground floor
(``errors``, ``progress``, ``files``).
"""
from labelwise.data.dataset import Dataset, Example, load_dataset
from labelwise.errors import DataError, LabelwiseError
from labelwise.evaluation.evaluate import evaluate
from labelwise.predict.classifier import Classifier, Prediction
from labelwise.predict.output import predict_file

__version__ = "0.1.0"

_LAZY = {"train": "labelwise.training.finetune", "TrainConfig": "labelwise.training.config"}  # name → module that defines it (imports torch)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Classifier", "Prediction", "Dataset", "Example", "load_dataset", "train", "TrainConfig", "evaluate",
           "predict_file", "LabelwiseError", "DataError", "__version__"]

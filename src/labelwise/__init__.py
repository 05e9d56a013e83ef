"""labelwise: multi-label text classification, from labelled text files to a served model.

``import labelwise`` does not import torch: :func:`train` and :class:`TrainConfig` (``labelwise.training``)
are loaded on first use.
"""
from .data import Dataset, Example, load_dataset
from .errors import DataError, LabelwiseError
from .evaluation import evaluate
from .inference import Classifier, Prediction
from .prediction import predict_file

__version__ = "0.1.0"

_LAZY = {"train": "training", "TrainConfig": "training"}  # name → module that defines it (imports torch)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Classifier", "Prediction", "Dataset", "Example", "load_dataset", "train", "TrainConfig", "evaluate",
           "predict_file", "LabelwiseError", "DataError", "__version__"]

"""Every way to make a model: fine-tuning (:func:`train`), few-shot and zero-shot stages, retrieval indexes.

``from labelwise.training import TrainConfig, train``: :class:`TrainConfig` imports no torch; :func:`train`
(and :class:`TrainResult`) import it on first use.
"""
from labelwise.training.config import TrainConfig


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from labelwise.training import finetune

        return getattr(finetune, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainResult", "train"]

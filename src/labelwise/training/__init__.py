"""Every way to make a model: fine-tuning (:func:`train`), few-shot and zero-shot stages, retrieval indexes.

``from labelwise.training import TrainConfig, train`` (this imports torch).
"""
from labelwise.training.config import TrainConfig
from labelwise.training.finetune import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]

"""Prediction output: label a file of texts and write the predictions in the training format."""
from __future__ import annotations

import os
from typing import Sequence

from labelwise.data.dataset import read_texts
from labelwise.files import atomic_write_text, check_outputs
from labelwise.predict.classifier import Classifier, Prediction

__all__ = ["format_predictions", "predict_file"]


def format_predictions(texts: Sequence[str], predictions: Sequence[Prediction], with_scores: bool = False) -> str:
    """``text\\tlabel,label`` lines (the training format); with scores ``label:0.97,label:0.55``."""
    lines = []
    for text, pred in zip(texts, predictions):
        if with_scores:
            field = ",".join(f"{label}:{score:.4f}" for label, score in zip(pred.labels, pred.scores))
        else:
            field = ",".join(pred.labels)
        lines.append(f"{text}\t{field}")
    return "\n".join(lines) + ("\n" if lines else "")


def predict_file(classifier: Classifier, data_file: str | os.PathLike, output_file: str | os.PathLike,
                 with_scores: bool = False, **predict_options) -> list[Prediction]:
    """Predict every line of ``data_file`` and write ``output_file`` (atomically; never over ``data_file``).

    ``predict_options`` go to :meth:`Classifier.predict` (threshold, top_k_min, top_k_max, hierarchy, batch_size,
    ...): for a label tree the lines hold consistent paths (``hierarchy`` consistent), their deepest labels
    (leaves) or the raw per-label decisions (none).
    """
    (output_file,) = check_outputs([output_file], [data_file], overwrite=True)
    texts = read_texts(data_file)
    predictions = classifier.predict(texts, progress=len(texts) > 2000, **predict_options)
    atomic_write_text(output_file, format_predictions(texts, predictions, with_scores))
    return predictions

"""Prediction output: label a file of texts and write the predictions in the training format."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Sequence

from labelwise.data.dataset import read_texts
from labelwise.data.tables import TableColumns
from labelwise.files import atomic_write_text, check_outputs
from labelwise.predict.classifier import Classifier, Prediction

__all__ = ["format_predictions", "predict_file"]


def format_predictions(texts: Sequence[str], predictions: Sequence[Prediction], with_scores: bool = False,
                       kind: str = ".txt") -> str:
    """``text\\tlabel,label`` lines (the training format); with scores ``label:0.97,label:0.55``. ``kind`` .jsonl:
    ``{"text", "labels", "scores"}`` objects; .csv: columns text, labels (comma-joined) and, with scores, scores."""
    if kind == ".jsonl":
        return "".join(json.dumps({"text": t, "labels": p.labels, **({"scores": p.scores} if with_scores else {})},
                                  ensure_ascii=False) + "\n" for t, p in zip(texts, predictions))
    if kind == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["text", "labels"] + (["scores"] if with_scores else []))
        for t, p in zip(texts, predictions):
            writer.writerow([t, ",".join(p.labels)] + ([",".join(f"{s:.4f}" for s in p.scores)] if with_scores else []))
        return out.getvalue()
    lines = []
    for text, pred in zip(texts, predictions):
        if with_scores:
            field = ",".join(f"{label}:{score:.4f}" for label, score in zip(pred.labels, pred.scores))
        else:
            field = ",".join(pred.labels)
        lines.append(f"{text}\t{field}")
    return "\n".join(lines) + ("\n" if lines else "")


def predict_file(classifier: Classifier, data_file: str | os.PathLike, output_file: str | os.PathLike,
                 with_scores: bool = False, columns: TableColumns | None = None, texts: Sequence[str] | None = None,
                 **predict_options) -> list[Prediction]:
    """Predict every line of ``data_file`` (or its text column: a table, ``columns``; or the given ``texts``) and
    write ``output_file`` (atomically; never over ``data_file``) in the format its extension names: .jsonl, .csv,
    else the training format.

    ``predict_options`` go to :meth:`Classifier.predict` (threshold, top_k_min, top_k_max, hierarchy, batch_size,
    ...): for a label tree the lines hold consistent paths (``hierarchy`` consistent), their deepest labels
    (leaves) or the raw per-label decisions (none).
    """
    (output_file,) = check_outputs([output_file], [data_file], overwrite=True)
    texts = read_texts(data_file, columns) if texts is None else list(texts)
    predictions = classifier.predict(texts, progress=len(texts) > 2000, **predict_options)
    atomic_write_text(output_file, format_predictions(texts, predictions, with_scores, Path(output_file).suffix.lower()))
    return predictions

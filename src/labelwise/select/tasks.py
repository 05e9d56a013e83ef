"""Selected texts → annotation tasks with the model's guesses, and annotated texts → train.txt.

* :func:`write_tasks` writes doccano JSONL (``{"text", "label": [guesses], "scores", "uncertainty"}`` a line: doccano
  shows the labels pre-filled and the rest as metadata) or Label Studio task JSON (``data.text`` plus a
  ``predictions`` entry carrying ``model_version``, ``score`` and a ``choices`` result), so annotators correct
  guesses instead of typing every label.
* :func:`merge_into_train` adds annotated examples (from ``read_doccano`` / ``read_label_studio``) to a dataset's
  train.txt: labels must be in label.txt, texts already in train or dev are skipped and counted (a text whose
  new labels differ from its old ones is reported, and the old ones kept), dev is never touched.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labelwise.data.annotation import write_doccano
from labelwise.data.dataset import Example, format_example, load_dataset
from labelwise.errors import DataError, LabelwiseError, shorten
from labelwise.files import atomic_write_text, check_outputs
from labelwise.select.pick import Selection

__all__ = ["FORMATS", "write_tasks", "label_studio_tasks", "MergeReport", "merge_into_train"]

FORMATS = ("doccano", "labelstudio")


def label_studio_tasks(selection: Selection, from_name: str = "label", to_name: str = "text") -> list[dict]:
    """Label Studio tasks; ``from_name`` / ``to_name`` are the names of the labelling config's ``Choices`` and
    ``Text`` tags (``<Choices name="label" toName="text" choice="multiple">``)."""
    tasks = []
    for i, text in enumerate(selection.texts):
        task: dict = {"data": {"text": text}, "meta": {"selection_score": selection.scores[i],
                                                      "strategy": selection.strategy}}
        guesses = selection.predicted(i)
        if selection.probabilities is not None:
            confidence = min((p for _, p in guesses), default=float(selection.probabilities[i].max()))
            task["predictions"] = [{
                "model_version": selection.model_version,
                "score": round(float(confidence), 4),
                "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                            "value": {"choices": [label for label, _ in guesses]}}] if guesses else [],
            }]
        tasks.append(task)
    return tasks


def write_tasks(selection: Selection, path: str | os.PathLike, fmt: str = "doccano", *, overwrite: bool = False,
                from_name: str = "label", to_name: str = "text") -> Path:
    """Write the selection for the annotation tool ``fmt`` (doccano | labelstudio); atomic, never over a file
    that exists unless ``overwrite``."""
    if fmt not in FORMATS:
        raise LabelwiseError(f"`format` {fmt!r}: use one of {', '.join(FORMATS)}")
    (path,) = check_outputs([path], [], overwrite=overwrite)
    if fmt == "labelstudio":
        body = json.dumps(label_studio_tasks(selection, from_name, to_name), ensure_ascii=False, indent=1)
        return atomic_write_text(path, body + "\n")
    meta = [{"uncertainty": selection.scores[i], "scores": dict(selection.predicted(i))}
            for i in range(len(selection.texts))]
    return write_doccano(path, [(text, [label for label, _ in selection.predicted(i)])
                                for i, text in enumerate(selection.texts)], meta)


@dataclass
class MergeReport:
    added: int
    already_in_train: int
    already_in_dev: int
    conflicts: list[tuple[str, tuple[str, ...], tuple[str, ...]]]  # (text, kept labels, annotated labels)
    repeats: int
    train_file: Path

    def summary(self) -> str:
        lines = [f"{self.added} new examples added to {self.train_file}; skipped: {self.already_in_train} already "
                 f"in train, {self.already_in_dev} in dev, {self.repeats} repeated in the annotations"]
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} texts were annotated differently from train.txt; train.txt keeps "
                         "its labels (edit it by hand to take the new ones):")
            for text, old, new in self.conflicts[:5]:
                lines.append(f"  {shorten(text, 60)}: train [{','.join(old)}] vs annotated [{','.join(new)}]")
        return "\n".join(lines)


def merge_into_train(examples: Sequence[Example], dataset_dir: str | os.PathLike, source: str | os.PathLike,
                     train_file: str = "train.txt", dev_file: str = "dev.txt",
                     label_file: str = "label.txt") -> MergeReport:
    """Append the new annotated ``examples`` to ``dataset_dir``'s train file; see the module docstring."""
    ds = load_dataset(dataset_dir, train_file=train_file, dev_file=dev_file, label_file=label_file,
                      require=("train",))
    known = set(ds.labels)
    for number, example in enumerate(examples, start=1):
        unknown = [label for label in example.labels if label not in known]
        if unknown:
            raise DataError(source, example.line or number,
                            f"label {shorten(unknown[0])} is not in {Path(dataset_dir) / label_file}",
                            "fix it in the annotation tool, or add the label to label.txt and train again")
    train = {e.text: e.labels for e in ds.train}
    dev = {e.text for e in ds.dev}
    added, conflicts, in_train, in_dev, repeats, seen = [], [], 0, 0, 0, set()
    for example in examples:
        if example.text in seen:
            repeats += 1
            continue
        seen.add(example.text)
        if example.text in dev:
            in_dev += 1
        elif example.text in train:
            in_train += 1
            if set(train[example.text]) != set(example.labels):
                conflicts.append((example.text, train[example.text], example.labels))
        else:
            added.append(example)
    path = Path(dataset_dir) / train_file
    if added:
        old = path.read_text(encoding="utf-8-sig")
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(path, old + "".join(format_example(e.text, e.labels) + "\n" for e in added))
    return MergeReport(len(added), in_train, in_dev, conflicts, repeats, path)

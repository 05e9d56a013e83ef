"""Selected texts → annotation tasks with the model's guesses, and annotated texts → train.txt.

* :func:`write_tasks` writes doccano JSONL (``{"text", "label": [guesses], "scores", "selection_score"}`` a line:
  doccano shows the labels pre-filled and the rest as metadata) or Label Studio task JSON (``data.text`` plus a
  ``predictions`` entry carrying ``model_version``, ``score`` and a ``choices`` result, built as the service's ML
  backend builds its predictions), so annotators correct guesses instead of typing every label.
* :func:`merge_into_train` appends annotated examples (from ``read_doccano`` / ``read_label_studio``) to a dataset's
  train.txt: labels must be in label.txt, texts already in train, dev or test are skipped and counted (a text whose
  new labels differ from its train.txt ones is reported with its line, and the old labels kept: a merge never
  changes or drops a labelled line), dev and test are never touched. The dataset's label names are read with the
  separator of label paths the annotations were read with (``hierarchy_sep``, ``--hierarchy_sep``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labelwise.data.annotation import write_doccano
from labelwise.data.dataset import Example, complete_ancestors, format_example, load_dataset
from labelwise.data.hierarchy import DEFAULT_SEP
from labelwise.data.labelstudio import choices_control, prediction_for
from labelwise.data.tables import is_table, table_file
from labelwise.errors import DataError, LabelwiseError, shorten
from labelwise.files import atomic_write_text, check_outputs
from labelwise.select.pick import Selection

__all__ = ["FORMATS", "MergeReport", "label_studio_tasks", "merge_into_train", "write_tasks"]

FORMATS = ("doccano", "labelstudio")


def label_studio_tasks(selection: Selection, from_name: str = "label", to_name: str = "text") -> list[dict]:
    """Label Studio tasks; ``from_name`` / ``to_name`` are the names of the labelling config's ``Choices`` and
    ``Text`` tags (``<Choices name="label" toName="text" choice="multiple">``). With a model, each task carries its
    guesses as the prediction the service's ML backend would send (:func:`~labelwise.data.labelstudio.prediction_for`,
    whose ``score`` is the task's least certain label decision)."""
    control = choices_control(selection.labels, from_name, to_name)
    tasks = []
    for i, text in enumerate(selection.texts):
        task: dict = {"data": {"text": text}, "meta": {"selection_score": selection.scores[i],
                                                      "strategy": selection.strategy}}
        if selection.probabilities is not None:
            chosen = [label for label, _ in selection.predicted(i)]
            task["predictions"] = [prediction_for(selection.probabilities[i], chosen, selection.labels, control,
                                                  selection.model_version)]
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
    meta = [{"selection_score": selection.scores[i], "scores": dict(selection.predicted(i))}
            for i in range(len(selection.texts))]
    return write_doccano(path, [(text, [label for label, _ in selection.predicted(i)])
                                for i, text in enumerate(selection.texts)], meta)


@dataclass
class MergeReport:
    added: int
    already_in_train: int
    already_in_dev: int
    conflicts: list[tuple[str, tuple[str, ...], tuple[str, ...], int | None]]  # (text, kept, annotated, train line)
    repeats: int
    train_file: Path
    already_in_test: int = 0
    first_line: int = 0  # line of train_file where the added examples start (0: none added)
    unlabelled: int = 0  # added examples with no label
    repeat_conflicts: int = 0  # texts annotated more than once with different labels (the first one is used)

    def summary(self, shown: int = 10) -> str:
        where = (f"{self.added} new examples appended to {self.train_file} (lines {self.first_line}-"
                 f"{self.first_line + self.added - 1}; delete them to undo)" if self.added
                 else f"nothing new to add to {self.train_file}")
        lines = [(f"{where}; skipped: {self.already_in_train} already in train, {self.already_in_dev} in dev, "
                  f"{self.already_in_test} in test, {self.repeats} repeated in the annotations; dev and test "
                  "untouched")]
        if self.unlabelled:
            lines.append(f"new examples without any label: {self.unlabelled}; right if the annotator meant none; "
                         "if they were never annotated, delete those lines and export only finished (approved) "
                         "tasks")
        if self.repeat_conflicts:
            lines.append(f"texts annotated more than once, with different labels: {self.repeat_conflicts}; the "
                         "first annotation was used")
        if self.conflicts:
            lines.append(f"conflicts with train.txt (the same text, other labels): {len(self.conflicts)}; train.txt "
                         "keeps its labels (a merge never changes a labelled line); to take the new ones, edit these "
                         "lines")
            for text, old, new, line in self.conflicts[:shown]:
                at = f"{self.train_file}:{line}" if line else str(self.train_file)
                lines.append(f"  {at} {shorten(text, 60)}: train [{','.join(old)}], annotated [{','.join(new)}]")
            if len(self.conflicts) > shown:
                lines.append(f"  ... and {len(self.conflicts) - shown} more")
        return "\n".join(lines)


def merge_into_train(examples: Sequence[Example], dataset_dir: str | os.PathLike, source: str | os.PathLike,
                     train_file: str = "train.txt", dev_file: str = "dev.txt", test_file: str = "test.txt",
                     label_file: str = "label.txt", hierarchy_sep: str | None = DEFAULT_SEP) -> MergeReport:
    """Append the new annotated ``examples`` to ``dataset_dir``'s train file; see the module docstring.

    Every label must be in label.txt, else nothing is written (:class:`DataError` naming ``source`` and the
    example's line). train.txt's lines are kept byte for byte (line endings, BOM) and the new ones appended, in one
    atomic write; texts already in train, dev or test are skipped and counted.

    ``hierarchy_sep``: how the dataset's label names spell a tree (None or "none": flat names), the same separator
    the annotations were read with. With it the train lines and the annotations are compared with every ancestor
    in place (a train line ``a/b`` is ``a,a/b``), so a text whose labels only differ by a parent left out is no
    conflict, and the lines added carry their ancestors.
    """
    table = table_file(Path(dataset_dir), train_file)
    if table is not None and is_table(table):  # appending text lines would corrupt it, a train.txt beside would hide it
        raise DataError(table, None, "annotations are merged into a train split in the text format only "
                        "(text<TAB>labels lines), not into a table", "write the table's rows as train.txt first, or "
                        "add the annotated rows to the table yourself; nothing was merged")
    ds = load_dataset(dataset_dir, train_file=train_file, dev_file=dev_file, test_file=test_file,
                      label_file=label_file, require=("train",), hierarchy_sep=hierarchy_sep)
    known = set(ds.labels)
    wrong = [e for e in examples if any(label not in known for label in e.labels)]
    if wrong:
        first = wrong[0]
        label = next(label for label in first.labels if label not in known)
        which = "" if first.line else f"the task with text {shorten(first.text, 40)}: "
        others = f" ({len(wrong) - 1} more annotations have unknown labels)" if len(wrong) > 1 else ""
        raise DataError(source, first.line, f"{which}label {shorten(label)} is not in "
                        f"{Path(dataset_dir) / label_file}{others}", "fix it in the annotation tool, or add the label "
                        "to label.txt and train again; nothing was merged")
    examples, _ = complete_ancestors(examples, ds.hierarchy)
    train = {e.text: e for e in ds.train}
    dev = {e.text for e in ds.dev}
    test = {e.text for e in ds.test or []}
    report = MergeReport(0, 0, 0, [], 0, Path(dataset_dir) / train_file)
    added, seen = [], {}
    for example in examples:
        if example.text in seen:
            report.repeats += 1
            report.repeat_conflicts += set(seen[example.text]) != set(example.labels)
            continue
        seen[example.text] = example.labels
        if example.text in dev:
            report.already_in_dev += 1
        elif example.text in test:
            report.already_in_test += 1
        elif example.text in train:
            report.already_in_train += 1
            old = train[example.text]
            if set(old.labels) != set(example.labels):
                report.conflicts.append((example.text, old.labels, example.labels, old.line))
        else:
            added.append(example)
    if added:
        report.added, report.unlabelled = len(added), sum(not e.labels for e in added)
        report.first_line = _append_lines(report.train_file, [format_example(e.text, e.labels) for e in added])
    return report


def _append_lines(path: Path, new: list[str]) -> int:
    """Append ``new`` lines to ``path`` in one atomic write, the old lines kept as they are (trailing blank lines
    dropped, the file's own line ending used); returns the line number of the first new line."""
    lines = path.read_bytes().decode("utf-8").split("\n")
    while lines and not lines[-1].replace("\ufeff", "").strip():
        lines.pop()
    newline = "\r\n" if lines and lines[0].endswith("\r") else "\n"
    old = "".join(line + "\n" for line in lines)
    atomic_write_text(path, old + "".join(line + newline for line in new))
    return len(lines) + 1

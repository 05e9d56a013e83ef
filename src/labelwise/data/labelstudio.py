"""Label Studio's formats, in one place for every part of labelwise that speaks them: the service's ML backend
(:mod:`labelwise.serve.labelstudio`, :mod:`labelwise.serve.retrain`), ``labelwise select --format labelstudio``
(:mod:`labelwise.select.tasks`) and ``labelwise labelstudio`` (the export file, :func:`read_label_studio`).

**Labelling configs** (:func:`parse_label_config` → :class:`Control`). The control that gets the predictions is the
config's ``<Choices>`` (``choice="multiple"`` for multi-label: a single-choice control gets the one most probable
chosen label) or ``<Taxonomy>``, on a ``<Text>`` (or ``<HyperText>``) whose ``value="$key"`` names the task field
holding the text. Choice values are the label names of label.txt; a taxonomy's paths are the label names split on
``##`` (PaddleNLP's hierarchical names: the label ``体育##足球`` is the path 体育 → 足球).

**Predictions** (:func:`prediction_for`): a ``result`` for the control, ``model_version`` and a ``score``: the
confidence of the task's least certain label decision (see :func:`prediction_for`); low means doubtful.

**Annotated tasks** (:func:`read_tasks`; :func:`read_label_studio` for an export file). Full exports
(``annotations[].result[]`` with ``choices`` or ``taxonomy`` values; the last annotation not cancelled counts) and
JSON-MIN ones (flat objects, the choices or taxonomy paths under the control's name). A Taxonomy choice (a path
from the root, ``["体育", "足球"]``) becomes the label ``体育##足球`` (joined by ``sep``), and every path brings its
missing ancestors (:mod:`labelwise.data.cleaning`); ``sep=None``: a taxonomy path gives its last element.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from labelwise.data.cleaning import clean_labels, clean_text, log_added_parents, text_problem
from labelwise.data.dataset import Example, read_lines
from labelwise.data.hierarchy import DEFAULT_SEP, separator
from labelwise.errors import DataError, LabelwiseError

__all__ = ["CONFIG_EXAMPLE", "SEP", "Control", "TaskReading", "choices_control", "parse_label_config",
           "prediction_for", "read_label_studio", "read_tasks"]

SEP = DEFAULT_SEP  # levels of a label name, PaddleNLP's hierarchical convention: a taxonomy path
CONTROLS = ("choices", "taxonomy")
OBJECTS = ("text", "hypertext")
CONFIG_EXAMPLE = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="multiple">'
                  '<Choice value="LABEL"/>...</Choices></View>')


# ---- the labelling config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """The config's classification control: where predictions go and where the text comes from."""

    kind: str  # choices | taxonomy
    from_name: str  # the control's name
    to_name: str  # the object tag it labels
    data_key: str  # the task data field holding the text ($text → text)
    values: frozenset  # choices: the Choice values; taxonomy: every path (tuple) of the tree
    multiple: bool = True

    def label_value(self, label: str):
        """The control's value for a model label (a choice, a path), or None where the config lacks it."""
        value = tuple(label.split(SEP)) if self.kind == "taxonomy" else label
        return value if value in self.values else None

    def covered(self, labels: list[str]) -> list[str]:
        return [label for label in labels if self.label_value(label) is not None]


def choices_control(labels, from_name: str = "label", to_name: str = "text", data_key: str = "text") -> Control:
    """A multiple ``Choices`` control offering every one of ``labels``: the config that tasks written without one
    in hand (``labelwise select``) are meant for."""
    return Control("choices", from_name, to_name, data_key, frozenset(labels), multiple=True)


def _choice_key(node: ElementTree.Element) -> str | None:
    return node.get("alias") or node.get("value")  # Label Studio stores the alias, where one is given


def _tree_paths(node: ElementTree.Element, prefix: tuple = ()) -> set[tuple]:
    paths = set()
    for child in node:
        if child.tag.lower() == "choice" and _choice_key(child):
            path = prefix + (_choice_key(child),)
            paths.add(path)
            paths |= _tree_paths(child, path)
    return paths


def parse_label_config(xml: str, from_name: str | None = None) -> Control:
    """The ``Choices`` / ``Taxonomy`` control of a labelling config (the first, or the one named ``from_name``)."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelwiseError(f"the labelling config is missing or empty; send one such as {CONFIG_EXAMPLE}")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise LabelwiseError(f"the labelling config is not valid XML ({err}); fix it in Label Studio's "
                             "Labeling Interface settings") from None
    nodes = list(root.iter())
    controls = [n for n in nodes if n.tag.lower() in CONTROLS and (from_name is None or n.get("name") == from_name)]
    if not controls:
        named = f" named {from_name!r}" if from_name else ""
        raise LabelwiseError(f"the labelling config has no <Choices> or <Taxonomy> control{named}; labelwise "
                             f"predicts label sets: use one such as {CONFIG_EXAMPLE}")
    control = controls[0]
    name, to_name = control.get("name"), control.get("toName")
    if not name or not to_name:
        raise LabelwiseError(f"the <{control.tag}> of the labelling config needs name and toName attributes")
    target = next((n for n in nodes if n.get("name") == to_name.split(",")[0]), None)
    if target is None or target.tag.lower() not in OBJECTS:
        raise LabelwiseError(f"the <{control.tag} name={name!r}> labels {to_name!r}, which is not a <Text> or "
                             "<HyperText> of the labelling config; labelwise classifies texts")
    value = target.get("value") or ""
    if not value.startswith("$") or len(value) < 2:
        raise LabelwiseError(f"the <{target.tag} name={to_name!r}> needs value=\"$field\" naming the task's text "
                             f"field (got {value!r})")
    kind = control.tag.lower()
    if kind == "choices":
        values = frozenset(_choice_key(n) for n in control.iter() if n.tag.lower() == "choice" and _choice_key(n))
        multiple = (control.get("choice") or "single").lower() == "multiple"
    else:
        values = frozenset(_tree_paths(control))
        multiple = True
    return Control(kind, name, to_name.split(",")[0], value[1:], values, multiple)


# ---- predictions -------------------------------------------------------------------------------------------------
def prediction_for(probs: np.ndarray, chosen: list[str], labels: list[str], control: Control, version: str) -> dict:
    """One task's prediction in Label Studio's format: ``model_version``, ``score`` and ``result``.

    ``probs``: the task's row of probabilities, in the order of ``labels``; ``chosen``: the labels the model chose
    (at its thresholds), kept in their order where ``control`` offers them (a single-choice control gets the most
    probable one; a taxonomy gets the deepest paths only, a chosen parent being implied by its child).

    ``score`` is the confidence of the least certain label decision among the labels the control offers: ``p`` for
    a chosen label, ``1 - p`` for one left out, the lowest of them (0 where the control offers none). One number
    for the whole task, low when some label could well have gone the other way: sorting by it in Label Studio
    puts the doubtful tasks first, the order in which ``labelwise select`` already hands them out.
    """
    index = {label: j for j, label in enumerate(labels)}
    chosen = [label for label in chosen if control.label_value(label) is not None]
    if not control.multiple and chosen:
        chosen = [max(chosen, key=lambda label: probs[index[label]])]
    picked = set(chosen)
    certainty = [float(probs[index[l]] if l in picked else 1.0 - probs[index[l]]) for l in control.covered(labels)]
    prediction = {"model_version": version, "score": round(min(certainty, default=0.0), 4), "result": []}
    if not chosen:
        return prediction
    if control.kind == "taxonomy":
        paths = [control.label_value(label) for label in chosen]
        deepest = [list(p) for p in paths if not any(len(q) > len(p) and q[:len(p)] == p for q in paths)]
        value: dict[str, Any] = {"taxonomy": deepest}
    else:
        value = {"choices": chosen}
    prediction["result"] = [{"from_name": control.from_name, "to_name": control.to_name, "type": control.kind,
                             "value": value}]
    return prediction


# ---- annotated tasks ---------------------------------------------------------------------------------------------
@dataclass
class TaskReading:
    """What :func:`read_tasks` made of a list of tasks."""

    examples: list[Example] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # each example's task as messages name it: "task 3 (id 17)"
    # tasks left out: no_annotation (none, or all cancelled), other_control (only other controls were used)
    skipped: dict[str, int] = field(default_factory=lambda: {"no_annotation": 0, "other_control": 0})
    problems: list[tuple[str, str]] = field(default_factory=list)  # annotated tasks with no usable text: (what, fix)


def _taxonomy(source, where: str, value, sep: str | None) -> list[str]:
    """A Taxonomy value's paths (``[["体育", "足球"], ["财经"]]``) as labels: joined by ``sep``, or the last
    element when there is no separator."""
    paths = value.get("taxonomy", []) if isinstance(value, dict) else value
    if not isinstance(paths, list) or not all(isinstance(p, list) and p and all(isinstance(x, str) for x in p)
                                              for p in paths):
        raise DataError(source, None, f"{where}: a taxonomy value must be a list of paths (lists of names), "
                        f"got {paths!r}", "export from Label Studio as JSON")
    for p in paths:
        bad = next((x for x in p if sep and sep in x), None)
        if bad is not None:
            raise DataError(source, None, f"{where}: taxonomy name {bad!r} contains the separator {sep!r}",
                            "rename it in the labelling config, or pick another `hierarchy_sep`")
    return [sep.join(x.strip() for x in p) if sep else p[-1].strip() for p in paths]


def _result_labels(source, where: str, result, from_name: str | None, sep: str | None,
                   added: list[int]) -> tuple[str, ...] | None:
    """The labels of one annotation's result; None where it holds only other controls' work. A result with no
    classification at all is an annotation that chose no label."""
    items = [r for r in result if isinstance(r, dict) and r.get("type") in CONTROLS] if isinstance(result, list) else []
    names = {r.get("from_name") for r in items}
    if from_name is None and len(names) > 1:
        listed = ", ".join(sorted(map(str, names)))
        raise DataError(source, None, f"{where}: several classification controls ({listed})", "pick one with `from_name`")
    mine = [r for r in items if from_name is None or r.get("from_name") == from_name]
    if items and not mine:
        return None
    raw: list[str] = []
    for r in mine:
        value = r.get("value") or {}
        if r["type"] == "choices":
            choices = value.get("choices", []) if isinstance(value, dict) else value
            raw += [choices] if isinstance(choices, str) else choices if isinstance(choices, list) else [choices]
        else:  # taxonomy: each choice is a path from the root
            raw += _taxonomy(source, where, value, sep)
    return clean_labels(source, None, raw, f"{where}: ", sep, added)


def read_tasks(tasks: list, source: str | os.PathLike = "the tasks", text_key: str = "text",
               from_name: str | None = None, sep: str | None = DEFAULT_SEP) -> TaskReading:
    """Label Studio tasks (as exported, or as Label Studio posts them) → one example per annotated task.

    ``text_key``: the task data field holding the text (where it is missing, the task's only string field);
    ``from_name``: the control to read (needed only when the annotations use several); ``sep``: label paths (module
    doc). A malformed task or label is a :class:`DataError` naming ``source`` and the task; an annotated task with
    no usable text is left out and listed in ``problems``, for the caller to refuse or count.
    """
    sep, added, out = separator(sep), [0], TaskReading()
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            raise DataError(source, None, f"task {number} is not a JSON object", "export from Label Studio as JSON")
        where = f"task {number}" + (f" (id {str(task['id'])[:40]})" if "id" in task else "")
        if "annotations" in task or "data" in task:
            data = task.get("data") if isinstance(task.get("data"), dict) else {}
            annotations = task.get("annotations") if isinstance(task.get("annotations"), list) else []
            done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
            if not done:
                out.skipped["no_annotation"] += 1
                continue
            labels = _result_labels(source, where, done[-1].get("result"), from_name, sep, added)
            if labels is None:
                out.skipped["other_control"] += 1
                continue
        else:  # JSON-MIN: {"text": ..., "<control>": "a" | {"choices": [...]} | {"taxonomy": [[...]]}, "id": ...}
            data = task
            name = from_name or next((k for k, v in task.items() if k != text_key and
                                      (isinstance(v, dict) and ("choices" in v or "taxonomy" in v))), None)
            value = task.get(name) if name else None
            if value is None:
                out.skipped["no_annotation"] += 1
                continue
            if isinstance(value, dict) and "taxonomy" in value:
                value = _taxonomy(source, where, value, sep)
            elif isinstance(value, dict):
                value = value.get("choices", [])
            labels = clean_labels(source, None, value, f"{where}: ", sep, added)
        text = data.get(text_key)
        if text is None:
            strings = [v for v in data.values() if isinstance(v, str)]
            if len(strings) != 1:
                out.problems.append((f"{where}: no {text_key!r} in the task data",
                                     "name the text field with `text_key`"))
                continue
            text = strings[0]
        problem = text_problem(text)
        if problem:
            out.problems.append((f"{where}: {problem[0]}", problem[1]))
            continue
        out.examples.append(Example(clean_text(text), labels))
        out.where.append(where)
    log_added_parents(source, added[0], sep)
    return out


def read_label_studio(path: str | os.PathLike, text_key: str = "text", from_name: str | None = None,
                      sep: str | None = DEFAULT_SEP) -> tuple[list[Example], int]:
    """Label Studio JSON (or JSON-MIN) export → (examples, number of tasks left out: not annotated, or annotated
    with other controls only). A task without a usable text is an error naming the file and the task."""
    path = Path(path)
    try:
        tasks = json.loads("\n".join(read_lines(path)))
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, f"not valid JSON ({err.msg})", "export from Label Studio as JSON") from None
    if not isinstance(tasks, list):
        raise DataError(path, None, "expected a JSON list of tasks", "export from Label Studio as JSON or JSON-MIN")
    reading = read_tasks(tasks, path, text_key, from_name, sep)
    if reading.problems:
        (problem, fix), more = reading.problems[0], len(reading.problems) - 1
        raise DataError(path, None, problem + (f" ({more} more tasks have no usable text)" if more else ""), fix)
    skipped = sum(reading.skipped.values())
    if not reading.examples:
        other = reading.skipped["other_control"]
        also = f", {other} annotated with another control only" if other else ""
        raise DataError(path, None, f"no annotated task ({reading.skipped['no_annotation']} without annotation"
                        f"{also})")
    return reading.examples, skipped

"""Label Studio labelling configs as the ML backend reads them, and predictions in Label Studio's result format.

The control that gets the predictions is the config's ``<Choices>`` (``choice="multiple"`` for multi-label: a
single-choice control gets the one most probable chosen label) or ``<Taxonomy>``, on a ``<Text>`` (or
``<HyperText>``) whose ``value="$key"`` names the task field holding the text. Choice values are the label names of
label.txt; a taxonomy's paths are the label names split on ``##`` (PaddleNLP's hierarchical names: the label
``体育##足球`` is the path 体育 → 足球), and where the model chose a label and its parent only the deeper path is
sent. Each prediction carries ``model_version`` and a ``score``: the confidence of its least certain decision,
``p`` for a chosen label and ``1 - p`` for one left out (sort by it in Label Studio to review doubtful tasks first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import numpy as np

from labelwise.errors import LabelwiseError

__all__ = ["CONFIG_EXAMPLE", "SEP", "Control", "parse_label_config", "prediction_for"]

SEP = "##"  # levels of a label name, PaddleNLP's hierarchical convention: a taxonomy path
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


# ---- predictions in Label Studio's format ------------------------------------------------------------------------
def prediction_for(probs: np.ndarray, chosen: list[str], labels: list[str], control: Control, version: str) -> dict:
    """One task's prediction: ``result`` for ``control`` from the chosen labels, ``score`` (see the module's
    docstring) and ``model_version``. ``probs``: the task's row of probabilities, in the order of ``labels``."""
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

"""Label trees: label names written as paths (PaddleNLP's ``体育##足球``) and what follows from them.

A label whose name holds the separator (default ``##``) sits under the label named by the path before its
last separator: ``体育##足球##英超`` under ``体育##足球``, under ``体育``. Every node is a label of its own (a line
of label.txt, a class of the model), as in PaddleNLP's hierarchical application.

:class:`Hierarchy` answers what the rest of labelwise asks about the tree: each label's parent (-1 for a root),
its level (1 for roots), the labels of each level, a label's ancestors, a data line's labels with missing
ancestors added (:meth:`Hierarchy.complete`), and the row-wise operations the decision rule needs on 0/1
matrices (:meth:`close`, :meth:`prune`, :meth:`best_closed`, :meth:`ends`, :meth:`inconsistent`).
A label set with no path in it is flat: every label a root, and every operation returns its input.

Refused with one line naming the file and line (:class:`~labelwise.errors.DataError`): a path whose parent is
not a label, an empty path element (``a####b``, ``a##``), ``###`` or spaces around the separator, a name
met again further down one path (``a##b##a``, a cycle; ``joy##joy``, a group and its namesake member, is
fine), and separators mixed in one file (``财经/股票`` beside
``体育##足球`` when ``财经`` is a label). Labels that contain ``/`` in a file with no ``##`` stay flat labels
(a warning suggests ``--hierarchy_sep /`` when they look like paths).
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Mapping, Sequence

import numpy as np

from labelwise.errors import DataError, LabelwiseError, shorten

__all__ = ["DEFAULT_SEP", "Hierarchy", "separator", "written_otherwise"]

log = logging.getLogger("labelwise")

DEFAULT_SEP = "##"  # PaddleNLP's
NO_SEP = ("", "none")  # --hierarchy_sep none: the labels are flat whatever their names hold
# separators people write paths with; found under a label with another separator, a file mixes two
ALTERNATIVES = ("##", "#", "/", "\\", ">", "|", "::", "→", "＃＃", "＃", "／")


def separator(sep: str | None) -> str | None:
    """The separator to split label names by, or None for flat labels (``None``, ``""`` or ``"none"``)."""
    if sep is None or sep.strip().lower() in NO_SEP:
        return None
    if sep != sep.strip() or "," in sep or "\t" in sep:
        raise LabelwiseError(f"`hierarchy_sep` {shorten(sep)} may not hold spaces, commas or tabs (commas separate "
                             "labels in the data files); PaddleNLP's is ##")
    return sep


class Hierarchy:
    """The tree of a label list (label.txt order = class id order). Build it with :meth:`from_labels`."""

    def __init__(self, labels: Sequence[str], parents: Sequence[int], sep: str | None = DEFAULT_SEP):
        self.labels: tuple[str, ...] = tuple(labels)
        self.sep = sep
        self.parents: tuple[int, ...] = tuple(int(p) for p in parents)
        self._parent = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        depth = [0] * len(self.labels)
        for i in self._topological():
            depth[i] = 0 if self.parents[i] < 0 else depth[self.parents[i]] + 1
        self.depths: tuple[int, ...] = tuple(depth)  # 0 for roots
        self.is_flat: bool = all(p < 0 for p in self.parents)
        n_levels = max(depth, default=0) + 1
        self.levels: list[list[int]] = [[i for i, d in enumerate(depth) if d == level] for level in range(n_levels)]
        self._level_ids = [np.asarray(ids, dtype=np.int64) for ids in self.levels]
        self._index = {label: i for i, label in enumerate(self.labels)}

    # ---- building -------------------------------------------------------------------------------------
    @classmethod
    def flat(cls, labels: Sequence[str]) -> "Hierarchy":
        return cls(labels, [-1] * len(labels), None)

    @classmethod
    def from_labels(cls, labels: Sequence[str], sep: str | None = DEFAULT_SEP,
                    path: str | os.PathLike | None = None) -> "Hierarchy":
        """The tree the names of ``labels`` spell with ``sep``, checked; ``path`` (label.txt) names the file in
        errors, where label ``i`` is on line ``i + 1``. Flat (and free) when no name holds ``sep``."""
        sep = separator(sep)
        labels = list(labels)
        if sep is None or not any(sep in label for label in labels):
            _hint_other_separator(labels, sep, path)
            return cls.flat(labels)
        index = {label: i for i, label in enumerate(labels)}
        parents = []
        for i, label in enumerate(labels):
            _check_path(label, sep, index, path, i + 1)
            parents.append(index[label.rsplit(sep, 1)[0]] if sep in label else -1)
        return cls(labels, parents, sep)

    def _topological(self) -> list[int]:
        """Ids with every parent before its children."""
        order, seen = [], set()
        for start in range(len(self.labels)):
            chain, node = [], start
            while node >= 0 and node not in seen:
                chain.append(node)
                seen.add(node)
                node = self.parents[node]
            order.extend(reversed(chain))
        return order

    # ---- questions about the tree -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """How many levels (1 for a flat label set)."""
        return len(self.levels)

    def level(self, i: int) -> int:
        """1 for a root, 2 for its children, ..."""
        return self.depths[i] + 1

    def index(self, name: str) -> int:
        return self._index[name]

    def name(self, i: int) -> str:
        """The last element of label ``i``'s path (``足球`` for ``体育##足球``)."""
        label = self.labels[i]
        return label.rsplit(self.sep, 1)[-1] if self.sep else label

    def ancestors(self, i: int) -> list[int]:
        """Label ``i``'s ancestors, its parent first and its root last ([] for a root)."""
        out, node = [], self.parents[i]
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out

    def path(self, i: int) -> list[int]:
        """The ids from label ``i``'s root down to ``i``."""
        return self.ancestors(i)[::-1] + [i]

    def children(self, i: int) -> list[int]:
        """Label ``i``'s children in label.txt order (``-1``: the roots)."""
        if not hasattr(self, "_children"):
            self._children: dict[int, list[int]] = {}
            for j, p in enumerate(self.parents):
                self._children.setdefault(p, []).append(j)
        return list(self._children.get(i, []))

    def order(self) -> list[int]:
        """Every id, depth first: each parent followed by its subtree, siblings in label.txt order."""
        out, stack = [], self.children(-1)[::-1]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(self.children(node)[::-1])
        return out

    def complete(self, names: Iterable[str]) -> tuple[tuple[str, ...], int]:
        """``names`` with every missing ancestor added before its first descendant, and how many were added.

        ``("体育##足球",)`` → ``(("体育", "体育##足球"), 1)``. Names not in the label list are kept as they are.
        """
        names = tuple(names)
        if self.is_flat:
            return names, 0
        present = set(names)
        out: list[str] = []
        added = 0
        for name in names:
            i = self._index.get(name)
            for a in reversed(self.ancestors(i)) if i is not None else ():
                ancestor = self.labels[a]
                if ancestor not in present:
                    present.add(ancestor)
                    out.append(ancestor)
                    added += 1
            if name not in out:
                out.append(name)
        return tuple(out), added

    def tree(self, names: Iterable[str], scores: Mapping[str, float] | None = None) -> list[dict]:
        """``names`` (ancestors added) as nested nodes: ``{"label": path, "name": last element, "score"?,
        "children": [...]}``, roots in label.txt order; ``score`` from ``scores`` (a label's probability)."""
        chosen = {self._index[n] for n in self.complete(names)[0] if n in self._index}
        nodes: dict[int, dict] = {}
        roots: list[dict] = []
        for i in self.order():
            if i not in chosen:
                continue
            node = {"label": self.labels[i], "name": self.name(i)}
            if scores is not None and self.labels[i] in scores:
                node["score"] = scores[self.labels[i]]
            node["children"] = []
            nodes[i] = node
            parent = self.parents[i]
            (nodes[parent]["children"] if parent >= 0 else roots).append(node)
        return roots

    # ---- 0/1 matrices (rows: texts, columns: labels) --------------------------------------------------------
    def _deeper_levels(self):
        for ids in self._level_ids[1:]:
            yield ids, self._parent[ids]

    def inconsistent(self, chosen: np.ndarray) -> np.ndarray:
        """Per row: is some label chosen without its parent?"""
        chosen = np.asarray(chosen).astype(bool)
        child = np.flatnonzero(self._parent >= 0)
        if not child.size:
            return np.zeros(len(chosen), dtype=bool)
        return (chosen[:, child] & ~chosen[:, self._parent[child]]).any(axis=1)

    def close(self, chosen: np.ndarray) -> np.ndarray:
        """Every chosen label brings its ancestors (int8)."""
        out = np.asarray(chosen).astype(np.int8)
        for ids, parents in reversed(list(self._deeper_levels())):
            np.maximum.at(out.T, parents, out[:, ids].T)
        return out

    def prune(self, chosen: np.ndarray) -> np.ndarray:
        """A chosen label whose parent is not chosen is dropped, with its subtree (int8)."""
        out = np.asarray(chosen).astype(np.int8)
        for ids, parents in self._deeper_levels():
            out[:, ids] &= out[:, parents]
        return out

    def best_closed(self, margins: np.ndarray) -> np.ndarray:
        """The ancestor-closed label set of each row with the largest sum of ``margins`` (int8).

        A label's subtree value is its margin plus its children's positive values; a root is chosen when its
        value is >= 0, a child when its parent is chosen and its own value is >= 0. Rows whose labels with a
        margin >= 0 are already closed come back as exactly those labels.
        """
        value = np.array(margins, dtype=np.float64)
        for ids, parents in reversed(list(self._deeper_levels())):
            np.add.at(value.T, parents, np.maximum(value[:, ids], 0.0).T)
        out = (value >= 0).astype(np.int8)
        for ids, parents in self._deeper_levels():
            out[:, ids] &= out[:, parents]
        return out

    def ends(self, chosen: np.ndarray) -> np.ndarray:
        """The chosen labels none of whose children is chosen: each row's deepest predicted nodes (int8)."""
        chosen = np.asarray(chosen).astype(np.int8)
        has_child = np.zeros_like(chosen)
        for ids, parents in self._deeper_levels():
            np.maximum.at(has_child.T, parents, chosen[:, ids].T)
        return chosen & (1 - has_child)

    def __repr__(self) -> str:
        kind = "flat" if self.is_flat else f"{self.depth} levels, separator {self.sep!r}"
        return f"Hierarchy({len(self.labels)} labels, {kind})"


# ---- validation -------------------------------------------------------------------------------------------
def _fail(path, line: int, problem: str, fix: str) -> LabelwiseError:
    if path is not None:
        return DataError(path, line, problem, fix)
    return LabelwiseError(f"label {line}: {problem} ({fix})")


def _check_path(label: str, sep: str, index: Mapping[str, int], path, line: int) -> None:
    """One line for the first thing wrong with ``label`` as a path in a file that separates levels with ``sep``."""
    shown = shorten(label)
    parts = label.split(sep)
    if len(parts) > 1 and (sep + sep[-1] in label or sep[0] + sep in label) and all(parts):
        raise _fail(path, line, f"label {shown} has {sep[0] + sep!r} where the separator is {sep!r}",
                    f"write exactly {sep} between two levels")
    if len(parts) > 1 and not all(parts):
        raise _fail(path, line, f"label {shown} has an empty path element (nothing before, after or between "
                    f"two {sep!r})", f"write each level's name between single separators: parent{sep}child")
    if any(p != p.strip() for p in parts[1:]) or (len(parts) > 1 and parts[0] != parts[0].strip()):
        raise _fail(path, line, f"label {shown} has spaces around {sep!r}",
                    f"write {sep.join(p.strip() for p in parts)}, and the same name in the data files")
    # a name met again further down one path reads as a cycle (a##b##a); a child named as its parent group is not
    repeated = next((p for k, p in enumerate(parts) if p in parts[:max(k - 1, 0)]), None)
    if repeated is not None:
        raise _fail(path, line, f"label {shown} names {shorten(repeated)} twice along one path (a cycle)",
                    "a name may appear once on a path; rename one of them")
    masked = label.replace(sep, "\x00")
    for alt in ALTERNATIVES:
        if alt == sep:
            continue
        start = masked.find(alt)
        while start > 0:
            prefix = masked[:start].replace("\x00", sep)
            if prefix in index:
                fixed = prefix + sep + masked[start + len(alt):].replace("\x00", sep)
                raise _fail(path, line, f"label {shown} mixes separators: {shorten(alt)} under {shorten(prefix)}, "
                            f"where this file separates levels with {sep!r}", f"write {shorten(fixed)}")
            start = masked.find(alt, start + 1)
    if len(parts) > 1:
        parent = label.rsplit(sep, 1)[0]
        if parent not in index:
            where = os.path.basename(str(path)) if path is not None else "the label list"
            raise _fail(path, line, f"the parent {shorten(parent)} of {shown} is not in {where}",
                        f"add a line {parent}: every node of the tree is a label; or pass --hierarchy_sep none "
                        "to read the labels as flat names")


def _hint_other_separator(labels: Sequence[str], sep: str | None, path) -> None:
    """Flat labels that read as paths with another separator (``体育/足球`` beside ``体育``): one warning."""
    if sep is None:
        return
    index = set(labels)
    for label in labels:
        for alt in ALTERNATIVES:
            if alt == sep or alt not in label:
                continue
            prefix = label.split(alt, 1)[0]
            if prefix and prefix in index:
                where = f"{path}: " if path is not None else ""
                log.warning("%slabel %s reads like a path under %s written with %r, but the separator is %r: the "
                            "labels are read as flat names (pass --hierarchy_sep %s to read them as a tree)",
                            where, shorten(label), shorten(prefix), alt, sep, alt)
                return


def _spelled(name: str) -> str:
    for alt in sorted(ALTERNATIVES, key=len, reverse=True):
        name = name.replace(alt, "\x00")
    return name


def written_otherwise(name: str, known: Iterable[str]) -> str | None:
    """The label of ``known`` that ``name`` is with its levels separated another way (``体育/足球`` for a known
    ``体育##足球``), or None: what a "not in label.txt" error can suggest."""
    if not any(alt in name for alt in ALTERNATIVES):
        return None
    spelled = _spelled(name)
    return next((label for label in known if label != name and _spelled(label) == spelled), None)

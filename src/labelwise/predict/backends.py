"""The kinds of model folder labelwise opens, in one registry: the only place that knows them.

A *kind* is a way to run a model folder (a PyTorch checkpoint, an ONNX export, a retrieval index, ...). Each is
declared by its backend module, a module of this package whose name ends in ``_backend``, with a call to
:func:`register`; the registry imports those modules the first time it is asked, so adding a backend is one new
module (plus its tests) and nothing else. A test can :func:`register` a kind of its own in the same way.

What a kind declares (:class:`Kind`): its name (``--backend NAME``), a title for messages, how to recognise its
folder, how to open it into ``(backend, tokenizer, meta)``, the precisions it runs, what it can do besides logits,
and the pip extra it needs. What a backend gives (:class:`Backend`): ``logits`` for a batch of padded int64 arrays,
and optionally ``features`` (the pooled vectors) and ``head`` (the final linear layer, for gradients).
:class:`labelwise.predict.classifier.Classifier` does everything else (tokenising, windows, blend, thresholds).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from labelwise.errors import LabelwiseError

__all__ = ["ABILITIES", "Backend", "GraphBackend", "Kind", "Opened", "check_precision", "detect", "get", "kinds", "names",
           "open_folder", "precisions", "register", "unregister"]

ABILITIES = ("features", "gradients")  # what a kind can do besides logits


@runtime_checkable
class Backend(Protocol):
    """What a backend gives :class:`~labelwise.predict.classifier.Classifier`.

    ``logits(batch)``: float32 [rows, labels] for a batch of padded int64 arrays (``input_ids``,
    ``attention_mask``, ``token_type_ids``). Optional: ``features(batch)`` (the pooled vectors, the head's input)
    and ``head()`` (the final linear layer, a torch module). ``name``: the kind's name.
    """

    name: str

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


class GraphBackend:
    """What the backends that run an exported graph share: the graph's int64 feeds, logits, features.

    A subclass sets ``input_names``, ``output_name``, ``features_name`` (None: the export has no vectors),
    ``engine`` and ``export_hint`` (for messages), and runs one output with ``_infer(output, feeds)``."""

    engine = "the engine"
    export_hint = "labelwise export ... --features"
    input_names: list[str] = []
    output_name = "logits"
    features_name: str | None = None

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Feed the inputs the graph declares (token_type_ids default to zeros); float32 logits."""
        return self._infer(self.output_name, self._feeds(batch))

    def features(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The pooled text vectors (the head's input); exports made with ``--features`` only."""
        if self.features_name is None:
            raise LabelwiseError(f"this export has no features output; export again with --features "
                                 f"(`{self.export_hint}`) to embed texts with {self.engine}")
        return self._infer(self.features_name, self._feeds(batch))

    def _feeds(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for name in self.input_names:
            if name in batch:
                feeds[name] = np.ascontiguousarray(batch[name], dtype=np.int64)
            elif name == "token_type_ids":
                feeds[name] = np.zeros_like(batch["input_ids"], dtype=np.int64)
            else:
                raise LabelwiseError(f"the {self.engine} graph wants an input {name!r} that the tokenizer does not "
                                     "give")
        return feeds

    def _infer(self, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class Opened(NamedTuple):
    backend: Backend
    tokenizer: object
    meta: object  # labelwise.model.checkpoint.CheckpointMeta


@dataclass(frozen=True)
class Kind:
    """One kind of model folder.

    ``recognise(folder) -> bool`` must be cheap (file names, no weights read). ``open(folder, device=,
    num_threads=, precision=, **options) -> Opened`` reads and checks it. ``explain(folder)``, optional, raises
    one precise line for a folder that is nearly this kind (a damaged checkpoint) when no kind recognised it.
    ``priority``: lower is asked first. ``make``: how a user makes one, for messages.
    """

    name: str
    title: str
    recognise: Callable[[Path], bool]
    open: Callable[..., Opened]
    precisions: tuple[str, ...] = ("fp32",)
    abilities: frozenset = field(default_factory=frozenset)
    extra: str | None = None  # pip install 'labelwise[EXTRA]' when an import fails
    priority: int = 50
    make: str = ""
    explain: Callable[[Path], None] | None = None
    hints: tuple[str, ...] = ()  # run-time hints its ``open`` takes (e.g. spin_wait); others are not passed
    option: str | None = None  # the command-line option that names a folder of this kind (index_dir)

    def __post_init__(self):
        unknown = set(self.abilities) - set(ABILITIES)
        if unknown:
            raise ValueError(f"kind {self.name}: unknown abilities {sorted(unknown)}; use {', '.join(ABILITIES)}")


_KINDS: dict[str, Kind] = {}
_DISCOVERED = False


def register(kind: Kind, replace: bool = False) -> Kind:
    """Add ``kind`` to the registry (its backend module calls this when imported)."""
    if kind.name in _KINDS and not replace and _KINDS[kind.name] != kind:
        raise ValueError(f"a backend kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def _discover() -> None:
    """Import the backend modules of this package once (each registers its kind)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("labelwise.predict")
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name.endswith("_backend"):
            importlib.import_module(f"labelwise.predict.{module.name}")


def kinds() -> list[Kind]:
    """Every registered kind, in the order folders are matched."""
    _discover()
    return sorted(_KINDS.values(), key=lambda k: (k.priority, k.name))


def names() -> tuple[str, ...]:
    return tuple(k.name for k in kinds())


def precisions() -> tuple[str, ...]:
    """Every precision some kind runs, fp32 first (the CLI's choices)."""
    seen = ["fp32"]
    for kind in kinds():
        seen += [p for p in kind.precisions if p not in seen]
    return tuple(seen)


def get(name: str) -> Kind:
    _discover()
    if name not in _KINDS:
        raise LabelwiseError(f"unknown backend {name!r}; use one of auto, {', '.join(names())}")
    return _KINDS[name]


def for_option(option: str) -> str:
    """The kind a command-line option such as ``index_dir`` names a folder of ("auto" when none declares it)."""
    return next((k.name for k in kinds() if k.option == option), "auto")


def detect(folder: str | os.PathLike) -> str:
    """The name of the kind ``folder`` is; one line for a folder that is none of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: model folder not found")
    for kind in kinds():
        if kind.recognise(folder):
            return kind.name
    for kind in kinds():
        if kind.explain is not None:
            kind.explain(folder)  # raises where the folder is a damaged one of its kind
    known = "; ".join(_a(k.title) + (f" ({k.make})" if k.make else "") for k in kinds())
    raise LabelwiseError(f"{folder}: not a model folder labelwise opens; it takes {known}")


def _a(title: str) -> str:
    return f"{'an' if title[:1].upper() in 'AEIOU' else 'a'} {title}"


def check_precision(kind: Kind, precision: str | None, folder) -> None:
    """One line when ``kind`` does not run ``precision``, naming the kinds that do."""
    if precision in (None, "fp32") or precision in kind.precisions:
        return
    runs = [k for k in kinds() if precision in k.precisions]
    if not runs:
        raise LabelwiseError(f"unknown precision {precision!r}; use one of {', '.join(precisions())}")
    which = " or ".join(f"{_a(k.title)} folder" + (f" ({k.make})" if k.make else "") for k in runs)
    raise LabelwiseError(f"`precision` {precision} needs {which}; {folder} is "
                         f"{_a(kind.title)}, which runs {', '.join(kind.precisions)}")


def check_abilities(kind: Kind, require, folder) -> None:
    for ability in require or ():
        if ability not in kind.abilities:
            able = [k.title for k in kinds() if ability in k.abilities]
            raise LabelwiseError(f"{folder} is {_a(kind.title)}, which gives no {ability}; this needs "
                                 f"{' or '.join(_a(t) for t in able) or 'a kind that gives them'}")


def open_folder(folder: str | os.PathLike, backend: str = "auto", *, device: str | None = None,
                num_threads: int | None = None, precision: str | None = None, require=(), hints: dict | None = None,
                **options) -> Opened:
    """Open ``folder`` as ``backend`` (auto: the kind it is): ``(backend, tokenizer, meta)``.

    ``require``: abilities the caller needs (features, gradients), refused in one line before anything loads.
    ``hints``: how the caller will run it (``spin_wait``: False for a service whose HTTP loop shares the cores);
    each kind gets only the hints it declares."""
    folder = Path(folder)
    kind = get(detect(folder)) if backend == "auto" else get(backend)
    if not folder.is_dir():
        raise LabelwiseError(f"{folder}: model folder not found")
    check_precision(kind, precision, folder)
    check_abilities(kind, require, folder)
    options.update({k: v for k, v in (hints or {}).items() if k in kind.hints})
    try:
        return kind.open(folder, device=device, num_threads=num_threads, precision=precision or "fp32", **options)
    except ImportError as err:
        if kind.extra is None:
            raise
        raise LabelwiseError(f"the {kind.name} backend needs the {kind.extra!r} extra: "
                             f"pip install 'labelwise[{kind.extra}]' ({err})") from None

"""The model a running service answers with, and how a new one takes its place without a pause.

:class:`ModelSlot` holds one :class:`Served` (a classifier, what the service says about it, the
:class:`~labelwise.serve.batcher.Batcher` whose thread runs it). A route reads ``slot.current`` once and uses that
one object for the whole request, so the probabilities and the thresholds that decode them always come from the
same model. :meth:`ModelSlot.swap` (on the event loop; :meth:`ModelSlot.swap_from_thread` from a training thread)
starts a batcher for the new model, replaces the reference in one assignment under a lock, lets the old batcher
finish the requests it holds, then stops it: no request is dropped or answered by a mix of two models.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.batcher import Batcher

if TYPE_CHECKING:
    from labelwise.serve.config import ServeConfig
    from labelwise.serve.metrics import ServiceMetrics

log = logging.getLogger("labelwise")

__all__ = ["ModelSlot", "Served", "model_info"]

DRAIN_SECONDS = 120.0  # how long a replaced batcher may take to answer the requests it already holds


def model_info(classifier: Classifier, model_path: str = "") -> dict[str, str]:
    """What the service says about its model, with no path of the server's own: folder and base model by their
    names, a version (a hash of the model's labelwise.json: labels, thresholds, training settings), labelwise's."""
    meta = getattr(classifier, "meta", None)
    base = str(getattr(meta, "base_model", "") or "")
    if base and (Path(base).is_absolute() or Path(base).exists()):  # a local folder: its name only
        base = Path(base).name
    folder = model_path or getattr(classifier, "path", None) or ""
    described = json.dumps(meta.to_json() if meta is not None else classifier.labels, sort_keys=True, default=str)
    try:
        version = importlib.metadata.version("labelwise")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "unknown"
    return {"model": Path(folder).name if folder else base, "base_model": base,
            "model_version": hashlib.sha256(described.encode("utf-8")).hexdigest()[:12], "labelwise_version": version,
            "backend": classifier.backend.name, "precision": getattr(classifier.backend, "precision", "fp32")}


@dataclass(frozen=True)
class Served:
    """One model as the service runs it; never changed after it is made (a swap makes a new one)."""

    classifier: Classifier
    info: dict
    batcher: Batcher
    path: str = ""  # the folder it was loaded from or saved to, if any
    since: float = 0.0  # time.time() when it started serving


class ModelSlot:
    """The served model, replaceable while requests flow (see the module's docstring)."""

    def __init__(self, classifier: Classifier, config: ServeConfig, metrics: ServiceMetrics | None = None,
                 model_path: str = ""):
        self.config, self.metrics = config, metrics
        self._lock = threading.Lock()
        self._swapping: asyncio.Lock | None = None  # made on the event loop (see start)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.swaps = 0
        self._current = Served(classifier, model_info(classifier, model_path), Batcher(classifier, config, metrics),
                               str(model_path or getattr(classifier, "path", "") or ""), time.time())

    @property
    def current(self) -> Served:
        with self._lock:
            return self._current

    async def start(self) -> None:
        """On the event loop, at the app's start: the batcher's gatherer, and the loop that swaps run on."""
        self.loop = asyncio.get_running_loop()
        self._swapping = asyncio.Lock()
        await self.current.batcher.start()

    async def stop(self) -> None:
        await self.current.batcher.stop()

    async def swap(self, classifier: Classifier, model_path: str = "") -> Served:
        """Serve ``classifier`` from now on; the old model answers what it already holds, then stops."""
        if classifier.labels != self.current.classifier.labels:
            raise LabelwiseError(f"the new model's labels ({len(classifier.labels)}) are not the served model's "
                                 f"({len(self.current.classifier.labels)}), in the same order: it cannot replace it")
        async with self._swapping or asyncio.Lock():
            old = self.current
            batcher = Batcher(classifier, self.config, self.metrics)
            batcher.stats = old.batcher.stats  # the counters go on across models
            await batcher.start()
            if batcher.broken:
                await batcher.stop()
                raise LabelwiseError(f"the new model was not swapped in: {batcher.broken}")
            new = Served(classifier, model_info(classifier, model_path), batcher,
                         str(model_path or getattr(classifier, "path", "") or ""), time.time())
            with self._lock:
                self._current = new  # the swap: from here on every request gets the new model
            self.swaps += 1
            if self.metrics is not None and hasattr(self.metrics, "model"):
                self.metrics.model.info(new.info)
            deadline = time.monotonic() + DRAIN_SECONDS
            while old.batcher.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await old.batcher.stop()
        log.info("now serving model version %s (was %s)", new.info["model_version"], old.info["model_version"])
        return new

    def swap_from_thread(self, classifier: Classifier, model_path: str = "", timeout: float = DRAIN_SECONDS + 60
                         ) -> Served:
        """:meth:`swap` from another thread (a training thread): run on the service's event loop, wait for it."""
        if self.loop is None or self.loop.is_closed():
            raise LabelwiseError("the service is not running (no event loop): the new model cannot be swapped in")
        return asyncio.run_coroutine_threadsafe(self.swap(classifier, model_path), self.loop).result(timeout)

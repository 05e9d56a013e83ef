"""Dynamic batching for the HTTP service: one model thread, concurrent requests gathered into forward passes.

Requests queue while the model is busy; the model thread itself takes the texts of every waiting request (up to
``max_batch_size``) as soon as a pass ends and runs them in one pass, so it never waits for the event loop to
hand it work: the loop parses requests and builds responses on the other cores meanwhile. Each request gets its
rows back through the loop. Beyond ``max_queue`` waiting or running texts a request is refused at once
(:class:`Overloaded`, answered 503 + Retry-After). ``config`` is a :class:`labelwise.serve.config.ServeConfig`;
``metrics``, if given, a :class:`labelwise.serve.metrics.ServiceMetrics` that sees every pass's size, the queue
depth and each refusal.
"""
from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from labelwise.errors import BrokenModel
from labelwise.predict.classifier import Classifier

if TYPE_CHECKING:
    from labelwise.serve.config import ServeConfig
    from labelwise.serve.metrics import ServiceMetrics

log = logging.getLogger("labelwise")

__all__ = ["Batcher", "Overloaded"]
PROBE_TEXT = "labelwise health check"  # one forward pass at start: damaged weights show before the first request
STOP = object()


class Overloaded(Exception):
    """More texts are queued than ``ServeConfig.max_queue``; ``retry_after`` in whole seconds."""

    def __init__(self, pending: int, limit: int, retry_after: int):
        super().__init__(f"server busy: {pending} texts queued or running (limit {limit}); retry after {retry_after} s")
        self.retry_after = retry_after


class _Job:
    """Texts to score (``call`` None) or a callable to run on the model thread; answered through ``future``."""

    __slots__ = ("texts", "max_seq_length", "call", "future", "loop")

    def __init__(self, texts, max_seq_length, call, future, loop):
        self.texts, self.max_seq_length, self.call, self.future, self.loop = texts, max_seq_length, call, future, loop

    def answer(self, result=None, error: BaseException | None = None) -> None:
        def settle():
            if not self.future.done():
                self.future.set_exception(error) if error is not None else self.future.set_result(result)
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass


class Batcher:
    """Runs the model on one thread of its own; with dynamic batching, that thread gathers concurrent requests."""

    def __init__(self, classifier: Classifier, config: ServeConfig, metrics: ServiceMetrics | None = None):
        self.classifier, self.config, self.metrics = classifier, config, metrics
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.stats = {"requests": 0, "texts": 0, "forward_passes": 0, "largest_batch": 0, "refused_busy": 0}
        self.pending = 0  # texts admitted and not yet answered
        self.broken: str | None = None  # why the model cannot be trusted (NaN scores), once a pass has shown it
        self.started = False  # the start-up pass has answered (readiness)
        self.seconds_per_text = 0.01  # running estimate, for Retry-After
        if metrics is not None:
            metrics.watch_queue(lambda: self.pending)

    async def start(self) -> None:
        self.thread = threading.Thread(target=self._model_loop, name="labelwise-model", daemon=True)
        self.thread.start()
        try:
            await self._call(lambda: self.classifier.predict_proba([PROBE_TEXT]))
        except BrokenModel as err:
            self.broken = str(err)
            log.error("%s; /health answers 503 and every prediction is refused", err)
        self.started = True

    async def stop(self) -> None:
        if self.thread is not None:
            self.jobs.put(STOP)  # the thread ends after the jobs queued before it

    def _submit(self, texts, max_seq_length, call: Callable | None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put(_Job(texts, max_seq_length, call, future, loop))
        return future

    async def _call(self, call: Callable):
        return await self._submit(None, None, call)

    def _forward(self, texts: list[str], max_seq_length: int | None) -> np.ndarray:
        start = time.perf_counter()
        try:
            probs = self.classifier.predict_proba(texts, batch_size=self.config.max_batch_size,
                                                  max_seq_length=max_seq_length)
        except BrokenModel as err:
            self.broken = str(err)
            raise
        self.seconds_per_text = 0.8 * self.seconds_per_text + 0.2 * (time.perf_counter() - start) / len(texts)
        self.stats["forward_passes"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))
        if self.metrics is not None:
            self.metrics.batch_texts.observe(len(texts))
        return probs

    def _admit(self, texts: list[str]) -> None:
        """Refuse work a broken model cannot do, or that would take the queue past ``max_queue``."""
        if self.broken:
            raise BrokenModel(self.broken)
        if self.pending + len(texts) > self.config.max_queue:
            self.stats["refused_busy"] += 1
            if self.metrics is not None:
                self.metrics.shed.inc()
            retry = min(60, max(1, math.ceil(self.pending * self.seconds_per_text)))
            raise Overloaded(self.pending, self.config.max_queue, retry)

    async def proba(self, texts: list[str], max_seq_length: int | None = None) -> np.ndarray:
        self._admit(texts)
        self.stats["requests"] += 1
        self.stats["texts"] += len(texts)
        self.pending += len(texts)
        try:
            return await self._submit(texts, max_seq_length, None)
        finally:
            self.pending -= len(texts)

    async def features(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors (the head's input), on the model's thread, within the same queue bound."""
        self._admit(texts)
        self.pending += len(texts)
        try:
            return await self._call(lambda: self.classifier.features(texts, batch_size=self.config.max_batch_size))
        finally:
            self.pending -= len(texts)

    # ---- the model thread ------------------------------------------------------------------------------------
    def _model_loop(self) -> None:
        carried = None  # a job taken while gathering that did not fit (a call, or past max_batch_size)
        while True:
            job = carried if carried is not None else self.jobs.get()
            carried = None
            if job is STOP:
                return
            if job.call is not None or not self.config.dynamic_batching:
                self._run([job])
                continue
            batch, size = [job], len(job.texts)
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while size < self.config.max_batch_size:
                try:  # everything already queued, and (max_wait_ms) what arrives before the deadline
                    wait = deadline - time.monotonic()
                    nxt = self.jobs.get(timeout=wait) if wait > 0 else self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is STOP or nxt.call is not None:
                    carried = nxt
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            self._run(batch)

    def _run(self, jobs: list[_Job]) -> None:
        """One forward pass per max_seq_length among ``jobs`` (a call: run alone); results go back to each."""
        if jobs[0].call is not None:
            try:
                jobs[0].answer(jobs[0].call())
            except Exception as err:  # noqa: BLE001 (the caller gets it)
                jobs[0].answer(error=err)
            return
        for key in dict.fromkeys(job.max_seq_length for job in jobs):
            group = [job for job in jobs if job.max_seq_length == key and not job.future.cancelled()]
            if not group:
                continue
            try:
                probs = self._forward([t for job in group for t in job.texts], key)
            except Exception as err:  # noqa: BLE001 (hand the failure to each waiting request, keep serving)
                if not isinstance(err, BrokenModel):
                    log.exception("batch failed")
                for job in group:
                    job.answer(error=err)
                continue
            start = 0
            for job in group:
                job.answer(probs[start:start + len(job.texts)])
                start += len(job.texts)

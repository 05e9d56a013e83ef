"""Dynamic batching for the HTTP service: one model thread, concurrent requests gathered into forward passes.

Requests queue while the model is busy; the texts of every waiting request (up to ``max_batch_size``) go through
the model in one pass, on one inference thread, and each request gets its rows back. Beyond ``max_queue``
waiting or running texts a request is refused at once (:class:`Overloaded`, answered 503 + Retry-After).
``config`` is a :class:`labelwise.serve.config.ServeConfig`; ``metrics``, if given, a
:class:`labelwise.serve.metrics.ServiceMetrics` that sees every pass's size, the queue depth and each refusal.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from labelwise.errors import BrokenModel
from labelwise.predict.classifier import Classifier

if TYPE_CHECKING:
    from labelwise.serve.config import ServeConfig
    from labelwise.serve.metrics import ServiceMetrics

log = logging.getLogger("labelwise")

__all__ = ["Batcher", "Overloaded"]
PROBE_TEXT = "labelwise health check"  # one forward pass at start: damaged weights show before the first request


class Overloaded(Exception):
    """More texts are queued than ``ServeConfig.max_queue``; ``retry_after`` in whole seconds."""

    def __init__(self, pending: int, limit: int, retry_after: int):
        super().__init__(f"server busy: {pending} texts queued or running (limit {limit}); retry after {retry_after} s")
        self.retry_after = retry_after


class Batcher:
    """Runs the model on one thread; with dynamic batching, gathers concurrent requests first."""

    def __init__(self, classifier: Classifier, config: ServeConfig, metrics: ServiceMetrics | None = None):
        self.classifier, self.config, self.metrics = classifier, config, metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelwise-model")
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.stats = {"requests": 0, "texts": 0, "forward_passes": 0, "largest_batch": 0, "refused_busy": 0}
        self.pending = 0  # texts admitted and not yet answered
        self.broken: str | None = None  # why the model cannot be trusted (NaN scores), once a pass has shown it
        self.started = False  # the start-up pass has answered (readiness)
        self.seconds_per_text = 0.01  # running estimate, for Retry-After
        if metrics is not None:
            metrics.watch_queue(lambda: self.pending)

    async def start(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.classifier.predict_proba,
                                                             [PROBE_TEXT])
        except BrokenModel as err:
            self.broken = str(err)
            log.error("%s; /health answers 503 and every prediction is refused", err)
        if self.config.dynamic_batching:
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self._gather_loop())
        self.started = True

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

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
            if self.queue is None:
                return await asyncio.get_running_loop().run_in_executor(self.executor, self._forward, texts,
                                                                        max_seq_length)
            future = asyncio.get_running_loop().create_future()
            await self.queue.put((texts, max_seq_length, future))
            return await future
        finally:
            self.pending -= len(texts)

    async def features(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors (the head's input), on the model's thread, within the same queue bound."""
        self._admit(texts)
        self.pending += len(texts)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: self.classifier.features(texts, batch_size=self.config.max_batch_size))
        finally:
            self.pending -= len(texts)

    async def _gather_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            await asyncio.sleep(0)  # let requests that already arrived reach the queue too
            size, deadline = len(jobs[0][0]), loop.time() + self.config.max_wait_ms / 1000
            while size < self.config.max_batch_size:
                try:
                    job = self.queue.get_nowait() if loop.time() >= deadline else await asyncio.wait_for(
                        self.queue.get(), deadline - loop.time())
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
                size += len(job[0])
            try:
                await self._run(jobs)
            except Exception as err:  # never let the gatherer die: fail these requests, keep going
                log.exception("batch failed")
                for job in jobs:
                    if not job[2].done():
                        job[2].set_exception(err)

    async def _run(self, jobs: list[tuple]) -> None:
        """One forward pass per max_seq_length among the gathered jobs; results go back to each."""
        loop = asyncio.get_running_loop()
        for key in dict.fromkeys(job[1] for job in jobs):
            group = [job for job in jobs if job[1] == key and not job[2].cancelled()]
            if not group:
                continue
            texts = [t for job in group for t in job[0]]
            try:
                probs = await loop.run_in_executor(self.executor, self._forward, texts, key)
            except Exception as err:  # hand the failure to each waiting request, keep serving
                for job in group:
                    if not job[2].done():
                        job[2].set_exception(err)
                continue
            start = 0
            for job in group:
                if not job[2].done():
                    job[2].set_result(probs[start:start + len(job[0])])
                start += len(job[0])

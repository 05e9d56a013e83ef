"""Prometheus metrics of the HTTP service, served at ``GET /metrics`` (text exposition format).

Every app has its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests, notebooks) can live
in one process. What is measured:

* ``labelwise_requests_total{route, status}``: HTTP requests answered, by route and status code;
* ``labelwise_texts_total{route, status}``: texts those requests carried (prediction routes);
* ``labelwise_request_duration_seconds{route}``: latency histogram, from the first byte in to the last out;
* ``labelwise_batch_texts``: histogram of texts per forward pass (what dynamic batching gathered);
* ``labelwise_queue_texts``: texts queued or running now;
* ``labelwise_shed_requests_total``: requests refused with 503 because the queue was full;
* ``labelwise_label_predictions_total{label}``: texts answered with each label (every label from 0, so that a
  drift in one label's rate can be alerted on);
* ``labelwise_model_info{model, base_model, model_version, labelwise_version, backend, precision}``: always 1.

Routes outside the service's own (404s, probes for other paths) share the ``route="other"`` label, so a scan of
random paths cannot grow the number of series.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = ["CONTENT_TYPE", "MetricsMiddleware", "ServiceMetrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """The service's metrics in their own registry; ``routes``: the paths that get a ``route`` label of their own."""

    def __init__(self, labels: Iterable[str], model_info: dict[str, str], routes: Iterable[str]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = frozenset(routes)
        self.requests = Counter("labelwise_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=self.registry)
        self.texts = Counter("labelwise_texts", "texts received in prediction requests, by route and status code",
                             ["route", "status"], registry=self.registry)
        self.latency = Histogram("labelwise_request_duration_seconds", "time from request to answer, by route",
                                 ["route"], registry=self.registry)
        self.batch_texts = Histogram("labelwise_batch_texts", "texts per forward pass of the model",
                                     buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue = Gauge("labelwise_queue_texts", "texts queued or running now", registry=self.registry)
        self.shed = Counter("labelwise_shed_requests", "requests refused with 503 because the queue was full",
                            registry=self.registry)
        self.predictions = Counter("labelwise_label_predictions", "texts answered with this label", ["label"],
                                   registry=self.registry)
        for label in labels:  # every label from zero: a label that stops being predicted still has a series
            self.predictions.labels(label)
        self.model = Info("labelwise_model", "the model being served", registry=self.registry)
        self.model.info(model_info)  # again, with the new model's, when a retrained model is swapped in

    def route(self, path: str) -> str:
        if path in self.routes:
            return path
        return "/static" if path.startswith("/static/") else "other"

    def count_labels(self, label_lists: Iterable[Iterable[str]]) -> None:
        for labels in label_lists:
            for label in labels:
                self.predictions.labels(label).inc()

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue.set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware: count every answer (the middleware's own refusals included) and time it.

    A route handler that read texts records how many in ``request.state.texts``; they are counted with the
    answer's status.
    """

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500  # an exception that escapes is answered 500 further out

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route, code = self.metrics.route(scope["path"]), str(status)
            self.metrics.requests.labels(route, code).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            texts = (scope.get("state") or {}).get("texts")
            if texts:
                self.metrics.texts.labels(route, code).inc(texts)

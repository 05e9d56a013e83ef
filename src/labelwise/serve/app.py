"""HTTP service: FastAPI over a Classifier, with dynamic batching and a demo page.

Routes::

    GET  /                          demo page (static/index.html): paste text, see labels and bars
    GET  /health                    status, the model by name and version, batching settings, counters
    GET  /metrics                   Prometheus metrics (labelwise.serve.metrics)
    GET  /labels                    label names and their thresholds
    POST /predict                   {"texts": [...], "threshold"?, "top_k_min"?, "top_k_max"?, "hierarchy"?}; or TEI's
                                    {"inputs": ...} (labelwise.serve.tei, with /info, /embed, /health/live|ready)
    POST /models/cls_multi_label    PaddleNLP's shape: {"data": {"text": [...]}, "parameters": {...}}; for a label
                                    tree (体育##足球) each prediction also has "tree": its paths as nested nodes
    GET  /docs, /openapi.json       from FastAPI

Dynamic batching: requests queue while the model is busy; the texts of every waiting request (up to
``max_batch_size`` texts) go through the model in one forward pass, on one inference thread. The first
request may also wait ``max_wait_ms`` for company (default 0: worth it only where a wide pass costs
about as much as a narrow one, as on a GPU). With batching off, each request runs alone on that
same thread. Bad input gets a 4xx answer ``{"error": "..."}``; the server keeps running.

Overload: once ``max_queue`` texts are waiting or running, a new request is refused at once with 503 and a
``Retry-After`` header (seconds, estimated from the recent time per text), so latency stays bounded
instead of growing with the queue; clients retry later.

Beyond localhost: ``api_key`` (every route but /health needs it), ``cors_origins`` and ``allowed_hosts``; the
layers that enforce them, and the one-line JSON form of every refusal, are in :mod:`labelwise.serve.http`.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Literal, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelwise.errors import BrokenModel, LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.batcher import Overloaded
from labelwise.serve.config import ServeConfig
from labelwise.serve.http import (
    add_middleware,
    error_response,
    json_response,
    parse_failure_message,
    validation_message,
)
from labelwise.serve.labelstudio import ROUTES as LABELSTUDIO_ROUTES
from labelwise.serve.labelstudio import add_labelstudio_routes
from labelwise.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from labelwise.serve.metrics import ServiceMetrics
from labelwise.serve.slot import ModelSlot, model_info
from labelwise.serve.tei import ROUTES as TEI_ROUTES
from labelwise.serve.tei import TeiPredictRequest, add_tei_routes, parse_body, tei_predict, validated

log = logging.getLogger("labelwise")
STATIC = Path(__file__).resolve().parent / "static"
MAX_POSITIONS = 512  # BERT-style encoders have 512 position embeddings
ROUTES = ("/", "/health", "/metrics", "/labels", "/predict", "/models/cls_multi_label", "/docs", "/openapi.json",
          *TEI_ROUTES, *LABELSTUDIO_ROUTES)
# not shown by /health, which anyone may read: secrets, access rules, the server's own paths and addresses
ACCESS_FIELDS = ("api_key", "cors_origins", "allowed_hosts", "labelstudio_token", "labelstudio_url",
                 "labelstudio_dataset_dir", "labelstudio_runs_dir")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---- request and response bodies ---------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Strict):
    texts: list[StrictStr] = Field(min_length=1, description="texts to label")
    threshold: Optional[float] = Field(None, ge=0, le=1, description="one threshold for every label "
                                       "(default: the model's tuned per-label thresholds)")
    top_k_min: int = Field(0, ge=0, description="always return at least this many labels")
    top_k_max: Optional[int] = Field(None, ge=1, description="return at most this many labels")
    hierarchy: Literal["consistent", "leaves", "none"] = Field(
        "consistent", description="label trees: consistent (a child only with its parent), leaves (the deepest "
                                  "labels only) or none (each label on its own)")


class PaddleNLPData(Strict):
    text: list[StrictStr] = Field(min_length=1)


class PaddleNLPParameters(BaseModel):  # PaddleNLP's clients send batch_size too: accepted, batching is ours
    max_seq_len: Optional[int] = Field(None, ge=2, le=MAX_POSITIONS)
    batch_size: Optional[int] = Field(None, ge=1)
    prob_limit: Optional[float] = Field(None, ge=0, le=1)
    hierarchy: Literal["consistent", "leaves", "none"] = "consistent"


class PaddleNLPRequest(Strict):
    data: PaddleNLPData
    parameters: PaddleNLPParameters = Field(default_factory=PaddleNLPParameters)


def create_app(classifier: Classifier, config: ServeConfig | None = None, model_path: str = "") -> FastAPI:
    """The FastAPI application serving ``classifier``."""
    config = (config or ServeConfig()).validate()
    metrics = ServiceMetrics(classifier.labels, model_info(classifier, model_path), ROUTES)
    slot = ModelSlot(classifier, config, metrics, model_path)  # the served model; a retrained one replaces it

    @asynccontextmanager
    async def lifespan(_app):
        await slot.start()
        yield
        await slot.stop()

    app = FastAPI(title="labelwise", version="1", lifespan=lifespan,
                  description="Multi-label text classification: texts in, label names and confidences out.")
    app.state.slot, app.state.metrics, app.state.config = slot, metrics, config
    add_middleware(app, config, metrics)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request: Request, err: RequestValidationError):
        status, message = validation_message(err)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            return error_response(404, f"no route {request.method} {request.url.path}; see /docs")
        if err.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}; see /docs")
        if err.status_code == 400 and err.__cause__ is not None:  # FastAPI could not read the body
            return error_response(400, parse_failure_message(err))
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(Overloaded)
    async def on_overload(_request: Request, err: Overloaded):
        return error_response(503, str(err), headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(BrokenModel)
    async def on_broken_model(_request: Request, err: BrokenModel):
        return error_response(503, str(err))

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, err: Exception):  # a bug, not the user's fault: say so
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(err).__name__}: {err}")

    def check_limits(request: Request, texts: list[str]) -> None:
        request.state.texts = len(texts)  # counted in the metrics with the answer's status
        for number, text in enumerate(texts, 1):  # the data files' rules: no empty text, valid Unicode
            if not text.strip():
                raise HTTPException(422, f"text {number} is empty; send at least one non-space character")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                code = f"U+{ord(text[err.start]):04X}"
                raise HTTPException(422, f"text {number} holds an unpaired surrogate ({code}) at character "
                                         f"{err.start}; send valid Unicode") from None
        if len(texts) > config.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {config.max_texts} "
                                     "(split the request or start the server with a larger `max_texts`)")
        chars = sum(len(t) for t in texts)
        if chars > config.max_chars:
            raise HTTPException(413, f"{chars} characters in one request; the limit is {config.max_chars} "
                                     "(split the request or start the server with a larger `max_chars`)")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    limits = {k: v for k, v in asdict(config).items() if k not in ACCESS_FIELDS}

    @app.get("/health")
    async def health():
        served = slot.current
        if served.batcher.broken:  # damaged weights: take this instance out of rotation
            return JSONResponse({"status": "unhealthy", "error": served.batcher.broken, "model": served.info["model"]},
                                status_code=503)
        return {"status": "ok", **served.info, "labels": len(served.classifier.labels),
                "max_seq_length": served.classifier.max_seq_length, "config": limits, "stats": served.batcher.stats}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/labels")
    async def labels():
        classifier = slot.current.classifier
        return {"labels": classifier.labels, "thresholds": [round(float(t), 6) for t in classifier.thresholds]}

    predict_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"anyOf": [
        PredictRequest.model_json_schema(), TeiPredictRequest.model_json_schema()]}}}}}

    @app.post("/predict", openapi_extra=predict_body)
    async def predict(request: Request):
        payload = await parse_body(request)
        if isinstance(payload, dict) and "inputs" in payload and "texts" not in payload:  # TEI's shape
            return await tei_predict(slot.current, validated(TeiPredictRequest, payload), check_limits, request)
        body = validated(PredictRequest, payload)
        check_limits(request, body.texts)
        if body.top_k_max is not None and body.top_k_max < body.top_k_min:
            raise HTTPException(422, "top_k_max must not be smaller than top_k_min")
        start = time.perf_counter()
        served = slot.current  # one model for the whole request, even if a retrained one arrives meanwhile
        classifier, probs = served.classifier, await served.batcher.proba(body.texts)
        predictions = classifier.decode(probs, body.threshold, body.top_k_min, body.top_k_max, body.hierarchy)
        metrics.count_labels(p.labels for p in predictions)
        return json_response({"predictions": [p.to_json() for p in predictions],
                              "ms": round(1000 * (time.perf_counter() - start), 2)})

    @app.post("/models/cls_multi_label")
    async def paddlenlp_predict(request: Request, body: PaddleNLPRequest):
        texts, params = body.data.text, body.parameters
        check_limits(request, texts)
        served = slot.current
        classifier, probs = served.classifier, await served.batcher.proba(texts, params.max_seq_len)
        predictions = classifier.decode(probs, params.prob_limit, hierarchy=params.hierarchy)
        metrics.count_labels(p.labels for p in predictions)
        index = {label: i for i, label in enumerate(classifier.labels)}
        tree = getattr(classifier, "hierarchy", None)
        rows = [{"text": t, "labels": p.labels, "confidence": p.scores} for t, p in zip(texts, predictions)]
        if tree is not None and not tree.is_flat:  # the paths as nested nodes, each with its probability
            for row, p in zip(rows, predictions):
                row["tree"] = tree.tree(p.labels, p.probabilities)
        return json_response({"result": {
            "label": [p.labels for p in predictions],
            "confidence": [p.scores for p in predictions],
            "label_ids": [[index[label] for label in p.labels] for p in predictions],
            "predictions": rows,
        }})

    add_tei_routes(app, slot, config, check_limits)  # /info, /embed, /health/live, /health/ready (TEI's shapes)
    add_labelstudio_routes(app, slot, config)  # Label Studio's ML-backend protocol, under /labelstudio
    return app


class ServerThread:
    """Serve an app from a background thread (notebooks, tests): ``with ServerThread(app) as url: ...``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        config = getattr(app.state, "config", None) or ServeConfig()
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    timeout_graceful_shutdown=_whole(config.shutdown_timeout)))
        self.host = host

    def __enter__(self) -> str:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LabelwiseError("the HTTP server did not start (is the port in use?)")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(model_path: str, *, host: str = "127.0.0.1", port: int = 8189, backend: str = "auto",
          precision: str = "fp32", device: str | None = None, num_threads: int | None = None,
          config: ServeConfig | None = None, log_level: str = "info", index_dir: str | None = None) -> None:
    """Open the model with :meth:`Classifier.load` (an export, a checkpoint or, with ``index_dir``, a retrieval
    index) and serve it."""
    import uvicorn

    config = (config or ServeConfig()).validate()  # before the model loads: a bad flag costs no wait
    model_path = index_dir or model_path
    classifier = Classifier.load(model_path, backend=backend, device=device, num_threads=num_threads,
                                 precision=precision, hints={"spin_wait": config.spin_wait})
    app = create_app(classifier, config, model_path=str(model_path))
    access = "; API key required on every route but /health" if config.api_key else ""
    if not config.api_key and host not in LOOPBACK:
        log.warning("listening on %s without an API key: anyone who can reach this address can predict, retrain "
                    "and reconfigure the service; set --api_key (or $LABELWISE_API_KEY)", host)
    print(f"serving {model_path} ({classifier.backend.name}) on http://{host}:{port}  (demo page at /, API at /docs, "
          f"metrics at /metrics{access})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                timeout_graceful_shutdown=_whole(config.shutdown_timeout))


def _whole(seconds: float) -> int:
    """uvicorn takes whole seconds."""
    return max(0, round(seconds))

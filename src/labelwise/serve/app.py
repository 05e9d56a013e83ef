"""HTTP service: FastAPI over a Classifier, with dynamic batching and a demo page.

Routes::

    GET  /                          demo page (static/index.html): paste text, see labels and bars
    GET  /health                    status, backend, batching settings, counters
    GET  /labels                    label names and their thresholds
    POST /predict                   {"texts": [...], "threshold"?, "top_k_min"?, "top_k_max"?}
    POST /models/cls_multi_label    PaddleNLP's shape: {"data": {"text": [...]}, "parameters": {...}}
    GET  /docs, /openapi.json       from FastAPI

Dynamic batching: requests queue while the model is busy; the texts of every waiting request (up to
``max_batch_size`` texts) go through the model in one forward pass, on one inference thread. The first
request may also wait ``max_wait_ms`` for company (default 0: worth it only where a wide pass costs
about as much as a narrow one, as on a GPU). With batching off, each request runs alone on that
same thread. Bad input gets a 4xx answer ``{"error": "..."}``; the server keeps running.

Overload: once ``max_queue`` texts are waiting or running, a new request is refused at once with 503 and a
``Retry-After`` header (seconds, estimated from the recent time per text), so latency stays bounded
instead of growing with the queue; clients retry later.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelwise.errors import LabelwiseError
from labelwise.predict.classifier import Classifier
from labelwise.serve.batcher import Batcher, Overloaded
from labelwise.serve.config import ServeConfig

log = logging.getLogger("labelwise")
STATIC = Path(__file__).resolve().parent / "static"
MAX_POSITIONS = 512  # BERT-style encoders have 512 position embeddings


# ---- request and response bodies ---------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Strict):
    texts: list[StrictStr] = Field(min_length=1, description="texts to label")
    threshold: Optional[float] = Field(None, ge=0, le=1, description="one threshold for every label "
                                       "(default: the model's tuned per-label thresholds)")
    top_k_min: int = Field(0, ge=0, description="always return at least this many labels")
    top_k_max: Optional[int] = Field(None, ge=1, description="return at most this many labels")


class SeedData(Strict):
    text: list[StrictStr] = Field(min_length=1)


class PaddleNLPParameters(BaseModel):  # PaddleNLP's clients send batch_size too: accepted, batching is ours
    max_seq_len: Optional[int] = Field(None, ge=2, le=MAX_POSITIONS)
    batch_size: Optional[int] = Field(None, ge=1)
    prob_limit: Optional[float] = Field(None, ge=0, le=1)


class SeedRequest(Strict):
    data: SeedData
    parameters: PaddleNLPParameters = Field(default_factory=PaddleNLPParameters)


try:  # the `serve` extra brings orjson: serialising the answer is a sizeable share of a request's CPU time
    import orjson

    def _dumps(payload) -> bytes:
        return orjson.dumps(payload)
except ImportError:  # pragma: no cover - the standard library does the same, slower
    import json

    def _dumps(payload) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(payload) -> Response:
    """A JSON answer from plain lists, dicts, strings and floats, without FastAPI's generic encoder pass."""
    return Response(_dumps(payload), media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _printable(text: str) -> str:
    """``text`` with control characters (newlines, tabs, ...) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _validation_message(err: RequestValidationError) -> tuple[int, str]:
    problems = err.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return 400, f"request body is not valid JSON ({problems[0].get('ctx', {}).get('error', 'parse error')})"
    if len(problems) == 1 and tuple(problems[0].get("loc", ())) == ("body",):
        return 422, ("request body must be a JSON object such as {\"texts\": [\"...\"]}, sent with "
                     "Content-Type: application/json")
    parts = []
    for p in problems[:5]:  # field names come from the client: escape what would break the one-line message
        where = ".".join(_printable(str(x)) for x in p.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {p.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return 422, "; ".join(parts) + more


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413) before they are parsed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _error(413, f"request body of {int(declared)} bytes is over the limit of "
                                     f"{self.max_bytes} bytes; send fewer or shorter texts")(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body is over the limit of {self.max_bytes} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def create_app(classifier: Classifier, config: ServeConfig | None = None, model_path: str = "") -> FastAPI:
    """The FastAPI application serving ``classifier``."""
    config = (config or ServeConfig()).check()
    batcher = Batcher(classifier, config)

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="labelwise", version="1", lifespan=lifespan,
                  description="Multi-label text classification: texts in, label names and confidences out.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_request: Request, err: RequestValidationError):
        status, message = _validation_message(err)
        return _error(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException):
        if err.status_code == 404:
            return _error(404, f"no route {request.method} {request.url.path}; see /docs")
        if err.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; see /docs")
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Overloaded)
    async def on_overload(_request: Request, err: Overloaded):
        return _error(503, str(err), headers={"Retry-After": str(err.retry_after)})

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, err: Exception):  # a bug, not the user's fault: say so
        log.exception("unexpected error")
        return _error(500, f"internal error: {type(err).__name__}: {err}")

    def check_limits(texts: list[str]) -> None:
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

    @app.get("/health")
    async def health():
        backend = classifier.backend
        return {"status": "ok", "model_path": model_path, "backend": backend.name,
                "precision": getattr(backend, "precision", "fp32"), "labels": len(classifier.labels),
                "max_seq_length": classifier.max_seq_length, "config": asdict(config), "stats": batcher.stats}

    @app.get("/labels")
    async def labels():
        return {"labels": classifier.labels, "thresholds": [round(float(t), 6) for t in classifier.thresholds]}

    @app.post("/predict")
    async def predict(body: PredictRequest):
        check_limits(body.texts)
        if body.top_k_max is not None and body.top_k_max < body.top_k_min:
            raise HTTPException(422, "top_k_max must not be smaller than top_k_min")
        start = time.perf_counter()
        probs = await batcher.proba(body.texts)
        predictions = classifier.decode(probs, body.threshold, body.top_k_min, body.top_k_max)
        return _json({"predictions": [p.to_json() for p in predictions],
                      "ms": round(1000 * (time.perf_counter() - start), 2)})

    @app.post("/models/cls_multi_label")
    async def seed_predict(body: SeedRequest):
        texts, params = body.data.text, body.parameters
        check_limits(texts)
        probs = await batcher.proba(texts, params.max_seq_len)
        predictions = classifier.decode(probs, params.prob_limit)
        index = {label: i for i, label in enumerate(classifier.labels)}
        return _json({"result": {
            "label": [p.labels for p in predictions],
            "confidence": [p.scores for p in predictions],
            "label_ids": [[index[label] for label in p.labels] for p in predictions],
            "predictions": [{"text": t, "labels": p.labels, "confidence": p.scores} for t, p in zip(texts, predictions)],
        }})

    return app


class ServerThread:
    """Serve an app from a background thread (notebooks, tests): ``with ServerThread(app) as url: ...``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
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

    model_path = index_dir or model_path
    classifier = Classifier.load(model_path, backend=backend, device=device, num_threads=num_threads,
                                 precision=precision)
    app = create_app(classifier, config, model_path=str(model_path))
    print(f"serving {model_path} ({classifier.backend.name}) on http://{host}:{port}  (demo page at /, API at /docs)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")

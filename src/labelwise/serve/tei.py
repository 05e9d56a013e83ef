"""The serving conventions people script against: Hugging Face text-embeddings-inference (TEI) and probes.

TEI's shapes, beside the service's own routes (which keep working)::

    POST /predict      {"inputs": "text" | ["text", ...], "raw_scores"?: false, "truncate"?: ...}
                       → [{"label", "score"}, ...] for one text (every label, highest first), a list of those for
                       several; ``raw_scores`` gives logits instead of probabilities. {"texts": [...]} is still the
                       service's own request and answer (labelwise.serve.app).
    GET  /info         the model, its labels (id2label / label2id), max input length, batch limits, backend, version
    POST /embed        {"inputs": ..., "normalize"?: true} → one vector per text, where the backend has text vectors
                       (a checkpoint, an export made with --features, a retrieval index)
    GET  /health/live  200 while the process answers (liveness: restart it when this fails)
    GET  /health/ready 200 once the model has answered and while the queue takes work; 503 otherwise (readiness:
                       send no traffic while this fails). Both are open, like /health.

Bodies are parsed by :func:`parse_body`, the one parser of the routes that take several shapes, with the same
one-line errors as FastAPI's own validation (labelwise.serve.http).
"""
from __future__ import annotations

import json
from typing import Annotated, Optional, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from labelwise.errors import LabelwiseError
from labelwise.evaluation.decision import logit
from labelwise.serve.http import json_response

__all__ = ["PROBE_PATHS", "TeiEmbedRequest", "TeiPredictRequest", "add_tei_routes", "parse_body", "tei_predict"]

PROBE_PATHS = ("/health/live", "/health/ready")
ROUTES = ("/info", "/embed", *PROBE_PATHS)


class _Tei(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1)]] = Field(
        description="one text, or a non-empty list of texts")
    truncate: Optional[StrictBool] = Field(None, description="accepted; texts are read as the model was trained")
    truncation_direction: Optional[StrictStr] = Field(None, description="accepted; see truncate")

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class TeiPredictRequest(_Tei):
    raw_scores: StrictBool = Field(False, description="logits instead of probabilities")


class TeiEmbedRequest(_Tei):
    normalize: StrictBool = Field(True, description="unit-length vectors")


async def parse_body(request: Request):
    """The request's JSON (bytes → value), failing as FastAPI's body parsing does, so every route's bad body gets
    the same one-line 400 (labelwise.serve.http.validation_message / parse_failure_message)."""
    raw = await request.body()
    if not raw.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", err.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": err.msg}}], body=err.doc) from None
    except Exception as err:  # not UTF-8, a number too long, ...: FastAPI's catch-all 400 with the cause chained
        raise HTTPException(400, "request body could not be read") from err


def validated(model_class, payload):
    """``payload`` as ``model_class``; a failure is FastAPI's validation error, located under ``body``."""
    try:
        return model_class.model_validate(payload)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None


async def tei_predict(served, body: TeiPredictRequest, check_limits, request: Request):
    texts = body.texts()
    check_limits(request, texts)
    classifier = served.classifier
    probs = await served.batcher.proba(texts)
    scores = logit(probs).astype(np.float32) if body.raw_scores else probs
    answer = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        answer.append([{"label": classifier.labels[j], "score": round(float(row[j]), 6)} for j in order])
    return json_response(answer[0] if isinstance(body.inputs, str) else answer)


def add_tei_routes(app: FastAPI, slot, config, check_limits) -> None:
    """Mount /info, /embed and the two probes on ``app`` (``slot``: the served model, ``check_limits``: the
    service's text limits)."""
    openapi = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": TeiEmbedRequest.model_json_schema()}}}}

    @app.get("/info", tags=["TEI"])
    async def info():
        served = slot.current
        classifier = served.classifier
        return {"model_id": served.info["model"], "model_sha": served.info["model_version"],
                "model_dtype": served.info["precision"],
                "model_type": {"classifier": {"id2label": {str(i): label for i, label in enumerate(classifier.labels)},
                                              "label2id": {label: i for i, label in enumerate(classifier.labels)}}},
                "max_input_length": classifier.max_seq_length, "max_client_batch_size": config.max_texts,
                "max_batch_tokens": config.max_batch_size * classifier.max_seq_length,
                "max_concurrent_requests": config.max_queue, "tokenization_workers": 1,
                "version": served.info["labelwise_version"], "backend": served.info["backend"],
                "base_model": served.info["base_model"], "long_text": classifier.long_text,
                "thresholds": [round(float(t), 6) for t in classifier.thresholds]}

    @app.post("/embed", tags=["TEI"], openapi_extra=openapi)
    async def embed(request: Request):
        body = validated(TeiEmbedRequest, await parse_body(request))
        texts = body.texts()
        check_limits(request, texts)
        try:
            vectors = await slot.current.batcher.features(texts)
        except LabelwiseError as err:  # this backend has no text vectors
            raise HTTPException(501, f"this model gives no text vectors ({err})") from None
        if body.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return json_response(np.round(vectors.astype(np.float64), 6).tolist())

    @app.get("/health/live", tags=["probes"])
    async def live():
        return {"status": "alive"}

    @app.get("/health/ready", tags=["probes"])
    async def ready():
        batcher = slot.current.batcher
        if batcher.broken:
            return JSONResponse({"status": "unhealthy", "error": batcher.broken}, status_code=503)
        if not batcher.started:
            return JSONResponse({"status": "starting"}, status_code=503)
        if batcher.pending >= config.max_queue:
            return JSONResponse({"status": "shedding", "pending": batcher.pending, "max_queue": config.max_queue},
                                status_code=503)
        return {"status": "ready", "pending": batcher.pending}

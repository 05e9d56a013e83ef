"""The service's HTTP plumbing: its JSON answers and the ASGI layers in front of its routes.

Every refusal, whoever makes it (a route, request validation, a middleware below), is one JSON line
``{"error": "..."}`` with a 4xx status. The layers, outermost first (see :func:`add_middleware`):

* metrics (:mod:`labelwise.serve.metrics`): counts and times every answer, refusals included;
* :class:`JsonRefusals`: turns the plain-text refusals of Starlette's two middlewares below into that JSON form;
* Starlette's ``TrustedHostMiddleware`` with ``allowed_hosts``: a request for another ``Host`` gets 400;
* Starlette's ``CORSMiddleware`` with ``cors_origins``: answers browsers' preflight ``OPTIONS`` (no key needed) and
  marks answers readable by those origins;
* :class:`ApiKey` with ``api_key``: every route but ``/health`` needs ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>`` (or HTTP basic auth with the key as password, any user name: what Label Studio sends to an
  ML backend), else 401;
* :class:`BodyLimit`: bodies over the byte limit (larger under some path prefixes) get 413 before they are parsed;
* :class:`JsonBodies`: every POST must say ``Content-Type: application/json`` (415), come from no browser page or
  from an allowed one (403: a page of another site cannot retrain or reconfigure the service), arrive within
  ``read_timeout`` seconds (408) and nest at most ``MAX_DEPTH`` levels (400); the routes parse only such bodies.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re

import numpy as np

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from labelwise.serve.metrics import MetricsMiddleware, ServiceMetrics

__all__ = [
    "ApiKey",
    "BodyLimit",
    "JsonBodies",
    "JsonRefusals",
    "MAX_DEPTH",
    "json_depth",
    "add_middleware",
    "dumps",
    "error_response",
    "json_response",
    "parse_failure_message",
    "validation_message",
]

OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})  # without the key: orchestrators probe them
EXAMPLE = 'a JSON object such as {"texts": ["..."]}'
MAX_DEPTH = 64  # nesting of arrays and objects; Label Studio's deepest payloads (taxonomy results) nest about 10
JSON_TYPE = re.compile(rb"\s*application/([a-z0-9.+-]*\+)?json\s*(;.*)?", re.IGNORECASE | re.DOTALL)
STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)

try:  # the `serve` extra brings orjson: serialising the answer is a sizeable share of a request's CPU time
    import orjson

    def dumps(payload) -> bytes:
        return orjson.dumps(payload)
except ImportError:  # pragma: no cover - the standard library does the same, slower
    def dumps(payload) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(payload) -> Response:
    """A JSON answer from plain lists, dicts, strings and floats, without FastAPI's generic encoder pass."""
    return Response(dumps(payload), media_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def printable(text: str) -> str:
    """``text`` with control characters (newlines, tabs, ...) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _json_syntax_message(problem: dict, document) -> str:
    """Where and what, for a body that is not JSON: ``Expecting ',' delimiter at line 2, column 7``."""
    what = printable(str(problem.get("ctx", {}).get("error", "parse error")))
    loc = problem.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if pos is not None and isinstance(document, str):
        line = document.count("\n", 0, pos) + 1
        column = pos - (document.rfind("\n", 0, pos) + 1) + 1
        what += f" at line {line}, column {column}"
    return f"request body is not valid JSON: {what}; send {EXAMPLE}"


def validation_message(err: RequestValidationError) -> tuple[int, str]:
    """(status, one-line message) for a body FastAPI could not parse or validate."""
    problems = err.errors()
    invalid = [p for p in problems if p.get("type") == "json_invalid"]
    if invalid:
        return 400, _json_syntax_message(invalid[0], getattr(err, "body", None))
    if len(problems) == 1 and tuple(problems[0].get("loc", ())) == ("body",):
        return 422, f"request body must be {EXAMPLE}, sent with Content-Type: application/json"
    parts = []
    for p in problems[:5]:  # field names come from the client: escape what would break the one-line message
        where = ".".join(printable(str(x)) for x in p.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {p.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return 422, "; ".join(parts) + more


def parse_failure_message(err: Exception) -> str:
    """The one line for FastAPI's catch-all 400 on a body it could not read (the cause is the exception chained)."""
    cause = err.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return (f"request body is not UTF-8 (byte 0x{cause.object[cause.start]:02x} at position {cause.start}); "
                f"send {EXAMPLE} encoded as UTF-8")
    return f"request body could not be read as JSON; send {EXAMPLE}, with Content-Type: application/json"


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413) before they are parsed."""

    def __init__(self, app, max_bytes: int, by_prefix: dict[str, int] | None = None):
        self.app, self.max_bytes, self.by_prefix = app, max_bytes, dict(by_prefix or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = next((n for prefix, n in self.by_prefix.items() if scope["path"].startswith(prefix)), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            refusal = error_response(413, f"request body of {int(declared)} bytes is over the limit of "
                                          f"{limit} bytes; send fewer or shorter texts")
            return await refusal(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body is over the limit of {limit} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def json_depth(raw: bytes) -> int:
    """How deep the arrays and objects of JSON text ``raw`` nest (brackets inside strings do not count)."""
    skeleton = np.frombuffer(STRINGS.sub(b"", raw), dtype=np.uint8)
    step = np.isin(skeleton, (0x5B, 0x7B)).astype(np.int32) - np.isin(skeleton, (0x5D, 0x7D))
    return int(np.cumsum(step).max(initial=0))


def _same_site(origin: str, headers: dict[bytes, bytes]) -> bool:
    """A page of the service itself (the demo), whatever scheme a proxy in front of it speaks."""
    return origin.partition("://")[2] == headers.get(b"host", b"").decode("latin-1")


class JsonBodies:
    """ASGI middleware: the checks every POST body passes before a route parses it (see the module's docstring).

    ``origins``: the ``cors_origins`` a browser page may post from, besides the service's own pages (the demo).
    Requests without an ``Origin`` header (curl, Label Studio, other servers) are not browsers' and pass."""

    def __init__(self, app, origins=(), read_timeout: float = 30.0, max_depth: int = MAX_DEPTH):
        self.app, self.origins, self.read_timeout, self.max_depth = app, set(origins), read_timeout, max_depth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        refusal = self._refusal(headers)
        if refusal is None:
            body, refusal = await self._read(receive)
        if refusal is not None:
            return await error_response(*refusal)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the body was read whole: what follows is the client going away
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        kind = headers.get(b"content-type", b"")
        if not JSON_TYPE.fullmatch(kind):
            shown = printable(kind.decode("latin-1"))[:60] or "none"
            return 415, (f"request body must be sent with Content-Type: application/json (got {shown}); send "
                         f"{EXAMPLE} with that header")
        origin = headers.get(b"origin")
        if origin is not None:
            origin = origin.decode("latin-1")
            if not _same_site(origin, headers) and "*" not in self.origins and origin not in self.origins:
                return 403, (f"a page of {printable(origin)[:80]!r} may not post to this service; its "
                             "`cors_origins` lists the origins whose pages may")
        return None

    async def _read(self, receive) -> tuple[bytes, tuple[int, str] | None]:
        parts, more = [], True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except HTTPException as err:  # BodyLimit's, for a body longer than it said
                return b"", (err.status_code, str(err.detail))
            except asyncio.TimeoutError:
                return b"", (408, f"the request body did not arrive within {self.read_timeout:g} s; send it whole, "
                                  "or start the server with a larger `read_timeout`")
            if message["type"] == "http.disconnect":
                return b"", (400, "the client went away before the request body arrived")
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        depth = json_depth(body)
        if depth > self.max_depth:
            return body, (400, f"request body nests {depth} levels of arrays and objects; at most {self.max_depth} "
                               f"are read: send {EXAMPLE}")
        return body, None


def _offered_key(headers: dict[bytes, bytes]) -> bytes | None:
    key = headers.get(b"x-api-key")
    if key is not None:
        return key.strip() or None
    scheme, _, credentials = headers.get(b"authorization", b"").strip().partition(b" ")
    if scheme.lower() == b"basic" and credentials.strip():  # Label Studio's ML-backend auth: the key as password
        try:
            return base64.b64decode(credentials.strip(), validate=True).partition(b":")[2] or None
        except (binascii.Error, ValueError):
            return None
    return credentials.strip() if scheme.lower() == b"bearer" and credentials.strip() else None


class ApiKey:
    """ASGI middleware: every path but ``OPEN_PATHS`` needs the key (compared in constant time), else 401."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        offered = _offered_key(dict(scope.get("headers") or []))
        if offered is not None and hmac.compare_digest(offered, self.key):
            return await self.app(scope, receive, send)
        what = "missing API key" if offered is None else "wrong API key"
        response = error_response(401, f"{what}: send the header `Authorization: Bearer <key>` or `X-API-Key: <key>` "
                                       "with the key the server was started with", {"WWW-Authenticate": "Bearer"})
        return await response(scope, receive, send)


def _refusal_message(scope, status: int, text: str) -> str:
    if text == "Invalid host header":
        host = printable(dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1"))
        return f"host {host!r} is not served here; use a host name in the server's `allowed_hosts`"
    if text.startswith("Disallowed CORS"):
        origin = printable(dict(scope.get("headers") or []).get(b"origin", b"").decode("latin-1"))
        return (f"cross-origin request refused ({text[len('Disallowed CORS '):]} not allowed) for origin "
                f"{origin!r}; the server's `cors_origins` lists the origins it accepts")
    return printable(text) or f"HTTP {status}"


class JsonRefusals:
    """ASGI middleware: a plain-text answer of 400 or more (Starlette's host and CORS refusals) becomes the
    service's one-line ``{"error": ...}``, same status and headers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict | None = None
        body = b""

        async def rewrite(message):
            nonlocal start, body
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"text/plain"):
                    start = message  # hold it until the body is complete
                    return
            elif start is not None and message["type"] == "http.response.body":
                body += message.get("body", b"")
                if message.get("more_body"):
                    return
                status = start["status"]
                keep = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers") or []
                        if k.lower() not in (b"content-type", b"content-length")}
                response = error_response(status, _refusal_message(scope, status, body.decode("utf-8", "replace")),
                                          keep)
                await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)


def add_middleware(app, config, metrics: ServiceMetrics | None = None) -> None:
    """The layers above for ``config`` (a ServeConfig), innermost first: Starlette wraps each new one around the
    others."""
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(JsonBodies, origins=config.cors_origins, read_timeout=config.read_timeout)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, by_prefix=getattr(config, "body_limits", None))
    if config.api_key:
        app.add_middleware(ApiKey, key=config.api_key)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After"])
    if config.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts), www_redirect=False)
    app.add_middleware(JsonRefusals)
    if metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=metrics)

"""ASGI middleware of the app, outermost first (``install``):

1. ``RequestContext`` — a request id (``X-Request-ID``: the caller's if it is sane, else a new
   one) echoed on the response, put in ``gis.audit.REQUEST_ID`` for the audit log, and one
   ``gridgov.access`` log line per request (JSON with ``GRIDGOV_LOG_FORMAT=json``);
2. ``SecurityHeaders`` — ``X-Content-Type-Options``, ``X-Frame-Options``, ``Referrer-Policy``,
   a ``Content-Security-Policy`` the pages work under (MapLibre: ``worker-src blob:``,
   ``img-src data: blob:``) on documents and ``frame-ancestors`` alone on data,
   ``Permissions-Policy``, and HSTS on HTTPS when configured. A header a route set itself
   (``Referrer-Policy: no-referrer`` of the report page) is kept;
3. ``Cors`` — browsers on ``GRIDGOV_CORS_ORIGINS`` may call everything; with
   ``GRIDGOV_CORS_PUBLIC_READ`` (default) any origin may *read* tiles, styles, OGC API
   Features and Open311 (GET/HEAD, no credentials). Nothing else answers other origins;
4. ``BodyLimit`` — 413 naming the limit for bodies over ``GRIDGOV_MAX_BODY_BYTES``, or
   ``GRIDGOV_MAX_UPLOAD_BYTES`` on upload endpoints; checked on ``Content-Length`` up front
   and on the bytes actually received (chunked uploads).

Ahead of all four (and of FastAPI's own layers), ``FrontLane`` answers the same-origin GETs of
tiles and feature pages through their fast paths (``FastPath``), adding what the stack would
add with the stack's own parts: ``request_id``, ``SecurityPolicy``, ``Metrics.record``,
``log_access``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gis import audit
from gis.settings import LogSettings, SecuritySettings

access_log = logging.getLogger("gridgov.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Bodies that may be large: case photos, bulk case import, plan import.
UPLOAD_PATHS = re.compile(r"^(/api/cases|/api/cases:bulk|/api/plans/[^/]+/import)$")
# Read-only map and standards endpoints any origin may read (no credentials).
PUBLIC_READ_PATHS = re.compile(r"^(/tiles/|/styles/|/ogc(/|$)|/open311/v2/)")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
       " img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self';"
       " worker-src 'self' blob:; child-src blob:; object-src 'none'; base-uri 'self';"
       " form-action 'self'; frame-ancestors {frame_ancestors}")
# FastAPI's interactive docs load Swagger UI / ReDoc from a CDN and run an inline script.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net;"
            " style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net;"
            " img-src 'self' data: https://fastapi.tiangolo.com; worker-src 'self' blob:;"
            " object-src 'none'; base-uri 'self'; frame-ancestors {frame_ancestors}")
DOCS_PATHS = ("/docs", "/redoc")
# Responses a browser renders as a document, which get the page policy.
DOCUMENT_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml",
                  "application/xml", "")


def _path(scope: Scope) -> str:
    return str(scope.get("path", ""))


def request_id(scope: Scope) -> str:
    """The request's id: the one given to it already (``FrontLane`` before the stack), else
    the caller's ``X-Request-ID`` if it is sane, else a new one."""
    given = scope.get("state", {}).get("request_id")
    if given:
        return str(given)
    incoming = ""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            incoming = value.decode("latin-1")
            break
    return incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()


# Set on the scope of a HEAD request answered as its GET (``head_as_get``).
HEAD = "gridgov.head"


def request_method(scope: Scope) -> str:
    """The method the client sent (HEAD for a HEAD answered as its GET)."""
    return "HEAD" if scope.get(HEAD) else str(scope.get("method", ""))


# GETs that stream for as long as the client stays (the live feed): no HEAD there.
NO_HEAD_PATHS = frozenset({"/api/live"})


async def head_as_get(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a HEAD request as ``app`` answers its GET, without the body: the same status
    and headers, ``Content-Length`` and ``ETag`` included (RFC 9110 §9.3.2: a server answers
    HEAD wherever it answers GET; FastAPI by itself answers 405). GETs are safe, so running
    one for a HEAD changes nothing; a path without a GET answers as its GET would (404, or
    405 naming the methods it has). Not for ``NO_HEAD_PATHS``."""
    as_get = {**scope, "method": "GET", HEAD: True}

    async def without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    await app(as_get, receive, without_body)


def log_access(log: LogSettings, scope: Scope, rid: str, status: int, started: float) -> None:
    """The ``gridgov.access`` line of an answered request (when access logs are on)."""
    if not log.access:
        return
    route = scope.get("route")
    client = scope.get("client")
    method = request_method(scope)
    access_log.info(
        "%s %s %s", method, _path(scope), status,
        extra={"request_id": rid, "method": method, "path": _path(scope),
               "route": getattr(route, "path", None), "status": status,
               "client": client[0] if client else None,
               "duration_ms": round((time.perf_counter() - started) * 1000, 2)})


class RequestContext:
    """Request id and access log (see the module doc)."""

    def __init__(self, app: ASGIApp, log: LogSettings) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = audit.REQUEST_ID.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            audit.REQUEST_ID.reset(token)
            log_access(self.log, scope, rid, status, started)


class SecurityPolicy:
    """The security headers of a response (see the module doc), for ``SecurityHeaders`` and
    ``FrontLane``."""

    def __init__(self, settings: SecuritySettings) -> None:
        fa = settings.frame_ancestors.strip() or "'none'"
        self.headers = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY" if fa == "'none'" else "SAMEORIGIN",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=(self), payment=()",
        }
        self.csp = CSP.format(frame_ancestors=fa)
        self.docs_csp = DOCS_CSP.format(frame_ancestors=fa)
        self.data_csp = f"frame-ancestors {fa}"
        self.hsts = (f"max-age={settings.hsts_seconds}; includeSubDomains"
                     if settings.hsts_seconds else None)
        # The same, as the raw (name, value) pairs of an ASGI message.
        self.raw = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in self.headers.items()]
        self.raw_csp = self.csp.encode("latin-1")
        self.raw_docs_csp = self.docs_csp.encode("latin-1")
        self.raw_data_csp = self.data_csp.encode("latin-1")

    def add(self, scope: Scope, raw: list[tuple[bytes, bytes]]) -> None:
        """Add the headers to ``raw``, the headers of the response to ``scope``'s request."""
        # Raw pairs, as ``MutableHeaders`` compares them (names are lower case), in one pass
        # instead of one scan per header: this runs for every response.
        present = {name for name, _ in raw}
        raw.extend(pair for pair in self.raw if pair[0] not in present)
        if b"content-security-policy" not in present:
            content_type = next((v for k, v in raw if k == b"content-type"), b"")
            kind = content_type.decode("latin-1").split(";")[0].strip().lower()
            # A document gets the page policy; data (JSON, tiles, images, scripts) renders
            # nothing, with nosniff it never becomes a document, so it only says who may
            # frame it (as OWASP advises for APIs).
            if kind in DOCUMENT_TYPES:
                raw.append((b"content-security-policy", self.raw_docs_csp
                            if _path(scope).startswith(DOCS_PATHS) else self.raw_csp))
            else:
                raw.append((b"content-security-policy", self.raw_data_csp))
        if self.hsts and scope.get("scheme") == "https":
            MutableHeaders(raw=raw)["Strict-Transport-Security"] = self.hsts


class SecurityHeaders:
    """Security headers on every response (see the module doc)."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        self.policy = SecurityPolicy(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message["headers"])
                self.policy.add(scope, message["headers"])
            await send(message)

        await self.app(scope, receive, send_with_headers)


EXPOSE = ["Location", "Retry-After", "X-Request-ID", "ETag", "Idempotent-Replayed",
          "Content-Disposition"]


class Cors:
    """CORS: configured origins for everything, any origin for public reads."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        origins = settings.origins()
        self.configured: ASGIApp | None = CORSMiddleware(
            app, allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID",
                           "If-None-Match", "If-Match", "Last-Event-ID"],
            expose_headers=EXPOSE, max_age=600) if origins else None
        self.origins = set(origins)
        self.any_origin = "*" in self.origins
        self.public: ASGIApp | None = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["GET", "HEAD"],
            allow_headers=["If-None-Match"], expose_headers=EXPOSE,
            max_age=3600) if settings.cors_public_read else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if self.configured is not None and (self.any_origin or origin in self.origins):
            await self.configured(scope, receive, send)
            return
        method = scope.get("method")
        wanted = headers.get("access-control-request-method", method)
        if (self.public is not None and PUBLIC_READ_PATHS.match(_path(scope))
                and method in ("GET", "HEAD", "OPTIONS") and wanted in ("GET", "HEAD")):
            await self.public(scope, receive, send)
            return
        await self.app(scope, receive, send)


class FastPath:
    """Answers some GETs of one route below FastAPI's routing and dependency solving
    (``api.routes.tiles.TileFastPath``, ``api.routes.ogc.ItemsFastPath``): first in
    ``FrontLane``, above the whole middleware stack, and as ASGI middleware inside it for the
    requests the lane leaves to the stack (cross-origin ones).

    A subclass sets ``pattern`` (the route's path, its parameters as groups), ``router`` and
    ``route_path`` (the route, whose template the metrics then name) and defines ``answer``:
    the response, or None to let the route answer the request as always.
    """

    pattern: re.Pattern[str]
    router: Any  # fastapi.APIRouter
    route_path: str

    def __init__(self, app: ASGIApp | None, root: Any) -> None:
        self.app = app
        self.root = root  # the FastAPI app: its state holds the pools and the cache
        self.route = next(r for r in self.router.routes
                          if getattr(r, "path", None) == self.route_path)

    def match(self, scope: Scope) -> re.Match[str] | None:
        """The path's parameters when this fast path may answer the request."""
        if scope["method"] != "GET" or scope.get("root_path") or scope.get(DECLINED):
            return None
        return self.pattern.fullmatch(scope["path"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        if scope["type"] == "http" and (match := self.match(scope)) is not None:
            response = await self.answer(scope, *match.groups())
            if response is not None:
                scope["route"] = self.route
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def answer(self, scope: Scope, *groups: str) -> Any:
        raise NotImplementedError


# Set on the scope of a request a fast path was asked and declined: the route answers it.
DECLINED = "gridgov.fast_path_declined"
# Requests the stack treats apart: CORS (``Origin``) and the body size limit.
_STACK_HEADERS = frozenset((b"origin", b"content-length", b"transfer-encoding"))


class FrontLane:
    """The fast paths' requests answered ahead of the whole middleware stack.

    A tile or a page costs the server about as much Python in the ten layers of middleware
    (FastAPI's and ours, each wrapping ``send``) as in answering it. For a same-origin GET
    with no body (what the map and GDAL send) the stack's layers do nothing but add their
    headers, count and log, so the lane calls the fast path itself and does those with the
    layers' own parts: the request id (``request_id``, ``audit.REQUEST_ID``), the security
    headers (``SecurityPolicy``), the metrics (``Metrics.record``) and the access log
    (``log_access``) — the same headers in the same order. Anything else goes down the stack:
    a request with ``Origin`` (CORS), a declared body, a fast path's refusal (marked
    ``DECLINED``, so the route answers it without asking again), an exception.
    """

    def __init__(self, paths: Sequence[FastPath], *, security: SecuritySettings,
                 log: LogSettings, metrics: Any = None) -> None:
        self.paths = list(paths)
        self.policy = SecurityPolicy(security)
        self.log = log
        self.metrics = metrics  # api.metrics.Metrics, or None when metrics are off

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """True when the request was answered; False: the stack must answer it."""
        for fast in self.paths:
            match = fast.match(scope)
            if match is not None:
                break
        else:
            return False
        for name, _ in scope["headers"]:
            if name in _STACK_HEADERS:
                return False
        started = time.perf_counter()
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = audit.REQUEST_ID.set(rid)
        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight.inc()
        try:
            try:
                response = await fast.answer(scope, *match.groups())
            except Exception:  # noqa: BLE001 - the stack answers it, with its error handling
                response = None
            if response is None:
                scope[DECLINED] = True
                return False
            scope["route"] = fast.route
            raw_id = rid.encode("latin-1")

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    raw = message["headers"] = list(message["headers"])
                    self.policy.add(scope, raw)
                    raw.append((b"x-request-id", raw_id))
                await send(message)

            try:
                await response(scope, receive, send_with_headers)
            finally:
                if metrics is not None:
                    metrics.record(scope, response.status_code, started)
                log_access(self.log, scope, rid, response.status_code, started)
            return True
        finally:
            audit.REQUEST_ID.reset(token)
            if metrics is not None:
                metrics.in_flight.dec()


class BodyTooLarge(HTTPException):
    """Raised while reading a body that outgrew its limit (answered 413 by the app)."""

    def __init__(self, limit: int, setting: str):
        super().__init__(413, f"request body is over the limit of {limit:,} bytes"
                              f" ({setting}); send less")


def _too_large(limit: int, setting: str, length: int | None) -> bytes:
    said = f" is {length:,} bytes;" if length is not None else " is too large;"
    return json.dumps({"detail": f"request body{said} the limit is {limit:,} bytes"
                                 f" ({setting})", "field": "body", "limit": limit}).encode()


class BodyLimit:
    """413 for bodies over the limit (see the module doc)."""

    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> tuple[int, str]:
        if UPLOAD_PATHS.match(path):
            return self.settings.max_upload_bytes, "GRIDGOV_MAX_UPLOAD_BYTES"
        return self.settings.max_body_bytes, "GRIDGOV_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(_path(scope))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit, setting, int(declared)))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, counted, send)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def configure_logging(settings: LogSettings) -> None:
    """Give the ``gridgov`` loggers a handler (once per process) in the configured format.

    uvicorn's own ``uvicorn.access`` line duplicates ``gridgov.access``; production runs use
    ``--no-access-log`` (docs/operations.md).
    """
    logger = logging.getLogger("gridgov")
    logger.setLevel(settings.level.upper())
    if logging.getLogger().handlers or any(getattr(h, "_gridgov", False)
                                           for h in logger.handlers):
        return  # logging is configured already (an embedding app, pytest): leave it be
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._gridgov = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


"""Domain errors → HTTP status, in one place. Bodies are ``{"detail": ..., "field": ...}``.

Unexpected errors answer 500 with a generic message (logged, never echoed); a database that
cannot be reached answers 503 with Retry-After.
"""

from __future__ import annotations

import logging

import psycopg2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import document_errors
from gis import errors as e

log = logging.getLogger("gridgov.api")

STATUS = {
    e.InvalidInput: 422,
    e.ImportFailed: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.DatabaseUnavailable: 503,
    e.SetupError: 503,
}


def _body(detail: object, field: str | None = None, **extra: object) -> dict:
    body: dict = {"detail": detail, "field": field}
    body.update(extra)
    return body


def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.GridgovError)
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(_body(exc.detail, exc.field, **exc.extra), status_code=status,
                        headers=headers)


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path", "header")]
        problems.append({"field": ".".join(loc) or None, "message": err.get("msg", "invalid")})
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return JSONResponse(_body(detail, first["field"], problems=problems), status_code=422)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(_body(exc.detail), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


RETRY_AFTER_S = 5


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(_body(detail, database="unavailable", retry_after_s=RETRY_AFTER_S),
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _database(request: Request, exc: Exception) -> JSONResponse:
    """Connection trouble → 503 + Retry-After; any other driver error is a bug → 500.

    ``OperationalError`` covers connection refused, "the database system is starting up / shutting
    down", a backend terminated mid-query and the like; an ``InterfaceError`` on a closed
    connection is flagged ``connection_invalidated``. SQLAlchemy has already invalidated the
    pool on a disconnect, so the next request connects afresh: no restart needed.
    """
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        assert isinstance(exc, DBAPIError)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return _unavailable("database unavailable, retry shortly")
    return _unexpected(request, exc)


def _driver(request: Request, exc: Exception) -> JSONResponse:
    """The same for code that talks to psycopg2 directly (raw connections, COPY)."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                type(exc).__name__)
    return _unavailable("database unavailable, retry shortly")


def _pool(request: Request, exc: Exception) -> JSONResponse:
    """No pooled connection freed up within ``gis.db.POOL_TIMEOUT_S``, or a request reused a
    connection that an earlier disconnect invalidated: overloaded or just restarted."""
    log.warning("database busy on %s %s: %s", request.method, request.url.path,
                type(exc).__name__)
    return _unavailable("database busy or reconnecting, retry shortly")


def _value(request: Request, exc: Exception) -> JSONResponse:
    """psycopg2 refuses text holding NUL characters before the query is sent: that is the
    caller's input, a 422 naming the parameter. Any other ``ValueError`` is a bug."""
    if "NUL (0x00)" not in str(exc):
        return _unexpected(request, exc)
    field = next((k for k, v in request.query_params.multi_items() if "\x00" in k + v), None)
    field = field or next((k for k, v in request.path_params.items() if "\x00" in str(v)),
                          "body")
    return JSONResponse(_body("text must not contain NUL (0x00) characters", field[:40]),
                        status_code=422)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # exc_info names the exception itself: Starlette may call this handler outside the
    # ``except`` block, where log.exception would log "NoneType: None".
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(_body("internal error"), status_code=500)


def install(app: FastAPI) -> None:
    document_errors(app)  # the OpenAPI document shows the error body below, not FastAPI's
    app.add_exception_handler(e.GridgovError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(PoolTimeout, _pool)
    app.add_exception_handler(PendingRollbackError, _pool)
    app.add_exception_handler(psycopg2.OperationalError, _driver)
    app.add_exception_handler(psycopg2.InterfaceError, _driver)
    app.add_exception_handler(ValueError, _value)
    app.add_exception_handler(Exception, _unexpected)

"""Domain errors → HTTP status, in one place. Bodies are ``{"detail": ..., "field": ...}``.

Unexpected errors answer 500 with a generic message (logged, never echoed); a database that
cannot be reached answers 503 with Retry-After.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    headers = {"Retry-After": "5"} if status == 503 else None
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


def _database(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return JSONResponse(_body("database unavailable, retry shortly"), status_code=503,
                            headers={"Retry-After": "5"})
    return _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(_body("internal error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.GridgovError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(Exception, _unexpected)

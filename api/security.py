"""Authentication for the API: an optional bearer token → a ``Principal``; role checks.

No ``Authorization`` header means the public. A header that is present must be a valid
``Bearer`` token: unknown, revoked or expired tokens answer 401 (with ``WWW-Authenticate``),
never silently downgrade to the public. A role or scope that does not allow the request
answers 403 naming what is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from api.deps import ConnDep, RequestConnection
from gis.auth import PUBLIC, Forbidden, Principal, Unauthorized, authenticate, require_role
from gis.media import MediaTooLarge, UnsupportedMedia


def _bearer(request: Request) -> str | None:
    """The bearer token of the request (None: no Authorization header, the public)."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`",
                           field="Authorization")
    return token.strip()


def remember_principal(request: Request, token: str, principal: Principal) -> None:
    """Record that ``token`` was just authenticated as ``principal`` for this request, so
    ``get_principal`` does not look it up again (the intake rate limiter runs first).

    Only for a principal ``gis.auth.authenticate`` returned during this request: one from a
    cache could be revoked by now.
    """
    request.state.authenticated = (token, principal)


def _remembered(request: Request, token: str) -> Principal | None:
    known = getattr(request.state, "authenticated", None)
    if known is not None and known[0] == token:
        return known[1]
    return None


def get_principal(request: Request, conn: ConnDep) -> Principal:
    """The caller: the public without an Authorization header, else its bearer token's account
    (401 for a malformed header or an unknown, expired or revoked token)."""
    return _principal(request, conn, prepare=False)


def _principal(request: Request, conn: Connection, *, prepare: bool) -> Principal:
    token = _bearer(request)
    if token is None:
        return PUBLIC
    return _remembered(request, token) or authenticate(conn, token, prepare=prepare)


async def principal_dep(request: Request, conn: ConnDep) -> Principal:
    """``get_principal`` as a dependency. On the event loop: the public and a principal the
    rate limiter already authenticated cost no hop to the thread pool; a token lookup (a
    database query) runs in the pool."""
    token = _bearer(request)
    if token is None:
        return PUBLIC
    known = _remembered(request, token)
    if known is not None:
        return known
    return await run_in_threadpool(authenticate, conn, token)


PrincipalDep = Annotated[Principal, Depends(principal_dep)]


def require(*roles: str, what: str = "use this endpoint"
            ) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only ``roles`` (401 for the public, 403 for other roles)."""

    async def dependency(principal: PrincipalDep) -> Principal:  # no I/O: on the event loop
        require_role(principal, roles, what)
        return principal

    return dependency


class Access:
    """A protected endpoint's one way to its connection: ``connect()`` checks the connection
    out, looks the caller up and checks its role, on the worker thread and in the threadpool
    hop that runs the endpoint's own queries, and gives the connection back at the end.

    ``require`` answers the same question before the handler, at the price of hops of its own
    (the connection in, the token lookup, the connection out). An endpoint on the hot path
    (nearest responders) takes ``Access`` instead: one hop in all. The handler gets no
    connection without passing the check.
    """

    def __init__(self, request: Request, roles: tuple[str, ...] | None, what: str,
                 read_only: bool) -> None:
        self._request = request
        self.roles = roles
        self.what = what
        self.read_only = read_only

    @contextmanager
    def connect(self, *, prepare: bool = False) -> Iterator[tuple[Connection, Principal]]:
        """The request's connection and the caller, once the caller may use the endpoint:
        503 when the database is down (checked first, as for every ``ConnDep`` endpoint), 401
        for the public or a bad token, 403 for another role. Work not committed with
        ``api.deps.commit`` is rolled back at the end of the block. ``prepare``: the token
        lookup is a prepared statement (``gis.auth.authenticate``)."""
        lazy = RequestConnection(self._request)
        conn = lazy.get(read_only=self.read_only)
        try:
            principal = _principal(self._request, conn, prepare=prepare)
            if self.roles is not None:
                require_role(principal, self.roles, self.what)
            yield conn, principal
        except BaseException as exc:
            lazy.close(exc)
            raise
        lazy.close()


def authorised(*roles: str, what: str = "use this endpoint", read_only: bool = False
               ) -> Callable[[Request], Awaitable[Access]]:
    """A dependency giving a sync endpoint an ``Access`` that admits only ``roles`` (no
    roles: anyone, the public included, though a token that is sent must be valid); the check
    runs when the handler enters ``connect()``. ``read_only``: the endpoint writes nothing,
    its connection runs in autocommit (``api.deps.RequestConnection.get``)."""

    async def dependency(request: Request) -> Access:  # no I/O: on the event loop
        return Access(request, roles or None, what, read_only)

    return dependency


_STATUS: dict[type[Exception], int] = {
    Unauthorized: 401, Forbidden: 403, MediaTooLarge: 413, UnsupportedMedia: 415,
}


def _handler(status: int) -> Callable[[Request, Exception], JSONResponse]:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        detail = getattr(exc, "detail", "request refused")
        field = getattr(exc, "field", None)
        headers = {"WWW-Authenticate": 'Bearer realm="gridgov"'} if status == 401 else None
        return JSONResponse({"detail": detail, "field": field}, status_code=status,
                            headers=headers)

    return handle


def install(app: FastAPI) -> None:
    """Map the access and upload errors to their statuses (the most specific handler wins)."""
    for cls, status in _STATUS.items():
        app.add_exception_handler(cls, _handler(status))

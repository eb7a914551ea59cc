"""Authentication for the API: an optional bearer token → a ``Principal``; role checks.

No ``Authorization`` header means the public. A header that is present must be a valid
``Bearer`` token: unknown, revoked or expired tokens answer 401 (with ``WWW-Authenticate``),
never silently downgrade to the public. A role or scope that does not allow the request
answers 403 naming what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep
from gis.auth import Forbidden, Principal, Unauthorized, authenticate, require_role
from gis.media import MediaTooLarge, UnsupportedMedia


def get_principal(request: Request, conn: ConnDep) -> Principal:
    header = request.headers.get("authorization")
    if header is None:
        return authenticate(conn, None)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`",
                           field="Authorization")
    return authenticate(conn, token.strip())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: str, what: str = "use this endpoint") -> Callable[[Principal], Principal]:
    """A dependency that admits only ``roles`` (401 for the public, 403 for other roles)."""

    def dependency(principal: PrincipalDep) -> Principal:
        require_role(principal, roles, what)
        return principal

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

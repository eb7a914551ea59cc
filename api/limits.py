"""Rate limits on intake: ``POST /api/cases`` and Open311 ``POST /open311/v2/requests.{fmt}``.

Each caller is counted under one key and one tier:

- **public** — no token: keyed by the client address (``request.client``; behind a reverse
  proxy run uvicorn with ``--forwarded-allow-ips`` so that is the real client);
- **account** — a valid token of a non-staff account (reporters): keyed by the account;
- **staff** — a valid staff token: keyed by the account, a much higher (or no) limit.

An unknown, expired or revoked token counts as the public (keyed by address), so inventing
tokens does not buy fresh counters. Limits use the ``limits`` notation (``"10/minute;60/hour"``)
from ``LimitSettings`` (``GRIDGOV_LIMITS_*``) with a moving window. A refusal answers **429**
with ``Retry-After`` (seconds) and a body naming the limit: ``{"detail", "field": null,
"limit": "10 per 1 minute", "retry_after": 42}``, or the GeoReport error format on Open311 paths.

Counters live in ``LimitSettings.storage``: ``memory://`` (default) is thread-safe but per
worker process, so with N uvicorn workers a client gets up to N times the limit;
``redis://…`` shares them between workers and machines (docs/operations.md).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Connection

from api.deps import RequestConnection
from api.security import remember_principal
from gis import open311 as gis_open311
from gis.auth import Principal, Unauthorized, authenticate, hash_token
from gis.settings import LimitSettings

INTAKE_PATHS = re.compile(r"^(/api/cases|/open311/v2/requests\.(json|xml))$")
_OPEN311 = re.compile(r"^/open311/v2/.*\.(json|xml)$")


class RateLimited(Exception):
    """A caller went over one of its limits (HTTP 429)."""

    def __init__(self, tier: str, limit: str, retry_after: int, path: str):
        super().__init__(limit)
        self.tier = tier
        self.limit = limit
        self.retry_after = retry_after
        self.path = path

    @property
    def detail(self) -> str:
        who = {"public": "this address", "account": "this account",
               "staff": "this staff account"}[self.tier]
        return (f"rate limit of {self.limit} for reports from {who} exceeded; retry in"
                f" {self.retry_after} s")


@dataclass(frozen=True)
class Caller:
    tier: str  # public | account | staff
    key: str


class IntakeLimiter:
    """The counters and tiers of one app (``app.state.intake_limiter``). Thread-safe."""

    def __init__(self, settings: LimitSettings):
        self.settings = settings
        self.tiers: dict[str, list[RateLimitItem]] = {}
        for tier, spec in (("public", settings.public), ("account", settings.account),
                           ("staff", settings.staff)):
            try:
                self.tiers[tier] = parse_many(spec) if spec.strip() else []
            except ValueError as exc:
                raise ValueError(f"GRIDGOV_LIMITS_{tier.upper()}={spec!r} is not a rate limit;"
                                 " write e.g. '10/minute;60/hour' (empty: none)") from exc
        self.storage = cast(Storage, storage_from_string(settings.storage))
        self.strategy = MovingWindowRateLimiter(self.storage)

    def check(self, caller: Caller, path: str) -> None:
        """Count one request of ``caller``; raise ``RateLimited`` naming the first limit hit."""
        if not self.settings.enabled:
            return
        items = self.tiers[caller.tier]
        for item in items:  # test every window first, so a refusal consumes nothing
            if not self.strategy.test(item, "intake", caller.key):
                raise self._refusal(caller, item, path)
        for item in items:
            if not self.strategy.hit(item, "intake", caller.key):
                raise self._refusal(caller, item, path)

    def _refusal(self, caller: Caller, item: RateLimitItem, path: str) -> RateLimited:
        stats = self.strategy.get_window_stats(item, "intake", caller.key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimited(caller.tier, str(item), retry, path)

    def reset(self) -> None:
        self.storage.reset()


def _classify(principal: Principal, address: str) -> Caller:
    if principal.is_public or principal.user_id is None:
        return Caller("public", f"ip:{address}")
    tier = "staff" if principal.is_staff else "account"
    return Caller(tier, f"user:{principal.user_id}")


def _authenticated(conn: Connection, token: str) -> Principal | None:
    """The token's principal, or None when it is unknown or revoked (the route itself then
    answers 401/403; the limiter counts the caller as the public)."""
    try:
        return authenticate(conn, token)
    except Unauthorized:
        return None


def _look_up(request: Request, token: str) -> Principal | None:
    """``_authenticated`` on a connection of its own, checked out only now (worker thread)."""
    lazy = RequestConnection(request)
    try:
        found = _authenticated(lazy.get(), token)
    except BaseException as exc:
        lazy.close(exc)
        raise
    lazy.close()
    return found


async def _token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    if request.url.path.startswith("/open311/"):
        from api.routes.open311 import post_fields

        try:
            fields: dict[str, Any] = await post_fields(request)  # cached body; parsed again
        except Exception:  # noqa: BLE001 - the route answers a malformed body itself
            return None
        key = fields.get("api_key")
        return str(key) if key else None
    return None


_principals: dict[str, tuple[float, Principal]] = {}
_principals_lock = threading.Lock()
_PRINCIPAL_TTL_S = 30.0


def _cached_principal(token: str) -> Principal | None:
    """A principal looked up for the limiter less than 30 s ago (a burst of reports costs one
    token query); checked on the event loop, no database."""
    with _principals_lock:
        hit = _principals.get(hash_token(token))
    if hit is not None and time.monotonic() - hit[0] < _PRINCIPAL_TTL_S:
        return hit[1]
    return None


def _remember(token: str, principal: Principal) -> None:
    with _principals_lock:
        if len(_principals) > 10_000:
            _principals.clear()
        _principals[hash_token(token)] = (time.monotonic(), principal)


async def intake_limit(request: Request) -> None:
    """Router dependency: counts intake POSTs, other routes of the router pass untouched.

    It takes no ``ConnDep``: that would check a connection out (and back) in threadpool hops of
    their own on every request of the cases and Open311 routers, limits on or off. Only a token
    the limiter has not seen in the last 30 s costs a lookup."""
    limiter: IntakeLimiter | None = getattr(request.app.state, "intake_limiter", None)
    if (limiter is None or not limiter.settings.enabled or request.method != "POST"
            or not INTAKE_PATHS.match(request.url.path)):
        return
    token = await _token(request)
    principal = Principal()
    if token is not None:
        cached = _cached_principal(token)
        if cached is None:
            fresh = await run_in_threadpool(_look_up, request, token)
            cached = fresh or Principal()
            _remember(token, cached)
            if fresh is not None:  # authenticated just now: the route need not ask again
                remember_principal(request, token, fresh)
        principal = cached
    address = request.client.host if request.client else "unknown"
    limiter.check(_classify(principal, address), request.url.path)


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)
    headers = {"Retry-After": str(exc.retry_after)}
    match = _OPEN311.match(exc.path)
    if match:  # the GeoReport error format, in the request's format
        payload = [{"code": 429, "description": exc.detail}]
        if match.group(1) == "xml":
            return Response(gis_open311.to_xml("errors", payload), status_code=429,
                            media_type="text/xml; charset=utf-8", headers=headers)
        return Response(json.dumps(payload), status_code=429, headers=headers,
                        media_type="application/json; charset=utf-8")
    return JSONResponse({"detail": exc.detail, "field": None, "limit": exc.limit,
                         "tier": exc.tier, "retry_after": exc.retry_after},
                        status_code=429, headers=headers)


_OPENAPI_INTAKE = re.compile(r"^(/api/cases|/open311/v2/requests\.\{fmt\})$")
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait",
                                "schema": {"type": "integer"}}}


def document(app: FastAPI) -> None:
    """Add the answers of the limits to the OpenAPI document: 429 on intake POSTs, 413 on
    every operation that takes a body (so clients and schema-driven tests know them)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                if method not in ("post", "put", "patch", "delete"):
                    continue
                responses = op.setdefault("responses", {})
                responses.setdefault("413", {
                    "description": "request body over GRIDGOV_MAX_BODY_BYTES (uploads:"
                                   " GRIDGOV_MAX_UPLOAD_BYTES)"})
                if method == "post" and _OPENAPI_INTAKE.match(path):
                    responses.setdefault("429", {
                        "description": "over the rate limit (GRIDGOV_LIMITS_*); the body names"
                                       " it", "headers": _RETRY_AFTER})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI, settings: LimitSettings) -> None:
    """Create the app's limiter and answer refusals with 429 (routers add ``intake_limit``)."""
    app.state.intake_limiter = IntakeLimiter(settings)
    app.add_exception_handler(RateLimited, _refused)
    document(app)


__all__ = ["INTAKE_PATHS", "IntakeLimiter", "RateLimited", "install", "intake_limit"]

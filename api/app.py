"""``create_app()``: the FastAPI application. The engine is created once, in the lifespan.

Around the routes (``api/middleware.py``, ``api/metrics.py``, ``api/limits.py``): request ids
and access logs, Prometheus metrics, security headers, CORS, body size limits and rate limits
on intake. In production mode (``GRIDGOV_MODE=production``) the app refuses to start with
unsafe defaults (``unsafe_defaults``); docs/operations.md says what to set.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection, make_url, text
from starlette.types import Receive, Scope, Send

from api import errors, limits, metrics, middleware, security
from api.routes import (
    analysis,
    areas,
    audit,
    cases,
    categories,
    coverage,
    facilities,
    health,
    kpis,
    live,
    ogc,
    open311,
    plans,
    responders,
    search,
    stats,
    styles,
    tiles,
    users,
)
from gis import __version__, db
from gis.settings import (
    DatabaseSettings,
    LimitSettings,
    LogSettings,
    MetricsSettings,
    SecuritySettings,
    ServerSettings,
)

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("gridgov.app")

# Passwords that are someone's default; a production database must not use them.
WEAK_SECRETS = frozenset({"", "postgres", "password", "gridgov", "secret", "changeme",
                          "change-me", "admin", "root", "test", "demo", "123456"})
MIN_SECRET_CHARS = 16


class UnsafeConfiguration(RuntimeError):
    """Production mode with settings that are only safe on a developer's machine."""


def unsafe_defaults(database: DatabaseSettings, security_settings: SecuritySettings,
                    metrics_settings: MetricsSettings, conn: Connection | None = None
                    ) -> list[str]:
    """What would be unsafe in production, each with what to do about it (empty: all well).

    ``conn`` (when given) is used to look for live demo tokens (``gridgov demo``).
    """
    problems: list[str] = []
    if database.embedded:
        problems.append(
            "the embedded database (its superuser needs no password): set"
            " GRIDGOV_DATABASE_URL to a PostGIS server with an account and password of its own")
    else:
        url = make_url(database.database_url or "")
        password = url.password or ""
        if password.lower() in WEAK_SECRETS and password:
            problems.append(
                f"GRIDGOV_DATABASE_URL connects as {url.username!r} with a default password:"
                " give the database role a strong password")
        elif not password and url.host and "host" not in url.query:
            log.warning("GRIDGOV_DATABASE_URL has no password for %s: make sure the server"
                        " asks for one (PGPASSFILE, scram-sha-256), not trust", url.host)
    token = metrics_settings.token
    if metrics_settings.enabled and token is not None and (
            len(token) < MIN_SECRET_CHARS or token.lower() in WEAK_SECRETS):
        problems.append(f"GRIDGOV_METRICS_TOKEN is weak: use at least {MIN_SECRET_CHARS}"
                        " random characters (e.g. `openssl rand -hex 24`)")
    if conn is not None and conn.execute(text("SELECT to_regclass('api_tokens')")).scalar() is None:
        problems.append("the database has no gridgov schema: run `gridgov migrate`")
    elif conn is not None:
        demo = conn.execute(text(
            "SELECT string_agg(DISTINCT u.name, ', ' ORDER BY u.name) FROM api_tokens t"
            " JOIN users u ON u.id = t.user_id WHERE t.label = 'demo' AND u.active"
            " AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())"
        )).scalar()
        if demo:
            problems.append(
                f"demo accounts with live tokens (written to disk by `gridgov demo`): {demo};"
                " revoke them (`gridgov users revoke NAME`, or `gridgov users disable NAME`)"
                " and delete demo-tokens.json")
    return problems


def startup_checks(database: DatabaseSettings, security_settings: SecuritySettings,
                   metrics_settings: MetricsSettings, server: ServerSettings,
                   conn: Connection | None) -> None:
    """Refuse to start in production with unsafe defaults; warn about risky local set-ups."""
    if security_settings.production:
        problems = unsafe_defaults(database, security_settings, metrics_settings, conn)
        if problems:
            raise UnsafeConfiguration(
                "gridgov refuses to start in production mode (GRIDGOV_MODE=production):\n"
                + "\n".join(f"  - {p}" for p in problems)
                + "\nFix these, or run with GRIDGOV_MODE=local on a developer's machine.")
        if "*" in security_settings.origins():
            log.warning("GRIDGOV_CORS_ORIGINS=* lets every web site call the API from its"
                        " visitors' browsers; name the origins instead")
    elif server.host in ("0.0.0.0", "::", ""):
        log.warning("local mode listening on all interfaces (GRIDGOV_HOST=%s): the demo"
                    " accounts and the embedded database are meant for one machine; set"
                    " GRIDGOV_MODE=production for a server (docs/operations.md)", server.host)


def freeze_startup_objects() -> None:
    """Collect once, then freeze what is left (modules, the app, settings, SQL texts): the
    cyclic collector's full passes then skip those objects. Under a sustained load they were
    the server's longest pauses (55-650 ms every ~6 s at 200 intakes/s; 1.5-19 ms frozen)."""
    gc.collect()
    gc.freeze()


def create_app(db_settings: DatabaseSettings | None = None, *,
               security_settings: SecuritySettings | None = None,
               limit_settings: LimitSettings | None = None,
               metrics_settings: MetricsSettings | None = None,
               log_settings: LogSettings | None = None) -> FastAPI:
    """The app; settings not given are read from the environment (``GRIDGOV_*``)."""
    settings = db_settings or DatabaseSettings()
    sec = security_settings or SecuritySettings()
    met = metrics_settings or MetricsSettings()
    logs = log_settings or LogSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        middleware.configure_logging(logs)
        app.state.engine = db.make_engine(settings)
        app.state.read_pool = db.make_read_pool(settings)  # connects on first use
        try:
            if sec.production:
                with app.state.engine.connect() as conn:
                    startup_checks(settings, sec, met, ServerSettings(), conn)
            else:
                startup_checks(settings, sec, met, ServerSettings(), None)
        except BaseException:
            app.state.engine.dispose()
            raise
        if ServerSettings().gc_freeze:
            freeze_startup_objects()
        try:
            yield
        finally:
            live.close(app)
            await app.state.read_pool.close()
            app.state.engine.dispose()

    app = App(
        title="gridgov",
        version=__version__,
        description="GIS service for grid-based urban and community governance.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry: gridgov exports Prometheus metrics (api/metrics.py)
        # and configures no OpenTelemetry provider; off, it costs nothing per request (on, it
        # looked the providers up on every request: ~3 % of a cold tile's Python).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    security.install(app)
    limits.install(app, limit_settings or LimitSettings())
    intake_limit = [Depends(limits.intake_limit)]
    app.include_router(health.router)
    # Dispatch first: FastAPI tries the routes one by one, in this order, and nearest
    # responders is the hottest endpoint (no other router's paths overlap these).
    app.include_router(responders.router)
    app.include_router(facilities.router)
    app.include_router(areas.router)
    app.include_router(cases.router, dependencies=intake_limit)
    app.include_router(categories.router)
    app.include_router(users.router)
    tiles.install(app)
    app.include_router(styles.router)
    app.include_router(ogc.router)
    app.include_router(live.router)
    app.include_router(kpis.router)
    app.include_router(coverage.router)
    app.include_router(analysis.router)
    app.include_router(stats.router)
    app.include_router(search.router)
    app.include_router(plans.router)
    open311.install(app)
    app.include_router(open311.router, dependencies=intake_limit)
    app.include_router(audit.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html")

    @app.get("/command", include_in_schema=False)
    def command() -> FileResponse:
        return FileResponse(STATIC / "command.html")

    @app.get("/dispatch", include_in_schema=False)
    def dispatch_console() -> FileResponse:
        return FileResponse(STATIC / "dispatch.html", headers={"Referrer-Policy": "no-referrer"})

    @app.get("/planner", include_in_schema=False)
    def planner() -> FileResponse:
        return FileResponse(STATIC / "planner.html")

    # The public report form and its tracking page (the token is read by the page's script),
    # and the staff case list.
    @app.get("/report", include_in_schema=False)
    @app.get("/report/track/{token}", include_in_schema=False)
    def report_page(token: str | None = None) -> FileResponse:
        return FileResponse(STATIC / "report.html",
                            headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})

    @app.get("/cases", include_in_schema=False)
    def cases_page() -> FileResponse:
        return FileResponse(STATIC / "cases.html", headers={"Referrer-Policy": "no-referrer"})

    # Outermost last: request id and access log → metrics → security headers → CORS → body
    # size limit → tiles and feature pages (``TileFastPath``, ``ItemsFastPath``) → the routes.
    app.add_middleware(ogc.ItemsFastPath, root=app)
    app.add_middleware(tiles.TileFastPath, root=app)
    app.add_middleware(middleware.BodyLimit, settings=sec)
    app.add_middleware(middleware.Cors, settings=sec)
    app.add_middleware(middleware.SecurityHeaders, settings=sec)
    app_metrics = metrics.install(app, met)
    if app_metrics is not None:
        app.add_middleware(metrics.MetricsMiddleware, metrics=app_metrics)
    app.add_middleware(middleware.RequestContext, log=logs)
    # Ahead of all of it: the same fast paths for same-origin GETs, with the stack's headers,
    # metrics and log (``api.middleware.FrontLane``).
    app.front_lane = middleware.FrontLane(
        [tiles.TileFastPath(None, root=app), ogc.ItemsFastPath(None, root=app)],
        security=sec, log=logs, metrics=app_metrics)
    return app


class App(FastAPI):
    """FastAPI with ``front_lane`` (``api.middleware.FrontLane``) ahead of its middleware stack
    (tiles and feature pages answered without crossing the stack's ten layers), and HEAD
    wherever GET is answered (``api.middleware.head_as_get``)."""

    front_lane: middleware.FrontLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "HEAD" and scope["path"] not in middleware.NO_HEAD_PATHS:
                await middleware.head_as_get(self, scope, receive, send)
                return
            if self.front_lane is not None:
                scope["app"] = self
                if await self.front_lane(scope, receive, send):
                    return
        await super().__call__(scope, receive, send)

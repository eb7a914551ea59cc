"""``create_app()``: the FastAPI application. The engine is created once, in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import errors, security
from api.routes import (
    analysis,
    areas,
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
from gis.settings import DatabaseSettings

STATIC = Path(__file__).resolve().parent / "static"


def create_app(db_settings: DatabaseSettings | None = None) -> FastAPI:
    settings = db_settings or DatabaseSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = db.make_engine(settings)
        try:
            yield
        finally:
            live.close(app)
            app.state.engine.dispose()

    app = FastAPI(
        title="gridgov",
        version=__version__,
        description="GIS service for grid-based urban and community governance.",
        lifespan=lifespan,
    )
    errors.install(app)
    security.install(app)
    app.include_router(health.router)
    app.include_router(areas.router)
    app.include_router(cases.router)
    app.include_router(categories.router)
    app.include_router(users.router)
    tiles.install(app)
    app.include_router(styles.router)
    app.include_router(ogc.router)
    app.include_router(responders.router)
    app.include_router(facilities.router)
    app.include_router(live.router)
    app.include_router(kpis.router)
    app.include_router(coverage.router)
    app.include_router(analysis.router)
    app.include_router(stats.router)
    app.include_router(search.router)
    app.include_router(plans.router)
    open311.install(app)
    app.include_router(open311.router)
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

    return app

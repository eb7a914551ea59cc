"""Request dependencies: the database connection (one per request, from the app's pool) and the
settings of the case endpoints (read from the environment once per app)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection

from gis.calendar import CalendarSettings
from gis.caseconfig import CaseSettings
from gis.media import MediaSettings, media_dir
from gis.settings import DatabaseSettings


def get_conn(request: Request) -> Iterator[Connection]:
    """A pooled connection; work not committed with ``commit()`` is rolled back."""
    with request.app.state.engine.connect() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn)]


def commit(conn: Connection) -> None:
    """Make the request's writes durable *before* the response goes out (2xx means stored).

    Under test the connection runs inside an outer transaction: only the savepoint is released.
    """
    nested = conn.get_nested_transaction()
    if nested is not None:
        nested.commit()
        conn.begin_nested()
    else:
        conn.commit()


@dataclass(frozen=True)
class CaseConfig:
    """The settings intake, case queries and photos need (``GRIDGOV_CASES_*``,
    ``GRIDGOV_MEDIA_*``, ``GRIDGOV_CALENDAR_*``, the media folder).

    pydantic-settings reads and validates the environment on every construction (~0.3–0.5 ms
    each), so an app builds them once and every request reuses them (``case_config``).
    """

    cases: CaseSettings
    media: MediaSettings
    calendar: CalendarSettings
    media_dir: Path

    @classmethod
    def from_env(cls) -> CaseConfig:
        media = MediaSettings()
        return cls(cases=CaseSettings(), media=media, calendar=CalendarSettings(),
                   media_dir=media_dir(media, DatabaseSettings().data_dir))


def case_config(request: Request) -> CaseConfig:
    """The app's ``CaseConfig`` (``app.state.case_config``), built from the environment on first
    use. Set ``app.state.case_config`` (or override ``case_config_dep``) to use other settings.
    """
    state = request.app.state
    config: CaseConfig | None = getattr(state, "case_config", None)
    if config is None:
        # Two first requests racing both build it: equal objects, the last one stays.
        config = CaseConfig.from_env()
        state.case_config = config
    return config


async def case_config_dep(request: Request) -> CaseConfig:
    # async: resolved on the event loop, no hop to the thread pool.
    return case_config(request)


CaseConfigDep = Annotated[CaseConfig, Depends(case_config_dep)]

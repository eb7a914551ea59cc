"""Request dependencies: the database connection (one per request, from the app's pool) and the
settings of the case endpoints (read from the environment once per app)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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


class RequestConnection:
    """The request's connection from ``get_conn`` (or its test override), opened and closed
    by the worker thread that runs the handler (``api.security.Access``).

    ``ConnDep`` checks out in a threadpool hop of its own before the handler runs and gives
    the connection back in another after the response. A sync handler that opens and closes
    its connection itself needs neither: one hop in all. Call ``get()`` and ``close()`` from a
    worker thread: they may block on the pool or the server.

    ``get(read_only=True)``: the handler only reads, so a fresh pooled connection runs in
    autocommit: no ``BEGIN`` before the first statement and no ``ROLLBACK`` after the last, two
    round trips fewer, and each statement still sees its own snapshot as under the default
    READ COMMITTED. It is the driver's ``autocommit`` flag, set and cleared here: SQLAlchemy's
    ``isolation_level="AUTOCOMMIT"`` would cost a ``SET default_transaction_isolation`` round
    trip when the connection goes back. A connection that is already in a transaction (a
    test's, shared through an override) is left as it is.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self._cm: AbstractContextManager[Connection] | None = None
        self._conn: Connection | None = None
        self._autocommit: Any = None    # the DBAPI connection switched to autocommit

    def get(self, *, read_only: bool = False) -> Connection:
        provider: Any = self._request.app.dependency_overrides.get(get_conn, get_conn)
        wants_request = bool(inspect.signature(provider).parameters)
        cm = contextmanager(provider)(self._request) if wants_request else (
            contextmanager(provider)())
        conn = cm.__enter__()
        self._cm, self._conn = cm, conn
        if read_only and not conn.in_transaction():
            raw = conn.connection.dbapi_connection
            if hasattr(raw, "autocommit"):
                raw.autocommit = True   # no I/O: psycopg2 only records it
                self._autocommit = raw
        return conn

    def close(self, exc: BaseException | None = None) -> None:
        """Give the connection back (rolling back what was not committed); ``exc``: the
        request failed with it, as a dependency with ``yield`` would see it. A connection
        switched to autocommit goes back switched off, or not at all (invalidated)."""
        cm, conn, raw = self._cm, self._conn, self._autocommit
        self._cm = self._conn = self._autocommit = None
        if cm is None:
            return
        try:
            if raw is not None:
                raw.autocommit = False
        except Exception:  # noqa: BLE001 - broken: must never serve another request as is
            if conn is not None:
                conn.invalidate()
        finally:
            if exc is None:
                cm.__exit__(None, None, None)
            else:
                cm.__exit__(type(exc), exc, exc.__traceback__)


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

"""Module-scoped fixtures for the trust tests: one transaction per test module holding the
world (``tests/trust/world.py``), a client whose requests run inside it, and ``cell()`` to run
each request of a matrix in its own savepoint, rolled back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import NestedTransaction

from gis.settings import DatabaseSettings
from tests.trust.world import World, build_world


@pytest.fixture(scope="module")
def mconn(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that lives (and is rolled back) with the module."""
    with engine.connect() as connection:
        tx = connection.begin()
        try:
            yield connection
        finally:
            if tx.is_active:
                tx.rollback()


def _app(conn: Connection, db_settings: DatabaseSettings):  # type: ignore[no-untyped-def]
    from api.app import create_app

    # Intake rate limits would turn a matrix of hundreds of reports into 429s: they have
    # their own tests (tests/api/test_limits.py).
    from gis.settings import LimitSettings
    from tests.appconn import share_connection

    app = create_app(db_settings=db_settings, limit_settings=LimitSettings(enabled=False))

    return share_connection(app, conn)


@pytest.fixture(scope="module")
def mclient(mconn: Connection, db_settings: DatabaseSettings) -> Iterator:
    from fastapi.testclient import TestClient

    from gis.dispatch import DispatchSettings

    app = _app(mconn, db_settings)
    # Live streams end at once after the backlog: a request is then one short answer.
    app.state.dispatch_settings = DispatchSettings(live_max_stream_s=0, live_heartbeat_s=60)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def world(mconn: Connection) -> World:
    return build_world(mconn)


def rollback_to(conn: Connection, savepoint: NestedTransaction) -> None:
    """Roll back ``savepoint`` and any savepoint a request left open inside it."""
    while True:
        inner = conn.get_nested_transaction()
        if inner is None or inner is savepoint:
            break
        inner.rollback()
    if savepoint.is_active:
        savepoint.rollback()


@contextmanager
def cell(conn: Connection) -> Iterator[None]:
    """Run one request in a savepoint that is rolled back: cells never see each other."""
    savepoint = conn.begin_nested()
    try:
        yield
    finally:
        rollback_to(conn, savepoint)

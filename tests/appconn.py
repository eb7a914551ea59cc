"""Run an app's requests inside a test's connection and transaction."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from sqlalchemy import Connection

from api.deps import get_conn


def share_connection(app: FastAPI, conn: Connection) -> FastAPI:
    """Every request of ``app`` uses ``conn`` in a savepoint: kept when the handler succeeds,
    rolled back when it raises. The test's outer transaction is rolled back at its end."""

    def _test_conn() -> Iterator[Connection]:
        nested = conn.begin_nested()
        try:
            yield conn
        except Exception:
            if nested.is_active:
                nested.rollback()
            raise
        else:
            if nested.is_active:
                nested.commit()

    app.dependency_overrides[get_conn] = _test_conn
    return app

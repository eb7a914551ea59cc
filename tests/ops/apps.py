"""An HTTP client for an app built with explicit settings (limits, security, metrics), whose
requests run inside the test's transaction like the ``client`` fixture of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.app import create_app
from gis.settings import DatabaseSettings
from tests.appconn import share_connection


@contextmanager
def app_client(conn: Connection, db_settings: DatabaseSettings, *,
               client_host: str = "testclient", **settings: Any) -> Iterator[TestClient]:
    app = create_app(db_settings=db_settings, **settings)

    share_connection(app, conn)
    with TestClient(app, client=(client_host, 50000)) as client:
        yield client

"""Shared fixtures: a real PostGIS database per test worker, every test in a rolled-back
transaction.

The database is cloned from a template that holds the migrated schema and the demo city; the
template is rebuilt only when the migrations or the demo loader change (its fingerprint).
Database tests fail, never skip, when PostGIS cannot be started.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.pool import NullPool

from gis import db, schema
from gis.settings import CitySettings, DatabaseSettings

# A server freezes its start-up objects once (api.app.freeze_startup_objects); the test
# process starts hundreds of apps, and freezing each would keep every cycle made before it
# for good. tests/api/test_app_startup.py turns it on where it is the behaviour under test.
os.environ.setdefault("GRIDGOV_GC_FREEZE", "false")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "gridgov_test_template"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    sources = sorted((ROOT / "migrations").rglob("*.py")) + sorted((ROOT / "gis").rglob("*.py"))
    sources += sorted((ROOT / "gis").rglob("*.sql"))
    for path in sources:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _template_comment(settings: DatabaseSettings) -> str | None:
    admin = db.make_engine(settings, "postgres", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            return conn.execute(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                     " WHERE datname = :n"), {"n": TEMPLATE}
            ).scalar()
    finally:
        admin.dispose()


def _build_template(settings: DatabaseSettings, fingerprint: str) -> None:
    from gis import demo

    db.drop_database(settings, TEMPLATE)
    db.ensure_database(settings, TEMPLATE)
    schema.upgrade(dbname=TEMPLATE)
    engine = db.make_engine(settings, TEMPLATE, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            demo.load_demo(conn, city=CitySettings())
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    admin = db.make_engine(settings, "postgres", poolclass=NullPool,
                           isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"COMMENT ON DATABASE {TEMPLATE} IS '{fingerprint}'"))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def db_settings() -> DatabaseSettings:
    settings = DatabaseSettings()
    db.start_cluster(settings)
    return settings


def _drop_orphans(settings: DatabaseSettings) -> None:
    """Drop test databases left by pytest processes that are gone (killed runs)."""
    admin = db.make_engine(settings, "postgres", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            names = conn.execute(text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'gridgov_test_%'"
                " AND datname <> :t"), {"t": TEMPLATE}).scalars().all()
    finally:
        admin.dispose()
    for name in names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            db.drop_database(settings, name)


@pytest.fixture(scope="session")
def db_name(db_settings: DatabaseSettings, worker_id: str) -> Iterator[str]:
    """This process's own database, a fresh clone of the (cached) demo template.

    Named after the worker and the process id, so concurrent pytest runs never share one.
    """
    fingerprint = _fingerprint()
    lock_path = db_settings.data_dir / "test-template.lock"
    name = f"gridgov_test_{worker_id}_{os.getpid()}"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _drop_orphans(db_settings)
        if _template_comment(db_settings) != fingerprint:
            _build_template(db_settings, fingerprint)
        db.drop_database(db_settings, name)
        admin = db.make_engine(db_settings, "postgres", poolclass=NullPool,
                               isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        finally:
            admin.dispose()
    yield name
    db.drop_database(db_settings, name)


@pytest.fixture(scope="session")
def engine(db_settings: DatabaseSettings, db_name: str) -> Iterator[Engine]:
    eng = db.make_engine(db_settings, db_name)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        tx = connection.begin()
        try:
            yield connection
        finally:
            if tx.is_active:
                tx.rollback()


@pytest.fixture
def client(conn: Connection, db_settings: DatabaseSettings) -> Iterator:
    """An HTTP client for the app whose requests all run inside the test's transaction."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.appconn import share_connection

    app = create_app(db_settings=db_settings)

    share_connection(app, conn)
    with TestClient(app) as test_client:
        yield test_client

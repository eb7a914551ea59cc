"""Backup and restore for real, as docs/operations.md tells operators to do it: ``pg_dump
--format=custom`` of the demo database (the test template: schema at head plus the Helsinki
demo city), ``pg_restore`` into a fresh database, then the restored copy must hold the same rows
and Alembic revision, and answer a point lookup and take a case report."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from gis import areas, db, intake
from gis.settings import DatabaseSettings
from tests.conftest import TEMPLATE

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TABLES = ("jurisdictions", "area_levels", "areas", "area_parts", "buildings", "departments",
          "categories", "facilities", "components", "responders", "road_nodes", "road_edges",
          "cases", "case_events", "users", "kpi_daily", "kpi_targets", "audit_log")
HELSINKI = (24.9384, 60.1699)  # the Senate Square, inside the demo city


def _run(tool: str, *args: str) -> None:
    done = subprocess.run([str(PG_BIN / tool), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{tool} failed: {done.stderr[-2000:]}"


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in TABLES}


def _revision(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


@pytest.fixture
def dumped(db_settings: DatabaseSettings, db_name: str, tmp_path: Path) -> Path:
    """A custom-format dump of the template (``db_name`` makes sure it is current). The
    conftest's lock is held meanwhile: cloning a template refuses while anyone is connected."""
    out = tmp_path / "gridgov.dump"
    with open(db_settings.data_dir / "test-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run("pg_dump", "--format=custom", "--compress=6", f"--file={out}",
             db.libpq_dsn(db_settings, TEMPLATE))
    return out


@pytest.fixture
def restored(db_settings: DatabaseSettings, dumped: Path) -> Iterator[str]:
    name = f"gridgov_restore_{os.getpid()}"
    db.drop_database(db_settings, name)
    admin = db.make_engine(db_settings, "postgres", poolclass=NullPool,
                           isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE template0"))
    finally:
        admin.dispose()
    try:
        _run("pg_restore", "--exit-on-error", "--no-owner", "--jobs=2",
             f"--dbname={db.libpq_dsn(db_settings, name)}", str(dumped))
        yield name
    finally:
        db.drop_database(db_settings, name)


def test_dump_and_restore_keep_every_row_the_revision_and_the_spatial_queries(
        db_settings: DatabaseSettings, restored: str) -> None:
    original = db.make_engine(db_settings, TEMPLATE, poolclass=NullPool)
    copy = db.make_engine(db_settings, restored, poolclass=NullPool)
    try:
        before = _counts(original)
        assert before["areas"] > 0 and before["cases"] > 0 and before["road_edges"] > 0
        assert _counts(copy) == before
        assert _revision(copy) == _revision(original) != []
        with copy.begin() as conn:
            chain = areas.locate(conn, *HELSINKI)["areas"]
            assert chain[-1]["level"] == "grid" and len(chain[-1]["code"]) == 14
            result = intake.create_case(conn, intake.Report(
                category="E010101", lon=HELSINKI[0], lat=HELSINKI[1],
                description="restored database takes reports", idempotency_key="restore-1"))
            assert result.created and result.body["area_code"] == chain[-1]["code"]
            assert conn.execute(text("SELECT count(*) FROM case_events WHERE case_id = :c"),
                                {"c": result.body["id"]}).scalar_one() == 1
    finally:
        original.dispose()
        copy.dispose()

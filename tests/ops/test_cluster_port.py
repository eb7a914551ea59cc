"""The embedded cluster runs on the port of the settings it is started with (not only the one
it was created with), and starting it with another port while it runs says so by name."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from gis import db
from gis.errors import SetupError
from gis.settings import DatabaseSettings
from tests.trust.crash_support import free_port


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="gridgov-port-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        with contextlib.suppress(Exception):
            db.stop_cluster(DatabaseSettings(database_url=None, data_dir=root / "data"),
                            mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def _settings(root: Path, port: int) -> DatabaseSettings:
    return DatabaseSettings(database_url=None, data_dir=root / "data", pg_port=port,
                            db_name="gridgov_port")


def _served_port(settings: DatabaseSettings) -> int:
    engine = db.make_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SHOW port")).scalar_one())
    finally:
        engine.dispose()


def test_a_cluster_moves_to_the_port_it_is_started_with(cluster_root: Path) -> None:
    first = _settings(cluster_root, free_port())
    db.start_cluster(first)
    assert _served_port(first) == first.pg_port
    db.stop_cluster(first)

    moved = _settings(cluster_root, free_port())
    db.start_cluster(moved)
    assert _served_port(moved) == moved.pg_port


def test_starting_a_running_cluster_with_another_port_names_both_ports(
        cluster_root: Path) -> None:
    running = _settings(cluster_root, free_port())
    db.start_cluster(running)
    other = _settings(cluster_root, free_port())
    with pytest.raises(SetupError) as caught:
        db.start_cluster(other, timeout_s=5)
    message = str(caught.value)
    assert f"running on port {running.pg_port}" in message
    assert f"GRIDGOV_PG_PORT={other.pg_port}" in message
    assert _served_port(running) == running.pg_port  # still up, untouched

"""Start-up of the served app: the garbage collector's view after the lifespan has run."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection

from gis.settings import DatabaseSettings
from tests.ops.apps import app_client


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield None
    gc.unfreeze()


def test_a_started_server_freezes_its_start_up_objects(
        conn: Connection, db_settings: DatabaseSettings, unfrozen: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Full collections then skip modules, the app and settings: under load they were the
    server's longest pauses (docs/cases.md, "Intake speed")."""
    monkeypatch.setenv("GRIDGOV_GC_FREEZE", "true")
    with app_client(conn, db_settings) as client:
        assert gc.get_freeze_count() > 10_000  # every module, class and function loaded
        assert client.get("/health").status_code == 200


def test_freezing_can_be_turned_off(conn: Connection, db_settings: DatabaseSettings,
                                    unfrozen: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_GC_FREEZE", "false")
    with app_client(conn, db_settings) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() == 0

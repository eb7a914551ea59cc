"""The case subcommands of ``gridgov`` against the test database (they commit, so they clean
up after themselves)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from api.cli import main
from gis.auth import authenticate
from tests.factories import CaseWorld, case_world, purge_jurisdiction


@pytest.fixture(autouse=True)
def test_database(monkeypatch: pytest.MonkeyPatch, db_name: str) -> None:
    monkeypatch.setenv("GRIDGOV_DB_NAME", db_name)


@pytest.fixture
def committed_world(engine: Engine) -> Iterator[CaseWorld]:
    code = f"CLI-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        world = case_world(conn, code=code, x0=50.0, y0=10.0)
    try:
        yield world
    finally:
        with engine.begin() as conn:
            purge_jurisdiction(conn, world.city.jurisdiction_id)


def test_users_add_prints_a_working_token(engine: Engine,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    try:
        assert main(["users", "add", name, "--role", "analyst", "--expires-days", "1"]) == 0
        token = capsys.readouterr().out.strip()
        with engine.connect() as conn:
            assert authenticate(conn, token).name == name
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE name = :n"), {"n": name})


def test_invalid_category_edit_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str],
                                                       engine: Engine) -> None:
    with engine.begin() as conn:
        from gis.categories import seed_defaults

        seed_defaults(conn)
    assert main(["categories", "set", "E010101", "--urgency", "9"]) == 2
    assert "urgency must be 1" in capsys.readouterr().err


def test_import_cases_reports_row_errors_and_strict_writes_nothing(
        committed_world: CaseWorld, engine: Engine, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    lon, lat = committed_world.point(1, 1)
    csv = tmp_path / "cases.csv"
    csv.write_text(f"lon,lat,category,reported_at\n{lon},{lat},E010101,2025-01-01T10:00:00Z\n"
                   f"{lon},{lat},NOPE,2025-01-01T10:00:00Z\n")
    with engine.connect() as conn:
        jcode = conn.execute(text("SELECT code FROM jurisdictions WHERE id = :j"),
                             {"j": committed_world.city.jurisdiction_id}).scalar_one()
    code = ["--jurisdiction", jcode]

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM cases WHERE jurisdiction_id = :j"),
                                    {"j": committed_world.city.jurisdiction_id}).scalar_one())

    assert main(["import", "cases", str(csv), "--strict", *code]) == 2
    assert "unknown category 'NOPE'" in capsys.readouterr().err and count() == 0
    assert main(["import", "cases", str(csv), *code]) == 1
    err = capsys.readouterr().err
    assert "row 2: category" in err and count() == 1
    assert "load path: fast" in err  # the test database's role is a superuser
    assert main(["import", "cases", str(csv), *code, "--triggers"]) == 1
    err = capsys.readouterr().err
    assert "load path: triggers" in err and "row 2: category" in err and count() == 2

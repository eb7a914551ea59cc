"""Production mode refuses to start with defaults that are only safe on a developer's machine;
local mode warns when it listens on every interface."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.app import UnsafeConfiguration, create_app, unsafe_defaults
from gis import auth, db
from gis.settings import DatabaseSettings, MetricsSettings, SecuritySettings

PRODUCTION = SecuritySettings(mode="production")
STRONG_URL = "postgresql://gridgov_app:9f3c1e0b7a2d4c6e8f@db.internal:5432/gridgov"


def test_production_refuses_the_embedded_database_naming_the_setting(
        db_settings: DatabaseSettings, db_name: str) -> None:
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}),
                     security_settings=PRODUCTION)
    with pytest.raises(UnsafeConfiguration, match="GRIDGOV_DATABASE_URL"), TestClient(app):
        pass


@pytest.mark.parametrize("password", ["postgres", "changeme", "gridgov"])
def test_default_database_passwords_are_refused(password: str) -> None:
    url = f"postgresql://postgres:{password}@db.internal/gridgov"
    problems = unsafe_defaults(DatabaseSettings(database_url=url), PRODUCTION, MetricsSettings())
    assert len(problems) == 1 and "default password" in problems[0]


def test_a_strong_configuration_has_no_problems() -> None:
    assert unsafe_defaults(DatabaseSettings(database_url=STRONG_URL), PRODUCTION,
                           MetricsSettings(token="x" * 8 + "7f0e9d8c7b6a5f4e")) == []


def test_a_weak_metrics_token_is_refused() -> None:
    problems = unsafe_defaults(DatabaseSettings(database_url=STRONG_URL), PRODUCTION,
                               MetricsSettings(token="secret"))
    assert len(problems) == 1 and "GRIDGOV_METRICS_TOKEN" in problems[0]


def test_live_demo_tokens_are_refused_until_revoked(conn: Connection, tmp_path: Path) -> None:
    made = auth.create_demo_accounts(conn, tmp_path / "demo-tokens.json", prefix="prodcheck-")
    settings = DatabaseSettings(database_url=STRONG_URL)
    problems = unsafe_defaults(settings, PRODUCTION, MetricsSettings(), conn)
    assert len(problems) == 1 and "prodcheck-admin" in problems[0]
    assert "gridgov users revoke" in problems[0]
    for account in made["accounts"]:
        auth.revoke_tokens(conn, auth.user_id_by_name(conn, account["name"]))
    assert unsafe_defaults(settings, PRODUCTION, MetricsSettings(), conn) == []


def test_production_starts_on_a_server_with_its_own_credentials(
        db_settings: DatabaseSettings, db_name: str) -> None:
    url = db.server_url(db_settings, db_name).render_as_string(hide_password=False)
    server = DatabaseSettings(database_url=url)  # the socket, peer-authenticated: no password
    with TestClient(create_app(db_settings=server, security_settings=PRODUCTION)) as c:
        assert c.get("/health").status_code == 200


def test_local_mode_on_all_interfaces_warns(db_settings: DatabaseSettings,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GRIDGOV_HOST", "0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="gridgov.app"), \
            TestClient(create_app(db_settings=db_settings)):
        pass
    assert any("GRIDGOV_MODE=production" in r.getMessage() for r in caplog.records)


def test_an_unmigrated_database_is_named_not_a_crash(db_settings: DatabaseSettings) -> None:
    from gis import db

    name = "gridgov_unmigrated_check"
    db.drop_database(db_settings, name)
    db.ensure_database(db_settings, name)
    engine = db.make_engine(db_settings, name)
    try:
        with engine.connect() as c:
            problems = unsafe_defaults(DatabaseSettings(database_url=STRONG_URL), PRODUCTION,
                                       MetricsSettings(), c)
        assert problems == ["the database has no gridgov schema: run `gridgov migrate`"]
    finally:
        engine.dispose()
        db.drop_database(db_settings, name)

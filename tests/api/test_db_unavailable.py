"""The API with its database down, restarted or overloaded: 503 with Retry-After, never a 500
or a hang, and recovery by itself (issue 8, crash safety).

The shared test cluster is never stopped here: "down" is a server that does not exist (an
embedded cluster in an empty tmp folder, or a TCP port nobody listens on); "restarted" is the
app's own backends terminated with ``pg_terminate_backend`` in this process's database. The
real stop/start of PostgreSQL under load is ``tests/trust/test_crash_safety.py``.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from api.app import create_app
from gis import db
from gis.settings import DatabaseSettings

# Representative endpoints of every router: each must answer 503 while the database is down.
DB_BACKED = [
    ("GET", "/health"),
    ("GET", "/api/areas?level=3"),
    ("GET", "/api/areas/91010100100101"),
    ("GET", "/api/locate?lon=24.94&lat=60.17"),
    ("POST", "/api/cases"),
    ("GET", "/api/cases?status=reported"),
    ("GET", "/api/cases/1"),
    ("POST", "/api/cases/1/actions"),
    ("GET", "/api/responders/nearest?lon=24.94&lat=60.17"),
    ("GET", "/tiles/grids/12/2331/1185.mvt"),
    ("GET", "/ogc/collections/grids/items?limit=5"),
    ("GET", "/open311/v2/requests.json"),
    ("GET", "/api/kpis?level=3"),
    ("GET", "/api/categories"),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _down_settings(tmp_path: Path, kind: str) -> DatabaseSettings:
    if kind == "socket":  # an embedded cluster that was never started: no socket file
        return DatabaseSettings(data_dir=tmp_path, pg_port=_free_port(), db_name="gone")
    return DatabaseSettings(  # a server on TCP that refuses connections
        database_url=f"postgresql://nobody@127.0.0.1:{_free_port()}/gone")


@pytest.fixture(params=["socket", "tcp"])
def down_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(db_settings=_down_settings(tmp_path, request.param))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _assert_unavailable(response, what: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    assert response.headers["Retry-After"].isdigit(), what
    body = response.json()
    assert "database" in body["detail"] and body["database"] == "unavailable", (what, body)
    assert "Traceback" not in response.text and "psycopg2" not in response.text


@pytest.mark.parametrize(("method", "path"), DB_BACKED)
def test_endpoint_answers_503_with_retry_after_when_database_is_down(
        down_client: TestClient, method: str, path: str) -> None:
    started = time.monotonic()
    response = down_client.request(method, path, json={"category": "E010101", "lon": 24.94,
                                                       "lat": 60.17} if method == "POST" else None)
    _assert_unavailable(response, f"{method} {path}")
    assert time.monotonic() - started < 2.0  # refused at once, not a hang


def _fill(path: str, params: list[dict]) -> str:
    """Path parameters filled with a value of their type (the database fails before use)."""
    kinds = {p["name"]: p.get("schema", {}).get("type") for p in params if p.get("in") == "path"}
    return re.sub(r"\{([^}]+)\}",
                  lambda m: "1" if kinds.get(m.group(1)) == "integer" else "grids", path)


def test_no_endpoint_in_the_openapi_spec_answers_500_when_database_is_down(
        down_client: TestClient) -> None:
    spec = down_client.app.openapi()  # type: ignore[attr-defined]
    answered: dict[int, list[str]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            url = _fill(path, op.get("parameters", []) + item.get("parameters", []))
            started = time.monotonic()
            response = down_client.request(method.upper(), url, json={})
            assert time.monotonic() - started < 5.0, f"{method} {url} hung"
            answered.setdefault(response.status_code, []).append(f"{method.upper()} {url}")
            if response.status_code == 503:
                _assert_unavailable(response, f"{method} {url}")
    assert 500 not in answered, answered.get(500)
    # Nearly everything needs the database; the rest answers 4xx before touching it.
    assert len(answered.get(503, [])) >= 0.8 * sum(len(v) for v in answered.values()), answered


def _terminate_backends(db_settings: DatabaseSettings, db_name: str, appname: str) -> int:
    admin = db.make_engine(db_settings, "postgres", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :d AND application_name = :a"),
                {"d": db_name, "a": appname}).all())
    finally:
        admin.dispose()


def test_stale_pooled_connections_after_a_restart_never_reach_a_request(
        db_settings: DatabaseSettings, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    appname = f"gridgov-stale-test-{time.monotonic_ns()}"
    monkeypatch.setenv("PGAPPNAME", appname)  # libpq: tags the app's connections only
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.engine.connect() as a, app.state.engine.connect() as b:  # 2 pooled
            a.execute(text("SELECT 1"))
            b.execute(text("SELECT 1"))
        assert client.get("/health").status_code == 200
        assert _terminate_backends(db_settings, db_name, appname) >= 2
        time.sleep(0.2)  # the backends exit and close their sockets
        statuses = [client.get("/health").status_code for _ in range(6)]
    assert statuses == [200] * 6  # not one 500 or 503: stale connections were dropped


def test_connection_lost_mid_request_answers_503_and_the_next_request_recovers(
        db_settings: DatabaseSettings, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    appname = f"gridgov-midquery-test-{time.monotonic_ns()}"
    monkeypatch.setenv("PGAPPNAME", appname)
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))

    @app.get("/_sleep")
    def _sleep() -> dict:  # a request whose backend dies while it runs
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(5)"))
        return {}

    import threading

    with TestClient(app, raise_server_exceptions=False) as client:
        result: dict[str, object] = {}
        worker = threading.Thread(target=lambda: result.update(r=client.get("/_sleep")))
        worker.start()
        deadline = time.monotonic() + 5
        while _terminate_backends(db_settings, db_name, appname) == 0:
            assert time.monotonic() < deadline, "the sleeping query never showed up"
            time.sleep(0.05)
        worker.join(10)
        _assert_unavailable(result["r"], "query cut off by pg_terminate_backend")
        assert client.get("/health").status_code == 200


def test_pool_exhausted_answers_503_within_the_pool_timeout(
        db_settings: DatabaseSettings, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "POOL_TIMEOUT_S", 0.5)
    settings = db_settings.model_copy(update={"db_name": db_name, "pool_size": 1,
                                              "max_overflow": 0})
    app = create_app(db_settings=settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.engine.connect() as held:  # the only connection, held by someone else
            held.execute(text("SELECT 1"))
            started = time.monotonic()
            response = client.get("/health")
            waited = time.monotonic() - started
        assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
        assert "busy" in response.json()["detail"]
        assert 0.4 < waited < 3
        assert client.get("/health").status_code == 200

"""The request path of the dispatch endpoints on a real pool (no test override of
``api.deps.get_conn``): every request gives its connection back — read, refused and failed
requests alike — with no transaction left open, and a nearest query takes no needless
threadpool hop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from api.app import create_app
from gis.settings import DatabaseSettings
from tests.factories import account


@pytest.fixture
def real_client(db_settings: DatabaseSettings, db_name: str) -> Iterator[TestClient]:
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))
    with TestClient(app) as client:
        yield client


def pool_of(client: TestClient):
    return client.app.state.engine.pool  # type: ignore[attr-defined]


def _drop_account(conn: Connection, user_id: int) -> None:
    conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": user_id})
    conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
    conn.commit()


def test_requests_return_their_connection_to_the_pool(real_client: TestClient) -> None:
    pool = pool_of(real_client)
    assert pool.checkedin() == 0            # cold: the first request opens a connection
    assert real_client.get("/health").status_code == 200
    assert (pool.checkedout(), pool.checkedin()) == (0, 1)
    for _ in range(5):                      # warm: the same connection again
        assert real_client.get("/health").status_code == 200
    assert (pool.checkedout(), pool.checkedin()) == (0, 1)


def test_failed_and_refused_requests_release_the_connection(real_client: TestClient) -> None:
    pool = pool_of(real_client)
    assert real_client.get("/api/responders/nearest?lon=1&lat=2").status_code == 401
    assert real_client.get("/api/areas/does-not-exist").status_code == 404
    assert real_client.get("/api/locate?lon=500&lat=0").status_code == 422
    assert pool.checkedout() == 0


def test_a_released_connection_is_clean(
        real_client: TestClient, conn: Connection) -> None:
    who, token = account(conn, "dispatcher")
    conn.commit()   # the server reads on its own connections
    try:
        r = real_client.get("/api/responders/nearest", params={"lon": 24.94, "lat": 60.17},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        pool = pool_of(real_client)
        assert pool.checkedout() == 0
        with real_client.app.state.engine.connect() as again:  # type: ignore[attr-defined]
            assert not again.in_transaction()
            raw = again.connection.dbapi_connection
            assert raw is not None and raw.get_transaction_status() == 0   # idle, no BEGIN
    finally:
        _drop_account(conn, who.user_id)


def test_a_warm_nearest_request_takes_one_threadpool_hop_before_its_answer(
        real_client: TestClient, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's hop checks the connection out, looks the token up, checks the role, runs
    the query and encodes the body (``api.security.Access``); the connection, in autocommit
    with nothing to roll back, goes back on the event loop. (It was 5 hops: connection in,
    token lookup, handler, connection out, and validating the returned ``dict``.)"""
    import anyio.to_thread
    who, token = account(conn, "dispatcher")
    conn.commit()
    hops = []
    real = anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        inner = getattr(func, "func", func)
        hops.append(getattr(inner, "__qualname__", type(inner).__name__))
        return await real(func, *args, **kwargs)

    try:
        headers = {"Authorization": f"Bearer {token}"}
        params = {"lon": 24.94, "lat": 60.17}
        assert real_client.get("/api/responders/nearest", params=params,
                               headers=headers).status_code == 200
        monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
        assert real_client.get("/api/responders/nearest", params=params,
                               headers=headers).status_code == 200
        assert hops == ["_run_sync_endpoint"], hops
    finally:
        monkeypatch.undo()
        _drop_account(conn, who.user_id)


def test_a_nearest_request_reads_in_autocommit_and_leaves_no_trace_on_its_connection(
        real_client: TestClient, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-only: no BEGIN before the token lookup and no ROLLBACK after the query (two round
    trips fewer); the pool gets the connection back in its default, transactional mode."""
    from gis import nearest

    who, token = account(conn, "dispatcher")
    conn.commit()
    seen = []
    real = nearest.nearest

    def spying(c, *args, **kwargs):  # type: ignore[no-untyped-def]
        raw = c.connection.dbapi_connection
        seen.append((raw.autocommit, raw.get_transaction_status()))
        return real(c, *args, **kwargs)

    monkeypatch.setattr(nearest, "nearest", spying)
    try:
        r = real_client.get("/api/responders/nearest", params={"lon": 24.94, "lat": 60.17},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert seen == [(True, 0)]              # autocommit, idle after the token lookup
        pool = pool_of(real_client)
        assert pool.checkedout() == 0
        with real_client.app.state.engine.connect() as again:  # type: ignore[attr-defined]
            assert again.connection.dbapi_connection.autocommit is False
    finally:
        monkeypatch.undo()
        _drop_account(conn, who.user_id)


def test_refused_nearest_requests_give_their_connection_back(
        real_client: TestClient, conn: Connection) -> None:
    who, token = account(conn, "grid_worker")       # a role that may not see responders
    conn.commit()
    try:
        params = {"lon": 24.94, "lat": 60.17}
        for headers, status in (({"Authorization": f"Bearer {token}"}, 403),
                                ({"Authorization": "Bearer not-a-token"}, 401),
                                ({"Authorization": "Basic xyz"}, 401), ({}, 401)):
            r = real_client.get("/api/responders/nearest", params=params, headers=headers)
            assert r.status_code == status, (headers, r.text)
            assert pool_of(real_client).checkedout() == 0
    finally:
        _drop_account(conn, who.user_id)


def test_a_token_revoked_between_two_nearest_requests_is_refused_at_once(
        real_client: TestClient, conn: Connection) -> None:
    """The token lookup is a prepared statement, not a cache: it reads the table each time."""
    from gis.auth import revoke_tokens

    who, token = account(conn, "dispatcher")
    conn.commit()
    try:
        get = lambda: real_client.get(  # noqa: E731
            "/api/responders/nearest", params={"lon": 24.94, "lat": 60.17},
            headers={"Authorization": f"Bearer {token}"})
        assert [get().status_code for _ in range(7)] == [200] * 7   # past the custom plans
        revoke_tokens(conn, who.user_id)
        conn.commit()
        r = get()
        assert r.status_code == 401 and "revoked" in r.json()["detail"], r.text
    finally:
        _drop_account(conn, who.user_id)


@pytest.mark.parametrize("prepare", [True, False])
def test_prepared_statements_follow_the_dispatch_setting(
        real_client: TestClient, conn: Connection, prepare: bool) -> None:
    from gis.dispatch import DispatchSettings

    real_client.app.state.dispatch_settings = DispatchSettings(  # type: ignore[attr-defined]
        prepared_statements=prepare)
    who, token = account(conn, "dispatcher")
    conn.commit()
    try:
        r = real_client.get("/api/responders/nearest", params={"lon": 24.94, "lat": 60.17},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        with real_client.app.state.engine.connect() as again:  # type: ignore[attr-defined]
            held = again.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
        assert (held == 2) if prepare else (held == 0)     # the token lookup and the query
    finally:
        _drop_account(conn, who.user_id)


def test_a_nearest_request_that_fails_gives_its_connection_back_out_of_autocommit(
        real_client: TestClient, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Autocommit must never leak to the next request of the pool (it would commit the
    half-done writes of an endpoint that fails)."""
    from gis import nearest
    from gis.errors import InvalidInput

    who, token = account(conn, "dispatcher")
    conn.commit()

    def failing(c, *args, **kwargs):  # type: ignore[no-untyped-def]
        c.execute(text("SELECT 1"))
        raise InvalidInput("refused half-way", field="k")

    monkeypatch.setattr(nearest, "nearest", failing)
    try:
        r = real_client.get("/api/responders/nearest", params={"lon": 24.94, "lat": 60.17},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 422, r.text
        assert pool_of(real_client).checkedout() == 0
        with real_client.app.state.engine.connect() as again:  # type: ignore[attr-defined]
            raw = again.connection.dbapi_connection
            assert raw.autocommit is False and raw.get_transaction_status() == 0
    finally:
        monkeypatch.undo()
        _drop_account(conn, who.user_id)

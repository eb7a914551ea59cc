"""The request path of the dispatch endpoints on a real pool (no test override of
``api.deps.get_conn``): every request gives its connection back — read, refused and failed
requests alike — with no transaction left open, and a nearest query takes no needless
threadpool hop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

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
        from sqlalchemy import text

        conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": who.user_id})
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": who.user_id})
        conn.commit()


def test_a_warm_nearest_request_takes_fewer_threadpool_hops(
        real_client: TestClient, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    """The returned body is not validated against ``dict`` in one more threadpool hop
    (``response_model=None``): what remains is the connection in and out, the token lookup,
    the role check and the handler."""
    import anyio.to_thread
    from sqlalchemy import text

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
        assert "ModelField.validate" not in hops and 1 <= len(hops) <= 5, hops
    finally:
        monkeypatch.undo()
        conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": who.user_id})
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": who.user_id})
        conn.commit()

"""An app with no shared test connection renders tiles and GeoJSON pages on its asyncpg read
pool (``gis.readpool``) and answers exactly what the engine path answers; when the read pool
fails, the route answers on the engine. On the committed demo city of the test database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mercantile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from gis import db, ogc
from gis.settings import DatabaseSettings
from layers import tiles as layer_tiles


@pytest.fixture
def pooled(db_settings: DatabaseSettings, db_name: str) -> Iterator[TestClient]:
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def urls(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        x, y = conn.execute(text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom))"
                                 " AS c FROM areas WHERE valid_to IS NULL) s")).one()
    out = []
    for layer, z, query in (("grids", 14, ""), ("grids", 12, ""), ("cases", 14, ""),
                            ("cases", 10, "?status=open"), ("cases", 15, "?category=E01"),
                            ("facilities", 14, "?category=school"), ("grids", 14, "?x=1")):
        t = mercantile.tile(x, y, z)
        out.append(f"/tiles/{layer}/{z}/{t.x}/{t.y}.mvt{query}")
    bbox = f"{x - 0.004},{y - 0.003},{x + 0.004},{y + 0.003}"
    out += [f"/ogc/collections/grids/items?bbox={bbox}&limit=7",
            f"/ogc/collections/cases/items?bbox={bbox}&limit=5&offset=3&status=open"]
    return out


def _answer(client: TestClient, url: str) -> tuple[int, Any, list[tuple[str, str]]]:
    r = client.get(url, headers={"X-Request-ID": "same-id"})
    body: Any = r.content
    if "geo+json" in r.headers.get("content-type", ""):
        body = json.loads(r.content)
        body.pop("timeStamp")
    return r.status_code, body, list(r.headers.multi_items())


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each way of reading ran."""
    counts = {"pool": 0, "engine": 0}

    def count(module: Any, name: str, key: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    count(layer_tiles, "render_tile_async", "pool")
    count(ogc, "features_page_async", "pool")
    count(layer_tiles, "render_tile", "engine")
    count(ogc, "features_page", "engine")
    return counts


def test_read_pool_answers_what_the_engine_path_answers(
        client: TestClient, pooled: TestClient, urls: list[str], calls: dict[str, int]) -> None:
    for url in urls:
        assert _answer(pooled, url) == _answer(client, url), url
    # The shared test connection (``client``) reads on the engine, the app on its pool;
    # the last tile URL has a bad parameter and renders nothing.
    assert calls == {"pool": len(urls) - 1, "engine": len(urls) - 1}
    assert _answer(pooled, urls[0])[0] == 200


def test_when_the_read_pool_fails_the_route_answers_on_the_engine(
        client: TestClient, pooled: TestClient, urls: list[str], calls: dict[str, int],
        db_settings: DatabaseSettings, db_name: str) -> None:
    app: Any = pooled.app
    nowhere = db_settings.model_copy(update={"db_name": db_name, "pg_port": 1})
    app.state.read_pool = db.make_read_pool(nowhere)
    for url in (urls[0], urls[2], urls[-2]):
        answer = _answer(pooled, url)
        assert answer == _answer(client, url) and answer[0] == 200, url
    assert calls == {"pool": 0, "engine": 3 * 2}


def test_read_pool_connections_killed_by_the_server_are_replaced(
        client: TestClient, pooled: TestClient, urls: list[str], engine: Engine,
        db_name: str) -> None:
    expected = _answer(client, urls[2])
    assert _answer(pooled, urls[0])[0] == 200  # opens a read-pool connection
    with engine.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'gridgov-read' AND datname = :d"), {"d": db_name}
        ).scalar_one()
    assert killed >= 1
    assert _answer(pooled, urls[2]) == expected
    assert _answer(pooled, urls[3])[0] == 200
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'gridgov-read' AND datname = :d"), {"d": db_name}
        ).scalar_one() >= 1

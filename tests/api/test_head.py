"""HEAD answers as the GET would — status and headers, ETag and Content-Length included —
without a body, wherever GET is answered (tiles, OGC API Features, Open311, pages, static files,
the API, health) but on the live stream. Logs and metrics name the method the client sent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from gis.settings import DatabaseSettings, MetricsSettings
from tests.layers.mapdata import FAR_TILE, GRID_TILE, MapCity, map_city
from tests.ops.accesslog import access_lines
from tests.ops.apps import app_client

TOKEN = "a-long-random-metrics-token-0123456789"
GRID = f"/tiles/grids/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt"
EMPTY = f"/tiles/grids/{FAR_TILE.z}/{FAR_TILE.x}/{FAR_TILE.y}.mvt"


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _same_but_body(client: TestClient, path: str, headers: dict[str, str] | None = None
                   ) -> int:
    sent = {"X-Request-ID": "same-id", **(headers or {})}
    got = client.get(path, headers=sent)
    head = client.head(path, headers=sent)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers.multi_items() == got.headers.multi_items()
    return head.status_code


@pytest.mark.parametrize("path", [
    GRID, EMPTY, "/tiles/grids.json", "/styles/default.json", "/ogc", "/ogc/collections",
    "/ogc/collections/grids/items?limit=2", "/open311/v2/services.json",
    "/tiles/grids/23/1/1.mvt", "/tiles/nope/1/1/1.mvt", "/health", "/", "/command",
    "/static/app.js", "/api/categories", "/api/cases/nearby?lon=1&lat=2&category=E01",
    "/nowhere",
])
def test_head_answers_as_the_get_without_the_body(client: TestClient, city: MapCity,
                                                  path: str) -> None:
    _same_but_body(client, path)


def test_head_of_a_tile_revalidates_like_the_get(client: TestClient, city: MapCity) -> None:
    etag = client.get(GRID).headers["etag"]
    assert _same_but_body(client, GRID, {"If-None-Match": etag}) == 304
    assert _same_but_body(client, EMPTY) == 204


def test_head_of_a_path_without_get_or_of_the_live_stream_is_refused(
        client: TestClient, city: MapCity) -> None:
    assert _same_but_body(client, "/api/cases:bulk") == 405  # POST only, as its GET
    r = client.head("/api/live")  # a stream: no HEAD
    assert r.status_code == 405 and r.content == b""


def test_logs_and_metrics_name_head(conn: Connection, db_settings: DatabaseSettings,
                                    city: MapCity) -> None:
    with access_lines() as lines, app_client(
            conn, db_settings, metrics_settings=MetricsSettings(token=TOKEN)) as c:
        assert c.head(GRID).status_code == 200
        assert c.head("/ogc/collections").status_code == 200
        text = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert [(x["method"], x["path"]) for x in lines[:2]] == [
        ("HEAD", GRID), ("HEAD", "/ogc/collections")]
    tiles = 'route="/tiles/{layer}/{z}/{x}/{y}.mvt"'
    assert f'gridgov_http_requests_total{{method="HEAD",{tiles},status="200"}} 1.0' in text
    assert 'method="GET",' + tiles not in text

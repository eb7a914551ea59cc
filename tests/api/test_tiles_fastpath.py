"""The tile fast path (``api.routes.tiles.TileFastPath``) answers exactly as the tile route —
the same status, body and headers — and leaves everything else (every 4xx, HEAD, responders)
to the route; requests count under the route's template in the metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.routes.tiles import TileFastPath
from gis.settings import DatabaseSettings, MetricsSettings
from tests.api.fastpaths import no_answer, spy_answers
from tests.api.test_tiles_api import AGG_TILE
from tests.layers.mapdata import FAR_TILE, GRID_TILE, MapCity, map_city
from tests.ops.apps import app_client

TOKEN = "a-long-random-metrics-token-0123456789"
GRID = f"/tiles/grids/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt"
CASES = f"/tiles/cases/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt"
# (url, query parameters): tiles with features, empty, aggregated, filtered; and bad requests.
REQUESTS = [
    (GRID, {}),
    (f"/tiles/grids/{FAR_TILE.z}/{FAR_TILE.x}/{FAR_TILE.y}.mvt", {}),
    (f"/tiles/grids/{GRID_TILE.z:02d}/{GRID_TILE.x}/{GRID_TILE.y}.mvt", {}),
    (f"/tiles/communities/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt", {}),
    (f"/tiles/facilities/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt", {}),
    (CASES, {}),
    (CASES, {"status": "open"}),
    (CASES, {"status": "closed", "category": "E01"}),
    (CASES, {"since": "2026-05-02", "until": "2026-05-04T12:00:00+08:00"}),
    (f"/tiles/cases/10/{AGG_TILE.x}/{AGG_TILE.y}.mvt", {}),
    (f"/tiles/cases/10/{AGG_TILE.x}/{AGG_TILE.y}.mvt", {"status": "open"}),
    (f"/tiles/cases/10/{AGG_TILE.x}/{AGG_TILE.y}.mvt", {"category": "E01,E02"}),
    (f"/tiles/cases/10/{AGG_TILE.x}/{AGG_TILE.y}.mvt", {"status": "accepted"}),
    (f"/tiles/cases/4/{AGG_TILE.x >> 6}/{AGG_TILE.y >> 6}.mvt", {}),
    ("/tiles/grids/25/1/1.mvt", {}),
    ("/tiles/grids/99/1/1.mvt", {}),
    ("/tiles/grids/14/16384/1.mvt", {}),
    ("/tiles/grids/23/1/1.mvt", {}),
    ("/tiles/nope/14/1/1.mvt", {}),
    (GRID, {"status": "open"}),
    (CASES, {"status": "nonsense"}),
    (CASES, {"status": ""}),
    (CASES, {"since": "2026-05-04", "until": "2026-05-01"}),
    (CASES, {"colour": "red"}),
    (CASES + "?status=open&status=closed", {}),
    (f"/tiles/responders/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt", {}),
]


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _exchange(client: TestClient, url: str, params: dict[str, str],
              headers: dict[str, str] | None = None) -> tuple[int, bytes, list[tuple[str, str]]]:
    r = client.get(url, params=params, headers={"X-Request-ID": "same-id", **(headers or {})})
    return r.status_code, r.content, list(r.headers.multi_items())


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    return spy_answers(monkeypatch, TileFastPath)


@pytest.mark.parametrize(("url", "params"), REQUESTS)
def test_fast_path_answers_byte_for_byte_as_the_route(
        client: TestClient, city: MapCity, monkeypatch: pytest.MonkeyPatch,
        url: str, params: dict[str, str]) -> None:
    fast = _exchange(client, url, params)
    etag = dict(fast[2]).get("etag", '"none"')
    fast_304 = _exchange(client, url, params, {"If-None-Match": f'"other", W/{etag}'})
    monkeypatch.setattr(TileFastPath, "answer", no_answer)
    assert _exchange(client, url, params) == fast
    assert _exchange(client, url, params, {"If-None-Match": f'"other", W/{etag}'}) == fast_304


def test_fast_path_answers_valid_public_tiles_and_leaves_the_rest_to_the_route(
        client: TestClient, city: MapCity, answered: list[bool]) -> None:
    assert client.get(GRID).status_code == 200
    assert client.get(CASES, params={"status": "open", "since": "2026-05-01"}).status_code in (
        200, 204)
    assert client.get("/tiles/grids/23/1/1.mvt").status_code == 422
    assert client.get(CASES, params={"colour": "red"}).status_code == 422
    assert client.get(f"/tiles/responders/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt"
                      ).status_code == 401
    assert answered == [True, True, False, False, False]


def test_head_is_answered_as_the_get_and_other_methods_go_to_the_route(
        client: TestClient, city: MapCity, answered: list[bool]) -> None:
    assert client.head(GRID).status_code == 200  # as its GET (api.middleware.head_as_get)
    assert client.post(GRID).status_code == 405
    assert answered == [True]


def test_fast_path_tiles_count_under_the_route_template(
        conn: Connection, db_settings: DatabaseSettings, city: MapCity) -> None:
    with app_client(conn, db_settings, metrics_settings=MetricsSettings(token=TOKEN)) as c:
        assert c.get(GRID).status_code == 200
        assert c.get("/tiles/grids/23/1/1.mvt").status_code == 422
        text = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    route = 'route="/tiles/{layer}/{z}/{x}/{y}.mvt"'
    assert f'gridgov_http_requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert f'gridgov_http_requests_total{{method="GET",{route},status="422"}} 1.0' in text


def test_fast_path_keeps_the_security_cors_and_request_id_headers(
        client: TestClient, city: MapCity, answered: list[bool]) -> None:
    r = client.get(GRID, headers={"Origin": "https://elsewhere.example",
                                  "X-Request-ID": "abc-123"})
    assert answered == [True]
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"].startswith("frame-ancestors")

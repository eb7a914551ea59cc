"""The front lane (``api.middleware.FrontLane``): same-origin GETs of tiles and feature pages
are answered ahead of the middleware stack, with what the stack adds (request id, security
headers, metrics, access log); everything else still goes down the stack, and a request the
fast path refused is never asked twice."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.middleware import RequestContext
from api.routes.ogc import ItemsFastPath
from api.routes.tiles import TileFastPath
from gis.settings import DatabaseSettings, MetricsSettings
from tests.api.fastpaths import spy_answers
from tests.layers.mapdata import GRID_TILE, MapCity, map_city
from tests.ops.accesslog import access_lines
from tests.ops.apps import app_client

TOKEN = "a-long-random-metrics-token-0123456789"
GRID = f"/tiles/grids/{GRID_TILE.z}/{GRID_TILE.x}/{GRID_TILE.y}.mvt"
ITEMS = "/ogc/collections/grids/items"


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


@pytest.fixture
def stack_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that went down the middleware stack (its outermost layer of
    ours, ``RequestContext``)."""
    seen: list[str] = []
    original = RequestContext.__call__

    async def spy(self: RequestContext, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(RequestContext, "__call__", spy)
    return seen


def test_same_origin_tiles_and_pages_skip_the_stack_and_the_rest_goes_down_it(
        client: TestClient, city: MapCity, stack_calls: list[str]) -> None:
    assert client.get(GRID).status_code == 200
    assert client.get(ITEMS, params={"limit": "2"}).status_code == 200
    assert stack_calls == []
    assert client.get(GRID, headers={"Origin": "https://elsewhere.example"}).status_code == 200
    assert client.get("/tiles/grids/23/1/1.mvt").status_code == 422
    assert client.get("/health").status_code == 200
    assert client.head("/health").status_code == 200  # down the stack, as its GET
    assert stack_calls == [GRID, "/tiles/grids/23/1/1.mvt", "/health", "/health"]


def test_a_refused_request_is_asked_once_and_answered_by_the_route(
        client: TestClient, city: MapCity, monkeypatch: pytest.MonkeyPatch) -> None:
    tiles_asked = spy_answers(monkeypatch, TileFastPath)
    pages_asked = spy_answers(monkeypatch, ItemsFastPath)
    r = client.get("/tiles/cases/14/1/1.mvt", params={"status": "nonsense"})
    assert r.status_code == 422 and "status" in r.text
    assert client.get(ITEMS, params={"limit": "0"}).status_code == 422
    assert tiles_asked == [False] and pages_asked == [False]


def test_the_lane_adds_the_stacks_headers_in_the_stacks_order(
        client: TestClient, city: MapCity, stack_calls: list[str]) -> None:
    lane = client.get(GRID, headers={"X-Request-ID": "rid-1"})
    # The same tile down the stack (a declared body, even empty, sends it there).
    stack = client.get(GRID, headers={"X-Request-ID": "rid-1", "Content-Length": "0"})
    assert stack_calls == [GRID]
    assert lane.status_code == stack.status_code == 200
    assert lane.content == stack.content
    assert lane.headers.multi_items() == stack.headers.multi_items()
    assert lane.headers["x-request-id"] == "rid-1"
    fresh = client.get(GRID).headers["x-request-id"]
    assert len(fresh) == 32 and fresh != client.get(GRID).headers["x-request-id"]


def test_the_lane_logs_one_access_line_per_request_with_the_route_template(
        client: TestClient, city: MapCity) -> None:
    with access_lines() as lines:
        r = client.get(GRID)
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == r.headers["x-request-id"] and line["status"] == 200
    assert line["route"] == "/tiles/{layer}/{z}/{x}/{y}.mvt" and line["path"] == GRID


def test_the_lane_counts_requests_like_the_stack_and_leaves_nothing_in_flight(
        conn: Connection, db_settings: DatabaseSettings, city: MapCity) -> None:
    with app_client(conn, db_settings, metrics_settings=MetricsSettings(token=TOKEN)) as c:
        for _ in range(3):
            assert c.get(GRID).status_code == 200
        assert c.get(ITEMS, params={"limit": "2"}).status_code == 200
        text = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    tiles = 'route="/tiles/{layer}/{z}/{x}/{y}.mvt"'
    items = 'route="/ogc/collections/{collectionId}/items"'
    assert f'gridgov_http_requests_total{{method="GET",{tiles},status="200"}} 3.0' in text
    assert f'gridgov_http_requests_total{{method="GET",{items},status="200"}} 1.0' in text
    assert f'gridgov_http_request_duration_seconds_count{{method="GET",{tiles}}} 3.0' in text
    assert "gridgov_http_requests_in_flight 1.0" in text  # the scrape itself


def test_an_error_in_the_lane_goes_down_the_stack_and_the_route_answers(
        client: TestClient, city: MapCity, monkeypatch: pytest.MonkeyPatch,
        stack_calls: list[str]) -> None:
    expected = client.get(GRID)
    original = TileFastPath.answer
    calls = 0

    async def fails_once(self: TileFastPath, scope: Any, *groups: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the fast path")
        return await original(self, scope, *groups)

    monkeypatch.setattr(TileFastPath, "answer", fails_once)
    r = client.get(GRID)
    assert (r.status_code, r.content) == (200, expected.content)
    assert stack_calls == [GRID] and calls == 1  # the route answered; not asked twice


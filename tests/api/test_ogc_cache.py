"""Feature pages (OGC API items) are cached on the server and stay correct: after an edit or a
new case, every page that can show it does within a second; pages elsewhere stay cached."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from gis.tilecache import TileCache
from tests.api.waiting import within
from tests.factories import X0, Y0, TinyCity
from tests.layers.mapdata import MapCity, add_case, map_city

WEST = (X0 + 0.002, Y0 + 0.005, X0 + 0.004, Y0 + 0.006)  # inside grid 1-1 only
EAST = (X0 + 0.034, Y0 + 0.005, X0 + 0.036, Y0 + 0.006)  # inside grid 2-2 only


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _cache(client: TestClient) -> TileCache:
    return client.app.state.tile_cache  # type: ignore[attr-defined]


def _page(client: TestClient, collection: str, bbox: tuple[float, ...] | None = None,
          **params: str) -> dict[str, Any]:
    if bbox is not None:
        params["bbox"] = ",".join(map(str, bbox))
    r = client.get(f"/ogc/collections/{collection}/items", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _names(page: dict[str, Any]) -> set[str]:
    return {f["properties"]["name"] for f in page["features"]}


def test_a_repeated_page_comes_from_the_cache_with_the_same_features(
        client: TestClient, city: MapCity) -> None:
    first = _page(client, "grids", WEST)
    hits = _cache(client).stats.page_hits
    again = _page(client, "grids", WEST)
    assert _cache(client).stats.page_hits == hits + 1
    assert again["features"] == first["features"] and again["links"] == first["links"]
    assert again["numberMatched"] == first["numberMatched"] == 1
    # Another page of the same query is another entry.
    assert _page(client, "grids", WEST, limit="1", offset="1")["features"] == []


def test_an_edited_grid_shows_in_its_pages_and_pages_elsewhere_stay_cached(
        client: TestClient, city: MapCity, conn: Connection) -> None:
    west = _page(client, "grids", WEST)
    east = _page(client, "grids", EAST)
    whole = _page(client, "grids")
    conn.execute(text("UPDATE areas SET name = 'Renamed grid' WHERE code = :c"
                      " AND valid_to IS NULL"), {"c": TinyCity.grid_code(1, 1)})
    took = within(1.0, lambda: _page(client, "grids", WEST),
                   lambda p: _names(p) == {"Renamed grid"})
    assert took < 1.0 and _names(west) != {"Renamed grid"}
    assert "Renamed grid" in _names(_page(client, "grids"))  # the page without a bbox too
    assert "Renamed grid" not in _names(whole)
    hits = _cache(client).stats.page_hits
    assert _page(client, "grids", EAST)["features"] == east["features"]
    assert _cache(client).stats.page_hits == hits + 1  # grid 2-2's page was never evicted


def test_a_new_case_shows_in_the_pages_around_it(client: TestClient, city: MapCity,
                                                 conn: Connection) -> None:
    box = (X0 + 0.004, Y0 + 0.010, X0 + 0.007, Y0 + 0.014)
    before = _page(client, "cases", box)
    far = _page(client, "cases", EAST)
    new_id = add_case(conn, city.city.jurisdiction_id, city.categories["E990101"],
                      X0 + 0.005, Y0 + 0.012)
    within(1.0, lambda: _page(client, "cases", box),
            lambda p: p["numberMatched"] == before["numberMatched"] + 1
            and new_id in {f["id"] for f in p["features"]})
    hits = _cache(client).stats.page_hits
    assert _page(client, "cases", EAST)["features"] == far["features"]
    assert _cache(client).stats.page_hits == hits + 1


def test_a_closed_case_leaves_the_open_filter_page(client: TestClient, city: MapCity,
                                                   conn: Connection) -> None:
    box = (X0, Y0, X0 + 0.04, Y0 + 0.02)
    open_ids = {f["id"] for f in _page(client, "cases", box, status="open")["features"]}
    assert open_ids
    closing = min(open_ids)
    conn.execute(text("UPDATE cases SET status = 'closed', closed_at = now() WHERE id = :i"),
                 {"i": closing})
    within(1.0, lambda: _page(client, "cases", box, status="open"),
            lambda p: {f["id"] for f in p["features"]} == open_ids - {closing})

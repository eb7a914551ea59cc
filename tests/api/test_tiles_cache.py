"""The tile cache stays correct: after an edit, every affected tile shows it within a second and
every other tile stays cached with the same ETag."""

from __future__ import annotations

import time

import mapbox_vector_tile
import mercantile
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Connection, text

from gis.tilecache import TileCache
from tests.api.waiting import within
from tests.factories import X0, Y0, TinyCity
from tests.layers.mapdata import GRID_TILE, MapCity, add_case, map_city

EAST_TILE = mercantile.Tile(GRID_TILE.x + 1, GRID_TILE.y, 14)  # grids 2-1, 2-2 only
AGG_TILE = mercantile.tile(X0 + 0.02, Y0 + 0.01, 10)


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _url(layer: str, tile: mercantile.Tile) -> str:
    return f"/tiles/{layer}/{tile.z}/{tile.x}/{tile.y}.mvt"


def _cache(client: TestClient) -> TileCache:
    return client.app.state.tile_cache  # type: ignore[attr-defined]


def _names(r: Response, layer: str = "grids") -> set[str]:
    if r.status_code == 204:
        return set()
    return {f["properties"].get("name") for f in
            mapbox_vector_tile.decode(r.content)[layer]["features"]}


def _rename_grid(conn: Connection, code: str, name: str) -> None:
    conn.execute(text("UPDATE areas SET name = :n WHERE code = :c AND valid_to IS NULL"),
                 {"n": name, "c": code})


def test_edited_grid_shows_within_a_second_and_other_tiles_stay_cached(
        client: TestClient, city: MapCity, conn: Connection) -> None:
    client.get(_url("grids", GRID_TILE))
    east = client.get(_url("grids", EAST_TILE))
    _rename_grid(conn, TinyCity.grid_code(1, 1), "Renamed grid")
    took = within(1.0, lambda: client.get(_url("grids", GRID_TILE)),
                   lambda r: "Renamed grid" in _names(r))
    assert took < 1.0
    assert ("grids", 14, EAST_TILE.x, EAST_TILE.y, "") in _cache(client)._entries
    hits = _cache(client).stats.hits
    again = client.get(_url("grids", EAST_TILE))
    assert again.headers["etag"] == east.headers["etag"] and _cache(client).stats.hits == hits + 1


def test_new_case_shows_in_point_and_count_tiles(client: TestClient, city: MapCity,
                                                 conn: Connection) -> None:
    def count(r: Response) -> int:
        cells = mapbox_vector_tile.decode(r.content)["cases_agg"]["features"]
        return sum(c["properties"]["count"] for c in cells)

    before = count(client.get(_url("cases", AGG_TILE)))
    point_ids = {f["id"] for f in mapbox_vector_tile.decode(
        client.get(_url("cases", GRID_TILE)).content)["cases"]["features"]}
    east = client.get(_url("cases", EAST_TILE))
    new_id = add_case(conn, city.city.jurisdiction_id, city.categories["E990101"],
                      X0 + 0.005, Y0 + 0.012)
    within(1.0, lambda: client.get(_url("cases", AGG_TILE)), lambda r: count(r) == before + 1)
    within(1.0, lambda: client.get(_url("cases", GRID_TILE)),
            lambda r: {f["id"] for f in mapbox_vector_tile.decode(r.content)["cases"]
                       ["features"]} == point_ids | {new_id})
    assert client.get(_url("cases", EAST_TILE)).headers["etag"] == east.headers["etag"]


def test_moved_feature_changes_its_old_and_new_tiles(client: TestClient, city: MapCity,
                                                      conn: Connection) -> None:
    police = city.facility_ids[0]
    old = client.get(_url("facilities", GRID_TILE))
    new = client.get(_url("facilities", EAST_TILE))
    conn.execute(text("UPDATE facilities SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
                      " WHERE id = :id"), {"x": X0 + 0.035, "y": Y0 + 0.012, "id": police})

    def ids(r: Response) -> set[int]:
        if r.status_code == 204:
            return set()
        return {f["id"] for f in mapbox_vector_tile.decode(r.content)["facilities"]["features"]}

    within(1.0, lambda: client.get(_url("facilities", GRID_TILE)), lambda r: police not in ids(r))
    assert police in ids(client.get(_url("facilities", EAST_TILE)))
    assert police in ids(old) and police not in ids(new)


def test_etag_changes_exactly_for_the_tiles_showing_the_edit(
        client: TestClient, city: MapCity, conn: Connection) -> None:
    tiles = [mercantile.Tile(x, y, z) for z in (12, 13, 14, 15)
             for x, y in _around(z)]
    before = {t: client.get(_url("grids", t)) for t in tiles}
    _rename_grid(conn, TinyCity.grid_code(1, 1), "Edited")
    time.sleep(0.25)
    client.get(_url("districts", tiles[0]))  # any request brings the cache up to date
    hits = _cache(client).stats.hits
    after = {t: client.get(_url("grids", t)) for t in tiles}
    showing = {t for t, r in after.items() if "Edited" in _names(r)}
    changed = {t for t in tiles if after[t].headers["etag"] != before[t].headers["etag"]}
    assert showing and changed == showing
    assert _cache(client).stats.hits - hits == len(tiles) - len(showing)


def _around(z: int) -> list[tuple[int, int]]:
    centre = mercantile.tile(X0 + 0.02, Y0 + 0.01, z)
    return [(centre.x + dx, centre.y + dy) for dx in (-2, -1, 0, 1, 2) for dy in (-1, 0, 1)]


def test_deleted_case_disappears(client: TestClient, city: MapCity, conn: Connection) -> None:
    victim = city.case_ids[0]
    assert victim in {f["id"] for f in mapbox_vector_tile.decode(
        client.get(_url("cases", GRID_TILE)).content)["cases"]["features"]}
    conn.execute(text("DELETE FROM cases WHERE id = :id"), {"id": victim})
    within(1.0, lambda: client.get(_url("cases", GRID_TILE)),
            lambda r: victim not in {f["id"] for f in mapbox_vector_tile.decode(r.content)
                                     ["cases"]["features"]})


def test_category_rename_refreshes_every_case_tile(client: TestClient, city: MapCity,
                                                   conn: Connection) -> None:
    client.get(_url("cases", EAST_TILE))
    conn.execute(text("UPDATE categories SET code = 'E990199' WHERE code = 'E990102'"))
    within(1.0, lambda: client.get(_url("cases", EAST_TILE)),
            lambda r: {f["properties"]["category"] for f in mapbox_vector_tile.decode(
                r.content)["cases"]["features"]} == {"E990199"})

"""Triggers record where map data changed; the feed reads every committed change once; the
cache evicts exactly the tiles a change can touch."""

from __future__ import annotations

import time
from collections.abc import Iterator

import mercantile
import pytest
from sqlalchemy import Connection, Engine, text

from gis.tilecache import CachePolicy, Change, InvalidationFeed, TileCache
from tests.factories import X0, Y0
from tests.layers.mapdata import GRID_TILE, MapCity, add_case, map_city


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _rows(conn: Connection, table: str, after: int) -> list[tuple]:
    return conn.execute(text(
        "SELECT lon_min, lat_min, lon_max, lat_max, n_rows FROM tile_invalidations"
        " WHERE table_name = :t AND seq > :s ORDER BY seq"), {"t": table, "s": after}).all()


def _last_seq(conn: Connection) -> int:
    return conn.execute(text("SELECT coalesce(max(seq), 0) FROM tile_invalidations")).scalar_one()


def test_new_case_records_its_point(conn: Connection, city: MapCity) -> None:
    seq = _last_seq(conn)
    add_case(conn, city.city.jurisdiction_id, city.categories["E990101"], 10.0051, 50.0123)
    [(x0, y0, x1, y1, n)] = _rows(conn, "cases", seq)
    assert (x0, y0, x1, y1) == pytest.approx((10.0051, 50.0123, 10.0051, 50.0123)) and n == 1


def test_moved_facility_records_old_and_new_place(conn: Connection, city: MapCity) -> None:
    seq = _last_seq(conn)
    conn.execute(text("UPDATE facilities SET geom = ST_SetSRID(ST_MakePoint(11, 51), 4326)"
                      " WHERE id = :id"), {"id": city.facility_ids[0]})
    boxes = {(round(r[0], 3), round(r[1], 3)) for r in _rows(conn, "facilities", seq)}
    assert boxes == {(round(X0 + 0.003, 3), round(Y0 + 0.011, 3)), (11.0, 51.0)}


def test_bulk_statement_records_one_extent_per_cell(conn: Connection, city: MapCity) -> None:
    seq = _last_seq(conn)
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, geom)"
        " SELECT :j, :c, 'import', ST_SetSRID(ST_MakePoint(10.001 + (i % 100) * 0.0003,"
        " 50.001 + (i / 100) * 0.0003), 4326) FROM generate_series(0, 999) i"),
        {"j": city.city.jurisdiction_id, "c": city.categories["E990101"]})
    rows = _rows(conn, "cases", seq)
    assert len(rows) == 1 and rows[0][4] == 1000
    assert rows[0][:4] == pytest.approx((10.001, 50.001, 10.001 + 99 * 0.0003,
                                         50.001 + 9 * 0.0003))


def test_row_by_row_loader_folds_into_one_growing_row(conn: Connection, city: MapCity) -> None:
    seq = _last_seq(conn)
    for i in range(300):
        add_case(conn, city.city.jurisdiction_id, city.categories["E990101"],
                 10.0 + i * 0.0001, 50.0)
    rows = _rows(conn, "cases", seq)
    assert len(rows) <= 257
    assert max(r[2] for r in rows) == pytest.approx(10.0 + 299 * 0.0001)


def test_category_change_invalidates_everything(conn: Connection, city: MapCity) -> None:
    seq = _last_seq(conn)
    conn.execute(text("UPDATE categories SET name = 'x' WHERE code = 'E990101'"))
    assert _rows(conn, "categories", seq) == [(None, None, None, None, None)]


@pytest.fixture
def committed(engine: Engine) -> Iterator[Engine]:
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tile_invalidations WHERE table_name LIKE 'zz_test_%'"))


def test_feed_sees_a_change_committed_after_a_later_one(committed: Engine) -> None:
    feed = InvalidationFeed()
    with committed.connect() as reader:
        feed.poll(reader)
        reader.commit()
        with committed.connect() as slow, committed.connect() as fast:
            slow.execute(text("INSERT INTO tile_invalidations (table_name) VALUES ('zz_test_a')"))
            fast.execute(text("INSERT INTO tile_invalidations (table_name) VALUES ('zz_test_b')"))
            fast.commit()
            first = [c.table for c in feed.poll(reader)]
            reader.commit()
            slow.commit()
        second = [c.table for c in feed.poll(reader)]
        reader.commit()
        third = [c.table for c in feed.poll(reader) if c.table.startswith("zz_test_")]
    assert "zz_test_b" in first and "zz_test_a" not in first
    assert "zz_test_a" in second and "zz_test_b" not in second and third == []


# --- the cache itself (no database) --------------------------------------------------------

POLICIES = {"grids": CachePolicy(("areas",)), "cases": CachePolicy(("cases",), ttl_s=0.05)}


def _key(layer: str, tile: mercantile.Tile) -> tuple[str, int, int, int, str]:
    return (layer, tile.z, tile.x, tile.y, "")


def test_cache_evicts_touched_tiles_at_every_zoom() -> None:
    cache = TileCache(POLICIES)
    point = (X0 + 0.005, Y0 + 0.015)
    touched = [mercantile.tile(*point, z) for z in (10, 12, 14, 16)]
    away = [mercantile.Tile(t.x + 3, t.y, t.z) for t in touched]
    for tile in touched + away:
        cache.put(_key("grids", tile), b"x", generation=0)
    cache.apply([Change(1, "areas", (*point, *point))])
    assert all(_key("grids", t) not in cache._entries for t in touched)
    assert all(_key("grids", t) in cache._entries for t in away)


def test_cache_ignores_changes_to_other_tables() -> None:
    cache = TileCache(POLICIES)
    cache.put(_key("grids", GRID_TILE), b"x", generation=0)
    cache.apply([Change(1, "cases", None)])
    assert cache.get(_key("grids", GRID_TILE)) is not None


def test_cache_refuses_a_tile_rendered_before_a_change() -> None:
    cache = TileCache(POLICIES)
    generation = cache.generation("grids")
    cache.apply([Change(1, "areas", (0.0, 0.0, 0.0, 0.0))])
    cache.put(_key("grids", GRID_TILE), b"old", generation=generation)
    assert cache.get(_key("grids", GRID_TILE)) is None and cache.stats.refused_puts == 1


def test_cache_is_bounded_by_bytes_and_drops_the_least_recent() -> None:
    cache = TileCache(POLICIES, max_bytes=10_000)
    tiles = [mercantile.Tile(x, 0, 10) for x in range(5)]
    for tile in tiles:
        cache.put(_key("grids", tile), b"x" * 2000, generation=0)
        cache.get(_key("grids", tiles[0]))  # keep the first one warm
    assert cache.size_bytes <= 10_000
    assert cache.get(_key("grids", tiles[0])) is not None
    assert cache.get(_key("grids", tiles[1])) is None


def test_cache_entries_of_clock_dependent_layers_expire() -> None:
    cache = TileCache(POLICIES)
    cache.put(_key("cases", GRID_TILE), b"x", generation=0)
    time.sleep(0.06)
    assert cache.get(_key("cases", GRID_TILE)) is None


def test_cache_off_stores_nothing_but_still_tags() -> None:
    cache = TileCache(POLICIES, max_bytes=0)
    entry = cache.put(_key("grids", GRID_TILE), b"abc", generation=0)
    assert entry.etag.startswith('"') and len(cache) == 0

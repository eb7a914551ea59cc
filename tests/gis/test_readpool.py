"""The asyncpg read pool (``gis.readpool``) runs the very statements of the sync path and gets
the same bytes: tiles of every kind and GeoJSON pages, on the committed demo city of the test
database (a pool connection cannot see a test's transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import mercantile
import pytest
from sqlalchemy import Engine, text

from gis import db, ogc, readpool, tiles
from gis.settings import DatabaseSettings
from layers import tiles as layer_tiles
from layers.filters import parse_filters
from layers.registry import get_layer

T = TypeVar("T")


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(main())`` in a thread of its own: in the whole suite a browser test's
    Playwright may hold a running event loop in this thread."""
    async def wrapped() -> T:
        return await main()

    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, wrapped()).result()


def _on_pool(db_settings: DatabaseSettings, db_name: str,
             work: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = db.make_read_pool(db_settings, db_name, size=2)
        try:
            async with pool.connection() as con:
                return await work(con)
        finally:
            await pool.close()

    return _run(main)


@pytest.fixture(scope="module")
def centre(engine: Engine) -> tuple[float, float]:
    with engine.connect() as conn:
        x, y = conn.execute(text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom))"
                                 " AS c FROM areas WHERE valid_to IS NULL) s")).one()
    return float(x), float(y)


def test_named_parameters_become_numbered_once_each_and_serial_goes() -> None:
    sql, names = readpool.positional(tiles.SERIAL + "SELECT :z, CAST(:f_a AS text[]), :z")
    assert sql == "SELECT $1, CAST($2 AS text[]), $1" and names == ("z", "f_a")


def test_pool_sessions_hold_the_settings_the_sync_path_sets_per_statement(
        db_settings: DatabaseSettings, db_name: str) -> None:
    async def settings(con: Any) -> list[str]:
        return [await con.fetchval(f"SELECT current_setting('{name}')")
                for name in (*tiles.SERIAL_SETTINGS, "plan_cache_mode")]

    assert _on_pool(db_settings, db_name, settings) == ["0", "off", "force_custom_plan"]


@pytest.mark.parametrize(("layer", "z", "raw"), [
    ("grids", 12, {}), ("grids", 14, {}), ("grids", 16, {}), ("communities", 13, {}),
    ("streets", 12, {}), ("facilities", 15, {"category": "school,hospital"}),
    ("cases", 9, {}), ("cases", 11, {"status": "open"}), ("cases", 11, {"status": "accepted"}),
    ("cases", 10, {"category": "E01"}), ("cases", 14, {}),
    ("cases", 14, {"status": "closed", "since": "2020-01-01", "until": "2030-01-01T08:00"}),
])
def test_read_pool_tiles_are_the_bytes_of_the_engine(
        engine: Engine, db_settings: DatabaseSettings, db_name: str,
        centre: tuple[float, float], layer: str, z: int, raw: dict[str, str]) -> None:
    spec = get_layer(layer)
    values = parse_filters(spec.filters, raw, layer=layer)
    t = mercantile.tile(*centre, z)
    with engine.connect() as conn, tiles.read_only(conn) as reading:
        expected = layer_tiles.render_tile(reading, spec, z, t.x, t.y, values)
    got = _on_pool(db_settings, db_name,
                   lambda con: layer_tiles.render_tile_async(con, spec, z, t.x, t.y, values))
    assert got == expected and (expected or raw)


@pytest.mark.parametrize(("layer", "offset", "with_bbox"), [
    ("grids", 0, True), ("grids", 20, False), ("cases", 0, True), ("cases", 10**6, False),
])
def test_read_pool_pages_are_the_pages_of_the_engine(
        engine: Engine, db_settings: DatabaseSettings, db_name: str,
        centre: tuple[float, float], layer: str, offset: int, with_bbox: bool) -> None:
    x, y = centre
    query = ogc.FeatureQuery(bbox=(x - 0.004, y - 0.003, x + 0.004, y + 0.003) if with_bbox
                             else None)
    source = get_layer(layer).source
    with engine.connect() as conn:
        expected = ogc.features_page(conn, source, query, limit=25, offset=offset)
    got = _on_pool(db_settings, db_name, lambda con: ogc.features_page_async(
        con, source, query, limit=25, offset=offset))
    assert got == expected and expected[2]


def test_pool_holds_at_most_its_size_and_replaces_a_broken_connection(
        db_settings: DatabaseSettings, db_name: str) -> None:
    async def main() -> None:
        pool = db.make_read_pool(db_settings, db_name, size=2)
        pool.acquire_timeout_s = 0.2
        a, b = await pool.acquire(), await pool.acquire()
        with pytest.raises(readpool.ReadPoolTimeout):
            await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        pool.release(a)
        assert await waiting is a
        pool.release(b, broken=True)
        c = await pool.acquire()
        assert b.is_closed() and c is not b
        assert await a.fetchval("SELECT pg_backend_pid()") != await c.fetchval(
            "SELECT pg_backend_pid()")
        pool.release(a)
        pool.release(c)
        await pool.close()
        assert a.is_closed() and c.is_closed()

    _run(main)

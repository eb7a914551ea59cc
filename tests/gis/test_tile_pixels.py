"""Area tiles drawn from stored pixel geometry (migration 0009_tile_speed) equal tiles clipped
row by row with ``ST_AsMVTGeom``, byte for byte, and the stored pixels follow every edit."""

from __future__ import annotations

from dataclasses import replace

import mercantile
import numpy as np
import pytest
from sqlalchemy import Connection, text

from gis import tiles
from layers.registry import AREA_PIXELS, get_layer
from tests.factories import TinyCity, tiny_city_at

AREA_LAYERS = ["districts", "streets", "communities", "grids"]
# Placed so that the city lies well inside its z12 tile (every area drawn from stored pixels)
# and the east edge of its z13 tile (10.0635 E) cuts it (areas clipped too).
PX_X0, PX_Y0 = 10.04, 50.012


@pytest.fixture
def city(conn: Connection) -> TinyCity:
    return tiny_city_at(conn, code="TEST-PX", x0=PX_X0, y0=PX_Y0)


def _city_tiles(z: int) -> list[mercantile.Tile]:
    return list(mercantile.tiles(PX_X0 - 0.01, PX_Y0 - 0.01, PX_X0 + 0.05, PX_Y0 + 0.03,
                                 zooms=[z]))


def _draw(conn: Connection, layer: str, source: tiles.TableSource, t: mercantile.Tile) -> bytes:
    spec = get_layer(layer)
    return tiles.feature_tile(conn, source, layer=layer, z=t.z, x=t.x, y=t.y,
                              tolerance_m=spec.tolerance_m(t.z), limit=spec.limit,
                              buffer=spec.buffer)


def _clipped_per_row(source: tiles.TableSource) -> tiles.TableSource:
    return replace(source, pixel_geoms={})


@pytest.mark.parametrize("layer", AREA_LAYERS)
@pytest.mark.parametrize("z", sorted(AREA_PIXELS))
def test_area_tiles_from_stored_pixels_equal_tiles_clipped_per_row(
        conn: Connection, city: TinyCity, layer: str, z: int) -> None:
    spec = get_layer(layer)
    drawn = {t: _draw(conn, layer, spec.source, t) for t in _city_tiles(z)}
    assert any(drawn.values())
    assert drawn == {t: _draw(conn, layer, _clipped_per_row(spec.source), t) for t in drawn}


def test_tiles_use_both_the_stored_pixels_and_the_clip(conn: Connection, city: TinyCity) -> None:
    """The comparisons above cover both branches."""
    inside = crossing = 0
    for z, pixel in AREA_PIXELS.items():
        for t in _city_tiles(z):
            params = tiles._pixel_params(z, t.x, t.y, get_layer("grids").buffer)
            n_in, n_all = conn.execute(text(
                f"SELECT count(*) FILTER (WHERE {pixel.column} @ ST_MakeEnvelope(:px0, :py0,"
                " :px1, :py1, 3857)), count(*) FROM areas WHERE geom && ST_Transform("
                "ST_TileEnvelope(:z, :x, :y), 4326)"), {**params, "z": z, "x": t.x, "y": t.y}).one()
            inside, crossing = inside + n_in, crossing + n_all - n_in
    assert inside > 0 and crossing > 0


@pytest.mark.parametrize("layer", AREA_LAYERS)
def test_every_area_layer_draws_its_dense_zooms_from_stored_pixels(layer: str) -> None:
    spec = get_layer(layer)
    for z in AREA_PIXELS:
        assert tiles.pixel_geom_for(spec.source, z, spec.tolerance_m(z), tiles.MVT_EXTENT)


def test_stored_pixels_serve_only_their_own_simplification_and_extent() -> None:
    source = get_layer("grids").source
    pixel = AREA_PIXELS[12]
    assert tiles.pixel_geom_for(source, 12, pixel.tolerance_m(12), 4096) is pixel
    assert tiles.pixel_geom_for(source, 12, pixel.tolerance_m(12) / 2, 4096) is None
    assert tiles.pixel_geom_for(source, 12, pixel.tolerance_m(12), 512) is None
    assert tiles.pixel_geom_for(source, 15, get_layer("grids").tolerance_m(15), 4096) is None


@pytest.mark.parametrize("z", range(0, 19))
def test_pixel_margin_covers_float4_box_rounding(z: int) -> None:
    # Both boxes compared by ``@`` are float4, each rounded outwards by up to one step.
    step = float(np.spacing(np.float32(4096 << z)))
    assert tiles.pixel_margin(z) > 2 * step


def test_stored_pixels_follow_every_geometry_edit(conn: Connection, city: TinyCity) -> None:
    area_id = conn.execute(text("SELECT min(id) FROM areas WHERE level = 3")).scalar_one()
    conn.execute(text("UPDATE areas SET geom = ST_Multi(ST_Buffer(ST_Centroid(geom), 0.004))"
                      " WHERE id = :id"), {"id": area_id})
    for z, pixel in AREA_PIXELS.items():
        stale = conn.execute(text(
            f"SELECT count(*) FROM areas WHERE {pixel.column} IS DISTINCT FROM"
            f" gridgov_tile_pixels(geom, :z, :units)"),
            {"z": z, "units": pixel.tolerance_units}).scalar_one()
        assert stale == 0
    t = mercantile.tile(PX_X0 + 0.005, PX_Y0 + 0.01, 13)
    source = get_layer("grids").source
    assert _draw(conn, "grids", source, t) == _draw(conn, "grids", _clipped_per_row(source), t)

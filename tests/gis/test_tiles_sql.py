"""gis/tiles.py: one SQL statement per tile, on the GiST index, and exact case counts."""

from __future__ import annotations

from dataclasses import replace

import mapbox_vector_tile
import mercantile
import pytest
from sqlalchemy import Connection, text

from gis import tiles
from gis.errors import InvalidInput
from layers.registry import get_layer
from tests.factories import X0, Y0
from tests.layers.mapdata import GRID_TILE, MapCity, add_case, map_city


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def test_feature_tile_filters_on_the_gist_index(conn: Connection, city: MapCity) -> None:
    conn.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables: force the choice
    source = get_layer("grids").source
    sql = tiles._feature_tile_sql(source, frozenset(), True)
    params = {"layer": "grids", "z": 14, "x": GRID_TILE.x, "y": GRID_TILE.y, "extent": 4096,
              "buffer": 64, "margin": 10.0, "limit": 10, "tolerance": 1.0}
    query = sql.text.replace(tiles.SERIAL, "")
    plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {query}"), params))
    assert "ix_areas_geom" in plan or "ix_areas_level_current" in plan


def test_feature_tile_is_empty_bytes_outside_the_data(conn: Connection, city: MapCity) -> None:
    source = get_layer("grids").source
    assert tiles.feature_tile(conn, source, layer="grids", z=14, x=0, y=0) == b""


def test_feature_tile_rejects_a_filter_the_source_lacks(conn: Connection) -> None:
    with pytest.raises(InvalidInput) as err:
        tiles.feature_tile(conn, get_layer("grids").source, layer="grids", z=1, x=0, y=0,
                           filters={"status": ("open",)})
    assert err.value.field == "status"


@pytest.mark.parametrize(("z", "x", "y", "field"), [(25, 0, 0, "z"), (2, 4, 0, "x"),
                                                     (2, 0, -1, "y")])
def test_check_tile_names_the_bad_coordinate(z: int, x: int, y: int, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        tiles.check_tile(z, x, y)
    assert err.value.field == field


@pytest.mark.parametrize("z", [4, 8, 10, 12])
def test_rollup_counts_equal_counts_from_rows(conn: Connection, city: MapCity, z: int) -> None:
    cases = get_layer("cases")
    tile = mercantile.tile(X0 + 0.02, Y0 + 0.01, z)
    grid = cases.aggregate.grid(z, tile.x, tile.y)  # type: ignore[union-attr]
    rollup = tiles.case_cells_tile(conn, layer="c", grid=grid)
    rows = tiles.point_cells_tile(conn, cases.source, layer="c", grid=grid,
                                  open_sql="gridgov_case_open(t.status)")
    assert rollup and mapbox_vector_tile.decode(rollup) == mapbox_vector_tile.decode(rows)


def test_rollup_follows_updates_and_deletes(conn: Connection, city: MapCity) -> None:
    extra = add_case(conn, city.city.jurisdiction_id, city.categories["E990101"], X0 + 0.03,
                     Y0 + 0.003)
    conn.execute(text("UPDATE cases SET status = 'closed' WHERE id = :id"),
                 {"id": city.case_ids[0]})
    conn.execute(text("UPDATE cases SET geom = ST_SetSRID(ST_MakePoint(10.5, 50.5), 4326)"
                      " WHERE id = :id"), {"id": city.case_ids[1]})
    conn.execute(text("DELETE FROM cases WHERE id = :id"), {"id": extra})
    live = conn.execute(text("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells"
                             " WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5")).all()
    conn.execute(text("SELECT gridgov_rebuild_case_cells()"))
    rebuilt = conn.execute(text("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells"
                                " ORDER BY 1, 2, 3, 4, 5")).all()
    assert live == rebuilt


def test_tile_math_matches_mercantile() -> None:
    for lon, lat, z in [(10.005, 50.01, 14), (-122.4, 37.8, 9), (179.9, -85.0, 3)]:
        fx, fy = tiles.lonlat_to_tile_fraction(lon, lat, z)
        assert (int(fx), int(fy)) == tuple(mercantile.tile(lon, lat, z))[:2]
    assert tiles.tile_bounds_lonlat(14, 8647, 5555) == pytest.approx(
        tuple(mercantile.bounds(8647, 5555, 14)))


def test_sql_tile_functions_match_python(conn: Connection) -> None:
    for lon, lat, z in [(10.005, 50.01, 16), (-0.0001, 0.0001, 12), (24.94, 60.17, 14)]:
        x, y = conn.execute(text("SELECT gridgov_tile_x(:lon, :z), gridgov_tile_y(:lat, :z)"),
                            {"lon": lon, "lat": lat, "z": z}).one()
        assert (x, y) == tuple(mercantile.tile(lon, lat, z))[:2]


def test_tiles_touching_widens_by_the_margin() -> None:
    b = mercantile.bounds(GRID_TILE)
    me = (GRID_TILE.x, GRID_TILE.y) * 2
    near_edges = (b.west + 1e-4, b.south + 1e-4, b.east - 1e-4, b.north - 1e-4)
    well_inside = (b.west + 1e-3, b.south + 1e-3, b.east - 1e-3, b.north - 1e-3)
    assert tiles.tiles_touching(near_edges, 14, 0) == me
    assert tiles.tiles_touching(well_inside, 14, 64) == me  # 64/4096 of a z14 tile ≈ 3.4e-4°
    assert tiles.tiles_touching(near_edges, 14, 64) == (GRID_TILE.x - 1, GRID_TILE.y - 1,
                                                        GRID_TILE.x + 1, GRID_TILE.y + 1)


# --- the stored Web Mercator copy (migration 0006_tile_geoms) --------------------------

def _without_copy(source: tiles.TableSource) -> tiles.TableSource:
    """The same source drawn the old way, transforming every row."""
    return replace(source, geom_3857=None)


@pytest.mark.parametrize("layer", ["districts", "streets", "communities", "grids"])
def test_tiles_drawn_from_the_stored_copy_equal_tiles_transformed_per_row(
        conn: Connection, city: MapCity, layer: str) -> None:
    spec = get_layer(layer)
    assert spec.source.geom_3857 == "geom_3857"
    for z in (13, 14, 15):
        t = mercantile.tile(X0 + 0.005, Y0 + 0.01, z)

        def draw(source: tiles.TableSource, z: int = z, t: mercantile.Tile = t) -> bytes:
            return tiles.feature_tile(conn, source, layer=layer, z=z, x=t.x, y=t.y,
                                      tolerance_m=spec.tolerance_m(z), buffer=spec.buffer)

        drawn = draw(spec.source)
        assert drawn and drawn == draw(_without_copy(spec.source))


def test_stored_copy_follows_every_geometry_change(conn: Connection, city: MapCity) -> None:
    area_id = conn.execute(text("SELECT min(id) FROM areas WHERE level = 3")).scalar_one()
    conn.execute(text("UPDATE areas SET geom = ST_Multi(ST_Buffer(ST_Centroid(geom), 0.001))"
                      " WHERE id = :id"), {"id": area_id})
    stale = conn.execute(text("SELECT count(*) FROM areas WHERE ST_SRID(geom_3857) <> 3857"
                              " OR NOT ST_Equals(geom_3857, ST_Transform(geom, 3857))"
                              " OR (id = :id AND ST_NPoints(geom_3857) < 30)"),
                         {"id": area_id}).scalar_one()
    assert stale == 0

"""Areas: versioned polygons, the subdivided lookup table, and point lookup (MapIt-style)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box
from sqlalchemy import Connection, text

from gis import areas
from gis.categories import seed_defaults
from gis.errors import InvalidInput, NotFound
from tests.factories import DISTRICT, X0, Y0, TinyCity, tiny_city


def _grid(conn: Connection, lon: float, lat: float, at: datetime | None = None) -> str:
    return areas.locate(conn, lon, lat, at=at)["areas"][-1]["code"]


def test_locate_returns_the_chain_top_level_to_grid(conn: Connection) -> None:
    tiny_city(conn)
    chain = areas.locate(conn, X0 + 0.005, Y0 + 0.01)["areas"]
    assert [a["level"] for a in chain] == ["district", "street", "community", "grid"]
    assert [a["code"] for a in chain] == [DISTRICT, f"{DISTRICT}001", f"{DISTRICT}001001",
                                          TinyCity.grid_code(1, 1)]


@pytest.mark.parametrize(("lon", "lat"), [
    (X0 + 0.01, Y0 + 0.01),    # edge shared by grids 1-1 and 1-2
    (X0 + 0.02, Y0 + 0.005),   # edge shared by two streets
    (X0 + 0.01, Y0),           # vertex on the outer boundary
])
def test_locate_point_on_shared_edge_goes_to_one_grid(conn: Connection, lon: float,
                                                      lat: float) -> None:
    tiny_city(conn)
    first = _grid(conn, lon, lat)
    assert all(_grid(conn, lon, lat) == first for _ in range(3))
    assert first == min(c for c in _covering_grids(conn, lon, lat))


def _covering_grids(conn: Connection, lon: float, lat: float) -> list[str]:
    return list(conn.execute(text(
        "SELECT code FROM areas WHERE level = 3 AND valid_to IS NULL AND"
        " ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), {"x": lon, "y": lat}
    ).scalars())


def test_point_on_outer_boundary_counts_as_inside(conn: Connection) -> None:
    tiny_city(conn)
    assert _grid(conn, X0, Y0 + 0.01) == TinyCity.grid_code(1, 1)


def test_point_outside_every_area_is_not_found(conn: Connection) -> None:
    tiny_city(conn)
    with pytest.raises(NotFound, match="outside every area"):
        areas.locate(conn, X0 - 1, Y0)


@pytest.mark.parametrize(("lon", "lat", "field"), [
    (181.0, 10.0, "lon"), (10.0, 91.0, "lat"), (float("nan"), 1.0, "lon"),
])
def test_locate_rejects_impossible_coordinates(conn: Connection, lon: float, lat: float,
                                               field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        areas.locate(conn, lon, lat)
    assert err.value.field == field


def test_area_parts_mirror_areas_and_area_is_ellipsoidal(conn: Connection) -> None:
    city = tiny_city(conn)
    grid_id = city.ids[TinyCity.grid_code(1, 1)]
    parts, area = conn.execute(text(
        "SELECT (SELECT count(*) FROM area_parts WHERE area_id = :i), area_m2 FROM areas"
        " WHERE id = :i"), {"i": grid_id}).one()
    assert parts >= 1
    assert area == pytest.approx(0.01 * 0.02 * 111_200 * 71_700, rel=0.02)


def test_redraw_keeps_history_queryable_with_at(conn: Connection) -> None:
    tiny_city(conn)
    before = datetime.now(UTC) - timedelta(days=2)
    conn.execute(text("UPDATE areas SET valid_from = :t WHERE valid_to IS NULL"), {"t": before})
    code_11, code_12 = TinyCity.grid_code(1, 1), TinyCity.grid_code(1, 2)
    moved = datetime.now(UTC) - timedelta(days=1)
    row = conn.execute(text("SELECT id, jurisdiction_id, parent_id FROM areas WHERE code = :c"
                            " AND valid_to IS NULL"), {"c": code_11}).one()
    conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = :i"), {"t": moved, "i": row[0]})
    areas.insert_areas(conn, row[1], [areas.AreaRow(
        code_11, "Grid 1-1 (wider)", 3, box(X0, Y0, X0 + 0.015, Y0 + 0.02),
        parent_code=f"{DISTRICT}001001")], valid_from=moved)
    probe = (X0 + 0.012, Y0 + 0.01)
    assert _grid(conn, *probe, at=before + timedelta(hours=1)) == code_12
    # both versions of 1-1 now cover the probe's neighbourhood; the newest is found today
    assert _grid(conn, *probe) == code_11


def test_list_areas_filters_by_level_and_bbox(conn: Connection) -> None:
    tiny_city(conn)
    grids = areas.list_areas(conn, level="grid", bbox=(X0, Y0, X0 + 0.015, Y0 + 0.02))
    assert {g["code"] for g in grids} >= {TinyCity.grid_code(1, 1), TinyCity.grid_code(1, 2)}
    assert all(g["level_name"] == "grid" for g in grids)


def test_unknown_level_names_the_levels(conn: Connection) -> None:
    tiny_city(conn)
    with pytest.raises(InvalidInput, match="levels are"):
        areas.list_areas(conn, level="planet")


def test_refresh_counts_sums_buildings_bottom_up(conn: Connection) -> None:
    city = tiny_city(conn)
    conn.execute(text(
        "INSERT INTO buildings (jurisdiction_id, households, residents, geom, pt) VALUES"
        " (:j, 10, 25, ST_SetSRID(ST_MakePoint(10.005, 50.01), 4326),"
        "  ST_SetSRID(ST_MakePoint(10.005, 50.01), 4326)),"
        " (:j, 5, 9, ST_SetSRID(ST_MakePoint(10.035, 50.01), 4326),"
        "  ST_SetSRID(ST_MakePoint(10.035, 50.01), 4326))"), {"j": city.jurisdiction_id})
    areas.refresh_counts(conn, city.jurisdiction_id)
    got = dict(conn.execute(text("SELECT code, households FROM areas WHERE jurisdiction_id = :j"
                                 " AND valid_to IS NULL"), {"j": city.jurisdiction_id}).all())
    assert got[TinyCity.grid_code(1, 1)] == 10 and got[TinyCity.grid_code(2, 2)] == 5
    assert got[DISTRICT] == 15


def test_case_events_are_append_only(conn: Connection) -> None:
    city = tiny_city(conn)
    seed_defaults(conn)
    case_id = conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, geom) VALUES (:j,"
        " (SELECT min(id) FROM categories WHERE depth = 2), 'patrol',"
        " ST_SetSRID(ST_MakePoint(10.005, 50.01), 4326)) RETURNING id"),
        {"j": city.jurisdiction_id}).scalar_one()
    conn.execute(text("INSERT INTO case_events (case_id, action, to_state)"
                      " VALUES (:c, 'report', 'reported')"), {"c": case_id})
    with pytest.raises(Exception, match="append-only"), conn.begin_nested():
        conn.execute(text("UPDATE case_events SET note = 'rewritten' WHERE case_id = :c"),
                     {"c": case_id})
    with pytest.raises(Exception, match="append-only"), conn.begin_nested():
        conn.execute(text("DELETE FROM case_events WHERE case_id = :c"), {"c": case_id})

"""The Helsinki demo city (gis.demo): every test database is cloned from a template that holds
it, so these tests check the loaded city itself, plus the estimate and parsing rules on
hand-made examples."""

from __future__ import annotations

import doctest
import re
import time
from statistics import median

import pytest
import shapely
from shapely import wkb
from sqlalchemy import Connection, text

from gis import demo, partition
from gis.demo import assets, hierarchy, network, population
from gis.demo.population import estimate_households
from gis.partition import reading_order, row_tolerance_for
from gis.settings import CitySettings

CITY = CitySettings()


@pytest.fixture
def jid(conn: Connection) -> int:
    found = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                         {"c": demo.DEMO_CODE}).scalar()
    assert found is not None, "the test template should hold the demo city"
    return int(found)


def _areas(conn: Connection, jid: int, level: int) -> list[dict]:
    rows = conn.execute(text(
        "SELECT a.id, a.code, a.households, p.code AS parent, ST_AsBinary(a.geom) AS geom"
        " FROM areas a LEFT JOIN areas p ON p.id = a.parent_id WHERE a.jurisdiction_id = :j"
        " AND a.level = :l AND a.valid_to IS NULL ORDER BY a.code"), {"j": jid, "l": level})
    return [dict(r._mapping) for r in rows]


# --- the loaded city --------------------------------------------------------------------------

@pytest.mark.parametrize("table", [
    "areas", "area_parts", "buildings", "road_nodes", "road_edges", "facilities",
    "components", "responsibility_zones", "responders",
])
def test_demo_fills_every_table(conn: Connection, jid: int, table: str) -> None:
    count = conn.execute(text(f"SELECT count(*) FROM {table} t"
                              + ("" if table == "area_parts" else " WHERE jurisdiction_id = :j")),
                         {"j": jid}).scalar()
    assert count and count > 0


def test_hierarchy_has_the_configured_shape(conn: Connection, jid: int) -> None:
    counts = dict(conn.execute(text(
        "SELECT level, count(*) FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL"
        " GROUP BY level"), {"j": jid}).all())
    districts = len(CITY.county_codes)
    assert counts[0] == districts
    assert counts[1] == districts * CITY.streets_per_district
    assert counts[2] == counts[1] * CITY.communities_per_street
    assert counts[3] >= counts[2]


def test_grid_codes_are_14_unique_digits_prefixed_by_the_parent(conn: Connection,
                                                                jid: int) -> None:
    grids = _areas(conn, jid, 3)
    codes = [g["code"] for g in grids]
    assert all(re.fullmatch(r"\d{14}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    assert all(g["code"][:12] == g["parent"] for g in grids)


def test_every_level_extends_its_parent_code(conn: Connection, jid: int) -> None:
    for level, digits in ((0, 6), (1, 9), (2, 12)):
        rows = _areas(conn, jid, level)
        assert all(len(r["code"]) == digits and r["code"].isdigit() for r in rows)
        if level:
            assert all(r["code"].startswith(r["parent"]) for r in rows)
    assert {r["code"] for r in _areas(conn, jid, 0)} == set(CITY.county_codes)


def test_siblings_are_numbered_in_reading_order(conn: Connection, jid: int) -> None:
    for level in (1, 2, 3):
        families: dict[str, list] = {}
        for row in _areas(conn, jid, level):  # in code order
            families.setdefault(row["parent"], []).append(wkb.loads(bytes(row["geom"])))
        for geoms in families.values():
            points = [shapely.get_coordinates(shapely.point_on_surface(g))[0] for g in geoms]
            tolerance = row_tolerance_for(g.bounds[3] - g.bounds[1] for g in geoms)
            assert reading_order([tuple(p) for p in points], row_tolerance=tolerance) == list(
                range(len(geoms)))


def test_no_later_sibling_lies_wholly_north_of_an_earlier_one(conn: Connection,
                                                              jid: int) -> None:
    late_north = conn.execute(text(
        "SELECT count(*) FROM areas a JOIN areas b ON a.parent_id = b.parent_id"
        " AND a.code < b.code WHERE a.jurisdiction_id = :j AND ST_YMin(b.geom) > ST_YMax(a.geom)"),
        {"j": jid}).scalar()
    assert late_north == 0


def test_children_cover_each_parent_exactly(conn: Connection, jid: int) -> None:
    worst = conn.execute(text(
        "SELECT max(ST_Area(ST_SymDifference(p.geom, u.geom)::geography)), count(*)"
        " FROM areas p CROSS JOIN LATERAL (SELECT ST_Union(c.geom) AS geom FROM areas c"
        "  WHERE c.parent_id = p.id) u WHERE p.jurisdiction_id = :j AND p.level < 3"),
        {"j": jid}).one()
    assert worst[1] == 2 + 6 + 24  # every parent has children
    assert worst[0] < 0.01  # m²


def test_siblings_do_not_overlap(conn: Connection, jid: int) -> None:
    overlap = conn.execute(text(
        "SELECT COALESCE(max(ST_Area(ST_Intersection(a.geom, b.geom)::geography)), 0)"
        " FROM areas a JOIN areas b ON a.parent_id = b.parent_id AND a.id < b.id"
        " AND ST_Intersects(a.geom, b.geom) WHERE a.jurisdiction_id = :j"), {"j": jid}).scalar()
    assert overlap < 0.01  # m²


def test_every_area_is_one_valid_polygon(conn: Connection, jid: int) -> None:
    bad = conn.execute(text(
        "SELECT count(*) FROM areas WHERE jurisdiction_id = :j"
        " AND (NOT ST_IsValid(geom) OR ST_NumGeometries(geom) <> 1)"), {"j": jid}).scalar()
    assert bad == 0


def test_every_building_and_facility_lies_in_a_grid(conn: Connection, jid: int) -> None:
    for table, column in (("buildings", "pt"), ("facilities", "geom"), ("components", "geom")):
        outside = conn.execute(text(
            f"SELECT count(*) FROM {table} t WHERE t.jurisdiction_id = :j AND NOT EXISTS"
            f" (SELECT 1 FROM areas a WHERE a.jurisdiction_id = :j AND a.level = 3"
            f"  AND ST_Covers(a.geom, t.{column}))"), {"j": jid}).scalar()
        assert outside == 0, table


def test_grid_households_are_near_the_target(conn: Connection, jid: int) -> None:
    grids = _areas(conn, jid, 3)
    target = CITY.household_target
    assert median(g["households"] for g in grids) == pytest.approx(target, rel=0.35)
    per_community: dict[str, int] = {}
    for g in grids:
        per_community[g["parent"]] = per_community.get(g["parent"], 0) + 1
    assert max(per_community.values()) <= 99


def test_area_counts_add_up_to_the_buildings(conn: Connection, jid: int) -> None:
    buildings = conn.execute(text("SELECT sum(households), sum(residents) FROM buildings"
                                  " WHERE jurisdiction_id = :j"), {"j": jid}).one()
    by_level = conn.execute(text(
        "SELECT level, sum(households), sum(population) FROM areas WHERE jurisdiction_id = :j"
        " AND valid_to IS NULL GROUP BY level ORDER BY level"), {"j": jid}).all()
    assert buildings[0] > 1000
    assert all((hh, pop) == tuple(buildings) for _, hh, pop in by_level)


def test_building_points_lie_inside_their_footprints(conn: Connection, jid: int) -> None:
    outside = conn.execute(text("SELECT count(*) FROM buildings WHERE jurisdiction_id = :j"
                                " AND NOT ST_Covers(geom, pt)"), {"j": jid}).scalar()
    assert outside == 0


def test_one_way_edges_exist_and_cannot_be_driven_backwards(conn: Connection,
                                                            jid: int) -> None:
    row = conn.execute(text(
        "SELECT count(*) FILTER (WHERE oneway), count(*) FILTER (WHERE oneway"
        " AND reverse_cost >= 0), count(*) FILTER (WHERE NOT oneway AND reverse_cost < 0)"
        " FROM road_edges WHERE jurisdiction_id = :j"), {"j": jid}).one()
    assert row[0] > 100
    assert row[1] == 0 and row[2] == 0


def test_edges_meet_their_nodes_and_carry_speeds(conn: Connection, jid: int) -> None:
    bad = conn.execute(text(
        "SELECT count(*) FROM road_edges e JOIN road_nodes s ON s.id = e.source"
        " JOIN road_nodes t ON t.id = e.target WHERE e.jurisdiction_id = :j"
        " AND (ST_Distance(ST_StartPoint(e.geom), s.geom) > 1e-9"
        "  OR ST_Distance(ST_EndPoint(e.geom), t.geom) > 1e-9"
        "  OR e.maxspeed_kmh <= 0 OR e.cost <= 0)"), {"j": jid}).scalar()
    assert bad == 0


def test_edges_are_labelled_and_the_main_component_dominates(conn: Connection,
                                                             jid: int) -> None:
    row = conn.execute(text(
        "SELECT count(*), count(component), count(*) FILTER (WHERE component = 0)"
        " FROM road_edges WHERE jurisdiction_id = :j"), {"j": jid}).one()
    assert row[0] == row[1]
    assert row[2] / row[0] > 0.9


def test_several_facility_types_with_service_defaults(conn: Connection, jid: int) -> None:
    rows = dict(conn.execute(text(
        "SELECT type, min(service_radius_m) FROM facilities WHERE jurisdiction_id = :j"
        " GROUP BY type"), {"j": jid}).all())
    assert {"fire_station", "library", "pharmacy", "school", "clinic"} <= set(rows)
    assert all(radius and radius > 0 for radius in rows.values())


def test_component_codes_are_16_digits_under_their_district(conn: Connection,
                                                            jid: int) -> None:
    rows = conn.execute(text(
        "SELECT c.code, c.kind, (SELECT a.code FROM areas a WHERE a.jurisdiction_id = :j"
        " AND a.level = 0 AND ST_Covers(a.geom, c.geom) ORDER BY a.code LIMIT 1)"
        " FROM components c WHERE c.jurisdiction_id = :j"), {"j": jid}).all()
    assert len({kind for _, kind, _ in rows}) >= 5
    for code, kind, district in rows:
        spec = assets.COMPONENT_KINDS[kind]
        assert re.fullmatch(r"\d{16}", code)
        assert code[:6] == district and code[6:10] == f"{spec.major:02d}{spec.minor:02d}"


def test_each_street_has_an_enforcement_zone_of_its_shape(conn: Connection, jid: int) -> None:
    rows = conn.execute(text(
        "SELECT a.code, z.department_id, ST_Equals(a.geom, ST_Multi(z.geom)) FROM areas a"
        " LEFT JOIN responsibility_zones z ON z.code = 'ENF-' || a.code"
        " AND z.kind = 'enforcement_duty_area' AND z.jurisdiction_id = :j"
        " WHERE a.jurisdiction_id = :j AND a.level = 1"), {"j": jid}).all()
    assert len(rows) == 6
    assert all(dept is not None and same for _, dept, same in rows)


def test_on_duty_responders_stand_on_the_road_network(conn: Connection, jid: int) -> None:
    rows = conn.execute(text(
        "SELECT r.status, r.geom IS NOT NULL, r.position_at IS NOT NULL,"
        " EXISTS (SELECT 1 FROM road_nodes n WHERE n.jurisdiction_id = :j AND n.geom = r.geom)"
        " FROM responders r WHERE r.jurisdiction_id = :j"), {"j": jid}).all()
    assert 24 <= len(rows) <= 60
    assert {status for status, *_ in rows} == {"available", "busy", "off"}
    for status, placed, timed, on_node in rows:
        assert (placed and timed and on_node) == (status != "off")


def test_loading_again_is_quick_and_keeps_the_data(conn: Connection, jid: int) -> None:
    before = demo.summarize(conn, jid)
    started = time.perf_counter()
    summary = demo.load_demo(conn, city=CITY)
    assert time.perf_counter() - started < 2
    assert summary["status"] == "already loaded"
    assert summary["jurisdiction_id"] == jid
    assert {k: v for k, v in summary.items() if k not in ("status", "seconds")} == before


def test_reload_rebuilds_the_same_city_even_with_case_history(conn: Connection,
                                                              jid: int) -> None:
    before = demo.summarize(conn, jid)
    grid = conn.execute(text("SELECT id FROM areas WHERE jurisdiction_id = :j AND level = 3"
                             " ORDER BY code LIMIT 1"), {"j": jid}).scalar()
    category = conn.execute(text(
        "INSERT INTO categories (code, kind, depth, name) VALUES ('TESTDEMO', 'event', 0,"
        " 'test') RETURNING id")).scalar()
    case = conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, geom) VALUES"
        " (:j, :c, 'patrol', :a, ST_SetSRID(ST_MakePoint(24.94, 60.17), 4326)) RETURNING id"),
        {"j": jid, "c": category, "a": grid}).scalar()
    conn.execute(text("INSERT INTO case_events (case_id, action) VALUES (:c, 'report')"),
                 {"c": case})
    summary = demo.load_demo(conn, city=CITY, reload=True)
    assert summary["status"] == "loaded"
    skip = ("status", "seconds", "jurisdiction_id")
    assert {k: v for k, v in summary.items() if k not in skip} == {
        k: v for k, v in before.items() if k not in skip}
    assert conn.execute(text("SELECT count(*) FROM cases WHERE id = :c"), {"c": case}).scalar() == 0


# --- rules on hand-made examples ---------------------------------------------------------------

@pytest.mark.parametrize(("footprint", "building", "kwargs", "households", "residents"), [
    (500, "apartments", {"levels": "6"}, 36, 68),            # 500·6·0.9/75
    (500, "apartments", {}, 36, 68),                           # default 6 storeys
    (200, "house", {"levels": "2"}, 5, 10),                    # 200·2/75 = 5.3
    (300, "yes", {"landuse": "residential"}, 17, 32),          # 300·5·0.85/75
    (300, "yes", {"landuse": "commercial"}, 3, 6),             # 300·5·0.15/75
    (300, "yes", {"landuse": "civil"}, 0, 0),
    (1000, "office", {"levels": "8"}, 0, 0),
    (1000, "church", {}, 0, 0),
    (500, "apartments", {"levels": "7", "min_level": "1"}, 36, 68),  # 6 storeys above ground
    (500, "apartments", {"levels": "many"}, 36, 68),           # unreadable tag → default
])
def test_households_are_estimated_from_floor_area(footprint: float, building: str,
                                                  kwargs: dict, households: int,
                                                  residents: int) -> None:
    estimate = estimate_households(footprint, building, **kwargs)
    assert (estimate.households, estimate.residents) == (households, residents)


def test_household_estimate_rejects_a_negative_footprint() -> None:
    with pytest.raises(ValueError, match="-5"):
        estimate_households(-5, "apartments")


@pytest.mark.parametrize(("tag", "kmh"), [
    ("30", 30.0), ("50 mph", 80.47), ("FI:urban", 50.0), ("FI:zone30", 30.0),
    ("40;30", 30.0), ("walk", 7.0), ("none", None), ("", None), (None, None),
])
def test_maxspeed_tags_are_parsed_to_kmh(tag: str | None, kmh: float | None) -> None:
    assert network.parse_maxspeed(tag) == kmh


@pytest.mark.parametrize(("oneway", "tags", "highway", "direction"), [
    ("yes", {}, "primary", 1), ("true", {}, "primary", 1), ("1", {}, "primary", 1),
    ("-1", {}, "primary", -1), ("no", {"junction": "roundabout"}, "primary", 0),
    (None, {"junction": "roundabout"}, "tertiary", 1), (None, {}, "motorway", 1),
    (None, {}, "residential", 0),
])
def test_oneway_tags_give_the_direction_of_travel(oneway: str | None, tags: dict,
                                                  highway: str, direction: int) -> None:
    assert network.oneway_direction(oneway, tags, highway) == direction


def test_grids_per_community_follow_households_up_to_99() -> None:
    assert hierarchy.grids_for(430, 200, units=12) == 2
    assert hierarchy.grids_for(0, 200, units=3) == 1
    assert hierarchy.grids_for(50_000, 200, units=500) == 99
    assert hierarchy.grids_for(5_000, 200, units=4) == 4


@pytest.mark.parametrize("module", [partition, population, network, assets, hierarchy])
def test_docstring_examples_hold(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0

"""Checks of a plan: each kind of problem, with its geometry; measures per grid."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import Connection, text

from gis.planning import checks, plans, store

COMMUNITY = "910102002002"
STREET = "910102002"


@pytest.fixture
def plan(conn: Connection) -> store.PlanInfo:
    return plans.create_plan(conn, root=COMMUNITY)


def set_geom(conn: Connection, key: int, geom) -> None:
    conn.execute(text("UPDATE plan_areas SET geom = ST_Multi(ST_GeomFromWKB(:g, 4326))"
                      " WHERE id = :k"), {"g": shapely.to_wkb(geom), "k": key})


def kinds(result) -> set[str]:
    return {p["kind"] for p in result["problems"]}


def test_the_demo_community_passes_every_error_check(conn, plan):
    result = checks.check_plan(conn, plan.id)
    assert result["ok"] and result["summary"]["errors"] == 0
    grids = [r for r in result["areas"] if r["level"] == 3]
    assert len(grids) == 3
    for g in grids:
        assert 0 < g["polsby_popper"] <= 1 and 0 < g["reock"] <= 1
        assert 0 <= g["road_share"] <= 1 and g["parts"] == 1
        assert "households" in g["deviation"]


def test_a_shrunk_grid_leaves_a_gap_with_its_geometry(conn, plan):
    g = store.load(conn, plan.id, level=3)[0]
    set_geom(conn, g.key, g.geom.buffer(-0.0001))
    result = checks.check_plan(conn, plan.id)
    gaps = [p for p in result["problems"] if p["kind"] == "gap"]
    assert not result["ok"] and gaps
    assert shape(gaps[0]["geometry"]).intersects(g.geom)
    assert gaps[0]["area_m2"] > 1


def test_a_grown_grid_overlaps_its_neighbours_and_leaves_its_parent(conn, plan):
    g = store.load(conn, plan.id, level=3)[0]
    set_geom(conn, g.key, g.geom.buffer(0.0002))
    result = checks.check_plan(conn, plan.id)
    assert {"overlap", "outside_parent"} <= kinds(result)
    overlap = next(p for p in result["problems"] if p["kind"] == "overlap")
    assert g.key in overlap["keys"] and shape(overlap["geometry"]).area > 0


def test_a_grid_in_two_pieces_is_not_contiguous(conn, plan):
    a, b, c = store.load(conn, plan.id, level=3)
    x0, y0, x1, y1 = a.geom.bounds
    island = shapely.box(x1 + 0.01, y1 + 0.01, x1 + 0.011, y1 + 0.011)
    set_geom(conn, a.key, shapely.MultiPolygon([a.geom if a.geom.geom_type == "Polygon"
                                                else a.geom.geoms[0], island]))
    result = checks.check_plan(conn, plan.id)
    assert "multipart" in kinds(result)


def test_a_hole_is_a_warning(conn, plan):
    a = store.load(conn, plan.id, level=3)[0]
    hole = a.geom.representative_point().buffer(0.00005)
    set_geom(conn, a.key, a.geom.difference(hole))
    result = checks.check_plan(conn, plan.id)
    problem = next(p for p in result["problems"] if p["kind"] == "hole")
    assert problem["severity"] == "warning" and shape(problem["geometry"]).area > 0
    assert "gap" in kinds(result)  # nothing else covers the hole


def test_deviation_is_measured_against_the_level_target(conn, plan):
    result = checks.check_plan(conn, plan.id)
    ref = result["references"]["3:households"]
    assert ref == {"value": 200, "kind": "target"}
    row = max((r for r in result["areas"] if r["level"] == 3), key=lambda r: r["households"])
    assert row["deviation"]["households"] == pytest.approx((row["households"] - 200) / 200)
    assert "deviation" in kinds(result)  # 286 households is +43 %, tolerance 35 %


def test_open_cases_count_as_workload(conn, plan):
    g = store.load(conn, plan.id, level=3)[0]
    before = {r["key"]: r["open_cases"] for r in checks.check_plan(conn, plan.id)["areas"]}
    p = g.geom.representative_point()
    cat = conn.execute(text("SELECT id FROM categories ORDER BY id LIMIT 1")).scalar()
    if cat is None:
        from gis.categories import seed_defaults
        seed_defaults(conn)
        cat = conn.execute(text("SELECT id FROM categories ORDER BY id LIMIT 1")).scalar()
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, geom)"
        " VALUES (:j, :c, 'hotline', :a, 'filed', ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
        {"j": plan.jurisdiction_id, "c": cat, "a": g.source_area_id, "x": p.x, "y": p.y})
    rows = {r["key"]: r for r in checks.check_plan(conn, plan.id)["areas"]}
    assert rows[g.key]["open_cases"] == before[g.key] + 1


def test_street_plan_checks_nesting_at_every_level(conn):
    plan = plans.create_plan(conn, root=STREET)
    result = checks.check_plan(conn, plan.id)
    assert result["summary"]["errors"] == 0
    assert {r["level"] for r in result["areas"]} == {1, 2, 3}

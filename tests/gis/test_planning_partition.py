"""Automatic partition of communities into grids along roads."""

from __future__ import annotations

import pytest
import shapely
from sqlalchemy import Connection

from gis.errors import InvalidInput
from gis.planning import checks, plans, store
from gis.planning.autopartition import Target, run

COMMUNITY = "910102002002"  # 675 households, 3 grids
SMALL = "910101001001"  # 158 households
STREET = "910102002"


def community(conn: Connection, plan: store.PlanInfo, code: str) -> store.PArea:
    return store.find_by_code(conn, plan.id, code)


def test_partition_meets_the_target_contiguous_and_covering(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    out = run(conn, plan.id, community(conn, plan, COMMUNITY).key,
              Target(value=220, tolerance=0.35))
    m = out["metrics"]
    assert m["within_tolerance"] and m["contiguous"]
    assert sum(g["households"] for g in m["grids"]) == 675
    assert 0 < m["mean_polsby_popper"] <= 1 and m["road_share"] > 0
    assert checks.check_plan(conn, plan.id)["summary"]["errors"] == 0


def test_partition_into_n_grids(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    out = run(conn, plan.id, community(conn, plan, COMMUNITY).key, Target(n=4))
    assert out["metrics"]["count"] == 4
    assert checks.check_plan(conn, plan.id)["ok"]


def test_partition_is_deterministic_for_a_seed(conn):
    results = []
    for _ in range(2):
        plan = plans.create_plan(conn, root=COMMUNITY)
        run(conn, plan.id, community(conn, plan, COMMUNITY).key, Target(n=3, seed=7))
        results.append(sorted(g.geom.wkb for g in store.load(conn, plan.id, level=3)))
    assert results[0] == results[1]


def test_partition_never_touches_locked_grids(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    grids = store.load(conn, plan.id, level=3)
    plans.set_attributes(conn, plan.id, grids[0].key, locked=True)
    run(conn, plan.id, community(conn, plan, COMMUNITY).key, Target(n=2))
    after = store.load_one(conn, plan.id, grids[0].key)
    assert after.geom.equals(grids[0].geom) and after.locked
    assert len(store.load(conn, plan.id, level=3)) == 3
    assert checks.check_plan(conn, plan.id)["summary"]["errors"] == 0


def test_a_target_no_whole_number_of_grids_can_meet_is_422_explaining_why(conn):
    plan = plans.create_plan(conn, root=SMALL)
    with pytest.raises(InvalidInput, match="no whole number") as err:
        run(conn, plan.id, community(conn, plan, SMALL).key, Target(value=200, tolerance=0.1))
    assert err.value.extra["problem"] == "infeasible_target"
    assert err.value.extra["geometry"] is not None
    assert "158 households" in err.value.detail


def test_a_building_bigger_than_a_grid_may_hold_is_422_naming_it(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    with pytest.raises(InvalidInput, match="building") as err:
        run(conn, plan.id, community(conn, plan, COMMUNITY).key, Target(value=3, tolerance=0.1))
    assert err.value.extra["buildings"]


def test_nothing_changes_when_the_target_is_refused(conn):
    plan = plans.create_plan(conn, root=SMALL)
    before = [g.geom.wkb for g in store.load(conn, plan.id)]
    with pytest.raises(InvalidInput):
        run(conn, plan.id, community(conn, plan, SMALL).key, Target(value=200, tolerance=0.1))
    assert [g.geom.wkb for g in store.load(conn, plan.id)] == before


def test_partition_of_a_street_cuts_each_community(conn):
    plan = plans.create_plan(conn, root=STREET)
    out = run(conn, plan.id, community(conn, plan, STREET).key,
              Target(value=200, tolerance=0.5))
    assert out["communities"] == 4
    result = checks.check_plan(conn, plan.id)
    assert result["summary"]["errors"] == 0


def _buildings_cut(conn: Connection, grids: list[store.PArea], frame: store.PArea) -> set[int]:
    from sqlalchemy import text

    inner = shapely.union_all([g.geom.boundary for g in grids]).difference(
        frame.geom.boundary.buffer(1e-7))
    return set(conn.execute(text(
        "SELECT id FROM buildings WHERE ST_Intersects(geom, ST_GeomFromWKB(:l, 4326))"
        " AND ST_Length(ST_Intersection(ST_Buffer(geom, -0.00001),"  # walls shared by a row
        " ST_GeomFromWKB(:l, 4326))::geography) > 3"),  # of houses do not count as cuts
        {"l": shapely.to_wkb(inner)}).scalars())


def test_buildings_are_kept_whole(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    frame = community(conn, plan, COMMUNITY)
    # A few OSM footprints overlap their neighbours, so no line runs between them; the demo's
    # own grids cross as many of those as the partition may.
    baseline = _buildings_cut(conn, store.load(conn, plan.id, level=3), frame)
    run(conn, plan.id, frame.key, Target(n=3))
    assert len(_buildings_cut(conn, store.load(conn, plan.id, level=3), frame)) <= len(baseline)

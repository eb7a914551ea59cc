"""Plans and their edits on the demo city (real PostGIS, rolled back per test)."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import LineString, box
from sqlalchemy import Connection, text

from gis.errors import Conflict, InvalidInput
from gis.planning import plans, store
from gis.planning.store import PArea

COMMUNITY = "910102002002"  # Street 2-002 community 002: 3 grids, 675 households


@pytest.fixture
def plan(conn: Connection) -> store.PlanInfo:
    return plans.create_plan(conn, root=COMMUNITY, name="test plan")


def grids(conn: Connection, plan: store.PlanInfo) -> list[PArea]:
    return store.load(conn, plan.id, level=plan.bottom)


def total_area(conn: Connection, plan: store.PlanInfo) -> float:
    return sum(g.geom.area for g in grids(conn, plan))


def crossing_line(area: PArea) -> LineString:
    """A north-south line through the middle of the area, longer than the area."""
    x0, y0, x1, y1 = area.geom.bounds
    c = area.geom.representative_point()
    return LineString([(c.x, y0 - 0.001), (c.x, y1 + 0.001)])


def test_create_plan_copies_the_subtree_with_counts(conn, plan):
    areas = store.load(conn, plan.id)
    assert [a.level for a in areas] == [2, 3, 3, 3]
    assert sum(a.households for a in areas if a.level == 3) == areas[0].households == 675
    assert all(a.parent_key == areas[0].key for a in areas[1:])
    assert all(a.source_area_id for a in areas)


def test_create_plan_of_unknown_area_is_404(conn):
    with pytest.raises(Exception, match="no current area"):
        plans.create_plan(conn, root="000")


def test_split_cuts_a_grid_in_two_and_keeps_the_parent_covered(conn, plan):
    g = grids(conn, plan)[1]
    before = total_area(conn, plan)
    out = plans.split(conn, plan.id, g.key, crossing_line(g), version=g.version)
    assert len(out.created) == 1 and out.updated == [g.key]
    after = grids(conn, plan)
    assert len(after) == 4
    assert total_area(conn, plan) == pytest.approx(before, rel=1e-9)
    assert sum(a.households for a in after) == 675


def test_split_line_that_does_not_cross_is_422_with_where(conn, plan):
    g = grids(conn, plan)[0]
    c = g.geom.representative_point()
    inside = LineString([(c.x, c.y), (c.x + 1e-5, c.y + 1e-5)])
    with pytest.raises(InvalidInput, match="does not cut") as err:
        plans.split(conn, plan.id, g.key, inside)
    assert err.value.extra["geometry"]["type"] in ("MultiPoint", "LineString")
    far = LineString([(0, 0), (1, 1)])
    with pytest.raises(InvalidInput, match="does not cross"):
        plans.split(conn, plan.id, g.key, far)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_split_line_with_a_non_finite_coordinate_is_422_naming_it(conn, plan, bad):
    g = grids(conn, plan)[0]
    line = LineString([(0.0, 61.0), (bad, 0.0)])
    with pytest.raises(InvalidInput, match="not a finite number") as err:
        plans.split(conn, plan.id, g.key, line)
    assert err.value.field == "line" and str(bad) in err.value.detail


def test_merge_adjacent_grids_keeps_the_smaller_code(conn, plan):
    a, b, c = grids(conn, plan)
    pair = next((x, y) for x, y in ((a, b), (b, c), (a, c))
                if x.geom.intersection(y.geom).length > 0)
    out = plans.merge(conn, plan.id, [pair[0].key, pair[1].key])
    assert out.deleted == [max(pair[0].key, pair[1].key)] or len(out.deleted) == 1
    merged = store.load_one(conn, plan.id, out.updated[0])
    assert merged.code == min(pair[0].code, pair[1].code)
    assert merged.households == pair[0].households + pair[1].households


def test_merging_grids_that_do_not_touch_is_422(conn, plan):
    g = grids(conn, plan)[0]
    # Split g twice so two of its pieces do not touch each other.
    x0, y0, x1, y1 = g.geom.bounds
    for share in (1 / 3, 2 / 3):
        x = x0 + (x1 - x0) * share
        plans.split(conn, plan.id, g.key, LineString([(x, y0 - 1), (x, y1 + 1)]))
    g2 = store.load_one(conn, plan.id, g.key)
    pieces = [p for p in grids(conn, plan) if p.code is None or p.key == g.key]
    pairs = [(p, q) for p in pieces for q in pieces
             if p.key < q.key and p.geom.intersection(q.geom).length == 0]
    assert g2.version > g.version and pairs
    p, q = pairs[0]
    with pytest.raises(InvalidInput, match="not adjacent") as err:
        plans.merge(conn, plan.id, [p.key, q.key])
    assert err.value.extra["problem"] == "not_adjacent"
    assert err.value.extra["geometry"]["type"] == "GeometryCollection"


def test_reshape_takes_ground_from_neighbours_and_gives_the_rest_back(conn, plan):
    a, b, c = grids(conn, plan)
    before = total_area(conn, plan)
    bigger = a.geom.buffer(0.0003)
    out = plans.reshape(conn, plan.id, a.key, bigger, version=a.version)
    assert a.key in out.updated and len(out.updated) >= 2
    assert total_area(conn, plan) == pytest.approx(before, rel=1e-6)
    smaller = store.load_one(conn, plan.id, a.key).geom.buffer(-0.0002)
    plans.reshape(conn, plan.id, a.key, smaller)
    assert total_area(conn, plan) == pytest.approx(before, rel=1e-6)
    parent = store.load_one(conn, plan.id, a.parent_key)
    union = shapely.union_all([g.geom for g in grids(conn, plan)])
    assert union.symmetric_difference(parent.geom).area < 1e-10


def test_self_intersecting_shape_is_422_naming_the_spot(conn, plan):
    a = grids(conn, plan)[0]
    x0, y0, x1, y1 = a.geom.bounds
    bowtie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    with pytest.raises(InvalidInput, match="Self-intersection|not a valid polygon") as err:
        plans.reshape(conn, plan.id, a.key, bowtie)
    assert err.value.extra["geometry"]["type"] == "Point"


def test_locked_grid_is_never_changed_by_a_reshape(conn, plan):
    a, b, c = grids(conn, plan)
    plans.set_attributes(conn, plan.id, b.key, locked=True)
    with pytest.raises(InvalidInput, match="locked") as err:
        plans.reshape(conn, plan.id, a.key, a.geom.buffer(0.001))
    assert err.value.extra["problem"] == "locked"
    assert store.load_one(conn, plan.id, b.key).geom.equals(b.geom)


def test_stale_version_is_409_with_the_current_state_and_changes_nothing(conn, plan):
    a = grids(conn, plan)[0]
    plans.set_attributes(conn, plan.id, a.key, name="renamed by planner 1", version=a.version)
    with pytest.raises(Conflict) as err:
        plans.split(conn, plan.id, a.key, crossing_line(a), version=a.version)
    assert err.value.extra["current_version"] == a.version + 1
    assert err.value.extra["current"][0]["properties"]["name"] == "renamed by planner 1"
    assert len(grids(conn, plan)) == 3


def test_undo_and_redo_restore_areas_and_versions_only_grow(conn, plan):
    g = grids(conn, plan)[1]
    out = plans.split(conn, plan.id, g.key, crossing_line(g))
    new_key = out.created[0]
    undone = store.undo(conn, store.get_plan(conn, plan.id))
    assert undone["deleted"] == [new_key]
    back = store.load_one(conn, plan.id, g.key)
    assert back.geom.equals(g.geom) and back.households == g.households
    assert back.version == g.version + 2
    store.redo(conn, store.get_plan(conn, plan.id))
    assert len(grids(conn, plan)) == 4
    assert store.load_one(conn, plan.id, new_key).households > 0
    with pytest.raises(Conflict, match="nothing to redo"):
        store.redo(conn, store.get_plan(conn, plan.id))


def test_a_new_edit_clears_the_redo_stack(conn, plan):
    a, b, _ = grids(conn, plan)
    plans.set_attributes(conn, plan.id, a.key, name="x")
    store.undo(conn, store.get_plan(conn, plan.id))
    plans.set_attributes(conn, plan.id, b.key, name="y")
    with pytest.raises(Conflict):
        store.redo(conn, store.get_plan(conn, plan.id))
    assert [o["kind"] for o in store.history(conn, plan.id)] == ["edit"]


def test_move_buildings_moves_them_whole_into_the_neighbour(conn, plan):
    a, b, c = grids(conn, plan)
    src, dst = next((x, y) for x, y in ((a, b), (b, a), (b, c), (c, b))
                    if x.geom.intersection(y.geom).length > 0)
    row = conn.execute(text(
        "SELECT b.id, b.households FROM buildings b WHERE ST_Covers(ST_GeomFromWKB(:g, 4326), b.pt)"
        " AND b.households > 0 ORDER BY ST_Distance(b.pt, ST_GeomFromWKB(:d, 4326)) LIMIT 1"),
        {"g": shapely.to_wkb(src.geom), "d": shapely.to_wkb(dst.geom)}).one()
    plans.move_buildings(conn, plan.id, dst.key, [row.id])
    after = store.load_one(conn, plan.id, dst.key)
    assert after.households >= dst.households + row.households
    assert sum(g.households for g in grids(conn, plan)) == 675


def test_editing_the_plans_root_is_refused(conn, plan):
    root = store.load(conn, plan.id)[0]
    with pytest.raises(InvalidInput, match="root"):
        plans.reshape(conn, plan.id, root.key, box(0, 0, 1, 1))


def test_published_plan_cannot_be_edited(conn, plan):
    conn.execute(text("UPDATE plans SET status = 'published' WHERE id = :p"), {"p": plan.id})
    with pytest.raises(Conflict, match="published"):
        plans.set_attributes(conn, plan.id, grids(conn, plan)[0].key, locked=True)


def test_carve_draws_a_new_grid_taking_ground_from_the_others(conn, plan):
    root = store.load(conn, plan.id)[0]
    c = root.geom.representative_point()
    out = plans.carve(conn, plan.id, root.key, c.buffer(0.0004))
    assert len(out.created) == 1
    assert len(grids(conn, plan)) == 4
    union = shapely.union_all([g.geom for g in grids(conn, plan)])
    assert union.symmetric_difference(root.geom).area < 1e-10


def test_move_a_road_block_into_a_neighbouring_grid(conn, plan):
    from gis.planning.blocks import road_faces

    a, b, c = grids(conn, plan)
    root = store.load(conn, plan.id)[0]
    faces = road_faces(conn, store.get_plan(conn, plan.id), root.geom)
    assert faces and abs(sum(f.area for f in faces) - root.geom.area) < 1e-9
    # A block mostly inside one grid that borders another.
    for face in faces:
        owner = max((a, b, c), key=lambda g: g.geom.intersection(face).area)
        others = [g for g in (a, b, c) if g.key != owner.key
                  and g.geom.intersection(face).length > 0]
        if owner.geom.intersection(face).area > 0.5 * face.area and others:
            p = face.representative_point()
            plans.move_blocks(conn, plan.id, others[0].key, [[p.x, p.y]])
            moved = store.load_one(conn, plan.id, others[0].key)
            assert moved.geom.covers(p)
            return
    pytest.skip("no block here borders a second grid")


def test_snap_to_roads_moves_edges_onto_nearby_roads(conn, plan):
    from gis.planning import checks

    a = grids(conn, plan)[0]
    before = {r["key"]: r["road_share"] for r in checks.check_plan(conn, plan.id)["areas"]}
    # Pull the grid's outline 5 m inward, then snap it back onto the roads.
    plans.reshape(conn, plan.id, a.key, a.geom.buffer(-0.00005, join_style="mitre"))
    shrunk = {r["key"]: r["road_share"] for r in checks.check_plan(conn, plan.id)["areas"]}
    out = plans.snap_to_roads(conn, plan.id, a.key, tolerance_m=12)
    after = {r["key"]: r["road_share"] for r in checks.check_plan(conn, plan.id)["areas"]}
    assert out.updated and after[a.key] >= shrunk[a.key]
    assert before[a.key] is not None


def test_snap_with_no_road_near_is_422(conn, plan):
    a = grids(conn, plan)[0]
    with pytest.raises(InvalidInput, match="tolerance_m"):
        plans.snap_to_roads(conn, plan.id, a.key, tolerance_m=500)


# --- scope -----------------------------------------------------------------------------------

OTHER_STREET = "910101002"  # a street that does not hold COMMUNITY


def test_check_scope_admits_accounts_whose_area_holds_the_plans_root(conn, plan):
    from tests.factories import account

    inside, _ = account(conn, "planner", areas=(COMMUNITY[:9],))
    unscoped, _ = account(conn, "planner")
    plans.check_scope(conn, inside, plan.id)
    plans.check_scope(conn, unscoped, plan.id)


def test_check_scope_refuses_a_plan_rooted_outside_the_area_scope(conn, plan):
    from gis.auth import Forbidden
    from gis.errors import NotFound
    from tests.factories import account

    outside, _ = account(conn, "planner", areas=(OTHER_STREET,))
    with pytest.raises(Forbidden, match=f"plan {plan.id} covers {COMMUNITY}, outside"):
        plans.check_scope(conn, outside, plan.id)
    whole = conn.execute(text("INSERT INTO plans (jurisdiction_id, name) VALUES (:j, 'whole')"
                              " RETURNING id"), {"j": plan.jurisdiction_id}).scalar_one()
    with pytest.raises(Forbidden, match="the whole jurisdiction"):
        plans.check_scope(conn, outside, whole)
    with pytest.raises(NotFound):
        plans.check_scope(conn, outside, 987654321)

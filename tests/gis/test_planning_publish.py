"""Diff and publish: a new boundary version, codes, history, cases moved with an event."""

from __future__ import annotations

from datetime import timedelta

import pytest
import shapely
from shapely.geometry import LineString
from sqlalchemy import Connection, text

from gis import areas
from gis.errors import Conflict, InvalidInput
from gis.planning import plans, publish, store

COMMUNITY = "910102002002"


def split_first(conn: Connection, plan: store.PlanInfo) -> store.PArea:
    g = store.load(conn, plan.id, level=3)[1]
    x0, y0, x1, y1 = g.geom.bounds
    c = g.geom.representative_point()
    plans.split(conn, plan.id, g.key, LineString([(c.x, y0 - 0.001), (c.x, y1 + 0.001)]))
    return g


def open_case_in(conn: Connection, area_code: str, geom) -> int:
    cat = conn.execute(text("SELECT id FROM categories ORDER BY id LIMIT 1")).scalar()
    if cat is None:
        from gis.categories import seed_defaults
        seed_defaults(conn)
        cat = conn.execute(text("SELECT id FROM categories ORDER BY id LIMIT 1")).scalar()
    p = geom.representative_point()
    return int(conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, geom)"
        " SELECT jurisdiction_id, :c, 'hotline', id, 'dispatched',"
        " ST_SetSRID(ST_MakePoint(:x, :y), 4326) FROM areas WHERE code = :a AND valid_to IS NULL"
        " RETURNING id"), {"c": cat, "a": area_code, "x": p.x, "y": p.y}).scalar_one())


def test_diff_lists_new_and_changed_grids_and_moved_households(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    split_first(conn, plan)
    d = publish.diff(conn, plan.id)
    assert len(d["grids"]["new"]) == 1 and len(d["grids"]["changed"]) == 1
    assert d["grids"]["unchanged"] == 2
    assert d["households_moved"] == d["grids"]["new"][0]["households"] > 0
    roles = {f["properties"]["role"] for f in d["features"]["features"]}
    assert roles == {"old", "new"}


def test_publish_versions_changed_grids_and_keeps_unchanged_ones(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    old_ids = dict(conn.execute(text(
        "SELECT code, id FROM areas WHERE code LIKE :c AND valid_to IS NULL"),
        {"c": COMMUNITY + "%"}).all())
    g = split_first(conn, plan)
    out = publish.publish(conn, plan.id)
    assert out["new_codes"] == [COMMUNITY + "04"]
    now = dict(conn.execute(text(
        "SELECT code, id FROM areas WHERE code LIKE :c AND valid_to IS NULL"),
        {"c": COMMUNITY + "%"}).all())
    unchanged = [c for c in old_ids if c != g.code]
    assert all(now[c] == old_ids[c] for c in unchanged)  # same rows, not re-versioned
    assert now[g.code] != old_ids[g.code]
    closed = conn.execute(text("SELECT valid_to FROM areas WHERE id = :i"),
                          {"i": old_ids[g.code]}).scalar()
    assert closed.isoformat() == out["published_at"]
    new_from = conn.execute(text("SELECT valid_from FROM areas WHERE id = :i"),
                            {"i": now[COMMUNITY + "04"]}).scalar()
    assert new_from == closed  # the same instant
    assert store.get_plan(conn, plan.id).status == "published"


def test_old_boundaries_stay_queryable_with_at(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    g = split_first(conn, plan)
    out = publish.publish(conn, plan.id)
    new = store.load(conn, plan.id, level=3)
    piece = next(a for a in new if a.code is None)
    p = piece.geom.representative_point()
    t = conn.execute(text("SELECT valid_to FROM areas WHERE code = :c AND valid_to IS NOT"
                          " NULL"), {"c": g.code}).scalar()
    after = areas.locate(conn, p.x, p.y, at=t + timedelta(seconds=1))
    before = areas.locate(conn, p.x, p.y, at=t - timedelta(seconds=1))
    assert after["areas"][-1]["code"] == COMMUNITY + "04"
    assert before["areas"][-1]["code"] == g.code
    assert out["closed"] == 1


def test_open_cases_move_to_their_new_grid_with_a_regrid_event(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    g = split_first(conn, plan)
    piece = next(a for a in store.load(conn, plan.id, level=3) if a.code is None)
    # The demo city may already hold open cases there (its cases are dated from today).
    already = publish.diff(conn, plan.id)["open_cases"]["affected"]
    case = open_case_in(conn, g.code, piece.geom)
    d = publish.diff(conn, plan.id)
    assert d["open_cases"]["affected"] == already + 1
    assert case in {c["id"] for c in d["open_cases"]["cases"]}
    out = publish.publish(conn, plan.id)
    assert out["cases_moved"] == already + 1
    code = conn.execute(text("SELECT a.code FROM cases c JOIN areas a ON a.id = c.area_id"
                             " WHERE c.id = :c"), {"c": case}).scalar()
    assert code == COMMUNITY + "04"
    event = conn.execute(text("SELECT action, from_state, to_state, data FROM case_events"
                              " WHERE case_id = :c"), {"c": case}).one()
    assert event.action == "regrid" and event.from_state == event.to_state == "dispatched"
    assert event.data["from_area_code"] == g.code


def test_a_plan_that_fails_its_checks_is_not_published(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    g = store.load(conn, plan.id, level=3)[0]
    conn.execute(text("UPDATE plan_areas SET geom = ST_Multi(ST_GeomFromWKB(:g, 4326))"
                      " WHERE id = :k"), {"g": shapely.to_wkb(g.geom.buffer(-0.0001)), "k": g.key})
    before = conn.execute(text("SELECT count(*), max(valid_from) FROM areas")).one()
    with pytest.raises(InvalidInput, match="fails") as err:
        publish.publish(conn, plan.id)
    assert err.value.extra["problems"][0]["kind"] == "gap"
    assert err.value.extra["geometry"] is not None
    assert conn.execute(text("SELECT count(*), max(valid_from) FROM areas")).one() == before
    assert store.get_plan(conn, plan.id).status == "draft"


def test_publishing_over_boundaries_changed_since_is_409(conn):
    first = plans.create_plan(conn, root=COMMUNITY)
    second = plans.create_plan(conn, root=COMMUNITY)
    split_first(conn, first)
    publish.publish(conn, first.id)
    split_first(conn, second)
    with pytest.raises(Conflict, match="changed after this plan"):
        publish.publish(conn, second.id)


def test_merge_retires_a_code_and_never_reuses_it(conn):
    plan = plans.create_plan(conn, root=COMMUNITY)
    a, b, c = store.load(conn, plan.id, level=3)
    pair = next((x, y) for x, y in ((a, b), (b, c), (a, c))
                if x.geom.intersection(y.geom).length > 0)
    plans.merge(conn, plan.id, [pair[0].key, pair[1].key])
    publish.publish(conn, plan.id)
    plan2 = plans.create_plan(conn, root=COMMUNITY)
    split_first(conn, plan2)
    out = publish.publish(conn, plan2.id)
    assert out["new_codes"] == [COMMUNITY + "04"]  # 03 stays retired even if it was merged

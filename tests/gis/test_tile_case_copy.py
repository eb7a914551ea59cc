"""``case_tiles`` (migration 0009_tile_speed): the narrow, spatially ordered copy case tiles read
stays equal to ``cases`` through every write, holds nothing private, and draws the same tiles."""

from __future__ import annotations

from datetime import timedelta

import mapbox_vector_tile
import mercantile
import pytest
from sqlalchemy import Connection, text

from gis import tiles
from layers.registry import get_layer
from tests.factories import X0, Y0
from tests.layers.mapdata import REPORTED_AT, MapCity, add_case, map_city

COPY = ("SELECT id, category_id, urgency, status, reported_at, due_at, ST_AsEWKB(geom) AS geom,"
        " category FROM case_tiles ORDER BY id")
FROM_CASES = ("SELECT c.id, c.category_id, c.urgency, c.status, c.reported_at, c.due_at,"
              " ST_AsEWKB(c.geom) AS geom, cat.code FROM cases c"
              " LEFT JOIN categories cat ON cat.id = c.category_id ORDER BY c.id")


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _copy_matches_cases(conn: Connection) -> bool:
    return conn.execute(text(COPY)).all() == conn.execute(text(FROM_CASES)).all()


def test_copy_follows_inserts_updates_and_deletes(conn: Connection, city: MapCity) -> None:
    cats = city.categories
    extra = add_case(conn, city.city.jurisdiction_id, cats["E990101"], X0 + 0.03, Y0 + 0.003)
    first, second, third = city.case_ids[:3]
    conn.execute(text("UPDATE cases SET status = 'closed', urgency = 3 WHERE id = :id"),
                 {"id": first})
    conn.execute(text("UPDATE cases SET geom = ST_SetSRID(ST_MakePoint(10.5, 50.5), 4326),"
                      " due_at = now() WHERE id = :id"), {"id": second})
    conn.execute(text("UPDATE cases SET category_id = :c, reported_at = reported_at"
                      " - interval '1 day' WHERE id = :id"), {"c": cats["C990101"], "id": third})
    conn.execute(text("DELETE FROM cases WHERE id = :id"), {"id": extra})
    assert _copy_matches_cases(conn)


def test_updates_a_tile_does_not_show_write_nothing(conn: Connection, city: MapCity) -> None:
    before = conn.execute(text("SELECT xmin::text FROM case_tiles WHERE id = :id"),
                          {"id": city.case_ids[0]}).scalar_one()
    conn.execute(text("UPDATE cases SET description = 'edited', escalation_level = 1"
                      " WHERE id = :id"), {"id": city.case_ids[0]})
    after = conn.execute(text("SELECT xmin::text FROM case_tiles WHERE id = :id"),
                         {"id": city.case_ids[0]}).scalar_one()
    assert before == after and _copy_matches_cases(conn)


def test_copy_follows_a_category_code_change(conn: Connection, city: MapCity) -> None:
    conn.execute(text("UPDATE categories SET code = 'E990199' WHERE code = 'E990101'"))
    assert _copy_matches_cases(conn)
    assert conn.execute(text("SELECT count(*) FROM case_tiles WHERE category = 'E990199'")
                        ).scalar_one() == 2


def test_rebuild_repairs_a_copy_bypassed_by_triggers(conn: Connection, city: MapCity) -> None:
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    conn.execute(text("UPDATE cases SET status = 'closed' WHERE id = :id"),
                 {"id": city.case_ids[0]})
    conn.execute(text("SET LOCAL session_replication_role = origin"))
    assert not _copy_matches_cases(conn)
    conn.execute(text("SELECT gridgov_rebuild_case_tiles()"))
    assert _copy_matches_cases(conn)


def test_copy_holds_no_private_column(conn: Connection) -> None:
    columns = set(conn.execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'case_tiles'"
    )).scalars())
    assert columns == {"id", "category_id", "urgency", "status", "reported_at", "due_at",
                       "geom", "category"}


FILTERS = [{}, {"status": ("closed", "rejected")}, {"category": ("E99%",)},
           {"category": ("C%",), "status": ("in_progress",)},
           {"since": REPORTED_AT + timedelta(days=1), "until": REPORTED_AT + timedelta(days=4)}]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("z", [13, 14, 16])
def test_case_tiles_from_the_copy_equal_tiles_from_cases(
        conn: Connection, city: MapCity, filters: dict, z: int) -> None:
    spec = get_layer("cases")
    assert spec.tiles_from.table == "case_tiles"
    drawn = []
    for t in mercantile.tiles(X0 - 0.005, Y0 + 0.005, X0 + 0.04, Y0 + 0.02, zooms=[z]):
        def draw(source: tiles.TableSource, t: mercantile.Tile = t) -> bytes:
            return tiles.feature_tile(conn, source, layer="cases", z=z, x=t.x, y=t.y,
                                      filters=filters, limit=spec.limit, buffer=spec.buffer)
        drawn.append(draw(spec.tiles_from))
        assert drawn[-1] == draw(spec.source)
    assert any(drawn) or filters


def test_a_tile_at_its_limit_keeps_the_lowest_ids(conn: Connection, city: MapCity) -> None:
    spec = get_layer("cases")
    t = mercantile.tile(X0 + 0.002, Y0 + 0.012, 13)
    few = tiles.feature_tile(conn, spec.tiles_from, layer="cases", z=13, x=t.x, y=t.y, limit=2)
    ids = sorted(f["id"] for f in mapbox_vector_tile.decode(few)["cases"]["features"])
    assert ids == sorted(city.case_ids)[:2]


def test_a_large_update_after_a_small_one_in_the_same_session_stays_linear(
        conn: Connection, city: MapCity) -> None:
    """PL/pgSQL caches a static statement's plan per session. The copy's update branch joins
    the two transition tables; planned for a one-row update (a nested loop) and reused for
    20,000 rows it took minutes (test_live.py hung in CI). The branch now plans per
    statement, so a 20,000-row update after a one-row update finishes in seconds; the
    statement timeout turns a regression into a failure instead of a hang. The KPI
    trigger's update branch had the same trap (35 s here; 0012_trigger_plans): the budget
    covers every trigger of the statement."""
    jid = city.city.jurisdiction_id
    cat = city.categories["E990101"]
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, urgency, status, reported_at,"
        " due_at, geom) SELECT :j, :c, 'hotline', 2, 'reported', now(), now() + interval '1 day',"
        " ST_SetSRID(ST_MakePoint(:x + g * 1e-7, :y), 4326) FROM generate_series(1, 20000) g"),
        {"j": jid, "c": cat, "x": X0 + 0.01, "y": Y0 + 0.001})
    conn.execute(text("UPDATE cases SET status = 'accepted' WHERE id = :id"),
                 {"id": city.case_ids[0]})
    conn.execute(text("SET LOCAL statement_timeout = '25s'"))
    conn.execute(text("UPDATE cases SET status = 'handled' WHERE jurisdiction_id = :j"),
                 {"j": jid})
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    assert _copy_matches_cases(conn)

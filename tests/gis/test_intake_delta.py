"""Migration 0011_intake_delta: new open cases add their counts to kpi_daily, kpi_area and
kpi_area_quarter in one statement (the delta path), inserts invalidate tiles with static SQL,
the live item is inlined — each equal to what the general path or a full recompute gives — and
a prepared intake sends its plan-mode switches with its neighbouring statements."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from gis.errors import InvalidInput
from gis.intake import Report, create_case
from tests.factories import case_world
from tests.gis.test_kpis import churn_cases

# The insert of the demo's first cases again, with the statuses, deadlines and ratings of a
# new report or of an import of open cases (no time to close): the delta path.
OPEN_INSERT = """
INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, department_id, status,
                   reported_at, due_at, satisfaction, geom)
SELECT c.jurisdiction_id, c.category_id, 'app', c.area_id, c.department_id, s.status,
       now() - make_interval(days => s.days_ago), CASE WHEN s.days_ago % 2 = 0 THEN now() END,
       CASE WHEN s.days_ago % 3 = 0 THEN 4 END, c.geom
  FROM (SELECT * FROM cases ORDER BY id LIMIT :cases) c
 CROSS JOIN (VALUES ('reported', 0), ('reported', 0), ('handled', 1), ('reopened', 2),
                    ('rejected', 3), ('verified', 40), ('accepted', 100)) AS s(status, days_ago)
"""
CLOSED_INSERT = """
INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, reported_at, due_at,
                   closed_at, geom)
SELECT c.jurisdiction_id, c.category_id, 'app', c.area_id, s.status, now() - interval '3 days',
       now(), CASE WHEN s.status = 'closed' THEN now() - interval '1 day' END, c.geom
  FROM (SELECT * FROM cases ORDER BY id LIMIT 2) c
 CROSS JOIN (VALUES ('closed'), ('reported')) AS s(status)
"""
# kpi_daily with its times to close sorted (a multiset: rebuilds may order it otherwise).
DAILY = ("SELECT k.day, k.area_id, k.category_id, k.department_id, k.n, k.n_due, k.n_closed,"
         " k.n_on_time, k.n_rated, k.sat_sum, k.n_handled, k.n_reopened, k.n_verify,"
         " k.n_verify_pass, (SELECT array_agg(t ORDER BY t) FROM unnest(k.ttc_s) t)"
         " FROM kpi_daily k ORDER BY 1, 2, 3, 4")
AREA = "SELECT * FROM kpi_area ORDER BY monthly, period, area_id"
QUARTER = "SELECT * FROM kpi_area_quarter ORDER BY period, area_id"


def rollups(conn: Connection) -> tuple[list[Any], ...]:
    return tuple(list(conn.execute(text(sql)).all()) for sql in (DAILY, AREA, QUARTER))


def recomputed(conn: Connection) -> tuple[list[Any], ...]:
    """The three rollups recomputed from ``cases`` and ``case_events`` (rolled back after)."""
    savepoint = conn.begin_nested()
    conn.execute(text("SELECT gridgov_kpi_rebuild()"))
    conn.execute(text("SELECT gridgov_kpi_area_rebuild(), gridgov_kpi_quarter_rebuild()"))
    found = rollups(conn)
    savepoint.rollback()
    return found


def rollup_trigger_calls(conn: Connection) -> int:
    """Calls of the kpi_daily → kpi_area / kpi_area_quarter trigger functions counted by this
    server process and not yet reported (``track_functions`` on for the transaction). Earlier
    transactions may be in it too (it is reset when the process reports, never inside a
    transaction): compare two readings in one transaction."""
    return int(conn.execute(text(
        "SELECT COALESCE(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname IN"
        " ('gridgov_kpi_area_daily', 'gridgov_kpi_quarter_daily')")).scalar_one())


@pytest.fixture
def tracked(conn: Connection) -> Connection:
    conn.execute(text("SET LOCAL track_functions = 'pl'"))
    return conn


@pytest.mark.parametrize("cases", [1, 5])
def test_open_cases_take_the_delta_path_and_equal_a_full_recompute(tracked: Connection,
                                                                   cases: int) -> None:
    before, calls = rollups(tracked), rollup_trigger_calls(tracked)
    tracked.execute(text(OPEN_INSERT), {"cases": cases})
    assert rollup_trigger_calls(tracked) == calls      # the rollup triggers stood aside
    after = rollups(tracked)
    assert after != before and after == recomputed(tracked)


def test_closed_cases_take_the_general_path_and_stay_exact(tracked: Connection) -> None:
    calls = rollup_trigger_calls(tracked)
    tracked.execute(text(CLOSED_INSERT))
    assert rollup_trigger_calls(tracked) > calls
    assert rollups(tracked) == recomputed(tracked)


def test_the_delta_flag_is_cleared_when_its_statement_ends(tracked: Connection) -> None:
    tracked.execute(text(OPEN_INSERT), {"cases": 1})
    assert tracked.execute(text("SELECT current_setting('gridgov.kpi_delta', true)")
                           ).scalar_one() in (None, "")
    calls = rollup_trigger_calls(tracked)
    churn_cases(tracked, move_back_days=100)           # updates, events, deletes: general path
    assert rollup_trigger_calls(tracked) > calls
    assert rollups(tracked) == recomputed(tracked)


def test_intakes_in_one_grid_keep_every_rollup_exact(conn: Connection) -> None:
    world = case_world(conn)
    for street, grid, category in ((1, 1, "E010101"), (1, 1, "E010101"), (1, 1, "C020101"),
                                   (2, 2, "E010101")):
        lon, lat = world.point(street, grid)
        create_case(conn, Report(category=category, lon=lon, lat=lat))
    assert rollups(conn) == recomputed(conn)


# The statement gridgov_tile_invalidate() (0002_tiles) runs with EXECUTE for other operations,
# over the geometries of ``ids``: what the static INSERT path must write.
DYNAMIC_INVALIDATION = """
WITH changed AS (
    SELECT Box2D(g) AS b FROM (SELECT geom AS g FROM cases WHERE id = ANY(:ids)) s
     WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
), total AS (
    SELECT count(*) AS n FROM changed
), keyed AS (
    SELECT CASE WHEN total.n <= 64 THEN b::text
                ELSE floor((ST_XMin(b) + ST_XMax(b)) * 5)::text || ':'
                     || floor((ST_YMin(b) + ST_YMax(b)) * 5)::text END AS k, b
      FROM changed, total
)
SELECT 'cases', ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
  FROM (SELECT ST_Extent(b) AS e, count(*) AS n FROM keyed GROUP BY k) x
 ORDER BY 2, 3, 4, 5
"""
WRITTEN = ("SELECT table_name, lon_min, lat_min, lon_max, lat_max, n_rows FROM tile_invalidations"
           " WHERE seq > :seq ORDER BY 2, 3, 4, 5")


@pytest.mark.parametrize("rows", [1, 3, 70])   # over 64 boxes: grouped by 0.2° keys
def test_insert_invalidates_the_boxes_the_dynamic_statement_would(conn: Connection,
                                                                  rows: int) -> None:
    seq = conn.execute(text("SELECT COALESCE(max(seq), 0) FROM tile_invalidations")).scalar()
    ids = conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, geom)"
        " SELECT jurisdiction_id, category_id, 'app', area_id, 'reported', geom"
        " FROM (SELECT * FROM cases ORDER BY id LIMIT :n) c RETURNING id"), {"n": rows}
    ).scalars().all()
    written = conn.execute(text(WRITTEN), {"seq": seq}).all()
    assert written and written == conn.execute(text(DYNAMIC_INVALIDATION), {"ids": ids}).all()


@pytest.mark.parametrize("wkt", ["POINT(24.94 60.17)",
                                 "POLYGON((24.9 60.1, 25 60.1, 25 60.2, 24.9 60.1))"])
def test_live_item_anchors_points_and_shapes_as_before(conn: Connection, wkt: str) -> None:
    item, lon, lat = conn.execute(text(
        "WITH c AS (INSERT INTO cases (jurisdiction_id, category_id, channel, status, geom)"
        " SELECT jurisdiction_id, category_id, 'app', 'reported', ST_GeomFromText(:w, 4326)"
        " FROM cases LIMIT 1 RETURNING *)"
        " SELECT gridgov_case_item(CAST(ROW(c.*) AS cases), 'insert'), ST_X(p), ST_Y(p)"
        " FROM c, LATERAL (SELECT ST_PointOnSurface(c.geom) AS p) a"), {"w": wkt}).one()
    assert (item["op"], item["lon"], item["lat"]) == ("insert", lon, lat)


def test_a_warm_prepared_intake_is_two_round_trips(conn: Connection) -> None:
    world = case_world(conn)
    lon, lat = world.point(1, 2)
    create_case(conn, Report(category="E010101", lon=lon, lat=lat))   # prepares both
    sent: list[str] = []
    listener = lambda *args: sent.append(args[2])  # noqa: E731 - (conn, cursor, statement…)
    event.listen(conn, "before_cursor_execute", listener)
    try:
        create_case(conn, Report(category="E010101", lon=lon, lat=lat))
    finally:
        event.remove(conn, "before_cursor_execute", listener)
    assert [s.split(";")[0] for s in sent] == ["SET LOCAL plan_cache_mode = force_generic_plan",
                                               "RESET plan_cache_mode"]
    assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"


def test_a_refused_or_replayed_report_resets_the_plan_mode(conn: Connection) -> None:
    world = case_world(conn)
    lon, lat = world.point(2, 1)
    for _ in range(2):
        with pytest.raises(InvalidInput):
            create_case(conn, Report(category="NOPE", lon=lon, lat=lat))
        assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"
        create_case(conn, Report(category="E010101", lon=lon, lat=lat, idempotency_key="k-9"))
        assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"

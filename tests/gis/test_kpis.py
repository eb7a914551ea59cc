"""KPIs: the rollup answers exactly like the direct computation, stays exact through the
lifecycle, and keeps comparability across redraws."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from gis.errors import InvalidInput
from gis.kpis import KpiQuery, compute_kpis, kpi_series, parse_period, set_target

FIELDS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
          "n_reopened", "n_verify", "n_verify_pass", "mean_ttc_h", "p90_ttc_h")


def _same(a: dict, b: dict) -> None:
    assert {f: a[f] for f in FIELDS} == {f: b[f] for f in FIELDS}


@pytest.mark.parametrize("query", [
    KpiQuery(level="grid"), KpiQuery(level="street", period="90d"),
    KpiQuery(by="department", category="E01"), KpiQuery(by="category", level="district"),
    KpiQuery(level="community", area="910101001"),
])
def test_rollup_equals_direct_computation(conn: Connection, query: KpiQuery) -> None:
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    _same(fast["total"], slow["total"])
    assert [r["key"] for r in fast["rows"]] == [r["key"] for r in slow["rows"]]
    for a, b in zip(fast["rows"], slow["rows"], strict=True):
        _same(a, b)


def test_demo_has_a_year_of_cases_with_lifecycles(conn: Connection) -> None:
    total = compute_kpis(conn, KpiQuery(level="district"))["total"]
    assert total["n"] > 3000
    assert 0.5 < total["closure_rate"] <= 1 and 0 < total["on_time_rate"] < total["closure_rate"]
    assert 0 < total["reopen_rate"] < 0.2 and 0.8 < total["verify_pass_rate"] < 1
    assert 1 <= total["satisfaction"] <= 5


def _rollup(conn: Connection) -> list[tuple]:
    # ttc_s is a multiset: compare it sorted.
    return list(conn.execute(text(
        "SELECT k.*, (SELECT array_agg(t ORDER BY t) FROM unnest(k.ttc_s) t) AS ttc"
        " FROM kpi_daily k ORDER BY 1, 2, 3, 4")).tuples())


def test_rollup_stays_exact_through_updates_events_and_deletes(conn: Connection) -> None:
    ids = conn.execute(text("SELECT id FROM cases WHERE status = 'closed' ORDER BY id LIMIT 3")
                       ).scalars().all()
    conn.execute(text("UPDATE cases SET status = 'reopened', closed_at = NULL WHERE id = :i"),
                 {"i": ids[0]})
    conn.execute(text("UPDATE cases SET department_id = (SELECT id FROM departments"
                      " WHERE code = 'PARKS'), satisfaction = 1 WHERE id = :i"), {"i": ids[1]})
    conn.execute(text("INSERT INTO case_events (case_id, action, from_state, to_state, at)"
                      " VALUES (:i, 'verify', 'handled', 'verified', now())"), {"i": ids[2]})
    conn.execute(text("UPDATE cases SET escalation_level = 2 WHERE id = :i"), {"i": ids[2]})
    conn.execute(text("DELETE FROM case_summons WHERE case_id = :i"), {"i": ids[1]})
    kept = [r[:8] + r[9:] for r in _rollup(conn)]
    conn.execute(text("SELECT gridgov_kpi_rebuild()"))
    assert kept == [r[:8] + r[9:] for r in _rollup(conn)]


def test_an_open_case_not_yet_due_is_not_due_to_close(conn: Connection) -> None:
    before = compute_kpis(conn, KpiQuery(level="district", period="30d"))["total"]
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, reported_at,"
        " due_at, geom) SELECT c.jurisdiction_id, c.category_id, 'app', c.area_id, 'dispatched',"
        " now(), now() + interval '2 days', c.geom FROM cases c ORDER BY c.id LIMIT 1"))
    after = compute_kpis(conn, KpiQuery(level="district", period="30d"))["total"]
    assert after["n"] == before["n"] + 1
    assert after["n_due"] == before["n_due"]


def test_basis_current_follows_a_redrawn_grid(conn: Connection) -> None:
    grid = conn.execute(text(
        "SELECT a.id, a.code FROM areas a JOIN cases c ON c.area_id = a.id WHERE a.level = 3"
        " AND a.valid_to IS NULL GROUP BY a.id, a.code ORDER BY count(*) DESC LIMIT 1")).one()
    # Redraw: the grid is retired and the same polygon comes back under a new code.
    conn.execute(text("UPDATE areas SET valid_to = now() WHERE id = :i"), {"i": grid.id})
    conn.execute(text(
        "INSERT INTO areas (jurisdiction_id, level, code, name, parent_id, valid_from, geom)"
        " SELECT jurisdiction_id, level, code || 'X', name || ' (redrawn)', parent_id, now(),"
        " geom FROM areas WHERE id = :i"), {"i": grid.id})
    reported = {r["code"]: r for r in compute_kpis(conn, KpiQuery(level="grid"))["rows"]}
    current = {r["code"]: r for r in compute_kpis(conn, KpiQuery(level="grid",
                                                                 basis="current"))["rows"]}
    assert reported[grid.code]["n"] > 0 and reported.get(grid.code + "X", {"n": 0})["n"] == 0
    assert current[grid.code + "X"]["n"] == reported[grid.code]["n"]
    assert grid.code not in current
    direct = compute_kpis(conn, KpiQuery(level="grid", basis="current", engine="cases"))
    _same(compute_kpis(conn, KpiQuery(level="grid", basis="current"))["total"], direct["total"])


def test_targets_are_configuration(conn: Connection) -> None:
    set_target(conn, "satisfaction", target=5.0)
    loose = compute_kpis(conn, KpiQuery(level="district"))
    set_target(conn, "satisfaction", target=1.0)
    strict = compute_kpis(conn, KpiQuery(level="district"))
    assert "satisfaction" in strict["total"]["targets_met"]
    assert "satisfaction" not in loose["total"]["targets_met"]
    assert strict["total"]["score"] > loose["total"]["score"]


def test_rank_by_a_lower_is_better_kpi_puts_the_smallest_first(conn: Connection) -> None:
    rows = compute_kpis(conn, KpiQuery(level="grid", rank_by="p90_ttc_h"))["rows"]
    values = [r["p90_ttc_h"] for r in rows if r["p90_ttc_h"] is not None]
    assert values == sorted(values) and rows[0]["rank"] == 1


def test_series_months_add_up_to_the_period(conn: Connection) -> None:
    series = kpi_series(conn, KpiQuery(period="365d"), interval="month")
    total = compute_kpis(conn, KpiQuery(level="district", period="365d"))["total"]
    assert sum(r["n"] for r in series["rows"]) == total["n"]


@pytest.mark.parametrize(("period", "expected"), [
    ("2026", (date(2026, 1, 1), date(2027, 1, 1))),
    ("2026-Q4", (date(2026, 10, 1), date(2027, 1, 1))),
    ("2026-12", (date(2026, 12, 1), date(2027, 1, 1))),
    ("2026-W01", (date(2025, 12, 29), date(2026, 1, 5))),
    ("7d", (date(2026, 11, 14), date(2026, 11, 21))),
])
def test_periods(period: str, expected: tuple[date, date]) -> None:
    assert parse_period(period, None, None, date(2026, 11, 20)) == expected


@pytest.mark.parametrize(("args", "field"), [
    (("2026-13", None, None), "period"), (("soon", None, None), "period"),
    ((None, date(2026, 5, 2), date(2026, 5, 1)), "until"),
    ((None, date(2026, 5, 1), date(2026, 5, 1)), "until"),
    (("2026", date(2026, 5, 1), None), "period"),
])
def test_bad_periods_name_the_parameter(args: tuple[str | None, date | None, date | None],
                                        field: str) -> None:
    period, since, until = args
    with pytest.raises(InvalidInput) as err:
        parse_period(period, since, until, today=date(2026, 11, 20))
    assert err.value.field == field


@pytest.mark.parametrize(("query", "field"), [
    (KpiQuery(level="ward"), "level"), (KpiQuery(by="mood"), "by"),
    (KpiQuery(category="Z99"), "category"), (KpiQuery(area="000"), "area"),
    (KpiQuery(basis="someday"), "basis"), (KpiQuery(rank_by="luck"), "rank_by"),
])
def test_bad_queries_name_the_parameter(conn: Connection, query: KpiQuery, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        compute_kpis(conn, query)
    assert err.value.field == field


def test_kpis_of_a_week_ago_are_deterministic_in_now(conn: Connection) -> None:
    now = datetime.now(UTC) - timedelta(days=7)
    a = compute_kpis(conn, KpiQuery(level="street"), now=now)
    b = compute_kpis(conn, KpiQuery(level="street"), now=now)
    assert a["rows"] == b["rows"]


@pytest.mark.parametrize("level", ["grid", "street", "district"])
def test_mean_and_p90_equal_percentile_cont_over_the_cases(conn: Connection, level: str) -> None:
    """The rollup's exact p90 (ranks in one sort) against PostgreSQL's own percentile_cont
    straight over ``cases``, group by group and in total."""
    result = compute_kpis(conn, KpiQuery(level=level, period="365d"))
    rank = {"grid": 3, "street": 1, "district": 0}[level]
    rows = conn.execute(text(
        """
        WITH RECURSIVE chain AS (
            SELECT a.id AS start_id, a.id, a.parent_id, a.level, a.code FROM areas a
            UNION ALL
            SELECT ch.start_id, p.id, p.parent_id, p.level, p.code
              FROM chain ch JOIN areas p ON p.id = ch.parent_id
        ), ttc AS (
            SELECT g.code, EXTRACT(EPOCH FROM c.closed_at - c.reported_at) AS s
              FROM cases c JOIN jurisdictions j ON j.id = c.jurisdiction_id
              JOIN chain g ON g.start_id = c.area_id AND g.level = :rank
             WHERE c.status = 'closed' AND c.due_at IS NOT NULL AND c.closed_at IS NOT NULL
               AND c.jurisdiction_id = :j
               AND c.reported_at >= CAST(:since AS timestamp) AT TIME ZONE j.timezone
               AND c.reported_at < CAST(:until AS timestamp) AT TIME ZONE j.timezone
        )
        SELECT code, round(CAST(avg(GREATEST(0, round(s))) / 3600 AS numeric), 2),
               round(CAST(percentile_cont(0.9) WITHIN GROUP (ORDER BY GREATEST(0, round(s)))
                          / 3600 AS numeric), 2)
          FROM ttc GROUP BY GROUPING SETS ((code), ())
        """), {"rank": rank, "j": result["jurisdiction_id"], "since": result["since"],
               "until": result["until"]}).all()
    expected = {code: (float(mean), float(p90)) for code, mean, p90 in rows}
    got = {r["key"]: (r["mean_ttc_h"], r["p90_ttc_h"]) for r in result["rows"]
           if r["p90_ttc_h"] is not None}
    got[None] = (result["total"]["mean_ttc_h"], result["total"]["p90_ttc_h"])
    assert len(got) > 1 and got == expected


def churn_cases(conn: Connection, *, move_back_days: int) -> None:
    """Every kind of write a rollup must follow: a reopen, a report moved ``move_back_days``
    back, a verify event, two new closed cases and a delete."""
    ids = conn.execute(text("SELECT id FROM cases WHERE status = 'closed' ORDER BY id LIMIT 3")
                       ).scalars().all()
    conn.execute(text("UPDATE cases SET status = 'reopened', closed_at = NULL WHERE id = :i"),
                 {"i": ids[0]})
    conn.execute(text("UPDATE cases SET reported_at = reported_at - make_interval(days => :d)"
                      " WHERE id = :i"), {"i": ids[1], "d": move_back_days})
    conn.execute(text("INSERT INTO case_events (case_id, action, from_state, to_state, at)"
                      " VALUES (:i, 'verify', 'handled', 'verified', now())"), {"i": ids[2]})
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, reported_at,"
        " due_at, closed_at, geom) SELECT c.jurisdiction_id, c.category_id, 'app', c.area_id,"
        " 'closed', now() - interval '3 days', now(), now() - interval '1 day', c.geom"
        " FROM cases c ORDER BY c.id LIMIT 2"))
    conn.execute(text("DELETE FROM cases WHERE id = (SELECT max(id) FROM cases)"))


def _area_rollup(conn: Connection) -> list[tuple]:
    return list(conn.execute(text("SELECT * FROM kpi_area ORDER BY monthly, period, area_id")
                             ).tuples())


def test_area_rollup_stays_exact_through_inserts_updates_events_and_deletes(
        conn: Connection) -> None:
    churn_cases(conn, move_back_days=40)
    kept = _area_rollup(conn)
    conn.execute(text("SELECT gridgov_kpi_area_rebuild()"))
    assert kept == _area_rollup(conn)
    assert conn.execute(text("SELECT bool_and(ttc_s = (SELECT array_agg(t ORDER BY t)"
                             " FROM unnest(ttc_s) t) OR ttc_s = '{}') FROM kpi_area")).scalar()


@pytest.mark.parametrize(("since", "until"), [
    (date(2026, 3, 17), date(2026, 9, 3)),   # ragged ends: days, whole months, days
    (date(2026, 6, 1), date(2026, 7, 1)),    # one whole month
    (date(2026, 6, 9), date(2026, 6, 23)),   # inside one month: days only
])
@pytest.mark.parametrize("level", ["grid", "street"])
def test_any_day_range_equals_the_direct_computation(
        conn: Connection, since: date, until: date, level: str) -> None:
    query = KpiQuery(level=level, since=since, until=until)
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    _same(fast["total"], slow["total"])
    for a, b in zip(fast["rows"], slow["rows"], strict=True):
        _same(a, b)


def add_closed_case(conn: Connection, area_id: int, reported: datetime, seconds: int) -> None:
    """A case in grid ``area_id`` reported at ``reported`` and closed ``seconds`` later."""
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status,"
        " reported_at, due_at, closed_at, geom)"
        " SELECT a.jurisdiction_id, (SELECT min(id) FROM categories), 'app', a.id, 'closed',"
        " CAST(:r AS timestamptz), CAST(:r AS timestamptz) + interval '30 days',"
        " CAST(:r AS timestamptz) + make_interval(secs => :s), ST_PointOnSurface(a.geom)"
        " FROM areas a WHERE a.id = :a"), {"a": area_id, "s": seconds, "r": reported})


def test_p90_is_exact_when_the_ranks_straddle_histogram_bins(conn: Connection) -> None:
    """Times to close on the bins' edges (600 s, 750 s, …): ranks 0.9·(n−1) fall between two
    bins and on values equal to an edge."""
    edges = conn.execute(text("SELECT gridgov_kpi_ttc_edges()")).scalar_one()
    grid = conn.execute(text("SELECT id, code FROM areas WHERE level = 3 AND valid_to IS NULL"
                             " ORDER BY code LIMIT 1")).one()
    for i, seconds in enumerate([edges[0] - 1, edges[0], edges[1] - 1, edges[1], edges[3],
                                 edges[3], edges[-1], edges[-1] + 10**6, 0, edges[2]]):
        add_closed_case(conn, grid.id, datetime(2020, 5, 3 + i, 12, tzinfo=UTC), seconds)
    query = KpiQuery(level="grid", area=grid.code, since=date(2020, 5, 1),
                     until=date(2020, 5, 20))
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    assert fast["rows"][0]["n_closed"] == 10
    _same(fast["rows"][0], slow["rows"][0])
    _same(fast["total"], slow["total"])


def test_a_large_update_after_a_one_row_update_keeps_the_rollup_exact(conn: Connection) -> None:
    """An update of more than 64 cases takes the trigger's planned-per-statement branch
    (0012_trigger_plans); a one-row update first leaves the kept static plan behind, as a
    lifecycle action does. Both branches must find every key the update touched."""
    ids = conn.execute(text("SELECT id FROM cases WHERE status = 'closed' ORDER BY id"
                            " LIMIT 300")).scalars().all()
    assert len(ids) == 300
    conn.execute(text("UPDATE cases SET satisfaction = 2 WHERE id = :i"), {"i": ids[0]})
    conn.execute(text("UPDATE cases SET satisfaction = 5, department_id = (SELECT id FROM"
                      " departments WHERE code = 'PARKS') WHERE id = ANY(:ids)"),
                 {"ids": ids[1:]})
    kept = [r[:8] + r[9:] for r in _rollup(conn)]
    conn.execute(text("SELECT gridgov_kpi_rebuild()"))
    assert kept == [r[:8] + r[9:] for r in _rollup(conn)]

"""KPIs over long periods: quarter rows (migration 0010_kpi_speed) stay exact, a period is read
as quarters, months and days (some taken away) counting every day once, and the answers equal
the direct computation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from gis.kpis import KpiQuery, _pieces, compute_kpis
from tests.gis.test_kpis import _same, add_closed_case, churn_cases


def _coverage(since: date, until: date, future: date) -> dict[date, int]:
    """How many times each day is counted by the pieces _pieces reads (signed)."""
    counted: dict[date, int] = {}
    for kind, lo, hi, sign in _pieces(since, until, future):
        assert lo < hi and (kind == "day" or lo.day == 1)
        assert kind != "quarter" or lo.month % 3 == 1
        day = lo
        while day < hi:
            counted[day] = counted.get(day, 0) + sign
            day += timedelta(days=1)
    return {d: n for d, n in counted.items() if n}


@pytest.mark.parametrize(("since", "until"), [
    (date(2025, 11, 24), date(2026, 11, 24)), (date(2026, 1, 1), date(2027, 1, 1)),
    (date(2026, 2, 15), date(2026, 8, 20)), (date(2026, 6, 9), date(2026, 6, 23)),
    (date(2026, 1, 31), date(2026, 3, 1)), (date(2025, 12, 1), date(2026, 4, 1)),
    (date(2026, 10, 25), date(2026, 11, 24)), (date(2026, 11, 2), date(2026, 11, 30)),
])
@pytest.mark.parametrize("future", [date(2026, 11, 25), date(2030, 1, 1)])
def test_a_period_is_read_as_quarters_months_and_days_once_each(
        since: date, until: date, future: date) -> None:
    days = (until - since).days
    assert _coverage(since, until, future) == {since + timedelta(days=i): 1
                                               for i in range(days)}


def test_the_last_365_days_read_three_quarters_and_the_current_month_as_one_row() -> None:
    pieces = _pieces(date(2025, 11, 24), date(2026, 11, 24), date(2026, 11, 25))
    assert ("quarter", date(2026, 1, 1), date(2026, 10, 1), 1) in pieces
    assert ("month", date(2026, 11, 1), date(2026, 12, 1), 1) in pieces
    assert ("day", date(2026, 11, 24), date(2026, 12, 1), -1) in pieces


def _quarters(conn: Connection) -> list[tuple]:
    return list(conn.execute(text("SELECT * FROM kpi_area_quarter ORDER BY period, area_id")
                             ).tuples())


def test_quarter_rollup_stays_exact_through_inserts_updates_events_and_deletes(
        conn: Connection) -> None:
    churn_cases(conn, move_back_days=100)
    kept = _quarters(conn)
    conn.execute(text("SELECT gridgov_kpi_quarter_rebuild()"))
    assert kept and kept == _quarters(conn)


def test_a_quarter_row_is_the_sum_of_its_month_rows(conn: Connection) -> None:
    columns = ["n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
               "n_reopened", "n_verify", "n_verify_pass", "ttc_sum",
               *(f"h{i:02d}" for i in range(40))]
    differ = conn.execute(text(
        f"""
        WITH m AS (
            SELECT CAST(date_trunc('quarter', period) AS date) AS period, area_id,
                   {", ".join(columns)}, ttc_s
              FROM kpi_area WHERE monthly
        ), s AS (
            SELECT period, area_id, ARRAY[{", ".join(f"sum({c})" for c in columns)}] AS sums
              FROM m GROUP BY 1, 2
        ), v AS (
            SELECT period, area_id, array_agg(t ORDER BY t) AS ttc_s
              FROM m CROSS JOIN LATERAL unnest(m.ttc_s) AS t GROUP BY 1, 2
        )
        SELECT count(*) FROM kpi_area_quarter q
          FULL JOIN (s LEFT JOIN v USING (period, area_id)) USING (period, area_id)
         WHERE CAST(ARRAY[{", ".join(f"q.{c}" for c in columns)}] AS numeric[])
               IS DISTINCT FROM s.sums
            OR q.ttc_s IS DISTINCT FROM COALESCE(v.ttc_s, '{{}}')
        """)).scalar_one()
    assert differ == 0


@pytest.mark.parametrize(("since", "until"), [
    (date(2025, 11, 24), date(2026, 11, 24)),  # days, a month, three quarters, a month, days
    (date(2026, 1, 1), date(2026, 10, 1)),     # quarters only
    (date(2026, 2, 15), date(2026, 8, 20)),    # days, a month, a quarter, a month, days
    (date(2026, 2, 3), date(2026, 8, 29)),     # ragged ends as a month less its other days
])
@pytest.mark.parametrize("level", ["grid", "street"])
def test_periods_with_whole_quarters_equal_the_direct_computation(
        conn: Connection, since: date, until: date, level: str) -> None:
    query = KpiQuery(level=level, since=since, until=until)
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    assert fast["total"]["n"] > 0
    _same(fast["total"], slow["total"])
    for a, b in zip(fast["rows"], slow["rows"], strict=True):
        _same(a, b)


@pytest.mark.parametrize(("since", "until"), [
    (date(2020, 2, 20), date(2020, 7, 10)),  # days, a month, a quarter, days
    (date(2020, 2, 3), date(2020, 7, 28)),   # the ends as their months less their other days
])
def test_p90_across_quarter_month_and_day_rows_is_exact_on_bin_edges(
        conn: Connection, since: date, until: date) -> None:
    """Closed cases on histogram edges, spread over the ragged days, a month and a quarter of
    the period, and on days of the end months outside it, so the p90's bin gathers values
    from rows of every kind, some of them taken away again."""
    edges = conn.execute(text("SELECT gridgov_kpi_ttc_edges()")).scalar_one()
    grid = conn.execute(text("SELECT id, code FROM areas WHERE level = 3 AND valid_to IS NULL"
                             " ORDER BY code LIMIT 1")).one()
    seconds = [edges[0] - 1, edges[0], edges[1] - 1, edges[1], edges[3], edges[3], edges[5],
               edges[5] - 1, edges[-1], 0, edges[2], edges[4], edges[3], edges[1]]
    days = [date(2020, 2, 1), date(2020, 2, 20), date(2020, 3, 2), date(2020, 3, 30),
            date(2020, 4, 1), date(2020, 5, 15), date(2020, 6, 30), date(2020, 7, 1),
            date(2020, 7, 9), date(2020, 7, 30)]
    for i, s in enumerate(seconds):
        day = days[i % len(days)]
        add_closed_case(conn, grid.id, datetime(day.year, day.month, day.day, 12, tzinfo=UTC), s)
    query = KpiQuery(level="grid", area=grid.code, since=since, until=until)
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    inside = sum(since <= days[i % len(days)] < until for i in range(len(seconds)))
    assert fast["rows"][0]["n_closed"] == inside == len(seconds) - 3
    _same(fast["rows"][0], slow["rows"][0])
    _same(fast["total"], slow["total"])


def test_a_grid_whose_cases_all_fall_outside_the_period_in_its_month_is_not_listed(
        conn: Connection) -> None:
    """Read as its month less the month's other days, a retired grid with cases only on those
    other days nets to no case: like the direct computation, the ranking leaves it out."""
    grid = conn.execute(text("SELECT id, code FROM areas WHERE level = 3 AND valid_to IS NULL"
                             " ORDER BY code LIMIT 1")).one()
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, area_id, status, reported_at,"
        " due_at, closed_at, geom) SELECT a.jurisdiction_id, (SELECT min(id) FROM categories),"
        " 'app', a.id, 'closed', TIMESTAMPTZ '2020-02-01 12:00Z', TIMESTAMPTZ '2020-03-01Z',"
        " TIMESTAMPTZ '2020-02-02 12:00Z', ST_PointOnSurface(a.geom) FROM areas a"
        " WHERE a.id = :a"), {"a": grid.id})
    conn.execute(text("UPDATE areas SET valid_to = now() WHERE id = :a"), {"a": grid.id})
    query = KpiQuery(level="grid", since=date(2020, 2, 3), until=date(2020, 7, 28))
    fast = compute_kpis(conn, query)
    slow = compute_kpis(conn, KpiQuery(**{**query.__dict__, "engine": "cases"}))
    assert grid.code not in {r["key"] for r in fast["rows"]}
    assert [r["key"] for r in fast["rows"]] == [r["key"] for r in slow["rows"]]

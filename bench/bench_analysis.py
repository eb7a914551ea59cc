"""Benchmark of the analysis queries against the straightforward PostGIS queries for the same
answer: coverage of every grid (straight line and by road) and KPIs of one level and period.

    .venv/bin/python bench/bench_analysis.py                 # 20,000 grids, 10⁷ cases
    .venv/bin/python bench/bench_analysis.py --quick         # 1,000 grids, 5·10⁴ cases
    .venv/bin/python bench/bench_analysis.py --build-only    # just build the city

The city is built once with ``gis.synth`` in its own database (``gridgov_bench_analysis``) and
reused: ``--synth-cases`` (2·10⁶) generated cases, topped up to ``--cases`` with copies of them
moved by about a metre, one statement of 10⁶ per copy (the triggers of every table run as for
any insert). (Until migration 0004_cases_speed the live-feed trigger built one array of every
case a statement inserted, which PostgreSQL refuses above 1 GB, about 3·10⁶ cases; it now
counts first and sends one "bulk" note, so one COPY of 10⁷ cases works too. The top-up is
kept so that the figures stay comparable with the earlier runs.)

Each line prints the peer's time and ours from the same run, and the ratio; the peer queries
run with a statement timeout (``--peer-timeout``): a peer that hits it is reported as
"> timeout". Results go to ``bench/results/analysis-*.json``.

KPI lines: ours is the fastest of ``--kpi-repeat`` warm runs (each printed, with the load
average), plus the CPU time of one more run with parallel query off (client process + its
PostgreSQL backend, read from ``/proc``): on a shared machine the CPU time moves far less with
the load than the wall clock. ``--close-cases N`` then times the database side of closing N
cases (the status update and the ``close`` event, every trigger included, rolled back),
alternately with and without the quarter rollup's triggers (migration 0010_kpi_speed).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from bench.common import ensure_city, machine, save, table  # noqa: E402
from gis import coverage as cov  # noqa: E402
from gis import kpis  # noqa: E402

PEER_STRAIGHT = """
WITH f AS (
    SELECT ST_Transform(geom, :srid) AS g, service_radius_m AS r FROM facilities
     WHERE jurisdiction_id = :j AND type = :t
), grid AS (
    SELECT a.id, a.code FROM areas a
     WHERE a.jurisdiction_id = :j AND a.valid_to IS NULL AND a.level = 3
), b AS (
    SELECT DISTINCT ON (b.id) b.id, p.area_id, b.households,
           EXISTS (SELECT 1 FROM f WHERE ST_DWithin(f.g, ST_Transform(b.pt, :srid), f.r)) AS cov
      FROM buildings b JOIN area_parts p ON ST_Covers(p.geom, b.pt) AND p.valid_to IS NULL
     WHERE b.jurisdiction_id = :j
     ORDER BY b.id, p.level DESC
)
SELECT grid.code, COALESCE(sum(b.households), 0) AS hh,
       COALESCE(sum(b.households) FILTER (WHERE b.cov), 0) AS hh_cov
  FROM grid LEFT JOIN b ON b.area_id = grid.id GROUP BY grid.code
"""

PEER_GAPS = """
WITH u AS (
    SELECT ST_Union(ST_Buffer(ST_Transform(geom, :srid), service_radius_m, 8)) AS g
      FROM facilities WHERE jurisdiction_id = :j AND type = :t
)
SELECT count(*) FILTER (WHERE NOT ST_IsEmpty(d)) FROM (
    SELECT ST_Difference(ST_Transform(a.geom, :srid), u.g) AS d
      FROM areas a, u WHERE a.jurisdiction_id = :j AND a.valid_to IS NULL AND a.level = 3
) s
"""

# pgRouting's driving distance from every facility's nearest node over a walking network
# (length / 1.389 m/s both ways), then every building to its nearest node (KNN).
PEER_ROAD = """
WITH src AS (
    SELECT DISTINCT (SELECT n.id FROM road_nodes n WHERE n.jurisdiction_id = :j
                      ORDER BY n.geom <-> f.geom LIMIT 1) AS node
      FROM facilities f WHERE f.jurisdiction_id = :j AND f.type = :t
), reach AS (
    SELECT node, min(agg_cost) AS t FROM pgr_drivingDistance(
        'SELECT id, source, target, length_m / 1.3889 AS cost, length_m / 1.3889 AS reverse_cost'
        ' FROM road_edges WHERE jurisdiction_id = ' || :j,
        (SELECT array_agg(node) FROM src), :limit, directed => false, equicost => true)
     GROUP BY node
), b AS (
    SELECT DISTINCT ON (b.id) b.id, p.area_id, b.households, nn.id AS node, nn.d
      FROM buildings b JOIN area_parts p ON ST_Covers(p.geom, b.pt) AND p.valid_to IS NULL
      CROSS JOIN LATERAL (
          SELECT n.id, ST_Distance(CAST(n.geom AS geography), CAST(b.pt AS geography)) AS d
            FROM road_nodes n WHERE n.jurisdiction_id = :j
           ORDER BY n.geom <-> b.pt LIMIT 1) nn
     WHERE b.jurisdiction_id = :j
     ORDER BY b.id, p.level DESC
)
SELECT a.code, sum(b.households) AS hh,
       COALESCE(sum(b.households) FILTER (WHERE reach.t + b.d / 1.3889 <= :limit), 0) AS hh_cov
  FROM areas a JOIN b ON b.area_id = a.id LEFT JOIN reach ON reach.node = b.node
 WHERE a.level = 3 GROUP BY a.code
"""


def peer(engine: Any, sql: str, params: dict[str, Any], timeout_s: int) -> tuple[Any, float]:
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(text(f"SET statement_timeout = {int(timeout_s * 1000)}"))
        try:
            rows = conn.execute(text(sql), params).all()
        except OperationalError:
            return None, float("inf")
    return rows, time.perf_counter() - started


def ours(engine: Any, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    # Garbage from the previous query is collected before, not during, the timed call (a
    # full collection walks every live object: 20,000-row results add 10⁶ references).
    gc.collect()
    started = time.perf_counter()
    with engine.connect() as conn:
        result = fn(conn, *args, **kwargs)
    return result, time.perf_counter() - started


def ratio(p: float, o: float) -> str:
    if p == float("inf"):
        return "> timeout"
    return f"{p / o:.1f}×"


def secs(v: float, timeout: int) -> str:
    return f"> {timeout} s" if v == float("inf") else f"{v:.2f} s"


def top_up(engine: Any, jid: int, target: int, step: int = 1_000_000) -> None:
    """Copies of the generated cases, a metre or so apart, until there are ``target``."""
    with engine.connect() as conn:
        have, first, last = conn.execute(text(
            "SELECT count(*), min(id), max(id) FROM cases WHERE jurisdiction_id = :j"),
            {"j": jid}).one()
    base = int(last - first + 1) if have else 0
    copy = 0
    while have < target and base:
        copy += 1
        n = min(step, target - have, base)
        offset = (have // base) * 1e-5 + 1e-5
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO cases (jurisdiction_id, category_id, channel, urgency, description,"
                " area_id, department_id, responder_id, status, reported_at, due_at, closed_at,"
                " escalation_level, satisfaction, geom)"
                " SELECT jurisdiction_id, category_id, channel, urgency, description, area_id,"
                " department_id, responder_id, status, reported_at, due_at, closed_at,"
                " escalation_level, satisfaction, ST_Translate(geom, :dx, :dy)"
                " FROM cases WHERE jurisdiction_id = :j AND id >= :lo AND id < :hi"),
                {"j": jid, "dx": offset, "dy": offset / 2, "lo": first + have % base,
                 "hi": first + have % base + n})
        have += n
        print(f"[bench] topped up to {have:,} cases ({time.perf_counter() - started:.0f} s)",
              flush=True)
    if copy:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cases"))
            conn.execute(text("VACUUM ANALYZE kpi_daily"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--grids", type=int, default=20_000)
    ap.add_argument("--cases", type=int, default=10_000_000)
    ap.add_argument("--synth-cases", type=int, default=2_000_000)
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--db", default="gridgov_bench_analysis")
    ap.add_argument("--type", default=None, help="facility type (default: the most common)")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--peer-timeout", type=int, default=600)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--only-kpis", action="store_true", help="skip the coverage part")
    ap.add_argument("--kpi-periods", default="month,365d",
                    help="comma-separated KPI periods: 'month' (last whole month), 'quarter' "
                         "(last whole quarter), or any period of /api/kpis (2026, 2026-Q3, "
                         "365d, …); default month,365d")
    ap.add_argument("--kpi-levels", default="street,grid", help="comma-separated levels")
    ap.add_argument("--kpi-repeat", type=int, default=3,
                    help="runs of ours per KPI line after a warm-up (the fastest is reported)")
    ap.add_argument("--close-cases", type=int, default=40,
                    help="cases closed (and rolled back) to time the rollup triggers; 0: skip")
    args = ap.parse_args()
    if args.quick:
        args.grids, args.cases, args.db = 1000, 50_000, args.db + "_quick"
        args.synth_cases = 50_000
    city = ensure_city(args.db, grids=args.grids, seed=1,
                       cases=min(args.cases, args.synth_cases))
    eng, j = city.engine, city.jurisdiction_id
    top_up(eng, j, args.cases)
    if args.build_only:
        return
    with eng.connect() as conn:
        counts = conn.execute(text(
            "SELECT (SELECT count(*) FROM areas WHERE jurisdiction_id = :j AND level = 3),"
            " (SELECT count(*) FROM buildings WHERE jurisdiction_id = :j),"
            " (SELECT count(*) FROM facilities WHERE jurisdiction_id = :j),"
            " (SELECT count(*) FROM cases WHERE jurisdiction_id = :j),"
            " (SELECT local_srid FROM jurisdictions WHERE id = :j)"), {"j": j}).one()
        ftype = args.type or conn.execute(text(
            "SELECT type FROM facilities WHERE jurisdiction_id = :j GROUP BY type"
            " ORDER BY count(*) DESC, type LIMIT 1"), {"j": j}).scalar_one()
        n_type = conn.execute(text("SELECT count(*) FROM facilities WHERE jurisdiction_id = :j"
                                   " AND type = :t"), {"j": j, "t": ftype}).scalar_one()
        has_pgr = bool(conn.execute(text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pgrouting'")).first())
    grids, buildings, facilities, cases, srid = counts
    info = machine(eng)
    print(f"[bench] {grids:,} grids, {buildings:,} buildings, {facilities:,} facilities "
          f"({n_type} of type {ftype}), {cases:,} cases; load {info['load_avg_1m']}", flush=True)
    rows: list[list[Any]] = []
    payload: dict[str, Any] = {"machine": info, "grids": grids, "buildings": buildings,
                               "facilities": facilities, "cases": cases, "type": ftype,
                               "results": {}}

    if not args.only_kpis:
        coverage_part(args, eng, j, ftype, srid, has_pgr, rows, payload)
    kpi_part(args, eng, j, rows, payload)
    if args.close_cases:
        close_part(args, eng, j, rows, payload)
    print(table(f"Analysis benchmark — {grids:,} grids, {buildings:,} buildings, "
                f"{facilities:,} facilities, {cases:,} cases ({info['date']}, "
                f"{info['cores']} cores, load {info['load_avg_1m']})",
                ["query", "peer (straightforward PostGIS)", "ours", "ratio"], rows))
    print("saved", save("analysis", payload))


def coverage_part(args: Any, eng: Any, j: int, ftype: str, srid: int, has_pgr: bool,
                  rows: list[list[Any]], payload: dict[str, Any]) -> None:
    tmo = args.peer_timeout
    # --- coverage, straight line, every grid
    q = cov.CoverageQuery(ftype, level="grid", jurisdiction_id=j)
    cov.clear_cache()
    cold, t_cold = ours(eng, cov.coverage, q)
    warm, t_warm = ours(eng, cov.coverage, q)
    nogap, t_nogap = ours(eng, cov.coverage, cov.CoverageQuery(ftype, level="grid",
                                                               jurisdiction_id=j, gaps=False))
    params = {"j": j, "t": ftype, "srid": srid}
    p_rows, t_peer = (None, float("inf")) if args.skip_peers else \
        peer(eng, PEER_STRAIGHT, params, tmo)
    agree = None
    if p_rows is not None:
        mine = {a["code"]: a["households_covered"] for a in nogap["areas"]}
        agree = sum(int(hh_cov) == mine.get(code) for code, _hh, hh_cov in p_rows) / len(p_rows)
    rows.append(["coverage straight, every grid, numbers (warm)", secs(t_peer, tmo),
                 f"{t_nogap:.2f} s", ratio(t_peer, t_nogap)])
    rows.append(["coverage straight, every grid, with gaps (warm / cold)", "",
                 f"{t_warm:.2f} / {t_cold:.2f} s", ""])
    g_rows, t_pgaps = (None, float("inf")) if args.skip_peers else \
        peer(eng, PEER_GAPS, params, tmo)
    rows.append(["gap polygons of every grid (ST_Difference vs ours incl. numbers)",
                 secs(t_pgaps, tmo), f"{t_warm:.2f} s", ratio(t_pgaps, t_warm)])
    payload["results"]["straight"] = {
        "peer_s": t_peer, "ours_numbers_s": t_nogap, "ours_gaps_warm_s": t_warm,
        "ours_gaps_cold_s": t_cold, "peer_gaps_s": t_pgaps, "agreement": agree,
        "share": warm["summary"]["share_households"]}

    # --- coverage by road (walk), every grid
    rq = cov.CoverageQuery(ftype, mode="road", minutes=args.minutes, level="grid",
                           jurisdiction_id=j)
    r_cold, t_rcold = ours(eng, cov.coverage, rq)
    r_warm, t_rwarm = ours(eng, cov.coverage, rq)
    r_nogap, t_rnogap = ours(eng, cov.coverage, cov.CoverageQuery(
        ftype, mode="road", minutes=args.minutes, level="grid", jurisdiction_id=j, gaps=False))
    t_proad, r_agree = float("inf"), None
    if has_pgr and not args.skip_peers:
        with eng.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
        pr, t_proad = peer(eng, PEER_ROAD, {"j": j, "t": ftype, "limit": args.minutes * 60},
                           tmo)
        if pr is not None:
            mine = {a["code"]: a["households_covered"] for a in r_nogap["areas"]}
            tot_peer = sum(int(c) for _, _, c in pr)
            r_agree = {"peer_covered": tot_peer,
                       "ours_covered": r_nogap["summary"]["households_covered"],
                       "grids_equal": sum(int(c) == mine.get(code) for code, _, c in pr)
                       / max(len(pr), 1)}
    rows.append([f"coverage by road ({args.minutes:g} min walk), every grid, numbers",
                 secs(t_proad, tmo), f"{t_rnogap:.2f} s", ratio(t_proad, t_rnogap)])
    rows.append(["coverage by road, every grid, with gaps (warm / cold)", "",
                 f"{t_rwarm:.2f} / {t_rcold:.2f} s", ""])
    payload["results"]["road"] = {"peer_s": t_proad, "ours_numbers_s": t_rnogap,
                                  "ours_gaps_warm_s": t_rwarm, "ours_gaps_cold_s": t_rcold,
                                  "agreement": r_agree,
                                  "share": r_warm["summary"]["share_households"]}

    print(f"straight: per-grid agreement with the peer {agree}; road: {r_agree}")


def kpi_part(args: Any, eng: Any, j: int, rows: list[list[Any]], payload: dict[str, Any]
             ) -> None:
    tmo = args.peer_timeout
    # --- KPIs for one level and period
    today = datetime.now(UTC).date()
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    last_q = (today.month - 1) // 3 or 4
    named = {"month": first.strftime("%Y-%m"),
             "quarter": f"{today.year - (last_q == 4)}-Q{last_q}"}
    periods = [named.get(p.strip(), p.strip()) for p in args.kpi_periods.split(",")]
    for level in (lv.strip() for lv in args.kpi_levels.split(",")):
        for period in periods:
            fast = slow = None  # the previous line's results are not kept alive
            kq = kpis.KpiQuery(level=level, period=period, jurisdiction_id=j)
            # One "now" for ours and the peer: "due to close" counts the open cases past
            # their deadline, and deadlines pass during the peer's minute.
            now = datetime.now(UTC)
            ours(eng, kpis.compute_kpis, kq, now=now)  # warm the cache of the plan and pages
            times = []
            for _ in range(max(1, args.kpi_repeat)):
                fast = None  # not alive during the next run either
                fast, t_run = ours(eng, kpis.compute_kpis, kq, now=now)
                times.append(t_run)
            t_fast = min(times)
            assert fast is not None
            cpu = cpu_seconds(eng, kpis.compute_kpis, kq, now=now)
            load = os.getloadavg()[0]
            print(f"[bench] KPIs by {level}, {period}: ours {t_fast:.3f} s (runs "
                  f"{', '.join(f'{t:.3f}' for t in times)}; CPU {fmt_cpu(cpu)}), "
                  f"load {load:.1f}", flush=True)
            if args.skip_peers:
                slow, t_slow = None, float("inf")
            else:
                started = time.perf_counter()
                with eng.connect() as conn:
                    conn.execute(text(f"SET statement_timeout = {tmo * 1000}"))
                    try:
                        slow = kpis.compute_kpis(conn, kpis.KpiQuery(
                            level=level, period=period, jurisdiction_id=j, engine="cases"),
                            now=now)
                        t_slow = time.perf_counter() - started
                    except OperationalError:
                        slow, t_slow = None, float("inf")
            # every field of the total and of every row (counts, rates, mean, p90, score, rank)
            same = slow is not None and fast["total"] == slow["total"] and \
                fast["rows"] == slow["rows"]
            rows.append([f"KPIs by {level}, period {period} ({fast['total']['n']:,} cases)"
                         + ("" if same or slow is None else " DIFFERENT"),
                         secs(t_slow, tmo), f"{t_fast:.3f} s (CPU {fmt_cpu(cpu)})",
                         ratio(t_slow, t_fast)])
            payload["results"][f"kpis_{level}_{period}"] = {
                "peer_s": t_slow, "ours_s": t_fast, "ours_runs_s": times,
                "ours_cpu_s": cpu, "load_1m": load, "same": same, "n": fast["total"]["n"]}


def _backend_cpu(pid: int) -> float | None:
    """utime + stime of a PostgreSQL backend of this machine (None: not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(engine: Any, fn: Any, *args: Any, **kwargs: Any) -> tuple[float, float | None]:
    """(client CPU, server CPU) of one call, with parallel query off so that the backend does
    all of the server's work: on a shared machine CPU time says more than the wall clock."""
    gc.collect()
    with engine.connect() as conn:
        conn.execute(text("SET max_parallel_workers_per_gather = 0"))
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        server, client = _backend_cpu(pid), time.process_time()
        fn(conn, *args, **kwargs)
        client = time.process_time() - client
        after = _backend_cpu(pid)
        conn.execute(text("RESET max_parallel_workers_per_gather"))
    return client, (after - server if after is not None and server is not None else None)


def fmt_cpu(cpu: tuple[float, float | None]) -> str:
    client, server = cpu
    if server is None:
        return f"{client:.2f} s client"
    return f"{client + server:.2f} s = {client:.2f} client + {server:.2f} server"


# The triggers migration 0010_kpi_speed added: disabled (inside the rolled-back transaction)
# for the "without" side of the case-close timing.
QUARTER_TRIGGERS = ("kpi_daily_quarter_insert", "kpi_daily_quarter_update",
                    "kpi_daily_quarter_delete")


def close_part(args: Any, eng: Any, j: int, rows: list[list[Any]], payload: dict[str, Any]
               ) -> None:
    """The database side of closing a case (``UPDATE cases`` to closed + the ``close`` event,
    every trigger included), each rolled back; alternately with and without the quarter
    rollup's triggers. Median of ``--close-cases`` cases."""
    with eng.connect() as conn:
        ids = conn.execute(text(
            "SELECT id FROM cases WHERE jurisdiction_id = :j AND status = 'verified'"
            " ORDER BY reported_at DESC LIMIT :n"), {"j": j, "n": args.close_cases}
        ).scalars().all()
    times: dict[bool, list[float]] = {True: [], False: []}
    for i, case_id in enumerate(ids):
        for with_quarters in ((True, False) if i % 2 else (False, True)):
            with eng.connect() as conn:
                if not with_quarters:
                    for trigger in QUARTER_TRIGGERS:
                        conn.execute(text(f"ALTER TABLE kpi_daily DISABLE TRIGGER {trigger}"))
                started = time.perf_counter()
                conn.execute(text("UPDATE cases SET status = 'closed', closed_at = now()"
                                  " WHERE id = :id"), {"id": case_id})
                conn.execute(text(
                    "INSERT INTO case_events (case_id, action, from_state, to_state)"
                    " VALUES (:id, 'close', 'verified', 'closed')"), {"id": case_id})
                times[with_quarters].append(time.perf_counter() - started)
                conn.rollback()
    with_q, without_q = (statistics.median(times[k]) * 1000 for k in (True, False))
    load = os.getloadavg()[0]
    print(f"[bench] closing a case: {with_q:.1f} ms with the quarter rollup, {without_q:.1f} ms"
          f" without (median of {len(ids)}), load {load:.1f}", flush=True)
    rows.append([f"closing a case, database side (median of {len(ids)}, rolled back)",
                 f"{without_q:.1f} ms (without the quarter rollup)", f"{with_q:.1f} ms",
                 f"{with_q / without_q:.2f}× the time"])
    payload["results"]["close_case_ms"] = {"with_quarters": with_q, "without": without_q,
                                           "n": len(ids), "load_1m": load}


if __name__ == "__main__":
    main()

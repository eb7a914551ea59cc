"""Bulk import of historical cases: ``gridgov import cases`` (``gis.bulk.import_cases``)
against the trigger path, the row-by-row path and plain-COPY ceilings, on one synthetic city.

    .venv/bin/python bench/bench_bulk.py --rows 200000
    .venv/bin/python bench/bench_bulk.py --quick          # 2,000 grids, 20,000 rows
    # issue 3's scale: 20,000 grids, 1,000,000 cases already there, 1,000,000 imported
    .venv/bin/python bench/bench_bulk.py --grids 20000 --existing 1000000 --rows 1000000 \
        --trigger-rows 200000

The city (default 5,000 grids, no cases; ``--grids``, ``--existing`` cases) is built once in
its own database (``gridgov_bench_bulk`` for the default city, else
``gridgov_bench_bulk_<grids>_<existing>``; ``--db`` to change it). Every run writes a CSV
file of ``--rows`` cases (seeded: points over the city, a year of report times, 70 % closed,
0.5 % invalid rows of four kinds) and times, each in a transaction that is rolled back so the
runs see the same database:

- **ours**: ``import_cases`` on the CSV text, end to end (reading, per-row checks, deadlines,
  grids, routing, COPY into a staging table, one ``INSERT … SELECT`` per chunk); on the fast
  path (``gis.bulk.fast_load_refusal``) the chunks go in without triggers or RI checks and
  every derived table is written once per import, set-based; the time per phase is printed;
- **trigger path**: the same function with ``fast=False`` (every trigger per chunk, row-level
  foreign keys), on the first ``--trigger-rows`` rows;
- **row by row**: ``chunk_size=1`` and SQL grid lookups on the trigger path, i.e. one
  statement per case as an intake loop would issue (a sample of ``--row-sample`` rows);
- **ceiling**: ``COPY`` of already resolved rows (grid, department, deadline computed
  beforehand) straight into ``cases`` with every trigger, constraint and index;
- **floor of any loader**: the same ``COPY`` with ``session_replication_role = replica`` (no
  trigger, no foreign-key check, no derived table, no event): only the heap and the nine
  indexes of ``cases`` — no import into this schema can be faster on this machine.

The tables the runs write are vacuumed first (the rolled-back runs of earlier benchmarks leave
dead rows behind).

Checks: the import paths insert the same number of cases and report the same invalid rows.
The load average (``uptime``) is printed before and after: the machine is shared. Loopback
only; stops by itself.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sqlalchemy import Connection, text  # noqa: E402

from bench.common import ensure_city, machine, save, table  # noqa: E402
from gis.auth import Principal  # noqa: E402
from gis.bulk import fast_load_refusal, import_cases, read_csv  # noqa: E402
from gis.calendar import load_calendar  # noqa: E402
from gis.index import AreaIndex  # noqa: E402
from gis.synth import copy as cp  # noqa: E402

DEFAULT_BULK_DB = "gridgov_bench_bulk"
ACTOR = Principal(role="admin", name="bench-bulk")


def make_csv(conn: Connection, bbox: tuple[float, float, float, float], n: int,
             seed: int) -> tuple[str, int]:
    """CSV text of ``n`` cases and how many of them are invalid on purpose."""
    cats = conn.execute(text("SELECT code FROM categories WHERE depth = 2 AND active"
                             " ORDER BY code")).scalars().all()
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bbox
    lon = rng.uniform(x0, x1, n)
    lat = rng.uniform(y0, y1, n)
    now = int(datetime.now(UTC).timestamp())
    reported = now - 366 * 86400 + rng.integers(0, 365 * 86400, n)
    closed = reported + rng.integers(1800, 25 * 86400, n)
    is_closed = rng.random(n) < 0.7
    cat = rng.integers(0, len(cats), n)
    bad = rng.random(n) < 0.005
    kind = rng.integers(0, 4, n)
    out = io.StringIO()
    out.write("lon,lat,category,reported_at,closed_at,description\n")
    for i in range(n):
        rep = datetime.fromtimestamp(int(reported[i]), UTC).isoformat()
        clo = datetime.fromtimestamp(int(closed[i]), UTC).isoformat() if is_closed[i] else ""
        code = cats[cat[i]]
        x, y = f"{lon[i]:.7f}", f"{lat[i]:.7f}"
        if bad[i]:
            if kind[i] == 0:
                code = "NOPE"
            elif kind[i] == 1:
                x = y = ""
            elif kind[i] == 2:
                rep = "yesterday"
            else:
                x, y = "0", "0"
        out.write(f'{x},{y},{code},{rep},{clo},"imported, case {i}"\n')
    return out.getvalue(), int(bad.sum())


def run_ours(conn: Connection, data: str, jid: int, **kw: object) -> tuple[dict, float]:
    started = time.perf_counter()
    report = import_cases(conn, read_csv(io.StringIO(data)), principal=ACTOR,
                          jurisdiction_id=jid, **kw)  # type: ignore[arg-type]
    return report, time.perf_counter() - started


def run_ceiling(conn: Connection, data: str, jid: int, *, replica: bool = False
                ) -> tuple[int, float]:
    """COPY of resolved rows into ``cases``; resolving (outside the timing) uses the index.
    ``replica``: with triggers and foreign-key checks off (the floor of any loader)."""
    rows = [v for _, v in read_csv(io.StringIO(data))]
    cats = {str(c): (int(i), d, u, dv, int(g)) for c, i, d, u, dv, g in conn.execute(text(
        "SELECT code, id, department_id, deadline_unit, deadline_value, urgency"
        " FROM categories"))}
    calendar = load_calendar(conn, jid)
    index = AreaIndex.load(conn, jurisdiction_id=jid)
    good = []
    for r in rows:
        try:
            lon, lat = float(r["lon"]), float(r["lat"])
            rep = datetime.fromisoformat(r["reported_at"])
        except (TypeError, ValueError, KeyError):
            continue
        if r["category"] not in cats:
            continue
        good.append((lon, lat, rep, r))
    area = index.assign_ids([g[0] for g in good], [g[1] for g in good])
    # Deadlines per category deadline at once (WorkingCalendar.add_many equals add).
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    due_of: dict[int, datetime | None] = {}
    groups: dict[tuple[float, str], list[int]] = {}
    for i, (_, _, _, r) in enumerate(good):
        _, _, unit, value, _ = cats[r["category"]]
        if value is not None and unit:
            groups.setdefault((float(value), unit), []).append(i)
    for (value, unit), members in groups.items():
        starts = [(good[i][2] - epoch) // timedelta(microseconds=1) for i in members]
        for i, us in zip(members, calendar.add_many(starts, value, unit).tolist(), strict=True):
            due_of[i] = epoch + timedelta(microseconds=us)
    lines = []
    for i, ((lon, lat, rep, r), area_id) in enumerate(zip(good, area.tolist(), strict=True)):
        if area_id < 0:
            continue
        cat_id, dep, _, _, urgency = cats[r["category"]]
        lines.append((cat_id, urgency, r["description"], area_id, dep, rep,
                      due_of.get(i), r.get("closed_at"), lon, lat))
    n = len(lines)
    payload = cp.tsv([
        cp.const(jid, n), [str(x[0]) for x in lines], cp.const("import", n),
        [str(x[1]) for x in lines], cp.texts([x[2] for x in lines]),
        [str(x[3]) for x in lines],
        [str(x[4]) if x[4] is not None else "\\N" for x in lines],
        ["closed" if x[7] else "reported" for x in lines],
        [x[5].isoformat() for x in lines],
        [x[6].isoformat() if x[6] else "\\N" for x in lines],
        [x[7] or "\\N" for x in lines],
        cp.ewkb_points(np.array([x[8] for x in lines]), np.array([x[9] for x in lines])),
    ])
    if replica:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
    started = time.perf_counter()
    cp.copy_in(conn, "cases", ("jurisdiction_id", "category_id", "channel", "urgency",
                               "description", "area_id", "department_id", "status",
                               "reported_at", "due_at", "closed_at", "geom"), [payload])
    return n, time.perf_counter() - started


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=5000)
    parser.add_argument("--existing", type=int, default=0,
                        help="cases already in the city (synthetic, a year of them)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trigger-rows", type=int, default=None,
                        help="rows imported on the trigger path and COPied for the ceiling"
                        " (default: all; both are slow)")
    parser.add_argument("--row-sample", type=int, default=2000,
                        help="rows imported one statement per row (it is slow)")
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--quick", action="store_true", help="2,000 grids, 20,000 rows")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the city (after a migration was edited in place)")
    args = parser.parse_args(argv)
    if args.quick:
        args.grids, args.rows, args.row_sample = 2000, 20_000, 500
    if args.db is None:
        args.db = (DEFAULT_BULK_DB if (args.grids, args.existing) == (5000, 0)
                   else f"{DEFAULT_BULK_DB}_{args.grids}_{args.existing}")
    trigger_rows = min(args.rows, args.trigger_rows or args.rows)

    city = ensure_city(args.db, grids=args.grids, seed=args.seed, cases=args.existing,
                       rebuild=args.rebuild)
    with city.engine.connect() as conn:
        existing = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
    if existing != args.existing:
        print(f"[bench] {args.db} holds {existing:,} cases, not {args.existing:,}: rebuilding",
              flush=True)
        city.engine.dispose()
        city = ensure_city(args.db, grids=args.grids, seed=args.seed, cases=args.existing,
                           rebuild=True)
    # Every timed run is rolled back: vacuum the dead rows of earlier runs first, so that a
    # run neither fills their free space nor competes with autovacuum cleaning it up.
    started = time.perf_counter()
    with city.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) cases, case_events, case_tiles, kpi_daily, kpi_area,"
                          " kpi_area_quarter, tile_case_cells, tile_invalidations, live_changes"))
    print(f"[bench] vacuumed in {time.perf_counter() - started:.1f} s", flush=True)
    info = machine(city.engine)
    with city.engine.connect() as conn:
        data, n_bad = make_csv(conn, city.bbox, args.rows, args.seed)
        lines = data.splitlines()
        sample = "\n".join(lines[:args.row_sample + 1]) + "\n"
        head = "\n".join(lines[:trigger_rows + 1]) + "\n"
        existing = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
        refusal = fast_load_refusal(conn)
    print(f"[bench] {args.rows:,} rows ({n_bad:,} invalid on purpose) into {args.db}"
          f" ({args.grids:,} grids, {existing:,} cases already there); {_uptime()}", flush=True)
    print(f"[bench] fast load path: {'yes' if refusal is None else 'no: ' + refusal}",
          flush=True)
    if refusal is not None and "fingerprint" in refusal:
        print("[bench] (a migration edited after this database was built? try --rebuild)",
              flush=True)

    results: list[list[object]] = []
    phases: dict[str, float] = {}

    def rolled_back(run: Any, *args: Any, **kw: Any) -> Any:
        """``run(conn, *args, **kw)`` on a connection of its own, rolled back after."""
        with city.engine.connect() as conn:
            try:
                return run(conn, *args, **kw)
            finally:
                conn.rollback()

    jid = city.jurisdiction_id
    report, ours_s = rolled_back(run_ours, data, jid, chunk_size=args.chunk_size,
                                 timings=phases)
    print(f"[bench] ours done in {ours_s:.1f} s; {_uptime()}", flush=True)
    floor_n, floor_s = rolled_back(run_ceiling, data, jid, replica=True)
    print(f"[bench] floor done in {floor_s:.1f} s; {_uptime()}", flush=True)
    trig, trig_s = rolled_back(run_ours, head, jid, chunk_size=args.chunk_size, fast=False)
    print(f"[bench] trigger path done in {trig_s:.1f} s; {_uptime()}", flush=True)
    ceiling_n, ceiling_s = rolled_back(run_ceiling, head, jid)
    print(f"[bench] ceiling done in {ceiling_s:.1f} s; {_uptime()}", flush=True)
    ours_head, _ = ((report, ours_s) if trigger_rows == args.rows
                    else rolled_back(run_ours, head, jid, chunk_size=args.chunk_size))
    ours_small, ours_small_s = rolled_back(run_ours, sample, jid, chunk_size=args.chunk_size)
    rowwise, rowwise_s = rolled_back(run_ours, sample, jid, chunk_size=1, use_index=False,
                                     fast=False)
    same = ((rowwise["inserted"], rowwise["errors"]) == (ours_small["inserted"],
                                                         ours_small["errors"])
            and (trig["inserted"], trig["errors"]) == (ours_head["inserted"],
                                                       ours_head["errors"]))
    ours_rate = args.rows / ours_s
    results.append([f"row by row (chunk_size=1, SQL grid lookup, triggers), "
                    f"{args.row_sample:,} rows", rowwise_s, args.row_sample / rowwise_s,
                    ours_rate / (args.row_sample / rowwise_s)])
    results.append([f"ours, same {args.row_sample:,} rows", ours_small_s,
                    args.row_sample / ours_small_s, ours_rate / (args.row_sample / ours_small_s)])
    results.append([f"trigger path (fast=False), first {trigger_rows:,} rows", trig_s,
                    trigger_rows / trig_s, ours_rate / (trigger_rows / trig_s)])
    path = "fast path" if refusal is None else "trigger path"
    results.append([f"ours ({path}): gis.bulk.import_cases, {args.rows:,} rows "
                    f"({report['inserted']:,} in, {report['rejected']:,} rejected)",
                    ours_s, ours_rate, 1.0])
    results.append([f"ceiling: COPY of {ceiling_n:,} resolved rows (first {trigger_rows:,})"
                    " into cases, one statement, all triggers",
                    ceiling_s, ceiling_n / ceiling_s, ours_rate / (ceiling_n / ceiling_s)])
    results.append([f"floor of any loader: COPY of all {floor_n:,} resolved rows, no triggers,"
                    " FK checks, events or derived tables",
                    floor_s, floor_n / floor_s, ours_rate / (floor_n / floor_s)])
    print(table(f"Bulk import of cases, {args.grids:,} grids, {existing:,} cases there,"
                f" chunks of {args.chunk_size:,} (rolled back)",
                ["path", "seconds", "rows/s", "ours ÷ this (rows/s)"], results))
    print("\nours, database time per phase (s; the rest is reading and checking rows in"
          " Python, overlapped with the inserts):")
    for name, seconds in phases.items():
        if name != "fast path":
            print(f"  {name:<28} {seconds:8.2f}")
    print(f"\nthe import paths agree (inserted, errors): {'yes' if same else 'DIFFERENT'}")
    print(f"ours rejected {report['rejected']:,} rows ({n_bad:,} invalid on purpose plus the "
          "points outside the warped city edge)")
    info["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(f"machine: {info}; {_uptime()}")
    saved = save("bench_bulk", {"machine": info, "args": vars(args), "rows": results,
                                "phases": phases, "fast_path": refusal is None,
                                "report": {k: v for k, v in report.items() if k != "errors"},
                                "agree": same, "at": datetime.now(UTC).isoformat()})
    print(f"results saved to {saved}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Bulk import of historical cases: ``gridgov import cases`` (``gis.bulk.import_cases``)
against the row-by-row path and the plain-COPY ceiling, on the same synthetic city.

    .venv/bin/python bench/bench_bulk.py --rows 200000
    .venv/bin/python bench/bench_bulk.py --quick          # 2,000 grids, 20,000 rows

The city (default 5,000 grids, no cases) is built once in its own database
(``gridgov_bench_bulk``; ``--db`` to change it). Every run writes a CSV file of ``--rows``
cases (seeded: points over the city, a year of report times, 70 % closed, 0.5 % invalid rows
of four kinds) and times, each in a transaction that is rolled back so the runs see the same
database:

- **ours**: ``import_cases`` on the CSV text (reading, per-row checks, deadlines, grids,
  routing, COPY into a staging table, one ``INSERT … SELECT`` per chunk, all triggers);
- **row by row**: the same function with ``chunk_size=1`` and SQL grid lookups, i.e. one
  statement per case as an intake loop would issue (a sample of ``--row-sample`` rows);
- **ceiling**: ``COPY`` of already resolved rows (grid, department, deadline computed
  beforehand) straight into ``cases`` with every trigger, constraint and index — what any
  loader into this schema pays at least.

Checks: both import paths insert the same number of cases and report the same invalid rows.
Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sqlalchemy import Connection, text  # noqa: E402

from bench.common import ensure_city, machine, save, table  # noqa: E402
from gis.auth import Principal  # noqa: E402
from gis.bulk import import_cases, read_csv  # noqa: E402
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


def run_ceiling(conn: Connection, data: str, jid: int) -> tuple[int, float]:
    """COPY of resolved rows into ``cases``; resolving (outside the timing) uses the index."""
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
    lines = []
    for (lon, lat, rep, r), area_id in zip(good, area.tolist(), strict=True):
        if area_id < 0:
            continue
        cat_id, dep, unit, value, urgency = cats[r["category"]]
        due = calendar.add(rep, float(value), unit) if value is not None and unit else None
        lines.append((cat_id, urgency, r["description"], area_id, dep, rep,
                      due, r.get("closed_at"), lon, lat))
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
    started = time.perf_counter()
    cp.copy_in(conn, "cases", ("jurisdiction_id", "category_id", "channel", "urgency",
                               "description", "area_id", "department_id", "status",
                               "reported_at", "due_at", "closed_at", "geom"), [payload])
    return n, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--row-sample", type=int, default=2000,
                        help="rows imported one statement per row (it is slow)")
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--db", default=DEFAULT_BULK_DB)
    parser.add_argument("--quick", action="store_true", help="2,000 grids, 20,000 rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.grids, args.rows, args.row_sample = 2000, 20_000, 500

    city = ensure_city(args.db, grids=args.grids, seed=args.seed, cases=0)
    info = machine(city.engine)
    with city.engine.connect() as conn:
        data, n_bad = make_csv(conn, city.bbox, args.rows, args.seed)
        sample = "\n".join(data.splitlines()[:args.row_sample + 1]) + "\n"
        existing = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
    print(f"[bench] {args.rows:,} rows ({n_bad:,} invalid on purpose) into {args.db}"
          f" ({existing:,} cases already there); load {info['load_avg_1m']}", flush=True)

    results: list[list[object]] = []
    with city.engine.connect() as conn:
        report, ours_s = run_ours(conn, data, city.jurisdiction_id, chunk_size=args.chunk_size)
        conn.rollback()
    with city.engine.connect() as conn:
        ours_small, ours_small_s = run_ours(conn, sample, city.jurisdiction_id,
                                            chunk_size=args.chunk_size)
        conn.rollback()
    with city.engine.connect() as conn:
        rowwise, rowwise_s = run_ours(conn, sample, city.jurisdiction_id, chunk_size=1,
                                      use_index=False)
        conn.rollback()
    with city.engine.connect() as conn:
        ceiling_n, ceiling_s = run_ceiling(conn, data, city.jurisdiction_id)
        conn.rollback()
    same = (rowwise["inserted"], rowwise["errors"]) == (ours_small["inserted"],
                                                        ours_small["errors"])
    ours_rate = args.rows / ours_s
    results.append([f"row by row (chunk_size=1, SQL grid lookup), {args.row_sample:,} rows",
                    rowwise_s, args.row_sample / rowwise_s,
                    ours_rate / (args.row_sample / rowwise_s)])
    results.append([f"ours, same {args.row_sample:,} rows", ours_small_s,
                    args.row_sample / ours_small_s, ours_rate / (args.row_sample / ours_small_s)])
    results.append([f"ours: gis.bulk.import_cases, {args.rows:,} rows "
                    f"({report['inserted']:,} in, {report['rejected']:,} rejected)",
                    ours_s, ours_rate, 1.0])
    results.append([f"ceiling: COPY of {ceiling_n:,} resolved rows into cases",
                    ceiling_s, ceiling_n / ceiling_s, ours_rate / (ceiling_n / ceiling_s)])
    print(table(f"Bulk import of cases, {args.grids:,} grids, chunks of {args.chunk_size:,}"
                f" (rolled back)", ["path", "seconds", "rows/s", "ours ÷ this (rows/s)"],
                results))
    print(f"\nrow-by-row and ours agree on the sample: {'yes' if same else 'DIFFERENT'}")
    print(f"ours rejected {report['rejected']:,} rows ({n_bad:,} invalid on purpose plus the "
          "points outside the warped city edge)")
    info["load_avg_1m_end"] = round(__import__("os").getloadavg()[0], 2)
    print(f"machine: {info}")
    path = save("bench_bulk", {"machine": info, "args": vars(args), "rows": results,
                               "report": {k: v for k, v in report.items() if k != "errors"},
                               "agree": same,
                               "at": (datetime.now(UTC) - timedelta(0)).isoformat()})
    print(f"results saved to {path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Case intake over HTTP at a fixed offered rate: ``POST /api/cases`` p50/p99, achieved rate,
errors (issue 3: aim p99 < 25 ms at 200 req/s on the 2-core machine).

    .venv/bin/python bench/bench_intake.py --grids 20000 --rate 200 --duration 60

``gridgov serve`` against the synthetic city of the benchmark database (20,000 grids,
1,000,000 cases), an open-loop generator (``bench/bench_load.py``): request *i* is due at
``t0 + i / rate`` and its latency counts from then, so it includes queueing. Half the reports
come from a dispatcher's token on the hotline channel (with a reporter contact), half from the
public on the app channel; each has a unique ``Idempotency-Key`` and a seeded point inside a
grid; categories cycle through every minor category. Rate limits are off for the run (one
loopback address sends everything); the cases created are deleted afterwards unless
``--keep-cases``. The tables an intake writes are vacuumed and analyzed before the run and
after the clean-up (``bench_load.settle``: otherwise autovacuum works off the previous run's
deletes during this one). ``--server-env GRIDGOV_POOL_SIZE=12`` and the like set the
server's environment. The seconds of the schedule whose p99 missed the aim are printed
(``timeline`` in the record: where in the run the stalls were).

Peers, from the same run: the same intake called in process (``gis.intake.create_case`` and a
commit on a pooled connection, no HTTP) — what HTTP, FastAPI and the thread pool add — and the
server CPU per request, app and PostgreSQL apart (load-independent). To see where the time
goes, attach ``py-spy record -p <server pid>`` during a run (docs/benchmarks.md).

The JSON record goes to ``bench/results/bench_intake-*.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.bench_load import (  # noqa: E402
    KEY_PREFIX,
    add_common_args,
    delete_run_cases,
    prepare,
    print_rows,
    run_bench,
)
from bench.common import ensure_city, save, table  # noqa: E402

MIX = {"intake_staff": 1.0, "intake_public": 1.0}
P99_TARGET_MS = 25.0


def in_process(db: str, grids: int, seed: int, n: int) -> dict[str, Any]:
    """The peer: ``gis.intake.create_case`` + commit, one connection, no HTTP, n reports."""
    from gis.auth import PUBLIC, authenticate
    from gis.calendar import CalendarSettings
    from gis.caseconfig import CaseSettings
    from gis.intake import Report, create_case

    city = ensure_city(db, grids=grids, seed=seed)
    fx = prepare(city, seed=seed + 16)
    settings = CaseSettings()  # built once, as the app does (api.deps.CaseConfig)
    calendar_settings = CalendarSettings()
    lat: list[float] = []
    try:
        with city.engine.connect() as conn:
            staff = authenticate(conn, fx.token)
            conn.commit()
            for i in range(n):
                lon, la = (float(v) for v in fx.points[i % len(fx.points)])
                public = i % 2 == 1
                report = Report(category=fx.categories[i % len(fx.categories)],
                                channel="app" if public else "hotline", lon=round(lon, 7),
                                lat=round(la, 7), description=f"in-process report {i}",
                                contact=None if public else {"name": "Load Test"},
                                idempotency_key=f"{KEY_PREFIX}{fx.run}-{i}")
                t0 = time.perf_counter()
                create_case(conn, report, principal=PUBLIC if public else staff,
                            settings=settings, calendar_settings=calendar_settings)
                conn.commit()
                lat.append(time.perf_counter() - t0)
    finally:
        delete_run_cases(city.engine, fx.run)
        city.engine.dispose()
    ms = np.array(lat) * 1e3
    return {"requests": n, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "per_s_one_connection": round(n / float(np.sum(lat)), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, rate=200, duration=60)
    parser.add_argument("--in-process", type=int, default=2000,
                        help="reports for the in-process peer (0: skip)")
    args = parser.parse_args(argv)
    record = run_bench("bench_intake", args, MIX)
    print_rows(f"Intake: {args.rate:g} req/s offered for {args.duration:g} s, "
               f"{args.workers} worker(s); load average {record['load_avg_before'][0]} → "
               f"{record['load_avg_after'][0]}", record["endpoints"])
    overall = next(r for r in record["endpoints"] if r["endpoint"] == "all")
    if args.in_process:
        peer = in_process(args.db, args.grids, args.seed, args.in_process)
        record["in_process"] = peer
        print(table("HTTP vs the same intake in process (one connection, sequential)",
                    ["path", "p50 ms", "p99 ms", "req/s"],
                    [["HTTP (open loop, incl. queueing)", overall["p50_ms"], overall["p99_ms"],
                      overall["achieved_per_s"]],
                     ["in process: create_case + commit", peer["p50_ms"], peer["p99_ms"],
                      peer["per_s_one_connection"]],
                     ["× (HTTP / in process) p50", round(overall["p50_ms"] / peer["p50_ms"], 2),
                      "", ""]]))
    slow = [t for t in record["timeline"] if t[2] >= P99_TARGET_MS]
    print(f"\nseconds of the run with p99 >= {P99_TARGET_MS:g} ms: {len(slow)} of"
          f" {len(record['timeline'])}" + (": " + ", ".join(
              f"{t[0]:.0f}s (p99 {t[2]:,.0f}, max {t[3]:,.0f})" for t in slow[:12]) if slow
              else ""))
    cpu = record["server_cpu_ms_per_request"]
    print(f"\nserver CPU per request: app {cpu.get('app')} ms, PostgreSQL {cpu.get('postgres')}"
          f" ms; client CPU {record['client_cpu_s']} s over {record['wall_s']} s")
    record["target"] = {"p99_ms": P99_TARGET_MS, "rate": 200,
                        "met": overall["p99_ms"] < P99_TARGET_MS and overall["errors"] == 0
                        and args.rate >= 200}
    print(f"target p99 < {P99_TARGET_MS:g} ms at 200 req/s: "
          f"{'met' if record['target']['met'] else 'NOT met'} (p99 {overall['p99_ms']} ms at"
          f" {overall['achieved_per_s']} req/s, {overall['errors']} errors)")
    path = save("bench_intake", record)
    print(f"record: {path}")
    return 1 if overall["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())


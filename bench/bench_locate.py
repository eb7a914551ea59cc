"""``GET /api/locate`` over HTTP: latency and throughput of the real server.

    .venv/bin/python bench/bench_locate.py --grids 20000 --requests 5000 --clients 4

Starts ``gridgov serve`` (uvicorn, ``api.app:create_app``) on a free loopback port with
``GRIDGOV_DB_NAME`` pointing to the benchmark database, fires ``--requests`` GETs from
``--clients`` concurrent keep-alive clients, then stops the server. The peer, from the same run
and the same points and concurrency: the SQL locate (``gis.areas.locate``) called in process
on pooled connections — what the endpoint costs beyond its query. An in-process
``AreaIndex.lookup`` row shows what the grid lookup alone would cost.

Every answer is checked against the in-process one. Bounded: ``--timeout`` seconds overall.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_DB,
    RESULTS,
    ensure_city,
    free_port,
    machine,
    percentile_ms,
    random_points,
    save,
    serve,
    table,
)
from gis.areas import locate  # noqa: E402
from gis.errors import NotFound  # noqa: E402
from gis.index import AreaIndex  # noqa: E402


def run_concurrent(points: np.ndarray, clients: int, call: Any, deadline: float
                   ) -> tuple[list[float], list[Any], float]:
    """Latencies and answers of ``call(client_no, x, y)`` over all points, in order."""
    lat = [0.0] * len(points)
    answers: list[Any] = [None] * len(points)

    def worker(k: int) -> None:
        for i in range(k, len(points), clients):
            if time.monotonic() > deadline:
                raise TimeoutError("benchmark deadline reached")
            t0 = time.perf_counter()
            answers[i] = call(k, float(points[i, 0]), float(points[i, 1]))
            lat[i] = time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for f in [pool.submit(worker, k) for k in range(clients)]:
            f.result()
    return lat, answers, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1, help="city seed")
    parser.add_argument("--cases", type=int, default=None,
                        help="cases when the city must be built (default 50 per grid)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600, help="seconds, whole benchmark")
    parser.add_argument("--db", default=DEFAULT_DB)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout

    city = ensure_city(args.db, grids=args.grids, seed=args.seed, cases=args.cases)
    info = machine(city.engine)
    lons, lats = random_points(city.bbox, args.requests + args.warmup, seed=7)
    pts = np.column_stack([lons, lats])
    warm, pts = pts[:args.warmup], pts[args.warmup:]

    # Peer: the same SQL, in process, one pooled connection per client.
    conns = [city.engine.connect() for _ in range(args.clients)]

    def sql_call(k: int, x: float, y: float) -> str | None:
        try:
            return str(locate(conns[k], x, y)["areas"][-1]["code"])
        except NotFound:
            return None
        finally:
            conns[k].rollback()

    run_concurrent(warm, args.clients, sql_call, deadline)
    sql_lat, expected, sql_wall = run_concurrent(pts, args.clients, sql_call, deadline)
    for c in conns:
        c.close()
    with city.engine.connect() as conn:
        index = AreaIndex.load(conn, jurisdiction_id=city.jurisdiction_id)
    idx_lat, idx_ans, idx_wall = run_concurrent(
        pts, 1, lambda _k, x, y: index.lookup(x, y), deadline)

    port = free_port()
    log = RESULTS / "bench_locate-server.log"
    with serve(args.db, port, workers=args.workers, log=log, timeout=120):
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
                   for _ in range(args.clients)]
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def http_call(k: int, x: float, y: float) -> str | None:
            r = clients[k].get("/api/locate", params={"lon": repr(x), "lat": repr(y)})
            with lock:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return str(r.json()["areas"][-1]["code"])

        run_concurrent(warm, args.clients, http_call, deadline)
        statuses.clear()
        http_lat, got, http_wall = run_concurrent(pts, args.clients, http_call, deadline)
        for client in clients:
            client.close()

    wrong_http = sum(1 for a, b in zip(got, expected, strict=True) if a != b)
    wrong_index = sum(1 for a, b in zip(idx_ans, expected, strict=True) if a != b)
    n = len(pts)
    rows = [
        ["gridgov HTTP GET /api/locate", percentile_ms(http_lat, 50),
         percentile_ms(http_lat, 99), n / http_wall, 1.0],
        ["SQL gis.areas.locate in process (peer)", percentile_ms(sql_lat, 50),
         percentile_ms(sql_lat, 99), n / sql_wall, (n / sql_wall) / (n / http_wall)],
        ["AreaIndex.lookup in process (1 thread)", percentile_ms(idx_lat, 50),
         percentile_ms(idx_lat, 99), n / idx_wall, (n / idx_wall) / (n / http_wall)],
    ]
    print(table(f"Locate: {n:,} random points, {args.clients} concurrent clients, "
                f"{args.workers} uvicorn worker(s), {city.grids:,} grids",
                ["path", "p50 ms", "p99 ms", "req/s", "× HTTP throughput"], rows))
    print(f"\nHTTP statuses: {statuses}; answers differing from the SQL: HTTP {wrong_http},"
          f" AreaIndex {wrong_index}")
    print(f"machine: {info}")
    path = save("bench_locate", {"machine": info, "args": vars(args), "rows": rows,
                                 "statuses": statuses, "wrong_http": wrong_http,
                                 "wrong_index": wrong_index})
    print(f"results saved to {path}")
    return 0 if wrong_http == 0 and wrong_index == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

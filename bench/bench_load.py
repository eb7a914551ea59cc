"""A mixed load on the real server for ``--duration`` seconds (default 300): zero errors, latency
per endpoint, memory flat.

    .venv/bin/python bench/bench_load.py --grids 20000 --duration 300 --rate 50

Starts ``gridgov serve`` on a free loopback port against the synthetic city in the benchmark
database (``bench/common.py``: 20,000 grids, 1,000,000 cases; reused), then an **open-loop**
generator (asyncio + httpx, one process) offers ``--rate`` requests/s on a fixed schedule:
request *i* is due at ``t0 + i / rate`` whether or not earlier ones have been answered, and its
latency is measured from that due time, so queueing (client or server) is included and a
stalled server cannot hide its stall (no coordinated omission). The mix (``--mix``):

- ``intake_staff`` / ``intake_public`` — ``POST /api/cases`` (hotline with a dispatcher token /
  app without one), unique ``Idempotency-Key`` each, seeded points inside grids;
- ``locate`` — ``GET /api/locate``;
- ``tiles`` — ``GET /tiles/{layer}/{z}/{x}/{y}.mvt`` over grids, cases, facilities, road
  edges and responders (staff) at zooms 10–16, around seeded points (a tile cache is part of
  the server: repeated tiles are cheap, as in real use);
- ``nearest_straight`` / ``nearest_road`` — ``GET /api/responders/nearest`` (staff);
- ``cases_bbox`` / ``cases_status`` / ``cases_paged`` — ``GET /api/cases`` by bbox, by status
  and area, and the second page of a bbox query.

An answer is an error unless its status is the expected one (201 for intake, 200/204 for tiles,
200 otherwise); transport errors and timeouts are errors. The server's RSS (process and its
children) is sampled every 10 s; the record holds first, last, peak and the least-squares slope.
The rate limits on intake are switched off for the server (``GRIDGOV_LIMITS_ENABLED=false``):
every request comes from one loopback address. Cases created by the run are deleted afterwards
(``--keep-cases`` keeps them), so the benchmark city stays at its size.

The JSON record goes to ``bench/results/bench_load-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_DB,
    RESULTS,
    City,
    ensure_city,
    free_port,
    machine,
    save,
    serve,
    table,
)

BENCH_ACCOUNT = "bench-load-dispatcher"
KEY_PREFIX = "bench-load-"

DEFAULT_MIX = {
    "intake_staff": 15, "intake_public": 15, "locate": 20, "tiles": 20,
    "nearest_straight": 5, "nearest_road": 5,
    "cases_bbox": 8, "cases_status": 6, "cases_paged": 6,
}
TILE_LAYERS = [  # (layer, zooms, staff only)
    ("grids", (12, 13, 14, 15), False), ("cases", (10, 12, 14, 16), False),
    ("facilities", (13, 14, 15), False), ("road_edges", (13, 14, 15), False),
    ("responders", (13, 14), True),
]
EXPECTED = {"intake_staff": (201,), "intake_public": (201,), "tiles": (200, 204)}
STATUSES = ("reported", "accepted", "filed", "dispatched", "in_progress", "handled", "closed")


# --- what to send ---------------------------------------------------------------------------

@dataclass
class Fixture:
    """Seeded inputs: points inside grids, category codes, grid codes, a staff token."""

    points: np.ndarray
    categories: list[str]
    grid_codes: list[str]
    token: str
    seed: int
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


def prepare(city: City, *, n_points: int = 5000, seed: int = 7) -> Fixture:
    """Points inside grids (``ST_GeneratePoints``, seeded), minor categories, a staff token."""
    from gis.auth import create_user, issue_token

    with city.engine.begin() as conn:
        conn.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        rows = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p), code FROM (SELECT a.code, (ST_Dump(ST_GeneratePoints("
            "a.geom, 1, :seed))).geom AS p FROM areas a WHERE a.level = 3 AND a.valid_to IS"
            " NULL AND a.jurisdiction_id = :j ORDER BY random() LIMIT :n) s"),
            {"seed": seed, "j": city.jurisdiction_id, "n": n_points}).all()
        categories = conn.execute(text(
            "SELECT code FROM categories c WHERE active AND NOT EXISTS (SELECT 1 FROM"
            " categories k WHERE k.parent_id = c.id) ORDER BY code")).scalars().all()
        uid = conn.execute(text("SELECT id FROM users WHERE name = :n"),
                           {"n": BENCH_ACCOUNT}).scalar()
        if uid is None:
            uid = create_user(conn, BENCH_ACCOUNT, "dispatcher")
        token = issue_token(conn, int(uid), expires_in=timedelta(days=1), label="bench")
    points = np.array([(float(r[0]), float(r[1])) for r in rows])
    return Fixture(points, list(categories), [r[2] for r in rows], token, seed)


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    lat_r = math.radians(lat)
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n)
    return x, y


@dataclass
class Call:
    kind: str
    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None


def make_call(kind: str, i: int, fx: Fixture, rng: np.random.Generator) -> Call:
    lon, lat = (float(v) for v in fx.points[i % len(fx.points)])
    staff = {"Authorization": f"Bearer {fx.token}"}
    if kind.startswith("intake"):
        public = kind == "intake_public"
        key = f"{KEY_PREFIX}{fx.run}-{i}"
        body: dict[str, Any] = {"category": fx.categories[i % len(fx.categories)],
                "channel": "app" if public else "hotline", "lon": round(lon, 7),
                "lat": round(lat, 7), "description": f"load test report {i}"}
        if not public:
            body["contact"] = {"name": "Load Test", "phone": f"+86 10 {i:08d}"}
        headers = {"Idempotency-Key": key, **({} if public else staff)}
        return Call(kind, "POST", "/api/cases", headers, body)
    if kind == "locate":
        return Call(kind, "GET", f"/api/locate?lon={lon:.6f}&lat={lat:.6f}", {})
    if kind == "tiles":
        layer, zooms, staff_only = TILE_LAYERS[int(rng.integers(len(TILE_LAYERS)))]
        z = int(zooms[int(rng.integers(len(zooms)))])
        x, y = tile_xy(lon, lat, z)
        return Call(kind, "GET", f"/tiles/{layer}/{z}/{x}/{y}.mvt", staff if staff_only else {})
    if kind.startswith("nearest"):
        mode = kind.split("_", 1)[1]
        return Call(kind, "GET", f"/api/responders/nearest?lon={lon:.6f}&lat={lat:.6f}&k=5"
                    f"&mode={mode}", staff)
    d = float(rng.uniform(0.003, 0.02))
    bbox = f"{lon - d:.5f},{lat - d / 2:.5f},{lon + d:.5f},{lat + d / 2:.5f}"
    who = staff if rng.random() < 0.5 else {}
    if kind == "cases_bbox":
        return Call(kind, "GET", f"/api/cases?bbox={bbox}&limit=50", who)
    if kind == "cases_status":
        status = STATUSES[int(rng.integers(len(STATUSES)))]
        area = fx.grid_codes[i % len(fx.grid_codes)][:12]  # the grid's community
        return Call(kind, "GET", f"/api/cases?status={status}&area={area}&limit=50", who)
    if kind == "cases_paged":
        return Call(kind, "GET", f"/api/cases?bbox={bbox}&limit=20&offset=20", who)
    raise ValueError(f"unknown kind {kind!r}")


# --- the open-loop generator ----------------------------------------------------------------

@dataclass
class Outcome:
    kind: str
    due: float
    latency_s: float
    status: int | None
    error: str | None


async def _sample_rss(pid: int, every_s: float, samples: list[tuple[float, float, float]],
                      t0: float, stop: asyncio.Event) -> None:
    proc = psutil.Process(pid)
    while True:
        with contextlib.suppress(psutil.Error):
            rss = proc.memory_info().rss + sum(c.memory_info().rss
                                               for c in proc.children(recursive=True))
            samples.append((round(time.monotonic() - t0, 1), round(rss / 2**20, 1),
                            round(os.getloadavg()[0], 2)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
            return


class _Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams): a client far lighter than httpx,
    so on a 2-core machine the generator leaves the CPU to the server it measures."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    reopened = 0  # idle connections the server had closed (keep-alive timeout), re-sent

    async def request(self, call: Call, timeout_s: float) -> tuple[int, bytes]:
        reused = self.writer is not None and not self.writer.is_closing()
        try:
            return await self._request(call, timeout_s)
        except ConnectionError:
            if not reused:
                raise
            # The server closed this idle keep-alive connection as we wrote to it: nothing
            # was processed (no status line came back); send once more on a new one, as
            # browsers and HTTP libraries do.
            self.close()
            _Conn.reopened += 1
            return await self._request(call, timeout_s)

    async def _request(self, call: Call, timeout_s: float) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout_s)
        assert self.reader is not None
        body = b"" if call.json is None else json.dumps(call.json).encode()
        head = [f"{call.method} {call.url} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        if call.json is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in call.headers.items()]
        assert self.writer is not None, "connect() first"
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return await asyncio.wait_for(self._response(self.reader), timeout_s)

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            data = b"".join(parts)
        else:
            data = await reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def open_loop(base_url: str, fx: Fixture, *, mix: dict[str, float], rate: float,
                    duration_s: float, server_pid: int | None, rss_every_s: float = 10.0,
                    connections: int = 64, timeout_s: float = 30.0,
                    progress: bool = True) -> dict[str, Any]:
    """Offer ``rate`` requests/s of ``mix`` for ``duration_s`` over ``connections`` keep-alive
    connections; a request waits in the client's queue when all are busy (counted in its
    latency). Returns every outcome, the RSS samples and CPU figures."""
    rng = np.random.default_rng(fx.seed)
    kinds = list(mix)
    weights = np.array([mix[k] for k in kinds], dtype=float)
    n = int(rate * duration_s)
    schedule = rng.choice(len(kinds), size=n, p=weights / weights.sum())
    outcomes: list[Outcome] = []
    rss: list[tuple[float, float, float]] = []
    host, port = base_url.removeprefix("http://").split(":")
    queue: asyncio.Queue[tuple[Call, float] | None] = asyncio.Queue()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu0 = _server_cpu(server_pid)
    backends = BackendCpu() if server_pid else None

    async def worker() -> None:
        conn = _Conn(host, int(port))
        while True:
            item = await queue.get()
            if item is None:
                conn.close()
                return
            call, due = item
            status, error = None, None
            try:
                status, data = await conn.request(call, timeout_s)
                if status not in EXPECTED.get(call.kind, (200,)):
                    error = f"{status}: {data[:160].decode(errors='replace')}"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError,
                    IndexError) as exc:
                conn.close()
                error = f"{type(exc).__name__}: {exc}"[:200]
            outcomes.append(Outcome(call.kind, due, time.monotonic() - due, status, error))

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    stop = asyncio.Event()
    t0 = time.monotonic()
    sampler = (asyncio.create_task(_sample_rss(server_pid, rss_every_s, rss, t0, stop))
               if server_pid else None)
    last_report = t0
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((make_call(kinds[schedule[i]], i, fx, rng), due))
        if progress and time.monotonic() - last_report >= 30:
            last_report = time.monotonic()
            errs = sum(1 for o in outcomes if o.error)
            print(f"[load] {last_report - t0:5.0f} s: {i:,} sent, {len(outcomes):,} answered,"
                  f" {errs} errors, {queue.qsize()} queued in the client", flush=True)
    offered_s = time.monotonic() - t0
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait(workers, timeout=timeout_s * 4 + 60)
    wall_s = time.monotonic() - t0
    stop.set()
    if sampler is not None:
        await sampler
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    server_cpu1 = _server_cpu(server_pid)
    cpu = {k: round(server_cpu1[k] - server_cpu0.get(k, 0.0), 1) for k in server_cpu1}
    if backends is not None:
        cpu["postgres"] = round(backends.stop(), 1)
    return {"outcomes": outcomes, "rss": rss, "offered_s": offered_s, "wall_s": wall_s,
            "scheduled": n, "client_cpu_s": round(client_cpu, 1), "server_cpu_s": cpu,
            "keepalive_resends": _Conn.reopened}


def _server_cpu(pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the app (process + workers): a load-independent measure of cost
    per request (the PostgreSQL side: ``BackendCpu``)."""
    if pid is None:
        return {}
    out = {"app": 0.0}
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            out["app"] += t.user + t.system
    return out


def _backend_cpu(db_name: str) -> dict[tuple[int, float], float]:
    found = {}
    for p in psutil.process_iter(["name", "cmdline", "create_time"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["name"] == "postgres" and f" {db_name} " in f" {cmd} ":
                t = p.cpu_times()
                found[(p.pid, p.info["create_time"])] = t.user + t.system
    return found


class BackendCpu:
    """CPU seconds of the PostgreSQL backends of the benchmark database over a run, sampled
    every ``every_s`` on a thread: a pool's overflow connections come and go during a run, and
    a backend that has exited cannot be asked any more (summing the survivors at the end
    undercounts, even below zero). Backends that appear during the run count from zero."""

    def __init__(self, every_s: float = 0.25) -> None:
        self._db = os.environ.get("GRIDGOV_BENCH_DB_NAME", DEFAULT_DB)
        self._every_s = every_s
        self._base = _backend_cpu(self._db)
        self._last = dict(self._base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._last.update(_backend_cpu(self._db))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(_backend_cpu(self._db))
        return sum(v - self._base.get(k, 0.0) for k, v in self._last.items())


def timeline(outcomes: list[Outcome]) -> list[list[float]]:
    """Per second of the schedule (by due time): [second, requests, p99 ms, max ms] — where
    in the run the slow requests were (a stall shows as a run of slow seconds)."""
    if not outcomes:
        return []
    t0 = min(o.due for o in outcomes)
    seconds: dict[int, list[float]] = {}
    for o in outcomes:
        seconds.setdefault(int(o.due - t0), []).append(o.latency_s * 1e3)
    return [[s, len(v), round(float(np.percentile(v, 99)), 1), round(max(v), 1)]
            for s, v in sorted(seconds.items())]


def summarise(run: dict[str, Any], kinds: list[str]) -> tuple[list[dict[str, Any]], dict]:
    outcomes: list[Outcome] = run["outcomes"]
    rows = []
    wall = run["wall_s"]
    for kind in [*kinds, "all"]:
        mine = [o for o in outcomes if kind == "all" or o.kind == kind]
        if not mine:
            continue
        lat = np.array([o.latency_s for o in mine]) * 1e3
        errors = [o.error for o in mine if o.error]
        rows.append({
            "endpoint": kind, "requests": len(mine), "errors": len(errors),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 1),
            "achieved_per_s": round(len(mine) / wall, 1),
            "error_samples": sorted(set(errors))[:5],
        })
    rss = run["rss"]
    memory: dict[str, Any] = {"samples": rss}
    if len(rss) >= 2:
        t = np.array([s[0] for s in rss]) / 60
        m = np.array([s[1] for s in rss])
        slope = float(np.polyfit(t, m, 1)[0])
        half = len(rss) // 2
        memory.update(first_mib=rss[0][1], last_mib=rss[-1][1], peak_mib=float(m.max()),
                      slope_mib_per_min=round(slope, 2),
                      slope_second_half_mib_per_min=round(float(np.polyfit(
                          t[half:], m[half:], 1)[0]), 2) if len(rss) - half >= 2 else None)
    return rows, memory


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(table(title, ["endpoint", "requests", "errors", "p50 ms", "p95 ms", "p99 ms",
                        "max ms", "req/s"],
                [[r["endpoint"], r["requests"], r["errors"], r["p50_ms"], r["p95_ms"],
                  r["p99_ms"], r["max_ms"], r["achieved_per_s"]] for r in rows]))
    for r in rows:
        if r["error_samples"]:
            print(f"  {r['endpoint']} errors: {r['error_samples']}")


def delete_run_cases(engine: Engine, run: str) -> int:
    """Remove the cases a run created (and the duplicate links it added to older cases)."""
    pattern = f"%:{KEY_PREFIX}{run}-%"
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT id FROM cases WHERE idempotency_key LIKE :p"),
                           {"p": pattern}).scalars().all()
        if not ids:
            return 0
        # case_events is append-only for the app; the benchmark owns this database and removes
        # its own rows, with the guard lifted inside this transaction only.
        conn.execute(text("ALTER TABLE case_events DISABLE TRIGGER case_events_append_only"))
        conn.execute(text("DELETE FROM case_events WHERE action = 'duplicate_linked' AND"
                          " CAST(data->>'case_id' AS bigint) = ANY(:ids)"), {"ids": list(ids)})
        conn.execute(text("DELETE FROM case_events WHERE case_id = ANY(:ids)"),
                     {"ids": list(ids)})
        conn.execute(text("UPDATE cases SET duplicate_of = NULL WHERE duplicate_of = ANY(:ids)"
                          " AND NOT (id = ANY(:ids))"), {"ids": list(ids)})
        conn.execute(text("DELETE FROM cases WHERE id = ANY(:ids)"), {"ids": list(ids)})
        conn.execute(text("ALTER TABLE case_events ENABLE TRIGGER case_events_append_only"))
    return len(ids)


def parse_mix(spec: str | None) -> dict[str, float]:
    if not spec:
        return dict(DEFAULT_MIX)
    mix = {}
    for part in spec.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in DEFAULT_MIX:
            raise SystemExit(f"unknown endpoint {name!r} in --mix; use {', '.join(DEFAULT_MIX)}")
        mix[name.strip()] = float(weight or 1)
    return mix


# The tables an intake writes (cases and what its triggers keep), vacuumed and analyzed before
# a run and after its clean-up.
INTAKE_TABLES = ("cases", "case_events", "kpi_daily", "kpi_area", "kpi_area_quarter",
                 "tile_case_cells", "case_tiles", "tile_invalidations", "live_changes")


def settle(engine: Engine) -> float:
    """``VACUUM ANALYZE`` the intake tables; the seconds it took.

    Each run deletes the cases it created (tens of thousands of dead rows in ``cases``,
    ``case_events`` and the rollups). Left alone, autovacuum takes them up during the next
    run: a VACUUM of ``case_events`` there read and wrote enough to stall every commit for
    seconds (sampled: 30 connections busy in ``COMMIT`` behind WAL flushes) — a cost of the
    benchmark's own clean-up, not of intake. Settling first measures intake on the database
    a live service has, whose cases are never deleted."""
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"VACUUM (ANALYZE) {', '.join(INTAKE_TABLES)}"))
    return time.perf_counter() - t0


@contextlib.contextmanager
def no_client_gc() -> Iterator[None]:
    """The generator's own garbage collector off for the measured run.

    Latency counts from each request's due time, so a pause of the generator is charged to
    the server: with the outcomes and the HTTP client's objects piling up, the generator's
    full collections took 150–480 ms each (``gc.callbacks``, load 15–20) — every request
    in flight then looked that much slower. Objects are still freed by reference counting;
    the cycles of one run are collected after it."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def server_env(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` options → the server's extra environment."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("GRIDGOV_"):
            raise SystemExit(f"--server-env wants GRIDGOV_NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def run_bench(name: str, args: argparse.Namespace, mix: dict[str, float]) -> dict[str, Any]:
    """Shared by bench_load and bench_intake: city, server, warm-up, the run, the record."""
    city = ensure_city(args.db, grids=args.grids, seed=args.seed)
    print(f"[{name}] VACUUM ANALYZE of the intake tables: {settle(city.engine):.1f} s",
          flush=True)
    os.environ["GRIDGOV_BENCH_DB_NAME"] = args.db  # for the per-backend CPU accounting
    fx = prepare(city, seed=args.seed + 6)
    port = free_port()
    log = RESULTS / f"{name}-server.log"
    info = machine(city.engine)
    record: dict[str, Any] = {}
    try:
        with serve(args.db, port, workers=args.workers, log=log,
                   env=server_env(args.server_env)) as proc:
            base = f"http://127.0.0.1:{port}"
            if args.warmup > 0:  # connections, caches, imports; not counted
                warm = Fixture(fx.points, fx.categories, fx.grid_codes, fx.token, fx.seed + 1,
                               run=fx.run + "w")
                asyncio.run(open_loop(base, warm, mix=mix, rate=args.rate,
                                      duration_s=args.warmup, server_pid=None,
                                      progress=False))
            load_before = os.getloadavg()
            print(f"[{name}] offering {args.rate:g} req/s for {args.duration:g} s"
                  f" ({args.workers} worker(s)); load average {load_before[0]:.2f}", flush=True)
            with no_client_gc():
                run = asyncio.run(open_loop(base, fx, mix=mix, rate=args.rate,
                                            duration_s=args.duration, server_pid=proc.pid,
                                            rss_every_s=args.rss_every))
            load_after = os.getloadavg()
        rows, memory = summarise(run, list(mix))
        record = {
            "benchmark": name, "machine": info, "db": args.db, "grids": args.grids,
            "rate_offered": args.rate, "duration_s": args.duration, "workers": args.workers,
            "server_env": server_env(args.server_env),
            "mix": mix, "scheduled": run["scheduled"], "offered_s": round(run["offered_s"], 1),
            "wall_s": round(run["wall_s"], 1), "client_cpu_s": run["client_cpu_s"],
            "server_cpu_s": run["server_cpu_s"], "keepalive_resends": run["keepalive_resends"],
            "server_cpu_ms_per_request": {
                k: round(v * 1e3 / max(1, len(run["outcomes"])), 2)
                for k, v in run["server_cpu_s"].items()},
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in load_after],
            "endpoints": rows, "memory": memory, "timeline": timeline(run["outcomes"]),
        }
    finally:
        if not args.keep_cases:
            deleted = delete_run_cases(city.engine, fx.run)
            deleted += delete_run_cases(city.engine, fx.run + "w")
            print(f"[{name}] deleted the {deleted:,} cases this run created", flush=True)
            settle(city.engine)
        city.engine.dispose()
    return record


def add_common_args(parser: argparse.ArgumentParser, *, rate: float, duration: float) -> None:
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--grids", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=rate, help="offered requests/s")
    parser.add_argument("--duration", type=float, default=duration, help="seconds")
    parser.add_argument("--warmup", type=float, default=10, help="seconds, not counted")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--rss-every", type=float, default=10, help="RSS sampling, seconds")
    parser.add_argument("--keep-cases", action="store_true",
                        help="keep the cases the run created (default: delete them)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the server, e.g. GRIDGOV_POOL_SIZE=40"
                             " (repeatable; recorded)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, rate=50, duration=300)
    parser.add_argument("--mix", help="endpoint=weight,... (default: "
                        + ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()) + ")")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)
    record = run_bench("bench_load", args, mix)
    print_rows(f"Mixed load: {args.rate:g} req/s offered for {args.duration:g} s, "
               f"{args.workers} worker(s); load average {record['load_avg_before'][0]} → "
               f"{record['load_avg_after'][0]}", record["endpoints"])
    mem = record["memory"]
    print(f"\nserver RSS: first {mem.get('first_mib')} MiB, last {mem.get('last_mib')} MiB,"
          f" peak {mem.get('peak_mib')} MiB, slope {mem.get('slope_mib_per_min')} MiB/min"
          f" (second half {mem.get('slope_second_half_mib_per_min')}); client CPU"
          f" {record['client_cpu_s']} s; server CPU per request (ms):"
          f" {record['server_cpu_ms_per_request']}")
    path = save("bench_load", record)
    print(f"record: {path}")
    errors = sum(r["errors"] for r in record["endpoints"] if r["endpoint"] != "all")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Tiles and GeoJSON: gridgov (cache off / warm) against tipg and the raw SQL ceiling.

Side by side in one run, on the same database and a seeded list of requests:

- ``grids_z12``, ``grids_z14``: grid tiles (``/tiles/grids`` vs tipg's ``public.areas`` tiles
  with ``level=3`` and the same properties);
- ``cases_z10``, ``cases_z14``: case tiles (gridgov draws counts per cell at z10 from its
  rollup; tipg has no aggregation and returns up to 10,000 points);
- ``geojson_cases``, ``geojson_grids``: ``/ogc/.../items?bbox=...&limit=100`` vs tipg's items.

Targets: gridgov with the tile cache off ("cold": every request renders or reads its page),
gridgov warm (cache on: tiles and feature pages, every request made once first), tipg
(separate venv, same worker count and DB pool size), and the ceiling: the very function
gridgov runs for each request (``render_tile_async``, ``features_page_async``), called directly
on an asyncpg read pool of the same size from as many tasks as the client has threads: the
same SQL through the same driver, no HTTP. All servers run side by side and the targets take
turns in ``--rounds`` slices of each measurement, so load from other processes on a shared
machine falls on all of them alike. Then the time from a committed edit to a changed tile.

Loopback only; every loop is bounded by a request count and a duration. Typical use::

    GRIDGOV_DB_NAME=gridgov_bench .venv/bin/python bench/bench_tiles.py \\
        --build --tipg-python /tmp/tipg-venv/bin/python

``--build`` creates the synthetic city (20,000 grids, 1,000,000 cases) when the database has
no cases. Results: a Markdown table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import mercantile
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from gis import db, ogc, schema  # noqa: E402
from gis.settings import DatabaseSettings  # noqa: E402
from layers import tiles as layer_tiles  # noqa: E402
from layers.registry import LayerSpec, get_layer  # noqa: E402

GRID_PROPS = "code,name,level,grid_type,households,population,area_m2"
CASE_GEOJSON_PROPS = "status,urgency,channel,reported_at,due_at,closed_at,category_id"
CASE_PROPS = "status,urgency,reported_at,due_at,category_id"  # ~ gridgov tile props


@dataclass
class Request:
    workload: str
    gridgov: str  # path + query
    tipg: str
    sql: Callable[[Any], Awaitable[Any]] | None = None  # gridgov's read, on a read-pool conn


@dataclass
class Result:
    workload: str
    target: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


# --- requests -----------------------------------------------------------------------------

def city_bounds(engine: Engine) -> tuple[float, float, float, float]:
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
            " (SELECT ST_Extent(geom) e FROM areas WHERE valid_to IS NULL AND level = 0) s")).one()
    if row[0] is None:
        raise SystemExit("no areas in the database: run with --build")
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])


def tiles_in(bounds: Sequence[float], z: int, n: int, rng: random.Random) -> list[mercantile.Tile]:
    all_tiles = list(mercantile.tiles(*bounds, zooms=[z]))
    rng.shuffle(all_tiles)
    return all_tiles[:n]


def tile_sql(spec: LayerSpec, z: int, x: int, y: int) -> Callable[[Any], Awaitable[Any]]:
    """gridgov's read of one tile, on a connection of the read pool (the ceiling's job)."""
    async def read(con: Any) -> Any:
        return await layer_tiles.render_tile_async(con, spec, z, x, y, {})
    return read


def page_sql(spec: LayerSpec, bbox: tuple[float, float, float, float]
             ) -> Callable[[Any], Awaitable[Any]]:
    """gridgov's read of one feature page (100 features in ``bbox``) on a read-pool connection."""
    async def read(con: Any) -> Any:
        return await ogc.features_page_async(con, spec.source, ogc.FeatureQuery(bbox=bbox),
                                             limit=100)
    return read


def build_requests(bounds: Sequence[float], n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    grids, cases = get_layer("grids"), get_layer("cases")
    out: list[Request] = []
    for z in (12, 14):
        for t in tiles_in(bounds, z, n, rng):
            out.append(Request(
                f"grids_z{z}", f"/tiles/grids/{z}/{t.x}/{t.y}.mvt",
                f"/collections/public.areas/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}"
                f"?level=3&properties={GRID_PROPS}",
                tile_sql(grids, z, t.x, t.y)))
    for z in (10, 14):
        for t in tiles_in(bounds, z, n, rng):
            out.append(Request(
                f"cases_z{z}", f"/tiles/cases/{z}/{t.x}/{t.y}.mvt",
                f"/collections/public.cases/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}"
                f"?properties={CASE_PROPS}",
                tile_sql(cases, z, t.x, t.y)))
    x0, y0, x1, y1 = bounds
    for name, layer, extra in (("geojson_cases", cases, {}),
                               ("geojson_grids", grids, {"level": "3"})):
        for _ in range(n):
            w, h = 0.01, 0.008  # about 850 m x 900 m
            bx = rng.uniform(x0, x1 - w)
            by = rng.uniform(y0, y1 - h)
            bbox = (round(bx, 5), round(by, 5), round(bx + w, 5), round(by + h, 5))
            q = {"bbox": ",".join(map(str, bbox)), "limit": "100"}
            table = "cases" if layer is cases else "areas"
            props = CASE_GEOJSON_PROPS if layer is cases else GRID_PROPS
            out.append(Request(
                name, f"/ogc/collections/{layer.name}/items?{urlencode(q)}",
                f"/collections/public.{table}/items?{urlencode({**q, **extra})}"
                f"&properties={props}",
                page_sql(layer, bbox)))
    return out


# --- load generation ------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_load(name: str, target: str, jobs: Sequence[Callable[[], bool]], *, concurrency: int,
             duration_s: float, max_requests: int) -> tuple[Result, list[float]]:
    """Cycle through ``jobs`` from ``concurrency`` threads until the time or count is up;
    the result and every request's latency (seconds)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + duration_s

    def worker(offset: int) -> None:
        nonlocal errors
        local: list[float] = []
        bad = 0
        i = offset
        while time.perf_counter() < deadline:
            with lock:
                if next(counter, None) is None:
                    break
            job = jobs[i % len(jobs)]
            i += 1
            start = time.perf_counter()
            ok = job()
            local.append(time.perf_counter() - start)
            bad += 0 if ok else 1
        with lock:
            latencies.extend(local)
            errors += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k * 7919,)) for k in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - started
    return summarise(name, target, latencies, took, errors), latencies


def run_load_async(name: str, target: str, loop: asyncio.AbstractEventLoop,
                   jobs: Sequence[Callable[[], Awaitable[Any]]], *, concurrency: int,
                   duration_s: float, max_requests: int) -> tuple[Result, list[float]]:
    """``run_load`` for coroutines: ``concurrency`` tasks on one event loop (``loop``)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(max_requests))

    async def worker(offset: int, deadline: float) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < deadline and next(counter, None) is not None:
            job = jobs[i % len(jobs)]
            i += 1
            start = time.perf_counter()
            try:
                await job()
            except Exception:  # noqa: BLE001 - counted, as the HTTP targets count non-2xx
                errors += 1
            latencies.append(time.perf_counter() - start)

    async def run_all() -> None:
        deadline = time.perf_counter() + duration_s
        await asyncio.gather(*(worker(k * 7919, deadline) for k in range(concurrency)))

    started = time.perf_counter()
    loop.run_until_complete(run_all())
    took = time.perf_counter() - started
    return summarise(name, target, latencies, took, errors), latencies


def summarise(name: str, target: str, latencies: list[float], seconds: float, errors: int
              ) -> Result:
    return Result(name, target, len(latencies), round(seconds, 2),
                  round(len(latencies) / seconds, 1), round(_percentile(latencies, 0.5) * 1e3, 2),
                  round(_percentile(latencies, 0.99) * 1e3, 2), errors)


# wrk's Lua: cycle through the paths from every connection; at the end, the counts and 1,000
# evenly spaced quantiles of the latency (µs), so that slices can be pooled (``summarise_wrk``).
WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  local q = {}
  for k = 0, 999 do q[#q + 1] = string.format("%%d", latency:percentile((k + 0.5) / 10)) end
  io.write(string.format("WRK-RESULT %%d %%d %%d %%s\\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout, table.concat(q, ",")))
end
"""


def run_wrk(name: str, target: str, port: int, paths: Sequence[str], *, concurrency: int,
            duration_s: float, max_requests: int) -> tuple[Result, list[float]]:
    """``run_load`` by ``wrk`` (C, one thread, ``concurrency`` keep-alive connections) for
    ``duration_s`` (whole seconds; wrk stops by time, ``max_requests`` does not apply). The
    latencies returned are wrk's 1,000 quantiles, each standing for a thousandth of the
    requests."""
    del max_requests
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ",".join(json.dumps(p) for p in paths))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
             "--timeout", "60s", "-s", script.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=duration_s + 90, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK-RESULT ")).split()
    requests, micros, errors = int(line[1]), int(line[2]), int(line[3])
    quantiles = [int(v) / 1e6 for v in line[4].split(",")]
    seconds = micros / 1e6
    result = Result(name, target, requests, round(seconds, 2), round(requests / seconds, 1),
                    round(_percentile(quantiles, 0.5) * 1e3, 2),
                    round(_percentile(quantiles, 0.99) * 1e3, 2), errors)
    return result, quantiles


def pool_slices(name: str, target: str, parts: Sequence[tuple[Result, list[float]]]) -> Result:
    """One cell from its slices: requests and seconds summed; p50/p99 of all latencies, each
    latency weighted by the requests it stands for (one each for the Python clients, a
    thousandth of its slice for wrk's quantiles)."""
    weighted = sorted((lat, r.requests / len(lats)) for r, lats in parts for lat in lats)
    total = sum(w for _, w in weighted)

    def quantile(q: float) -> float:
        seen = 0.0
        for lat, w in weighted:
            seen += w
            if seen > q * total:
                return lat
        return weighted[-1][0] if weighted else float("nan")

    requests = sum(r.requests for r, _ in parts)
    seconds = sum(r.seconds for r, _ in parts)
    return Result(name, target, requests, round(seconds, 2), round(requests / seconds, 1),
                  round(quantile(0.5) * 1e3, 2), round(quantile(0.99) * 1e3, 2),
                  sum(r.errors for r, _ in parts))


class Http:
    """One keep-alive connection per thread to a loopback server: a minimal HTTP/1.1 client.

    ``http.client`` parses every response's headers with the ``email`` package; on a 2-core
    machine that load generator's CPU came out of the servers' share (it is the same for every
    HTTP target, and the SQL ceiling has no client at all). This one sends a fixed request and
    reads the status, the headers and a ``Content-Length`` or chunked body.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def _socket(self) -> socket.socket:
        sock = getattr(self.local, "sock", None)
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.local.sock, self.local.buf = sock, b""
        return sock

    def _read_until(self, sock: socket.socket, size: int) -> None:
        while len(self.local.buf) < size:
            chunk = sock.recv(max(65536, size - len(self.local.buf)))
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.local.buf += chunk

    def _take(self, sock: socket.socket, size: int) -> bytes:
        self._read_until(sock, size)
        out, self.local.buf = self.local.buf[:size], self.local.buf[size:]
        return bytes(out)

    def _line(self, sock: socket.socket) -> bytes:
        while b"\r\n" not in self.local.buf:
            self._read_until(sock, len(self.local.buf) + 1)
        line, _, self.local.buf = self.local.buf.partition(b"\r\n")
        return bytes(line)

    def get(self, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, bytes, dict[str, str]]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                   f"Accept-Encoding: identity\r\n{extra}\r\n").encode("latin-1")
        try:
            sock = self._socket()
            sock.sendall(request)
            status = int(self._line(sock).split()[1])
            found: dict[str, str] = {}
            while line := self._line(sock):
                name, _, value = line.partition(b":")
                found[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            if status in (204, 304) or status < 200:
                body = b""
            elif "content-length" in found:
                body = self._take(sock, int(found["content-length"]))
            elif found.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while size := int(self._line(sock).split(b";")[0], 16):
                    parts.append(self._take(sock, size))
                    self._line(sock)
                while self._line(sock):  # trailers, then the blank line
                    pass
                body = b"".join(parts)
            else:
                raise ConnectionError("a response without a length")
            if found.get("connection", "").lower() == "close":
                self._close()
            return status, body, found
        except (OSError, ValueError, IndexError):
            self._close()
            return 599, b"", {}

    def _close(self) -> None:
        sock = getattr(self.local, "sock", None)
        if sock is not None:
            sock.close()
        self.local.sock, self.local.buf = None, b""

    def job(self, path: str) -> Callable[[], bool]:
        return lambda: self.get(path)[0] in (200, 204)


def http_job(client: Http, *, tipg: bool) -> Callable[[Request], Callable[[], bool]]:
    """The HTTP target's job for a request: its gridgov path, or its tipg path."""
    return lambda r: client.job(r.tipg if tipg else r.gridgov)


# --- servers ----------------------------------------------------------------------------------

def start_server(cmd: list[str], env: dict[str, str], port: int, probe: str
                 ) -> subprocess.Popen[bytes]:
    # stderr goes to a file, never to an undrained pipe: a server that logs blocks on a full
    # pipe (64 KB) and every request then hangs until the client's timeout.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the server runs
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    client = Http(port)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")
            raise SystemExit(f"server {cmd[0]} exited: {err[-2000:]}")
        if client.get(probe)[0] == 200:
            return proc
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"server on port {port} did not answer {probe}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def tcp_url(settings: DatabaseSettings) -> str:
    """Both servers reach PostgreSQL the same way: TCP on loopback (tipg needs a host)."""
    if settings.database_url:
        return settings.database_url
    return f"postgresql://postgres@127.0.0.1:{settings.pg_port}/{settings.db_name}"


def gridgov_server(settings: DatabaseSettings, *, cache_mb: int, workers: int, pool: int
                   ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "GRIDGOV_DATABASE_URL": tcp_url(settings),
           "GRIDGOV_DB_NAME": settings.db_name, "GRIDGOV_POOL_SIZE": str(pool),
           "GRIDGOV_MAX_OVERFLOW": "0", "GRIDGOV_TILES_CACHE_MB": str(cache_mb),
           "GRIDGOV_LOG_ACCESS": "false"}  # as tipg, started with --no-access-log
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
           "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
           "--log-level", "warning"]
    return start_server(cmd, env, port, "/health"), port


def tipg_server(settings: DatabaseSettings, python: str, *, workers: int, pool: int
                ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": tcp_url(settings), "TIPG_DB_MIN_CONN_SIZE": str(pool),
           "TIPG_DB_MAX_CONN_SIZE": str(pool), "TIPG_DB_TABLES": '["public.areas","public.cases"]',
           "TIPG_MAX_FEATURES_PER_TILE": "10000", "TIPG_DEBUG": "FALSE"}
    cmd = [python, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    return start_server(cmd, env, port, "/collections"), port


# --- the run ----------------------------------------------------------------------------------

def edit_latency(engine: Engine, port: int, bounds: Sequence[float], rounds: int
                 ) -> dict[str, list[float]]:
    """Seconds from the commit of a grid rename to the first response showing it: the z14
    tile (a new ETag) and the feature page around the grid (its new name), both cached before
    each edit; polled together, so neither waits for the other."""
    client = Http(port)
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    with engine.connect() as conn:
        area_id, name = conn.execute(text(
            "SELECT id, name FROM areas WHERE level = 3 AND valid_to IS NULL"
            " AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) LIMIT 1"),
            {"x": cx, "y": cy}).one()
    t = mercantile.tile(cx, cy, 14)
    tile = f"/tiles/grids/14/{t.x}/{t.y}.mvt"
    bbox = ",".join(f"{v:.5f}" for v in (cx - 0.002, cy - 0.002, cx + 0.002, cy + 0.002))
    page = f"/ogc/collections/grids/items?{urlencode({'bbox': bbox, 'limit': '100'})}"
    out: dict[str, list[float]] = {"tile": [], "page": []}
    try:
        for i in range(rounds):
            etag = client.get(tile)[2].get("etag", "")
            client.get(page)
            time.sleep(0.3)
            edited = f"{name} (edit {i})"
            with engine.begin() as conn:
                conn.execute(text("UPDATE areas SET name = :n WHERE id = :id"),
                             {"n": edited, "id": area_id})
            committed = time.perf_counter()
            seen: dict[str, float] = {}
            while len(seen) < 2 and time.perf_counter() - committed < 5:
                if "tile" not in seen:
                    status, _, headers = client.get(tile, {"If-None-Match": etag})
                    if status == 200 and headers.get("etag") != etag:
                        seen["tile"] = time.perf_counter() - committed
                if "page" not in seen and f'(edit {i})"'.encode() in client.get(page)[1]:
                    seen["page"] = time.perf_counter() - committed
                time.sleep(0.005)
            for kind, times in out.items():
                times.append(seen.get(kind, float("inf")))
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE areas SET name = :n WHERE id = :id"),
                         {"n": name, "id": area_id})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-name", default=os.environ.get("GRIDGOV_DB_NAME", "gridgov_bench"))
    parser.add_argument("--build", action="store_true",
                        help="build the synthetic city if the database has no cases")
    parser.add_argument("--grids", type=int, default=20_000)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--tiles", type=int, default=40, help="requests per workload")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4,
                        help="targets take turns in this many slices of each measurement")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--tipg-python", default="/tmp/tipg-venv/bin/python",
                        help="python of a separate venv with tipg installed ('' to skip)")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--only", default="", help="comma list of workloads to run")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator of the HTTP targets: wrk (apt-get install wrk;"
                             " auto: when installed) or the bench's Python client")
    args = parser.parse_args(argv)
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or --client python)")
    if client == "wrk" and args.duration / max(1, args.rounds) < 1:
        raise SystemExit("with wrk, each slice (--duration / --rounds) must last 1 s or more")
    print(f"HTTP load generator: {client}", flush=True)

    settings = DatabaseSettings(db_name=args.db_name)
    db.start_cluster(settings)
    schema.upgrade(dbname=args.db_name)
    engine = db.make_engine(DatabaseSettings(database_url=tcp_url(settings)),
                            pool_size=args.pool, max_overflow=0)
    with engine.connect() as conn:
        n_cases = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
    if n_cases == 0 and args.build:
        from gis import synth

        print(f"building the synthetic city ({args.grids} grids, {args.cases} cases)...",
              flush=True)
        synth.build_synth(engine, grids=args.grids, seed=args.seed, cases=args.cases,
                          progress=True)
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT (SELECT count(*) FROM areas WHERE level = 3 AND valid_to IS NULL),"
            " (SELECT count(*) FROM cases)")).one()
    print(f"database {args.db_name}: {counts[0]} grids, {counts[1]} cases", flush=True)
    bounds = city_bounds(engine)
    requests = build_requests(bounds, args.tiles, args.seed)
    workloads = sorted({r.workload for r in requests}, key=[r.workload for r in requests].index)
    if args.only:
        workloads = [w for w in workloads if w in args.only.split(",")]
    results: list[Result] = []

    # The ceiling: the very function the app runs for a tile or a page (rendering on the
    # asyncpg read pool: gis.readpool), called directly on a read pool of the app's size, from
    # as many tasks as the client has threads, on one event loop of the bench process.
    loop = asyncio.new_event_loop()
    read_pool = db.make_read_pool(DatabaseSettings(database_url=tcp_url(settings)),
                                  size=args.pool)

    def sql_job(r: Request) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            assert r.sql is not None
            async with read_pool.connection() as con:
                await r.sql(con)
        return run

    # All servers run at once and the targets take turns, ``--rounds`` slices each per
    # workload: on a shared machine the load of other processes then falls on every target
    # alike instead of on whichever happened to be measured while it lasted.
    servers: list[subprocess.Popen[bytes]] = []
    edits: dict[str, list[float]] = {}
    try:
        targets: dict[str, Callable[[Request], Callable[[], Any]]] = {"sql_ceiling": sql_job}
        ports: dict[str, int] = {}  # HTTP target → its port
        for target, cache_mb in (("gridgov_cold", 0), ("gridgov_warm", 256)):
            proc, port = gridgov_server(settings, cache_mb=cache_mb, workers=args.workers,
                                        pool=args.pool)
            servers.append(proc)
            targets[target] = http_job(Http(port), tipg=False)
            ports[target] = port
        if args.tipg_python:
            proc, port = tipg_server(settings, args.tipg_python, workers=args.workers,
                                     pool=args.pool)
            servers.append(proc)
            targets["tipg"] = http_job(Http(port), tipg=True)
            ports["tipg"] = port
        rounds = max(1, args.rounds)
        load = {"concurrency": args.concurrency, "duration_s": args.duration / rounds,
                "max_requests": max(1, args.max_requests // rounds)}
        for w in workloads:
            mine = [r for r in requests if r.workload == w]
            jobs = {t: [make(r) for r in mine] for t, make in targets.items()}
            for job in jobs["gridgov_warm"]:
                job()  # fill the cache
            slices: dict[str, list[tuple[Result, list[float]]]] = {t: [] for t in targets}
            for _ in range(rounds):
                for t in targets:
                    if t == "sql_ceiling":
                        slices[t].append(run_load_async(w, t, loop, jobs[t], **load))
                    elif client == "wrk":
                        paths = [r.tipg if t == "tipg" else r.gridgov for r in mine]
                        slices[t].append(run_wrk(w, t, ports[t], paths, **load))
                    else:
                        slices[t].append(run_load(w, t, jobs[t], **load))
            for t, parts in slices.items():
                results.append(pool_slices(w, t, parts))
                print(f"  {w:15s} {t:15s} {results[-1].rps:9.1f} req/s"
                      f"  p50 {results[-1].p50_ms:8.2f} ms  p99 {results[-1].p99_ms:8.2f} ms"
                      f"  errors {results[-1].errors}", flush=True)
        if args.edits:
            edits = edit_latency(engine, ports["gridgov_warm"], bounds, args.edits)
    finally:
        for proc in servers:
            stop(proc)
        loop.run_until_complete(read_pool.close())
        loop.close()

    table = report(results, workloads)
    print(table)
    edit_ms = {kind: [round(e * 1e3, 1) for e in times] for kind, times in edits.items()}
    for kind, times in edit_ms.items():
        if times:
            print(f"edit → changed {kind}: p50 {statistics.median(times):.1f} ms,"
                  f" max {max(times):.1f} ms over {len(times)} edits")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"tiles-{stamp}.json").write_text(json.dumps({
        "args": vars(args), "client": client, "grids": counts[0], "cases": counts[1],
        "results": [asdict(r) for r in results], "edit_to_tile_ms": edit_ms.get("tile", []),
        "edit_to_page_ms": edit_ms.get("page", [])}, indent=1))
    engine.dispose()
    return 0


def report(results: list[Result], workloads: Sequence[str]) -> str:
    by = {(r.workload, r.target): r for r in results}
    targets = ["gridgov_cold", "gridgov_warm", "tipg", "sql_ceiling"]
    lines = ["| workload | " + " | ".join(f"{t} req/s (p50/p99 ms)" for t in targets)
             + " | cold/tipg | cold/ceiling | warm/tipg | warm/ceiling |",
             "|---" * (len(targets) + 5) + "|"]
    for w in workloads:
        cells = []
        for t in targets:
            r = by.get((w, t))
            cells.append(f"{r.rps:.0f} ({r.p50_ms:.1f}/{r.p99_ms:.1f})" if r else "–")

        def ratio(a: str, b: str, w: str = w) -> str:
            ra, rb = by.get((w, a)), by.get((w, b))
            return f"{ra.rps / rb.rps:.2f}×" if ra and rb and rb.rps else "–"

        lines.append(f"| {w} | " + " | ".join(cells) + f" | {ratio('gridgov_cold', 'tipg')} |"
                     f" {ratio('gridgov_cold', 'sql_ceiling')} | {ratio('gridgov_warm', 'tipg')} |"
                     f" {ratio('gridgov_warm', 'sql_ceiling')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

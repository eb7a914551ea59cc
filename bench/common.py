"""Shared helpers for the benchmarks: the benchmark database and city, machine facts, timing
statistics and the side-by-side table every benchmark prints.

The benchmark database (default ``gridgov_bench``) holds exactly one synthetic city; it is
built on first use (``build_synth``) and reused while its code matches. It is never the
``gridgov`` demo database.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Engine, text

from gis import db, schema, synth
from gis.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_DB = "gridgov_bench"


@dataclass
class City:
    engine: Engine
    settings: DatabaseSettings
    db_name: str
    jurisdiction_id: int
    code: str
    bbox: tuple[float, float, float, float]
    grids: int
    build_seconds: dict[str, float] | None


def ensure_city(db_name: str, *, grids: int, seed: int, cases: int | None = None,
                rebuild: bool = False) -> City:
    """The benchmark database with the synthetic city of ``grids``/``seed`` in it.

    A database holding another city (or anything else) is dropped and rebuilt: the benchmark
    database belongs to the benchmarks.
    """
    if db_name == "gridgov":
        raise SystemExit("refusing to use the gridgov demo database for benchmarks")
    settings = DatabaseSettings()
    db.start_cluster(settings)
    code = synth.default_code(grids, seed)
    if rebuild:
        db.drop_database(settings, db_name)
    db.ensure_database(settings, db_name)
    schema.upgrade(dbname=db_name)
    engine = db.make_engine(settings, db_name)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT code FROM jurisdictions ORDER BY id")).scalars().all()
    build_seconds = None
    if list(found) != [code]:
        if found:
            print(f"[bench] {db_name} holds {list(found)}, not {code}: rebuilding it", flush=True)
            engine.dispose()
            db.drop_database(settings, db_name)
            db.ensure_database(settings, db_name)
            schema.upgrade(dbname=db_name)
            engine = db.make_engine(settings, db_name)
        print(f"[bench] building synthetic city {code} in {db_name} ...", flush=True)
        summary = synth.build_synth(engine, grids=grids, seed=seed, cases=cases, progress=True)
        build_seconds = summary["seconds"]
        print(f"[bench] built in {build_seconds['total']} s: {json.dumps(build_seconds)}",
              flush=True)
    with engine.connect() as conn:
        jid, = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                            {"c": code}).one()
        box = conn.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
                                " (SELECT ST_Extent(geom) AS e FROM areas WHERE level = 0"
                                " AND jurisdiction_id = :j) s"), {"j": jid}).one()
    x0, y0, x1, y1 = (float(v) for v in box)
    return City(engine, settings, db_name, int(jid), code, (x0, y0, x1, y1), grids,
                build_seconds)


def random_points(bbox: Sequence[float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points in the bounding box (some fall outside the warped city edge)."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bbox
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


def machine(engine: Engine | None = None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gib = round(mem_kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
        "cores": os.cpu_count(), "mem_gib": mem_gib, "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    try:
        import geopandas
        import shapely

        info["shapely"] = shapely.__version__
        info["geopandas"] = geopandas.__version__
    except ImportError:
        pass
    if engine is not None:
        info.update(db.versions(engine))
    return info


def percentile_ms(seconds: Sequence[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1e3, q))


def timed(fn: Any, *args: Any, repeat: int = 1, **kwargs: Any) -> tuple[Any, float]:
    """Result of the last call and the best wall time of ``repeat`` calls."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return result, best


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pasted as is into docs/benchmarks.md)."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    out = [f"\n{title}\n", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
    return path


# --- the server under test ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(db_name: str, port: int, *, workers: int, log: Path, timeout: float = 90,
          env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``gridgov serve`` on loopback in its own process group, up once ``/health`` answers
    200; stopped (SIGTERM, then SIGKILL) on exit. Intake rate limits are off: a benchmark
    offers far more reports from one address than a public caller may send."""
    full_env = {**os.environ, "GRIDGOV_DB_NAME": db_name, "GRIDGOV_LIMITS_ENABLED": "false",
                **(env or {})}
    cmd = [str(ROOT / ".venv" / "bin" / "gridgov"), "serve", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"server not up after {timeout:.0f} s; see {log}")
            time.sleep(0.2)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # our own process group only
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

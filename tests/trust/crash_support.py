"""Helpers for the crash-safety test: a private PostgreSQL cluster, the real server as a
subprocess, a stream of case reports from client threads, and the consistency audit.

The shared test cluster is never touched: the private cluster lives in its own tmp folder on
its own port and is stopped and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.pool import NullPool

from gis import db, schema
from gis.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parents[2]
GRIDGOV = Path(sys.executable).parent / "gridgov"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the private cluster --------------------------------------------------------------------

@dataclass
class PrivateCluster:
    root: Path
    settings: DatabaseSettings

    def env(self) -> dict[str, str]:
        """The environment that points gridgov (CLI, server) at this cluster only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDGOV_")}
        env.update(GRIDGOV_DATA_DIR=str(self.settings.data_dir),
                   GRIDGOV_PG_PORT=str(self.settings.pg_port),
                   GRIDGOV_DB_NAME=self.settings.db_name,
                   # a crash test, not a rate-limit test: one loopback address posts them all
                   GRIDGOV_LIMITS_ENABLED="false")
        return env

    def engine(self) -> Engine:
        return db.make_engine(self.settings, poolclass=NullPool)

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, clients cut off, crash recovery on start."""
        db.stop_cluster(self.settings, mode="immediate")

    def start(self) -> None:
        db.start_cluster(self.settings, timeout_s=60)


@contextlib.contextmanager
def private_cluster(db_name: str = "gridgov_crash") -> Iterator[PrivateCluster]:
    """A fresh, migrated cluster in a tmp folder the ``postgres`` user can reach."""
    root = Path(tempfile.mkdtemp(prefix="gridgov-crash-", dir="/tmp"))
    root.chmod(0o755)
    settings = DatabaseSettings(database_url=None, data_dir=root / "data", pg_port=free_port(),
                                db_name=db_name)
    cluster = PrivateCluster(root, settings)
    try:
        db.start_cluster(settings, timeout_s=60)
        engine = cluster.engine()
        try:
            with engine.begin() as conn:
                schema.upgrade(connection=conn)
        finally:
            engine.dispose()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            db.stop_cluster(settings, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


# --- the server -----------------------------------------------------------------------------

class Server:
    """``gridgov serve`` in its own process group (so a kill reaches it and nothing else)."""

    def __init__(self, cluster: PrivateCluster, log: Path) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 40) -> float:
        """Start and wait for ``/health`` → 200; returns the seconds it took."""
        started = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(GRIDGOV), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1"],
                cwd=ROOT, env=self.cluster.env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='ignore')[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"server not up after {timeout_s} s")
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill9()


# --- the stream of reports ------------------------------------------------------------------

def png(tag: str) -> bytes:
    """A valid 1×1 PNG whose bytes are unique to ``tag`` (a tEXt chunk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"k\0" + tag.encode())
            + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b""))


@dataclass
class Report:
    """One report and everything that happened to it."""

    key: str
    payload: dict[str, Any]
    token: str | None
    photo: bytes | None
    first: str = ""                 # "2xx", "503", "refused", "in_flight", "other:<status>"
    status: int | None = None       # the final status (after retries)
    case_id: int | None = None
    sent_at: float = 0.0
    retry_after: list[str] = field(default_factory=list)
    retry_status: int | None = None  # the retry's status: 200 = committed before the fault

    def send(self, client: httpx.Client, url: str) -> httpx.Response:
        headers = {"Idempotency-Key": self.key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.photo is not None:
            form = {k: str(v) for k, v in self.payload.items()}
            return client.post(f"{url}/api/cases", data=form, headers=headers,
                               files={"photos": ("photo.png", self.photo, "image/png")})
        return client.post(f"{url}/api/cases", json=self.payload, headers=headers)


class Stream:
    """``clients`` threads posting new reports (unique keys) until ``stop()``; every outcome is
    recorded. Staff (hotline) and public (app) callers alternate; every 5th report has a photo.
    """

    def __init__(self, url: str, *, tag: str, points: list[tuple[float, float]],
                 categories: list[str], staff_token: str, clients: int = 4) -> None:
        self.url, self.tag, self.points, self.categories = url, tag, points, categories
        self.staff_token, self.clients = staff_token, clients
        self.reports: list[Report] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._n = 0
        self.refused_attempts = 0

    def _next(self) -> Report:
        with self._lock:
            n = self._n
            self._n += 1
        lon, lat = self.points[n % len(self.points)]
        staff = n % 2 == 0
        key = f"{self.tag}-{n}-{uuid.uuid4().hex[:8]}"
        payload = {"category": self.categories[n % len(self.categories)],
                   "channel": "hotline" if staff else "app",
                   "lon": round(lon + (n % 97) * 1e-5, 7), "lat": round(lat + (n % 89) * 1e-5, 7),
                   "description": f"crash test report {key}"}
        report = Report(key, payload, self.staff_token if staff else None,
                        png(key) if n % 5 == 4 else None)
        with self._lock:
            self.reports.append(report)
        return report

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(15.0, connect=2.0)) as client:
            report: Report | None = None
            while not self._stop.is_set():
                report = report or self._next()
                report.sent_at = time.monotonic()
                try:
                    r = report.send(client, self.url)
                except httpx.ConnectError:
                    # Never reached a server (the app is down): send this one again shortly,
                    # as any client would.
                    with self._lock:
                        self.refused_attempts += 1
                    time.sleep(0.1)
                    continue
                except httpx.TransportError:
                    report.first = "in_flight"    # sent; the server died before answering
                    report = None
                    continue
                current, report = report, None
                current.status = r.status_code
                if r.is_success:
                    current.first = "2xx"
                    current.case_id = int(r.json()["id"])
                elif r.status_code == 503:
                    current.first = "503"
                    current.retry_after.append(r.headers.get("Retry-After", ""))
                    time.sleep(0.25)  # back off (Retry-After says 5 s; the test is shorter)
                else:
                    current.first = f"other:{r.status_code}:{r.text[:200]}"
            if report is not None and report.first == "":
                report.first = "unsent"  # stopped while the server was unreachable

    def start(self) -> None:
        for _ in range(self.clients):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def acknowledged(self) -> int:
        with self._lock:
            return sum(1 for r in self.reports if r.first == "2xx")


def retry_unanswered(url: str, reports: list[Report], *, attempts: int = 20) -> None:
    """Retry every report without a 2xx with the same key and body until it gets one."""
    with httpx.Client(timeout=15.0) as client:
        for report in reports:
            if report.first == "2xx":
                continue
            for _ in range(attempts):
                try:
                    r = report.send(client, url)
                except httpx.TransportError:
                    time.sleep(0.25)
                    continue
                if r.status_code == 503:
                    time.sleep(0.25)
                    continue
                report.status = report.retry_status = r.status_code
                if r.is_success:
                    report.case_id = int(r.json()["id"])
                break


def replay_acknowledged(url: str, reports: list[Report]) -> list[str]:
    """Send every acknowledged report again: each must answer 200, replayed, the same id."""
    problems = []
    with httpx.Client(timeout=15.0) as client:
        for report in reports:
            if report.case_id is None:
                continue
            r = report.send(client, url)
            if (r.status_code != 200 or r.headers.get("Idempotent-Replayed") != "true"
                    or r.json().get("id") != report.case_id):
                problems.append(f"{report.key}: {r.status_code} {r.text[:120]}")
    return problems


# --- the audit ------------------------------------------------------------------------------

def audit(engine: Engine, reports: list[Report], tag: str, media_dir: Path) -> dict[str, Any]:
    """Compare what clients were told with what the database holds; count half-written rows."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, split_part(idempotency_key, ':', 2) AS key, media FROM cases"
            " WHERE idempotency_key LIKE :p"), {"p": f"%:{tag}-%"}).all()
        by_key: dict[str, list[int]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(int(row.id))
        report_events: dict[int, int] = {int(k): int(n) for k, n in conn.execute(text(
            "SELECT c.id, count(e.id) FROM cases c LEFT JOIN case_events e"
            " ON e.case_id = c.id AND e.action = 'report' GROUP BY c.id")).all()}
        orphan_events = conn.execute(text(
            "SELECT count(*) FROM case_events e WHERE NOT EXISTS"
            " (SELECT 1 FROM cases c WHERE c.id = e.case_id)")).scalar()
        refs = [m["sha256"] for row in conn.execute(text(
            "SELECT media FROM cases WHERE media IS NOT NULL")).all() for m in row.media]
        # Derived tables kept by triggers must equal a rebuild from the cases (rolled back).
        cells_now = conn.execute(text(
            "SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells"
            " ORDER BY 1, 2, 3, 4, 5")).all()
        kpi_now = conn.execute(text("SELECT * FROM kpi_daily ORDER BY 1, 2, 3, 4")).all()
        conn.rollback()
        tx = conn.begin()
        try:
            conn.execute(text("SELECT gridgov_rebuild_case_cells()"))
            cells_rebuilt = conn.execute(text(
                "SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells"
                " ORDER BY 1, 2, 3, 4, 5")).all()
            conn.execute(text("SELECT gridgov_kpi_rebuild()"))
            kpi_rebuilt = conn.execute(text("SELECT * FROM kpi_daily ORDER BY 1, 2, 3, 4")).all()
        finally:
            tx.rollback()
    files = {p.name for p in media_dir.iterdir()} if media_dir.is_dir() else set()
    sent = {r.key: r for r in reports}
    acknowledged = [r for r in reports if r.case_id is not None]
    lost = [r.key for r in acknowledged if r.case_id not in by_key.get(r.key, [])]
    lost += [r.key for r in reports if r.case_id is None]  # never got a 2xx, even on retry
    return {
        "reported": len(reports),
        "acknowledged_in_stream": sum(1 for r in reports if r.first == "2xx"),
        "unanswered_in_stream": sum(1 for r in reports if r.first != "2xx"),
        "in_flight_at_fault": sum(1 for r in reports if r.first == "in_flight"),
        "unsent_at_stop": sum(1 for r in reports if r.first == "unsent"),
        "answered_503": sum(1 for r in reports if r.first == "503"),
        "other_errors": [r.first for r in reports if r.first.startswith("other")],
        "retry_after_missing": sum(1 for r in reports for h in r.retry_after if not h.isdigit()),
        "committed_before_fault_found_on_retry": sum(
            1 for r in reports if r.first != "2xx" and r.retry_status == 200),
        "created_on_retry": sum(1 for r in reports if r.first != "2xx" and r.retry_status == 201),
        "recovered": sum(1 for r in reports if r.first != "2xx" and r.case_id is not None),
        "lost": len(lost),
        "lost_keys": lost[:10],
        "duplicates": sum(len(ids) - 1 for ids in by_key.values()),
        "cases_without_a_request": sorted(set(by_key) - set(sent))[:10],
        "cases_without_exactly_one_report_event": sum(
            1 for n in report_events.values() if n != 1),
        "orphan_events": int(orphan_events or 0),
        "photo_refs_missing_file": sum(1 for s in set(refs) if s not in files),
        "orphan_photos": sum(1 for f in files if not f.startswith(".") and f not in set(refs)),
        "upload_temp_files": sum(1 for f in files if f.startswith(".upload-")),
        "tile_cells_consistent": cells_now == cells_rebuilt,
        "kpi_rows_consistent": kpi_now == kpi_rebuilt,
    }

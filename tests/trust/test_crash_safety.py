"""Crash safety (issue 8): nothing acknowledged is lost, retries never duplicate, no half-written
rows — when the app is killed with SIGKILL mid-stream, and when PostgreSQL is stopped with
``pg_ctl stop -m immediate`` mid-stream (the API then answers 503 + Retry-After and recovers
by itself when the database is back).

Runs against a private PostgreSQL cluster (tmp folder, free port: the shared test cluster is
never stopped) and the real ``gridgov serve``, with four client threads posting case reports
(staff hotline and public app reports, every fifth with a photo), each with a unique
Idempotency-Key. After each fault every report without a 2xx is retried with the same key and
body; every acknowledged report is replayed once more. The figures are printed and saved to
``bench/results/crash_safety-*.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.factories import account, case_world
from tests.trust.crash_support import (
    PrivateCluster,
    Server,
    Stream,
    audit,
    private_cluster,
    replay_acknowledged,
    retry_unanswered,
)

pytestmark = pytest.mark.slow

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
WARM_ACKS = 40      # acknowledged reports before the fault
AFTER_ACKS = 40     # acknowledged reports after recovery before the stream stops


class World:
    def __init__(self, cluster: PrivateCluster, server: Server, token: str,
                 points: list[tuple[float, float]], categories: list[str]) -> None:
        self.cluster, self.server, self.token = cluster, server, token
        self.points, self.categories = points, categories

    def stream(self, tag: str) -> Stream:
        return Stream(self.server.url, tag=tag, points=self.points, categories=self.categories,
                      staff_token=self.token)

    @property
    def media_dir(self) -> Path:
        return self.cluster.settings.data_dir / "media"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with private_cluster() as cluster:
        engine = cluster.engine()
        try:
            with engine.begin() as conn:
                city = case_world(conn, code="CRASH-CITY")
                _, token = account(conn, "call_taker", name="crash-call-taker")
                categories = conn.execute(text(
                    "SELECT code FROM categories c WHERE active AND NOT EXISTS"
                    " (SELECT 1 FROM categories k WHERE k.parent_id = c.id)"
                    " ORDER BY code LIMIT 4")).scalars().all()
        finally:
            engine.dispose()
        points = [city.point(s, g) for s in (1, 2) for g in (1, 2)]
        server = Server(cluster, tmp_path_factory.mktemp("crash") / "server.log")
        server.start()
        try:
            yield World(cluster, server, token, points, list(categories))
        finally:
            server.stop()


def _wait_acks(stream: Stream, n: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while stream.acknowledged() < n:
        assert time.monotonic() < deadline, f"only {stream.acknowledged()} acknowledged"
        time.sleep(0.05)


def _finish(world: World, stream: Stream, tag: str, extra: dict[str, Any]) -> dict[str, Any]:
    retry_unanswered(world.server.url, stream.reports)
    replay_problems = replay_acknowledged(world.server.url, stream.reports)
    engine = world.cluster.engine()
    try:
        figures = audit(engine, stream.reports, tag, world.media_dir)
    finally:
        engine.dispose()
    figures.update(extra, replay_problems=replay_problems[:10],
                   replays_not_identical=len(replay_problems))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"crash_safety-{tag}-{stamp}.json").write_text(json.dumps(figures, indent=2))
    print(f"\n[crash-safety {tag}] " + json.dumps(figures))
    return figures


def _assert_safe(f: dict[str, Any]) -> None:
    assert f["lost"] == 0, f["lost_keys"]
    assert f["duplicates"] == 0
    assert f["replays_not_identical"] == 0, f["replay_problems"]
    assert f["cases_without_a_request"] == []
    assert f["other_errors"] == []
    assert f["cases_without_exactly_one_report_event"] == 0
    assert f["orphan_events"] == 0
    assert f["photo_refs_missing_file"] == 0 and f["orphan_photos"] == 0
    assert f["tile_cells_consistent"] and f["kpi_rows_consistent"]
    assert f["recovered"] == f["unanswered_in_stream"]


def test_kill_9_of_the_app_mid_stream_loses_and_duplicates_nothing(world: World) -> None:
    stream = world.stream("crashA")
    stream.start()
    try:
        _wait_acks(stream, WARM_ACKS)
        acked_before = stream.acknowledged()
        world.server.kill9()
        time.sleep(0.5)  # clients meet a dead port
        restart_s = world.server.start()
        _wait_acks(stream, acked_before + AFTER_ACKS)
    finally:
        stream.stop()
    f = _finish(world, stream, "crashA", {"fault": "kill -9 of gridgov serve",
                                         "restart_s": round(restart_s, 2),
                                         "connection_refused_attempts": stream.refused_attempts})
    _assert_safe(f)
    assert f["in_flight_at_fault"] + stream.refused_attempts > 0  # the kill hit the stream


def test_immediate_postgres_stop_answers_503_then_recovers_by_itself(world: World) -> None:
    stream = world.stream("crashB")
    stream.start()
    try:
        _wait_acks(stream, WARM_ACKS)
        world.cluster.stop_immediate()
        down_at = time.monotonic()
        time.sleep(1.0)
        with httpx.Client(timeout=10) as client:  # while down: 503 + Retry-After, quickly
            for path in ("/health", "/api/locate?lon=10.005&lat=50.01", "/api/cases?limit=5"):
                t0 = time.monotonic()
                r = client.get(world.server.url + path)
                assert r.status_code == 503, (path, r.status_code, r.text[:200])
                assert r.headers["Retry-After"].isdigit() and "database" in r.json()["detail"]
                assert time.monotonic() - t0 < 2.0
        acked_down = stream.acknowledged()
        world.cluster.start()
        up_at = time.monotonic()
        _wait_acks(stream, acked_down + 1)
        recovery_s = time.monotonic() - up_at
        _wait_acks(stream, acked_down + AFTER_ACKS)
    finally:
        stream.stop()
    f = _finish(world, stream, "crashB", {
        "fault": "pg_ctl stop -m immediate, then start", "down_s": round(up_at - down_at, 2),
        "first_2xx_after_start_s": round(recovery_s, 2),
        "connection_refused_attempts": stream.refused_attempts})
    _assert_safe(f)
    assert f["answered_503"] > 0 and f["retry_after_missing"] == 0
    assert stream.refused_attempts == 0  # the app stayed up and answered throughout

"""Idempotency against a real server: a real uvicorn on loopback, several threads posting the
same report with the same Idempotency-Key at the same moment → one case, one answer."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from gis.settings import DatabaseSettings
from tests.factories import CaseWorld, case_world, purge_jurisdiction


@pytest.fixture
def committed_world(engine: Engine) -> Iterator[CaseWorld]:
    with engine.begin() as conn:
        world = case_world(conn, code=f"HTTP-{uuid.uuid4().hex[:6]}", x0=-40.0, y0=-30.0)
    try:
        yield world
    finally:
        with engine.begin() as conn:
            purge_jurisdiction(conn, world.city.jurisdiction_id)


@pytest.fixture
def server(db_settings: DatabaseSettings, db_name: str) -> Iterator[str]:
    from api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = db_settings.model_copy(update={"db_name": db_name})
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_racing_posts_with_one_key_create_one_case(server: str, engine: Engine,
                                                   committed_world: CaseWorld) -> None:
    lon, lat = committed_world.point(2, 2)
    payload = {"category": "E010101", "lon": lon, "lat": lat, "description": "race"}
    key = f"http-race-{uuid.uuid4()}"
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            answers.append(http.post(f"{server}/api/cases", json=payload,
                                     headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert all(a.json() == answers[0].json() for a in answers)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM cases WHERE idempotency_key = :k"),
                              {"k": f"public:{key}"}).scalar()
    assert stored == 1

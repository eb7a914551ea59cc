"""Idempotency under a real race: two connections, two transactions, one key → one case.

These tests commit (a race needs two transactions), so they use their own city far from every
other test's and delete what they wrote afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from gis.intake import IntakeResult, Report, create_case
from tests.factories import CaseWorld, case_world, purge_jurisdiction

RACE_X0, RACE_Y0 = 30.0, -20.0


@pytest.fixture
def committed_world(engine: Engine) -> Iterator[CaseWorld]:
    with engine.begin() as conn:
        world = case_world(conn, code=f"RACE-{uuid.uuid4().hex[:6]}", x0=RACE_X0, y0=RACE_Y0)
    try:
        yield world
    finally:
        with engine.begin() as conn:
            purge_jurisdiction(conn, world.city.jurisdiction_id)


def race_report(world: CaseWorld, key: str) -> Report:
    lon, lat = world.point(1, 2)
    return Report(category="E010101", lon=lon, lat=lat, description="race",
                  idempotency_key=key)


def test_second_transaction_waits_for_the_first_and_answers_its_case(
        engine: Engine, committed_world: CaseWorld) -> None:
    key = f"race-{uuid.uuid4()}"
    results: list[IntakeResult] = []

    def second() -> None:
        with engine.begin() as conn2:
            results.append(create_case(conn2, race_report(committed_world, key)))

    with engine.connect() as conn1:
        tx = conn1.begin()
        first = create_case(conn1, race_report(committed_world, key))
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the second insert must wait on the unique key"
        tx.commit()
    thread.join(10)
    assert first.created and not results[0].created and results[0].body == first.body
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM cases WHERE idempotency_key LIKE :k"),
                         {"k": f"%:{key}"}).scalar()
    assert n == 1


def test_many_threads_racing_one_key_create_exactly_one_case(
        engine: Engine, committed_world: CaseWorld) -> None:
    key = f"race-{uuid.uuid4()}"
    barrier = threading.Barrier(6)
    ids: list[int] = []

    def post() -> None:
        barrier.wait()
        with engine.begin() as conn:
            ids.append(create_case(conn, race_report(committed_world, key)).body["id"])

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(ids) == 6 and len(set(ids)) == 1

"""The live-feed triggers and payloads (migrations 0002_dispatch, 0008_intake_speed;
gis.live)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text

from gis.areas import create_jurisdiction
from gis.live import ChangeFeed, expand

FULL_CASES = """
INSERT INTO cases (jurisdiction_id, category_id, channel, urgency, description, status,
                   reported_at, due_at, closed_at, escalation_level, idempotency_key, geom)
SELECT :j, :c, 'hotline', 4, repeat('long description ', 500), 'in_progress',
       now() - interval '3 days 4 hours', now() + interval '17 days 2 hours',
       now() + interval '1 day', 3, 'live-test-' || g,
       ST_SetSRID(ST_MakePoint(116.123456789 + g * 1e-6, 39.987654321), 4326)
  FROM generate_series(1, :n) AS g
"""


@pytest.fixture
def world(conn: Connection) -> dict[str, int]:
    jid = create_jurisdiction(conn, code="TEST-LIVE", name="Live", local_srid=25832)
    cat = conn.execute(text("INSERT INTO categories (code, kind, depth, name)"
                            " VALUES ('TLIVE', 'event', 0, 'x') RETURNING id")).scalar_one()
    return {"j": jid, "c": int(cat)}


@pytest.mark.parametrize("n", [1, 25, 300, 5000, 5001])
def test_large_statements_on_cases_never_exceed_the_notify_payload_limit(
        conn: Connection, world: dict[str, int], n: int) -> None:
    conn.execute(text(FULL_CASES), {**world, "n": n})
    conn.execute(text("UPDATE cases SET status = 'handled', responder_id = NULL,"
                      " department_id = NULL WHERE jurisdiction_id = :j"), world)
    conn.execute(text("DELETE FROM cases WHERE jurisdiction_id = :j"), world)


def test_a_batch_of_responder_changes_fits_the_payload_limit(
        conn: Connection, world: dict[str, int]) -> None:
    conn.execute(text(
        "INSERT INTO responders (jurisdiction_id, name, kind, skills, status, position_at, geom)"
        " SELECT :j, repeat('n', 300), 'vehicle', ARRAY[repeat('s', 60), repeat('t', 60)],"
        " 'available', now(), ST_SetSRID(ST_MakePoint(116.1234567, 39.9876543), 4326)"
        " FROM generate_series(1, 20000)"), world)
    conn.execute(text("UPDATE responders SET position_at = now() + interval '1 s',"
                      " status = 'busy' WHERE jurisdiction_id = :j"), world)


def test_payloads_expand_into_one_event_per_row_and_bulk_into_a_resync() -> None:
    items = [{"op": "update", "id": i, "changes": ["position"]} for i in range(3)]
    events = expand(json.dumps({"type": "responder", "items": items}))
    assert [e["id"] for e in events] == [0, 1, 2]
    assert all(e["type"] == "responder" for e in events)
    [bulk] = expand('{"type": "case", "op": "bulk", "count": 9000}')
    assert bulk == {"type": "resync", "kind": "case", "reason": "9000 case rows changed at once"}
    assert expand("not json") == [] and expand("[1, 2]") == []


THIS_TRANSACTION = "txid = CAST(CAST(pg_current_xact_id() AS text) AS bigint)"


def live_notes(conn: Connection) -> list[str]:
    """The live-feed payloads this (never committed) transaction appended so far, then forgets
    them so the next call returns only newer ones."""
    notes = conn.execute(text(f"SELECT payload FROM live_changes WHERE {THIS_TRANSACTION}"
                              " ORDER BY seq")).scalars().all()
    conn.execute(text(f"DELETE FROM live_changes WHERE {THIS_TRANSACTION}"))
    return list(notes)


@pytest.mark.parametrize("n", [25, 300, 5000])
def test_every_changed_case_of_a_statement_is_streamed_in_payloads_under_8000_bytes(
        conn: Connection, world: dict[str, int], n: int) -> None:
    conn.execute(text(FULL_CASES), {**world, "n": n})
    ids = conn.execute(text("SELECT id FROM cases WHERE jurisdiction_id = :j ORDER BY id"),
                       world).scalars().all()
    for op, sql in (("insert", None),
                    ("update", "UPDATE cases SET status = 'handled' WHERE jurisdiction_id = :j"),
                    ("delete", "DELETE FROM cases WHERE jurisdiction_id = :j")):
        if sql:
            conn.execute(text(sql), world)
        notes = live_notes(conn)
        assert all(len(p.encode()) < 8000 for p in notes)
        events = [e for p in notes for e in expand(p)]
        assert sorted(e["id"] for e in events) == ids and {e["op"] for e in events} == {op}


def test_a_50000_case_statement_sends_one_bulk_note_and_builds_no_items(
        conn: Connection, world: dict[str, int]) -> None:
    conn.execute(text(FULL_CASES), {**world, "n": 50_000})
    assert live_notes(conn) == ['{"type" : "case", "op" : "bulk", "count" : 50000}']
    conn.execute(text("UPDATE cases SET status = 'handled' WHERE jurisdiction_id = :j"), world)
    assert [json.loads(p) for p in live_notes(conn)] == [
        {"type": "case", "op": "bulk", "count": 50_000}]
    # An update that changes nothing the feed shows sends nothing at all.
    conn.execute(text("UPDATE cases SET description = 'x' WHERE jurisdiction_id = :j"), world)
    assert live_notes(conn) == []
    conn.execute(text("DELETE FROM cases WHERE jurisdiction_id = :j"), world)
    [note] = expand(live_notes(conn)[0])
    assert note == {"type": "resync", "kind": "case", "reason": "50000 case rows changed at once"}


def test_the_bulk_decision_counts_rows_before_building_items(conn: Connection) -> None:
    """The trigger function counts first (no array of 10⁷ JSON items for a huge COPY)."""
    source = conn.execute(text("SELECT prosrc FROM pg_proc WHERE proname ="
                               " 'gridgov_notify_cases'")).scalar_one()
    assert source.index("count(*)") < source.index("array_agg") < source.index("gridgov_live_send")


def test_no_trigger_function_notifies_inside_the_writing_transaction(conn: Connection) -> None:
    """pg_notify holds one cluster-wide lock across a commit's WAL flush: every intake would
    commit one at a time (0008_intake_speed). The feed goes through ``live_changes``."""
    notifying = conn.execute(text(
        "SELECT DISTINCT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE NOT t.tgisinternal AND p.prosrc LIKE '%pg_notify%'")).scalars().all()
    assert notifying == []


@pytest.fixture
def committed_notes(engine: Engine) -> Iterator[str]:
    """A unique payload prefix for rows this test commits to ``live_changes``; removed after."""
    tag = f"feed-test-{uuid.uuid4().hex[:8]}"
    yield tag
    with engine.begin() as c:
        c.execute(text("DELETE FROM live_changes WHERE payload LIKE :p"), {"p": f"{tag}%"})


def _poll(feed: ChangeFeed, engine: Engine, tag: str) -> list[str]:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            found = [p for p in feed.poll(cur) if p.startswith(tag)]
        raw.rollback()
        return found
    finally:
        raw.close()


def test_the_feed_gets_every_commit_once_whatever_the_commit_order(
        engine: Engine, committed_notes: str) -> None:
    tag, feed = committed_notes, ChangeFeed()
    emit = text("SELECT gridgov_live_emit(:p)")
    assert _poll(feed, engine, tag) == []  # the first poll only starts the feed
    with engine.connect() as early, engine.connect() as late, engine.connect() as undone:
        early.execute(emit, {"p": f"{tag} early"})   # takes the lower seq, commits last
        late.execute(emit, {"p": f"{tag} late"})
        undone.execute(emit, {"p": f"{tag} undone"})
        late.commit()
        assert _poll(feed, engine, tag) == [f"{tag} late"]
        early.commit()
        undone.rollback()
    assert _poll(feed, engine, tag) == [f"{tag} early"]
    assert _poll(feed, engine, tag) == []

"""Nearest queries as server-side prepared statements (``gis.prepared``): the same answers as
the plain statement, prepared once per server session, and a session that lost its statements
or its connection prepares afresh instead of failing for good."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gis import nearest, prepared
from gis.dispatch import DispatchSettings
from gis.nearest import NearestQuery
from tests.dispatch_factories import (
    Town,
    add_facility,
    add_responder,
    ensure_departments,
    ladder_town,
)

PREPARED = DispatchSettings(prepared_statements=True)
PLAIN = DispatchSettings(prepared_statements=False)


@pytest.fixture
def town(conn: Connection) -> Town:
    ensure_departments(conn, "FIRE", "SANITATION")
    t = ladder_town(conn)
    jid = t.jurisdiction_id
    add_responder(conn, jid, "a", t.at["b1"], skills=("ladder",), department="FIRE")
    add_responder(conn, jid, "b", t.at["b3"], status="busy", department="SANITATION")
    add_responder(conn, jid, "c", t.at["t2"], skills=("ladder",))
    add_responder(conn, jid, "stale", t.at["t1"], age_s=3600)
    add_facility(conn, jid, "clinic", "east clinic", t.at["t4"])
    return t


def server_statements(conn: Connection) -> set[str]:
    return set(conn.execute(text("SELECT name FROM pg_prepared_statements")).scalars())


QUERIES = [
    {"k": 1}, {"k": 2}, {"k": 5}, {"k": 3, "status": "any"}, {"k": 2, "skill": "ladder"},
    {"k": 2, "department": "FIRE"}, {"k": 4, "status": "busy"},
]


@pytest.mark.parametrize("params", QUERIES)
@pytest.mark.parametrize("given_jurisdiction", [True, False])
def test_prepared_nearest_answers_exactly_as_the_plain_statement(
        conn: Connection, town: Town, params: dict, given_jurisdiction: bool) -> None:
    at = town.mid("b1", "b2")
    jid = town.jurisdiction_id if given_jurisdiction else None
    q = NearestQuery(lon=at[0], lat=at[1], jurisdiction_id=jid, **params)
    for _ in range(7):   # past the five custom plans: PostgreSQL may switch to a generic one
        assert (nearest.nearest(conn, q, settings=PREPARED)
                == nearest.nearest(conn, q, settings=PLAIN))


def test_prepared_nearest_facilities_answer_as_the_plain_statement(
        conn: Connection, town: Town) -> None:
    q = NearestQuery(lon=town.at["b0"][0], lat=town.at["b0"][1], k=2, type="clinic")
    got = nearest.nearest(conn, q, settings=PREPARED, kind="facilities")
    assert got == nearest.nearest(conn, q, settings=PLAIN, kind="facilities")
    assert [r["name"] for r in got["results"]] == ["east clinic"]


def test_a_statement_is_prepared_once_per_session(conn: Connection, town: Town) -> None:
    q = NearestQuery(lon=town.at["b0"][0], lat=town.at["b0"][1], k=7)
    before = set(prepared.held_statements(conn))   # the pooled session may hold some already
    nearest.nearest(conn, q, settings=PREPARED)
    held = set(prepared.held_statements(conn))
    for _ in range(3):
        nearest.nearest(conn, q, settings=PREPARED)
    assert set(prepared.held_statements(conn)) == held and len(held - before) <= 1
    assert held <= server_statements(conn)


def test_without_prepared_statements_nothing_is_prepared(conn: Connection, town: Town) -> None:
    before = server_statements(conn)
    nearest.nearest(conn, NearestQuery(lon=town.at["b0"][0], lat=town.at["b0"][1]),
                    settings=PLAIN)
    assert server_statements(conn) == before


def test_a_session_that_lost_its_statements_prepares_them_again(
        conn: Connection, town: Town) -> None:
    q = NearestQuery(lon=town.at["b0"][0], lat=town.at["b0"][1], k=2)
    expected = nearest.nearest(conn, q, settings=PREPARED)
    conn.execute(text("DEALLOCATE ALL"))          # e.g. DISCARD ALL by someone else
    with pytest.raises(DBAPIError), conn.begin_nested():
        nearest.nearest(conn, q, settings=PREPARED)   # one call fails…
    assert prepared.held_statements(conn) == ()
    assert nearest.nearest(conn, q, settings=PREPARED) == expected   # …the next prepares


def test_a_new_server_session_prepares_afresh(engine: Engine) -> None:
    sql = "SELECT CAST(:a AS int4) + 1 AS b"
    types = (("a", "int4"),)
    with engine.connect() as conn:
        assert prepared.execute(conn, sql, {"a": 1}, types=types).scalar() == 2
        gone = conn.connection.dbapi_connection
        conn.invalidate()                          # the server session is gone
        conn.rollback()
        # The connection now in use is another session: perhaps a pooled one that already
        # prepared statements for earlier callers. The bookkeeping follows the session, so
        # it lists exactly what this server session holds, never what the lost one held.
        assert conn.connection.dbapi_connection is not gone
        assert set(prepared.held_statements(conn)) == server_statements(conn)
        assert prepared.execute(conn, sql, {"a": 2}, types=types).scalar() == 3
        assert set(prepared.held_statements(conn)) == server_statements(conn)


def test_sessions_hold_at_most_a_bounded_number_of_statements(
        conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared, "MAX_PER_SESSION", 3)
    types = (("a", "int4"),)
    for i in range(5):
        assert prepared.execute(conn, f"SELECT CAST(:a AS int4) + {i}", {"a": 1},
                                types=types).scalar() == 1 + i
    held = prepared.held_statements(conn)
    assert len(held) == 3 and set(held) <= server_statements(conn)
    assert len(server_statements(conn) & {prepared.statement(f"SELECT CAST(:a AS int4) + {i}",
                                                              types).name
                                          for i in range(2)}) == 0   # the oldest went


def test_a_parameter_without_a_type_is_refused() -> None:
    with pytest.raises(ValueError, match="no PostgreSQL type given for parameter"):
        prepared.statement("SELECT :a, :b", (("a", "int4"),))

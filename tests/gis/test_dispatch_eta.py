"""The case ``dispatch`` action records who was sent and the road ETA at that moment.

The case world's tiny city (10°E 50°N) gets the ladder network of ``tests/dispatch_factories``
in the same jurisdiction, so ETAs are hand-checkable: the top street is two-way at 30 km/h
(100 m ≈ 12 s), the main street one-way eastbound at 50 km/h.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text

from gis.dispatch import DispatchSettings
from gis.intake import Report, create_case
from gis.lifecycle import ActionRequest, apply_action
from gis.nearest import responder_eta
from tests.dispatch_factories import Town, add_responder, ladder_town
from tests.factories import CaseWorld, account, case_world


@pytest.fixture
def world(conn: Connection) -> tuple[CaseWorld, Town]:
    w = case_world(conn)
    return w, ladder_town(conn, jurisdiction_id=w.city.jurisdiction_id)


def filed_case(conn: Connection, at: tuple[float, float]) -> int:
    cid = int(create_case(conn, Report(category="E010101", lon=at[0], lat=at[1])).body["id"])
    apply_action(conn, cid, ActionRequest("file"), account(conn, "call_taker")[0])
    return cid


def dispatch(conn: Connection, cid: int, rid: int, **kw: Any) -> dict[str, Any]:
    return apply_action(conn, cid, ActionRequest("dispatch", responder_id=rid),
                        account(conn, "dispatcher")[0], **kw)


def test_dispatch_event_records_the_road_eta_from_the_current_position(
        conn: Connection, world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    cid = filed_case(conn, town.mid("t2", "t3"))
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 1", town.at["t1"], age_s=30)
    expected = responder_eta(conn, rid, *town.mid("t2", "t3"), settings=DispatchSettings())
    eta = dispatch(conn, cid, rid)["event"]["data"]["eta"]
    # 150 m of top street at 30 km/h is 18 s; the graph's own answer is the reference.
    assert eta["eta_s"] == pytest.approx(18.0, abs=0.5)
    assert eta["eta_s"] == expected["eta_s"]
    assert eta["distance_m"] == pytest.approx(150, abs=3)
    assert 30 <= eta["position_age_s"] < 60
    assert "reason" not in eta


def test_dispatch_eta_is_kept_in_the_case_timeline(conn: Connection,
                                                   world: tuple[CaseWorld, Town]) -> None:
    from gis.casequery import case_events

    w, town = world
    cid = filed_case(conn, town.at["t4"])
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 2", town.at["t0"])
    dispatch(conn, cid, rid)
    events = case_events(conn, cid, account(conn, "supervisor")[0])
    last = events[-1]
    assert (last["action"], last["to_state"]) == ("dispatch", "dispatched")
    assert last["data"]["responder_id"] == rid and last["data"]["responder"] == "crew 2"
    assert last["data"]["eta"]["eta_s"] == pytest.approx(48.0, abs=0.5)  # 400 m at 30 km/h


def test_dispatch_with_a_stale_position_records_that_instead_of_failing(
        conn: Connection, world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    cid = filed_case(conn, town.at["t2"])
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 3", town.at["t1"], age_s=3600)
    result = dispatch(conn, cid, rid)
    eta = result["event"]["data"]["eta"]
    assert result["case"]["status"] == "dispatched"
    assert eta["eta_s"] is None and eta["distance_m"] is None
    assert eta["position_age_s"] == pytest.approx(3600, abs=30)
    assert "no fresh position" in eta["reason"] and "limit 600 s" in eta["reason"]


def test_dispatch_without_any_position_records_that(conn: Connection,
                                                    world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    cid = filed_case(conn, town.at["t2"])
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 4", None)
    eta = dispatch(conn, cid, rid)["event"]["data"]["eta"]
    assert eta["eta_s"] is None and eta["position_age_s"] is None
    assert eta["reason"].startswith("no position")
    status = conn.execute(text("SELECT status FROM responders WHERE id = :r"), {"r": rid})
    assert status.scalar() == "busy"


def test_dispatch_eta_respects_one_way_streets(conn: Connection,
                                               world: tuple[CaseWorld, Town]) -> None:
    """From b2 to b1 against the one-way main street the crew goes round the block."""
    w, town = world
    cid = filed_case(conn, town.at["b1"])
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 5", town.at["b2"])
    eta = dispatch(conn, cid, rid)["event"]["data"]["eta"]
    assert eta["eta_s"] == pytest.approx(36.0, abs=1.0)   # 300 m at 30 km/h
    assert eta["distance_m"] == pytest.approx(300, abs=5)


def test_dispatch_without_a_responder_records_no_eta(conn: Connection,
                                                     world: tuple[CaseWorld, Town]) -> None:
    _, town = world
    cid = filed_case(conn, town.at["t2"])
    result = apply_action(conn, cid, ActionRequest("dispatch", department="SANITATION"),
                          account(conn, "dispatcher")[0])
    assert "eta" not in result["event"]["data"]


def test_dispatch_eta_uses_the_given_staleness_limit(conn: Connection,
                                                     world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    cid = filed_case(conn, town.at["t2"])
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 6", town.at["t1"], age_s=120)
    eta = dispatch(conn, cid, rid, dispatch_settings=DispatchSettings(stale_after_s=60),
                   now=datetime.now(UTC) + timedelta(seconds=1))["event"]["data"]["eta"]
    assert eta["eta_s"] is None and "limit 60 s" in eta["reason"]

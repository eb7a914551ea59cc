"""The lifecycle: legal transitions only, roles, scope, supervision separate from disposal,
events, summons, rating, escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gis.auth import PUBLIC, Forbidden, Principal, Unauthorized
from gis.errors import Conflict, InvalidInput
from gis.intake import Report, create_case
from gis.lifecycle import TRANSITIONS, ActionRequest, apply_action, escalate_overdue
from tests.factories import DISTRICT, CaseWorld, account, add_responder, case_world

FRIDAY_4PM = datetime(2026, 1, 9, 16, 0, tzinfo=UTC)


class Team:
    """One account per role a case needs; the handler belongs to SANITATION."""

    def __init__(self, conn: Connection):
        self.call_taker, _ = account(conn, "call_taker")
        self.dispatcher, _ = account(conn, "dispatcher")
        self.handler, _ = account(conn, "handler", department="SANITATION")
        self.supervisor, _ = account(conn, "supervisor")
        self.admin, _ = account(conn, "admin")


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


@pytest.fixture
def team(conn: Connection, world: CaseWorld) -> Team:
    return Team(conn)


def new_case(conn: Connection, world: CaseWorld, street: int = 1, **kw: Any) -> dict[str, Any]:
    lon, lat = world.point(street, 1)
    return create_case(conn, Report(category="E010101", lon=lon, lat=lat, **kw)).body


def act(conn: Connection, case_id: int, who: Principal, action: str, **kw: Any) -> dict:
    return apply_action(conn, case_id, ActionRequest(action, **kw), who)


def to_handled(conn: Connection, case_id: int, team: Team) -> None:
    act(conn, case_id, team.call_taker, "file")
    act(conn, case_id, team.dispatcher, "dispatch")
    act(conn, case_id, team.handler, "start")
    act(conn, case_id, team.handler, "handle", note="cleared")


def test_full_lifecycle_appends_one_event_per_step(conn: Connection, world: CaseWorld,
                                                   team: Team) -> None:
    cid = new_case(conn, world)["id"]
    to_handled(conn, cid, team)
    act(conn, cid, team.supervisor, "verify", result="pass")
    closed = act(conn, cid, team.supervisor, "close")["case"]
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    steps = conn.execute(text("SELECT action, from_state, to_state, actor_id FROM case_events"
                              " WHERE case_id = :c ORDER BY id"), {"c": cid}).all()
    assert [(s.from_state, s.to_state) for s in steps] == [
        (None, "reported"), ("reported", "filed"), ("filed", "dispatched"),
        ("dispatched", "in_progress"), ("in_progress", "handled"), ("handled", "verified"),
        ("verified", "closed")]
    assert steps[-1].actor_id == team.supervisor.user_id


def test_illegal_transition_names_the_state_and_the_allowed_actions(
        conn: Connection, world: CaseWorld, team: Team) -> None:
    cid = new_case(conn, world)["id"]
    with pytest.raises(Conflict) as info:
        act(conn, cid, team.supervisor, "close")
    assert "it is reported" in info.value.detail
    assert info.value.extra["allowed_actions"] == ["accept", "file", "reject", "redirect",
                                                   "summon", "respond"]


def test_unknown_action_is_invalid(conn: Connection, world: CaseWorld, team: Team) -> None:
    cid = new_case(conn, world)["id"]
    with pytest.raises(InvalidInput, match="unknown action 'teleport'"):
        act(conn, cid, team.admin, "teleport")


def test_role_without_the_action_is_forbidden(conn: Connection, world: CaseWorld,
                                              team: Team) -> None:
    cid = new_case(conn, world)["id"]
    with pytest.raises(Forbidden, match="role handler may not file"):
        act(conn, cid, team.handler, "file")
    with pytest.raises(Unauthorized):
        act(conn, cid, PUBLIC, "file")


@pytest.mark.parametrize("action", ["verify", "close"])
def test_the_handler_never_verifies_or_closes_its_own_work(conn: Connection, world: CaseWorld,
                                                           team: Team, action: str) -> None:
    cid = new_case(conn, world)["id"]
    act(conn, cid, team.call_taker, "file")
    act(conn, cid, team.dispatcher, "dispatch")
    act(conn, cid, team.admin, "handle", note="fixed it myself")
    if action == "close":
        act(conn, cid, team.supervisor, "verify", result="pass")
    with pytest.raises(Forbidden, match="supervision is separate from disposal"):
        act(conn, cid, team.admin, action, result="pass")


def test_failed_verification_reopens_and_can_be_dispatched_again(
        conn: Connection, world: CaseWorld, team: Team) -> None:
    cid = new_case(conn, world)["id"]
    to_handled(conn, cid, team)
    assert act(conn, cid, team.supervisor, "verify", result="fail")["case"]["status"] == "reopened"
    assert act(conn, cid, team.dispatcher, "dispatch")["case"]["status"] == "dispatched"


def test_dispatch_to_a_responder_makes_it_busy_and_handling_frees_it(
        conn: Connection, world: CaseWorld, team: Team) -> None:
    rid = add_responder(conn, world.city.jurisdiction_id, "crew 7", department="SANITATION")
    cid = new_case(conn, world)["id"]
    act(conn, cid, team.call_taker, "file")
    act(conn, cid, team.dispatcher, "dispatch", responder_id=rid)
    status = "SELECT status FROM responders WHERE id = :r"
    assert conn.execute(text(status), {"r": rid}).scalar() == "busy"
    act(conn, cid, team.handler, "handle", note="done")
    assert conn.execute(text(status), {"r": rid}).scalar() == "available"


def test_dispatch_to_a_busy_responder_conflicts(conn: Connection, world: CaseWorld,
                                                team: Team) -> None:
    rid = add_responder(conn, world.city.jurisdiction_id, "crew 8", status="busy")
    cid = new_case(conn, world)["id"]
    act(conn, cid, team.call_taker, "file")
    with pytest.raises(Conflict, match="is busy"):
        act(conn, cid, team.dispatcher, "dispatch", responder_id=rid)


def test_redirect_hands_the_case_to_another_department(conn: Connection, world: CaseWorld,
                                                       team: Team) -> None:
    cid = new_case(conn, world)["id"]
    out = act(conn, cid, team.handler, "redirect", department="ENFORCE", note="not ours")
    assert out["case"]["department"] == "ENFORCE" and out["case"]["status"] == "redirected"
    with pytest.raises(Forbidden, match="outside your scope"):
        act(conn, cid, team.handler, "redirect", department="WATER")


def test_account_outside_the_area_is_forbidden(conn: Connection, world: CaseWorld) -> None:
    street2_supervisor, _ = account(conn, "supervisor", areas=(f"{DISTRICT}002",))
    cid = new_case(conn, world, street=1)["id"]
    with pytest.raises(Forbidden, match=f"outside your scope \\(areas {DISTRICT}002\\)"):
        act(conn, cid, street2_supervisor, "file")
    other = new_case(conn, world, street=2)["id"]
    assert act(conn, other, street2_supervisor, "file")["case"]["status"] == "filed"


def test_rating_after_close_with_the_tracking_token(conn: Connection, world: CaseWorld,
                                                    team: Team) -> None:
    body = new_case(conn, world)
    cid, token = body["id"], body["tracking_token"]
    with pytest.raises(Conflict):
        act(conn, cid, PUBLIC, "rate", satisfaction=5, tracking_token=token)
    to_handled(conn, cid, team)
    act(conn, cid, team.supervisor, "verify", result="pass")
    act(conn, cid, team.supervisor, "close")
    with pytest.raises(Forbidden, match="does not belong"):
        act(conn, cid, PUBLIC, "rate", satisfaction=5, tracking_token="gtr_wrong")
    assert act(conn, cid, PUBLIC, "rate", satisfaction=4,
               tracking_token=token)["case"]["satisfaction"] == 4


def test_summon_measures_the_departments_first_response(conn: Connection, world: CaseWorld,
                                                        team: Team) -> None:
    water, _ = account(conn, "handler", department="WATER")
    cid = new_case(conn, world)["id"]
    t0 = datetime.now(UTC)
    apply_action(conn, cid, ActionRequest("summon", department="WATER"), team.supervisor, now=t0)
    apply_action(conn, cid, ActionRequest("respond", note="on our way"), water,
                 now=t0 + timedelta(minutes=25))
    row = conn.execute(text("SELECT responded_at - summoned_at FROM case_summons"
                            " WHERE case_id = :c"), {"c": cid}).scalar()
    assert row == timedelta(minutes=25)


def test_case_events_are_append_only(conn: Connection, world: CaseWorld) -> None:
    cid = new_case(conn, world)["id"]
    with pytest.raises(DBAPIError, match="append-only"), conn.begin_nested():
        conn.execute(text("UPDATE case_events SET note = 'rewritten' WHERE case_id = :c"),
                     {"c": cid})


def test_every_action_of_the_table_has_roles_and_sources() -> None:
    assert all(t.roles and t.sources for t in TRANSITIONS.values())
    assert "handler" not in TRANSITIONS["verify"].roles + TRANSITIONS["close"].roles


def mine(escalations: list[dict], cid: int) -> list[dict]:
    return [e for e in escalations if e["case_id"] == cid]


def _escalations(conn: Connection, cid: int) -> list[tuple[int, str]]:
    return [(int(r.data["level"]), r.data["area_code"]) for r in conn.execute(text(
        "SELECT data FROM case_events WHERE case_id = :c AND action = 'escalate' ORDER BY id"),
        {"c": cid})]


def test_overdue_case_escalates_one_level_up_once(conn: Connection, world: CaseWorld) -> None:
    lon, lat = world.point()
    cid = create_case(conn, Report(category="E010101", lon=lon, lat=lat),
                      now=FRIDAY_4PM).body["id"]  # due Monday 11:00 (4 working hours)
    monday_noon = datetime(2026, 1, 12, 12, tzinfo=UTC)
    assert mine(escalate_overdue(conn, now=monday_noon), cid)[0]["level"] == 1
    assert mine(escalate_overdue(conn, now=monday_noon), cid) == []
    assert _escalations(conn, cid) == [(1, f"{DISTRICT}001001")]


def test_escalation_climbs_a_level_per_deadline_period_up_to_the_top(
        conn: Connection, world: CaseWorld) -> None:
    lon, lat = world.point()
    cid = create_case(conn, Report(category="E010101", lon=lon, lat=lat),
                      now=FRIDAY_4PM).body["id"]
    escalate_overdue(conn, now=datetime(2026, 1, 12, 12, tzinfo=UTC))
    escalate_overdue(conn, now=datetime(2026, 3, 1, tzinfo=UTC))
    assert _escalations(conn, cid) == [(1, f"{DISTRICT}001001"), (2, f"{DISTRICT}001"),
                                       (3, DISTRICT)]


def test_closed_cases_do_not_escalate(conn: Connection, world: CaseWorld, team: Team) -> None:
    lon, lat = world.point()
    cid = create_case(conn, Report(category="E010101", lon=lon, lat=lat),
                      now=FRIDAY_4PM).body["id"]
    act(conn, cid, team.call_taker, "reject", note="not a problem")
    assert mine(escalate_overdue(conn, now=datetime(2026, 2, 1, tzinfo=UTC)), cid) == []

"""``POST /api/cases/{id}/actions``, events, summons, escalation over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.factories import DISTRICT, CaseWorld, account, case_world


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


class Tokens:
    def __init__(self, conn: Connection):
        self.call_taker = account(conn, "call_taker")[1]
        self.dispatcher = account(conn, "dispatcher")[1]
        self.handler = account(conn, "handler", department="SANITATION")[1]
        self.supervisor = account(conn, "supervisor")[1]
        self.admin = account(conn, "admin")[1]


@pytest.fixture
def tokens(conn: Connection, world: CaseWorld) -> Tokens:
    return Tokens(conn)


def report(client: TestClient, world: CaseWorld, street: int = 1) -> dict[str, Any]:
    lon, lat = world.point(street, 1)
    r = client.post("/api/cases", json={"category": "E010101", "lon": lon, "lat": lat})
    assert r.status_code == 201
    return r.json()


def act(client: TestClient, cid: int, token: str | None, action: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(f"/api/cases/{cid}/actions", json={"action": action, **kw},
                       headers=headers)


def test_actions_walk_the_case_to_closed(client: TestClient, world: CaseWorld,
                                         tokens: Tokens) -> None:
    cid = report(client, world)["id"]
    steps = [(tokens.call_taker, "accept", {}), (tokens.call_taker, "file", {}),
             (tokens.dispatcher, "dispatch", {}), (tokens.handler, "start", {}),
             (tokens.handler, "handle", {"note": "bagged and removed"}),
             (tokens.supervisor, "verify", {"result": "pass"}), (tokens.supervisor, "close", {})]
    for token, action, extra in steps:
        r = act(client, cid, token, action, **extra)
        assert r.status_code == 200, (action, r.text)
    assert r.json()["case"]["properties"]["status"] == "closed"
    events = client.get(f"/api/cases/{cid}/events").json()["events"]
    assert [e["action"] for e in events] == ["report"] + [s[1] for s in steps]


def test_illegal_transition_is_409_naming_state_and_allowed(client: TestClient,
                                                            world: CaseWorld,
                                                            tokens: Tokens) -> None:
    cid = report(client, world)["id"]
    r = act(client, cid, tokens.supervisor, "verify", result="pass")
    assert r.status_code == 409
    assert r.json()["state"] == "reported" and "file" in r.json()["allowed_actions"]
    assert "it is reported" in r.json()["detail"]


def test_handler_verifying_its_own_work_is_403(client: TestClient, world: CaseWorld,
                                               tokens: Tokens) -> None:
    cid = report(client, world)["id"]
    act(client, cid, tokens.call_taker, "file")
    act(client, cid, tokens.dispatcher, "dispatch")
    assert act(client, cid, tokens.admin, "handle", note="done").status_code == 200
    r = act(client, cid, tokens.admin, "verify", result="pass")
    assert r.status_code == 403 and "supervision is separate" in r.json()["detail"]


def test_account_outside_the_area_gets_403(client: TestClient, conn: Connection,
                                           world: CaseWorld) -> None:
    _, street2 = account(conn, "call_taker", areas=(f"{DISTRICT}002",))
    cid = report(client, world, street=1)["id"]
    r = act(client, cid, street2, "file")
    assert r.status_code == 403 and "outside your scope" in r.json()["detail"]


def test_wrong_role_is_403_and_no_token_is_401(client: TestClient, conn: Connection,
                                              world: CaseWorld) -> None:
    _, analyst = account(conn, "analyst")
    cid = report(client, world)["id"]
    assert act(client, cid, analyst, "file").status_code == 403
    assert act(client, cid, None, "file").status_code == 401


@pytest.mark.parametrize(("payload", "field"), [
    ({"action": "verify", "result": "maybe"}, "result"),
    ({"action": "rate", "satisfaction": 9}, "satisfaction"),
    ({"note": "no action"}, "action"),
    ({"action": "file", "extra": 1}, "extra"),
])
def test_bad_action_body_is_422(client: TestClient, world: CaseWorld, tokens: Tokens,
                                payload: dict, field: str) -> None:
    cid = report(client, world)["id"]
    r = client.post(f"/api/cases/{cid}/actions", json=payload,
                    headers={"Authorization": f"Bearer {tokens.admin}"})
    assert r.status_code == 422 and r.json()["field"] == field


def test_reporter_rates_with_the_tracking_token(client: TestClient, world: CaseWorld,
                                                tokens: Tokens) -> None:
    created = report(client, world)
    cid = created["id"]
    for token, action, extra in [(tokens.call_taker, "file", {}),
                                 (tokens.dispatcher, "dispatch", {}),
                                 (tokens.handler, "handle", {"note": "done"}),
                                 (tokens.supervisor, "verify", {"result": "pass"}),
                                 (tokens.supervisor, "close", {})]:
        act(client, cid, token, action, **extra)
    r = act(client, cid, None, "rate", satisfaction=5, tracking_token=created["tracking_token"])
    assert r.status_code == 200 and r.json()["case"]["properties"]["satisfaction"] == 5


def test_public_events_hide_actors_and_notes(client: TestClient, world: CaseWorld,
                                             tokens: Tokens) -> None:
    cid = report(client, world)["id"]
    act(client, cid, tokens.call_taker, "reject", note="private reason 42")
    public = client.get(f"/api/cases/{cid}/events").text
    staff = client.get(f"/api/cases/{cid}/events",
                       headers={"Authorization": f"Bearer {tokens.admin}"}).text
    assert "private reason 42" not in public and "private reason 42" in staff


def test_summon_and_response_time_are_recorded(client: TestClient, conn: Connection,
                                               world: CaseWorld, tokens: Tokens) -> None:
    _, water = account(conn, "handler", department="WATER")
    cid = report(client, world)["id"]
    assert act(client, cid, tokens.supervisor, "summon", department="WATER").status_code == 200
    assert act(client, cid, water, "respond").status_code == 200
    summons = client.get(f"/api/cases/{cid}/summons").json()["summons"]
    assert summons[0]["department"] == "WATER" and summons[0]["response_s"] >= 0


def test_escalation_endpoint_is_for_admins_only(client: TestClient, world: CaseWorld,
                                                tokens: Tokens) -> None:
    headers = {"Authorization": f"Bearer {tokens.dispatcher}"}
    assert client.post("/api/cases:escalate", headers=headers).status_code == 403
    report(client, world)
    r = client.post("/api/cases:escalate?now=2099-01-01T00:00:00Z",
                    headers={"Authorization": f"Bearer {tokens.admin}"})
    assert r.status_code == 200 and r.json()["count"] >= 3


def test_overdue_flag_is_computed_in_responses(client: TestClient, world: CaseWorld,
                                               tokens: Tokens) -> None:
    cid = report(client, world)["id"]
    client.post("/api/cases:escalate?now=2099-01-01T00:00:00Z",
                headers={"Authorization": f"Bearer {tokens.admin}"})
    props = client.get(f"/api/cases/{cid}").json()["properties"]
    assert props["overdue"] is False and props["escalation_level"] == 3


def test_workflow_table_is_published(client: TestClient) -> None:
    actions = client.get("/api/cases/workflow").json()["actions"]
    assert actions["close"]["from"] == ["verified"] and "handler" not in actions["close"]["roles"]


def test_handle_with_a_photo_which_staff_in_scope_can_fetch(
        client: TestClient, world: CaseWorld, tokens: Tokens, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    monkeypatch.setenv("GRIDGOV_MEDIA_DIR", str(tmp_path))
    png = b"\x89PNG\r\n\x1a\n" + b"\x01" * 32
    cid = report(client, world)["id"]
    act(client, cid, tokens.call_taker, "file")
    act(client, cid, tokens.dispatcher, "dispatch")
    r = client.post(f"/api/cases/{cid}/actions", data={"action": "handle", "note": "after"},
                    files=[("photos", ("after.png", png, "image/png"))],
                    headers={"Authorization": f"Bearer {tokens.handler}"})
    assert r.status_code == 200, r.text
    sha = r.json()["event"]["data"]["media"][0]["sha256"]
    url = f"/api/cases/{cid}/media/{sha}"
    assert client.get(url).status_code == 401
    got = client.get(url, headers={"Authorization": f"Bearer {tokens.supervisor}"})
    assert got.status_code == 200 and got.content == png

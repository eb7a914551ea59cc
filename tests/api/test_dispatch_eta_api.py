"""Over HTTP: dispatching a case to a responder makes it busy and the ETA at that moment shows
in ``GET /api/cases/{id}/events`` for staff — never for the public."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.dispatch_factories import Town, add_responder, ladder_town
from tests.factories import CaseWorld, account, case_world


@pytest.fixture
def world(conn: Connection) -> tuple[CaseWorld, Town]:
    w = case_world(conn)
    return w, ladder_town(conn, jurisdiction_id=w.city.jurisdiction_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_dispatch_over_http_records_the_eta_in_the_events(
        client: TestClient, conn: Connection, world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    lon, lat = town.at["t3"]
    cid = client.post("/api/cases", json={"category": "E010101", "lon": lon,
                                          "lat": lat}).json()["id"]
    dispatcher = account(conn, "dispatcher")[1]
    assert client.post(f"/api/cases/{cid}/actions", json={"action": "file"},
                       headers=bearer(account(conn, "call_taker")[1])).status_code == 200
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 9", town.at["t1"], age_s=5)
    r = client.post(f"/api/cases/{cid}/actions", headers=bearer(dispatcher),
                    json={"action": "dispatch", "responder_id": rid})
    assert r.status_code == 200, r.text
    assert r.json()["case"]["properties"]["status"] == "dispatched"
    assert client.get(f"/api/responders/{rid}", headers=bearer(dispatcher)
                      ).json()["properties"]["status"] == "busy"

    events = client.get(f"/api/cases/{cid}/events", headers=bearer(dispatcher)).json()["events"]
    data = events[-1]["data"]
    assert data["responder_id"] == rid
    assert data["eta"]["eta_s"] == pytest.approx(24.0, abs=0.5)   # 200 m at 30 km/h
    assert data["eta"]["distance_m"] == pytest.approx(200, abs=3)
    assert 5 <= data["eta"]["position_age_s"] < 60

    public = client.get(f"/api/cases/{cid}/events").json()["events"]
    assert "data" not in public[-1]


def test_dispatching_a_busy_responder_is_a_409_naming_it(
        client: TestClient, conn: Connection, world: tuple[CaseWorld, Town]) -> None:
    w, town = world
    lon, lat = town.at["t3"]
    cid = client.post("/api/cases", json={"category": "E010101", "lon": lon,
                                          "lat": lat}).json()["id"]
    client.post(f"/api/cases/{cid}/actions", json={"action": "file"},
                headers=bearer(account(conn, "call_taker")[1]))
    rid = add_responder(conn, w.city.jurisdiction_id, "crew 10", town.at["t1"], status="busy")
    r = client.post(f"/api/cases/{cid}/actions", headers=bearer(account(conn, "dispatcher")[1]),
                    json={"action": "dispatch", "responder_id": rid})
    assert r.status_code == 409
    assert r.json()["field"] == "responder_id" and "crew 10 is busy" in r.json()["detail"]

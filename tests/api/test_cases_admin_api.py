"""Case configuration over HTTP: categories (admin edits, validated), accounts, routing rules,
calendar days, and ``POST /api/cases:bulk``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.factories import DISTRICT, CaseWorld, TinyCity, account, case_world


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


@pytest.fixture
def admin(conn: Connection, world: CaseWorld) -> dict[str, str]:
    return {"Authorization": f"Bearer {account(conn, 'admin')[1]}"}


def test_categories_are_public_to_read(client: TestClient, world: CaseWorld) -> None:
    rows = client.get("/api/categories?leaves=true&kind=event").json()["categories"]
    garbage = next(r for r in rows if r["code"] == "E010101")
    assert garbage["department"] == "SANITATION" and garbage["deadline_unit"] == "working_hours"


def test_admin_edits_a_category_and_intake_uses_it(client: TestClient, world: CaseWorld,
                                                   admin: dict) -> None:
    r = client.patch("/api/categories/E010101", headers=admin,
                     json={"department": "CITYMGMT", "deadline": 2, "unit": "hours",
                           "urgency": 3})
    assert r.status_code == 200 and r.json()["department"] == "CITYMGMT"
    lon, lat = world.point()
    case = client.post("/api/cases", json={"category": "E010101", "lon": lon, "lat": lat}).json()
    assert case["department"] == "CITYMGMT" and case["urgency"] == 3


@pytest.mark.parametrize(("patch", "status", "field"), [
    ({"unit": "fortnights"}, 422, "unit"),
    ({"urgency": 7}, 422, "urgency"),
    ({"department": "NOPE"}, 422, "department"),
    ({"deadline": -1}, 422, "deadline"),
    ({"deadline": None}, 422, "deadline"),
])
def test_invalid_category_edit_is_refused(client: TestClient, world: CaseWorld, admin: dict,
                                          patch: dict, status: int, field: str) -> None:
    r = client.patch("/api/categories/E010101", headers=admin, json=patch)
    assert r.status_code == status and r.json()["field"] == field


def test_only_admins_edit_categories(client: TestClient, conn: Connection,
                                     world: CaseWorld) -> None:
    _, token = account(conn, "supervisor")
    r = client.patch("/api/categories/E010101", json={"urgency": 1},
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert client.patch("/api/categories/E010101", json={"urgency": 1}).status_code == 401


def test_admin_adds_a_category_under_a_parent(client: TestClient, world: CaseWorld,
                                              admin: dict) -> None:
    r = client.post("/api/categories", headers=admin, json={
        "code": "E010106", "parent": "E0101", "name": "Bulky waste", "department": "SANITATION",
        "deadline": 1, "unit": "working_days"})
    assert r.status_code == 201 and r.json()["kind"] == "event" and r.json()["depth"] == 2


def test_admin_creates_an_account_whose_token_works(client: TestClient, world: CaseWorld,
                                                    admin: dict) -> None:
    r = client.post("/api/users", headers=admin, json={
        "name": "li.grid", "role": "grid_worker", "areas": [f"{DISTRICT}001"]})
    assert r.status_code == 201
    me = client.get("/api/me", headers={"Authorization": f"Bearer {r.json()['token']}"}).json()
    assert me["role"] == "grid_worker" and me["areas"] == [f"{DISTRICT}001"]
    assert client.get("/api/users", headers=admin).status_code == 200


def test_revoked_tokens_stop_working(client: TestClient, conn: Connection, world: CaseWorld,
                                     admin: dict) -> None:
    principal, token = account(conn, "analyst", name="to-revoke")
    assert client.delete("/api/users/to-revoke/tokens", headers=admin).json()["revoked"] == 1
    r = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_routing_rule_via_api_routes_intake(client: TestClient, world: CaseWorld,
                                            admin: dict) -> None:
    r = client.post("/api/routing-rules", headers=admin, json={
        "area": f"{DISTRICT}002", "category": "E01", "department": "PARKS",
        "jurisdiction": "TEST-TINY"})
    assert r.status_code == 201
    lon, lat = world.point(2, 1)
    case = client.post("/api/cases", json={"category": "E010101", "lon": lon, "lat": lat}).json()
    assert case["department"] == "PARKS"


def test_holiday_via_api_moves_the_deadline(client: TestClient, world: CaseWorld,
                                            admin: dict) -> None:
    r = client.put("/api/calendar/days/2030-01-07", headers=admin,
                   json={"working": False, "name": "test holiday", "jurisdiction": "TEST-TINY"})
    assert r.status_code == 200
    days = client.get("/api/calendar/days?jurisdiction=TEST-TINY").json()["days"]
    assert days == [{"day": "2030-01-07", "working": False, "name": "test holiday"}]


CSV = """lon,lat,category,reported_at,status,closed_at
{lon},{lat},E010101,2025-01-06T09:00:00Z,closed,2025-01-06T12:00:00Z
{lon},{lat},E010101,2025-01-06T09:00:00Z,lost,
"""


def test_bulk_csv_imports_valid_rows_and_reports_the_rest(client: TestClient, conn: Connection,
                                                          world: CaseWorld) -> None:
    _, token = account(conn, "call_taker")
    lon, lat = world.point(1, 2)
    r = client.post("/api/cases:bulk?jurisdiction=TEST-TINY",
                    content=CSV.format(lon=lon, lat=lat),
                    headers={"Content-Type": "text/csv", "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1
    assert r.json()["errors"] == [{"row": 2, "field": "status", "message": "unknown status 'lost'"}]
    found = client.get(f"/api/cases?area={TinyCity.grid_code(1, 2)}&status=closed").json()
    assert len(found["features"]) == 1


def test_strict_bulk_is_422_and_imports_nothing(client: TestClient, world: CaseWorld,
                                                admin: dict) -> None:
    lon, lat = world.point(1, 2)
    r = client.post("/api/cases:bulk?strict=true&jurisdiction=TEST-TINY",
                    content=CSV.format(lon=lon, lat=lat),
                    headers={"Content-Type": "text/csv", **admin})
    assert r.status_code == 422 and r.json()["problems"][0]["row"] == 2
    assert client.get(f"/api/cases?area={TinyCity.grid_code(1, 2)}").json()["features"] == []


def test_bulk_needs_admin_or_call_taker(client: TestClient, conn: Connection,
                                        world: CaseWorld) -> None:
    _, token = account(conn, "dispatcher")
    r = client.post("/api/cases:bulk", json={"rows": []},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403

"""HTTP: responders (list, create, status, positions) and nearest responders/facilities."""

from __future__ import annotations

import pytest
from shapely.geometry import shape
from sqlalchemy import Connection

from gis.crs import transformer
from tests.dispatch_factories import (
    Town,
    add_facility,
    add_responder,
    ensure_departments,
    ladder_town,
)
from tests.factories import account


@pytest.fixture(autouse=True)
def dispatcher(client, conn: Connection) -> str:  # type: ignore[no-untyped-def]
    """Every request here is a dispatcher's, unless a test says otherwise."""
    _, token = account(conn, "dispatcher")
    client.headers["Authorization"] = f"Bearer {token}"
    return token


@pytest.fixture
def town(conn: Connection) -> Town:
    ensure_departments(conn, "FIRE", "SANITATION")
    return ladder_town(conn)


def nearest(client, at: tuple[float, float], **params: object):  # type: ignore[no-untyped-def]
    return client.get("/api/responders/nearest",
                      params={"lon": at[0], "lat": at[1], "jurisdiction": "TEST-LADDER",
                              **params})


# --- nearest ----------------------------------------------------------------------------------


def test_nearest_by_road_returns_ranked_results_with_eta_and_route(client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "ahead", town.at["b2"])
    add_responder(conn, town.jurisdiction_id, "behind", town.at["b0"])
    r = nearest(client, town.mid("b1", "b2"), k=2, mode="road", route="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["name"] for x in body["results"]] == ["behind", "ahead"]
    first = body["results"][0]
    assert {"id", "name", "distance_m", "eta_s", "straight_m"} <= first.keys()
    assert first["eta_s"] == pytest.approx(10.8, abs=0.5)
    assert shape(first["route"]).length > 0
    assert body["reason"] is None


def test_nearest_straight_without_jurisdiction_uses_the_one_at_the_point(
        client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "ahead", town.at["b2"])
    r = client.get("/api/responders/nearest",
                   params={"lon": town.at["b1"][0], "lat": town.at["b1"][1], "k": 1})
    assert r.status_code == 200
    [hit] = r.json()["results"]
    assert hit["name"] == "ahead" and hit["distance_m"] == pytest.approx(100, abs=2)
    assert "eta_s" not in hit


def test_nearest_accepts_a_projected_crs(client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "ahead", town.at["b2"])
    x, y = transformer(4326, 3857).transform(*town.at["b2"])
    r = nearest(client, (x, y), k=1, crs="EPSG:3857")
    assert r.json()["results"][0]["distance_m"] == pytest.approx(0, abs=0.5)


@pytest.mark.parametrize("params, field, text", [
    ({"skill": "juggling"}, "skill", "unknown skill 'juggling'; skills are: "),
    ({"department": "NOPE"}, "department", "unknown department 'NOPE'"),
    ({"k": 0}, "k", "k must be between 1 and 50, got 0"),
    ({"k": 100000}, "k", "k must be between 1 and 50"),
    ({"k": "many"}, "k", ""),
    ({"mode": "flying"}, "mode", "use straight or road"),
    ({"status": "off"}, "status", "off-duty"),
    ({"lat": 95}, "lat", "outside"),
    ({"lat": "nan"}, "lat", "finite"),
    ({"crs": "EPSG:0"}, "crs", ""),
    ({"jurisdiction": "ATLANTIS"}, "jurisdiction", "TEST-LADDER"),
])
def test_bad_nearest_parameters_are_422_naming_the_field(client, conn, town, params, field,
                                                         text) -> None:
    add_responder(conn, town.jurisdiction_id, "fire", town.at["b3"], skills=("fire",))
    r = nearest(client, town.at["b2"], **params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and text in r.json()["detail"]


def test_unknown_skill_response_lists_the_valid_skills(client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "fire", town.at["b3"], skills=("fire", "ladder"))
    body = nearest(client, town.at["b2"], skill="juggling").json()
    assert {"fire", "ladder"} <= set(body["valid"]) and "fire" in body["detail"]


def test_point_outside_the_network_is_an_empty_list_with_the_distance(client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "r", town.at["b3"])
    far = (town.at["b2"][0], town.at["b2"][1] + 0.01)
    for params in ({"jurisdiction": "TEST-LADDER"}, {"jurisdiction": ""}):
        r = nearest(client, far, mode="road", **params)
        assert r.status_code == 200
        assert r.json()["results"] == []
        assert r.json()["reason"].startswith("outside network: nearest road is 10")


def test_no_one_available_and_stale_positions_give_reasons(client, conn, town) -> None:
    add_responder(conn, town.jurisdiction_id, "busy", town.at["b3"], status="busy")
    body = nearest(client, town.at["b2"], mode="road").json()
    assert body == {**body, "results": [], "reason": "no available responder"}
    add_responder(conn, town.jurisdiction_id, "old", town.at["b3"], age_s=3600)
    body = nearest(client, town.at["b2"]).json()
    assert body["results"] == [] and "stale position (older than 600 s)" in body["reason"]


# --- responders -------------------------------------------------------------------------------


def test_create_list_and_patch_status(client, conn, town) -> None:
    r = client.post("/api/responders", json={
        "name": "Crew 1", "kind": "vehicle", "department": "FIRE", "skills": ["fire"],
        "status": "available", "jurisdiction_id": town.jurisdiction_id})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = client.put(f"/api/responders/{rid}/position",
                   json={"lon": town.at["b1"][0], "lat": town.at["b1"][1]})
    assert r.status_code == 200 and r.json()["geometry"]["coordinates"] == list(town.at["b1"])
    listed = client.get("/api/responders", params={"status": "available",
                                                  "department": "FIRE"}).json()
    assert rid in [f["id"] for f in listed["features"]]
    r = client.patch(f"/api/responders/{rid}", json={"status": "off"})
    assert r.status_code == 200 and r.json()["geometry"] is None
    assert r.json()["properties"]["status"] == "off"


@pytest.mark.parametrize("body, status, field", [
    ({"status": "sleeping"}, 422, "status"),
    ({"department": "NOPE"}, 422, "department"),
    ({"name": ""}, 422, "name"),
])
def test_bad_patch_is_422(client, conn, town, body, status, field) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", town.at["b1"])
    r = client.patch(f"/api/responders/{rid}", json=body)
    assert (r.status_code, r.json()["field"]) == (status, field)


def test_position_of_unknown_or_off_duty_responder(client, conn, town) -> None:
    off = add_responder(conn, town.jurisdiction_id, "off", None, status="off")
    body = {"lon": town.at["b1"][0], "lat": town.at["b1"][1]}
    assert client.put("/api/responders/999999999/position", json=body).status_code == 404
    r = client.put(f"/api/responders/{off}/position", json=body)
    assert r.status_code == 409 and "off duty" in r.json()["detail"]
    r = client.put(f"/api/responders/{off}/position", json={"lon": 500, "lat": 0})
    assert (r.status_code, r.json()["field"]) == (422, "lon")


def test_batch_positions_store_the_good_and_list_the_refused(client, conn, town) -> None:
    ids = [add_responder(conn, town.jurisdiction_id, f"r{i}", None) for i in range(3)]
    off = add_responder(conn, town.jurisdiction_id, "off", None, status="off")
    positions = [{"id": i, "lon": town.at["b1"][0], "lat": town.at["b1"][1]} for i in ids]
    positions.append({"id": off, "lon": 10.0, "lat": 50.0})
    r = client.put("/api/responders/positions", json={"positions": positions})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["moved"]) == (3, 3)
    assert [x["id"] for x in body["rejected"]] == [off]
    history = client.get(f"/api/responders/{ids[0]}/positions").json()
    assert len(history["features"]) == 1


def test_malformed_batch_is_422(client, conn, town) -> None:
    r = client.put("/api/responders/positions", json={"positions": [{"id": 1, "lon": "x"}]})
    assert r.status_code == 422 and r.json()["field"].startswith("positions.0")


# --- department scope and odd ids -------------------------------------------------------------


def as_role(conn: Connection, role: str, department: str) -> dict[str, str]:
    _, token = account(conn, role, department=department)
    return {"Authorization": f"Bearer {token}"}


def test_a_department_scoped_account_cannot_change_or_move_another_departments_responder(
        client, conn, town) -> None:
    fire = add_responder(conn, town.jurisdiction_id, "fire crew", town.at["b1"],
                         department="FIRE")
    sanitation = as_role(conn, "dispatcher", "SANITATION")
    body = {"lon": town.at["b2"][0], "lat": town.at["b2"][1]}
    for r in (client.patch(f"/api/responders/{fire}", json={"status": "busy"},
                           headers=sanitation),
              client.put(f"/api/responders/{fire}/position", json=body, headers=sanitation)):
        assert r.status_code == 403, r.text
        assert r.json()["field"] == "id"
        assert f"responder {fire} belongs to department FIRE" in r.json()["detail"]
    row = client.get(f"/api/responders/{fire}").json()  # reading is not scoped
    assert row["properties"]["status"] == "available"
    assert row["geometry"]["coordinates"] == list(town.at["b1"])


def test_a_department_scoped_account_keeps_its_responders_in_its_department(
        client, conn, town) -> None:
    own = add_responder(conn, town.jurisdiction_id, "own", town.at["b1"], department="FIRE")
    fire = as_role(conn, "dispatcher", "FIRE")
    assert client.patch(f"/api/responders/{own}", json={"status": "busy"},
                        headers=fire).status_code == 200
    r = client.patch(f"/api/responders/{own}", json={"department": "SANITATION"}, headers=fire)
    assert (r.status_code, r.json()["field"]) == (403, "department")
    r = client.post("/api/responders", json={"name": "n", "department": "SANITATION"},
                    headers=fire)
    assert (r.status_code, r.json()["field"]) == (403, "department")
    r = client.post("/api/responders", json={"name": "n"}, headers=fire)
    assert r.status_code == 201 and r.json()["properties"]["department"] == "FIRE"


def test_batch_refuses_another_departments_responder_per_item(client, conn, town) -> None:
    own = add_responder(conn, town.jurisdiction_id, "own", None, department="FIRE")
    other = add_responder(conn, town.jurisdiction_id, "other", None, department="SANITATION")
    loose = add_responder(conn, town.jurisdiction_id, "loose", None)
    at = {"lon": town.at["b1"][0], "lat": town.at["b1"][1]}
    r = client.put("/api/responders/positions", headers=as_role(conn, "handler", "FIRE"),
                   json={"positions": [{"id": i, **at} for i in (own, other, loose)]})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    refused = {x["id"]: x for x in r.json()["rejected"]}
    assert set(refused) == {other, loose}
    assert "belongs to department SANITATION" in refused[other]["reason"]
    assert "belongs to no department" in refused[loose]["reason"]
    assert client.get(f"/api/responders/{other}").json()["geometry"] is None
    assert client.get(f"/api/responders/{other}/positions").json()["features"] == []


@pytest.mark.parametrize("jid", [False, True, 0, -1, "1", 987654321, 2**40])
def test_new_responder_in_an_unknown_jurisdiction_is_422_naming_it(client, town, jid) -> None:
    r = client.post("/api/responders", json={"name": "n", "jurisdiction_id": jid})
    assert (r.status_code, r.json()["field"]) == (422, "jurisdiction_id"), r.text


def test_new_responder_in_a_known_jurisdiction(client, town) -> None:
    jid = town.jurisdiction_id
    r = client.post("/api/responders", json={"name": "n", "jurisdiction_id": jid})
    assert r.status_code == 201 and r.json()["properties"]["jurisdiction_id"] == jid


@pytest.mark.parametrize("rid", [10**22, 2**63, 0, -(10**22)])
@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("GET", "", None), ("PATCH", "", {"status": "busy"}),
    ("PUT", "/position", {"lon": 24.94, "lat": 60.17}), ("GET", "/positions", None),
])
def test_responder_ids_outside_bigint_are_422(client, rid, method, suffix, body) -> None:
    r = client.request(method, f"/api/responders/{rid}{suffix}", json=body)
    assert (r.status_code, r.json()["field"]) == (422, "responder_id"), r.text


def test_batch_ids_outside_bigint_are_422(client) -> None:
    r = client.put("/api/responders/positions",
                   json={"positions": [{"id": 10**22, "lon": 24.94, "lat": 60.17}]})
    assert (r.status_code, r.json()["field"]) == (422, "positions.0.id")


# --- facilities -------------------------------------------------------------------------------


def test_facilities_list_and_nearest(client, conn, town) -> None:
    add_facility(conn, town.jurisdiction_id, "clinic", "West clinic", town.at["b1"])
    add_facility(conn, town.jurisdiction_id, "clinic", "East clinic", town.at["b3"])
    add_facility(conn, town.jurisdiction_id, "shelter", "Shelter", town.at["t2"])
    clinics = client.get("/api/facilities", params={"type": "clinic"}).json()
    assert {f["properties"]["name"] for f in clinics["features"]} >= {"West clinic",
                                                                     "East clinic"}
    r = client.get("/api/facilities/nearest", params={
        "lon": town.at["b2"][0], "lat": town.at["b2"][1], "type": "clinic", "k": 2,
        "mode": "road", "direction": "from_point", "jurisdiction": "TEST-LADDER"})
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["results"]] == ["East clinic", "West clinic"]


def test_unknown_facility_type_is_422_listing_types(client, conn, town) -> None:
    add_facility(conn, town.jurisdiction_id, "clinic", "West clinic", town.at["b1"])
    for path in ("/api/facilities", "/api/facilities/nearest"):
        r = client.get(path, params={"lon": 10, "lat": 50, "type": "spaceport"})
        assert r.status_code == 422 and r.json()["field"] == "type"
        assert "clinic" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/responders"),
    ("GET", "/api/responders/nearest?lon=10&lat=50"),
    ("PUT", "/api/responders/positions"),
    ("GET", "/api/responders/1/positions"),
])
def test_responders_are_not_public(client, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    del client.headers["Authorization"]
    r = client.request(method, path, json={"positions": []})
    assert r.status_code == 401


def test_a_reporter_cannot_read_position_histories(client, conn: Connection) -> None:  # type: ignore[no-untyped-def]
    _, token = account(conn, "reporter")
    r = client.get("/api/responders/1/positions", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_facilities_stay_public(client, town: Town) -> None:  # type: ignore[no-untyped-def]
    del client.headers["Authorization"]
    assert client.get("/api/facilities").status_code == 200

"""Open311 GeoReport v2 over HTTP, with requests shaped as in the specification's own examples:
services and definitions, POST (form-encoded as the spec, JSON and XML tolerated), GET requests
and filters, tokens, discovery, the spec's error format and status codes, privacy, idempotency.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import defusedxml.ElementTree as DET
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from gis.open311 import STATUS_NOTES
from tests.factories import CaseWorld, account, case_world

V2 = "/open311/v2"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Every field of a service request in the specification's GET example.
REQUEST_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code",
                  "description", "agency_responsible", "service_notice", "requested_datetime",
                  "updated_datetime", "expected_datetime", "address", "address_id", "zipcode",
                  "lat", "long", "media_url"]
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords",
                  "group"]
SINKHOLE = "E040102"  # Emergencies › Hazards › Road collapse (ROADS)
PRIVATE = ("smit222", "sfgov.edu", "111111111", "tt222111", "123456", "john", "smith")


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


@pytest.fixture
def api_key(conn: Connection) -> str:
    return account(conn, "reporter")[1]


def spec_example(api_key: str, world: CaseWorld, service_code: str = SINKHOLE) -> str:
    """The specification's example POST body, with our key, service code and coordinates."""
    lon, lat = world.point(1, 2)
    return (f"api_key={api_key}&service_code={service_code}&lat={lat}&long={lon}"
            "&address_string=1234+5th+street&email=smit222%40sfgov.edu&device_id=tt222111"
            "&account_id=123456&first_name=john&last_name=smith&phone=111111111"
            "&description=A+large+sinkhole+is+destroying+the+street"
            "&media_url=http%3A%2F%2Fdomain.com%2Fimage.jpg"
            "&attribute[WHISPAWN]=123456&attribute[WHISDORN]=COISL001")


def post_form(client: TestClient, body: str, fmt: str = "json", **headers: str) -> Any:
    return client.post(f"{V2}/requests.{fmt}", content=body, headers={**FORM, **headers})


def xml(resp: Any) -> Any:
    assert resp.headers["content-type"] == "text/xml; charset=utf-8"
    assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return DET.fromstring(resp.content)


def assert_spec_error(resp: Any, status: int, *words: str, fmt: str = "json") -> None:
    assert resp.status_code == status, resp.text
    if fmt == "json":
        body = resp.json()
        assert isinstance(body, list) and set(body[0]) == {"code", "description"}
        code, description = body[0]["code"], body[0]["description"]
    else:
        root = xml(resp)
        assert root.tag == "errors" and root[0].tag == "error"
        code, description = int(root.findtext("error/code")), root.findtext("error/description")
    assert code == status
    for word in words:
        assert word in description


def created(client: TestClient, api_key: str, world: CaseWorld, **kw: str) -> str:
    resp = post_form(client, spec_example(api_key, world, **kw))
    assert resp.status_code == 201, resp.text
    return resp.json()[0]["service_request_id"]


# --- services ---------------------------------------------------------------------------------

def test_services_json_lists_every_reportable_category(client: TestClient, conn: Connection,
                                                       world: CaseWorld) -> None:
    resp = client.get(f"{V2}/services.json")
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    services = resp.json()
    leaves = conn.execute(text("SELECT count(*) FROM categories c WHERE active AND NOT EXISTS"
                               " (SELECT 1 FROM categories k WHERE k.parent_id = c.id)")).scalar()
    assert len(services) == leaves >= 40
    garbage = next(s for s in services if s["service_code"] == "E010101")
    assert list(garbage) == SERVICE_FIELDS
    assert garbage["service_name"] == "Garbage pile-up"
    assert (garbage["metadata"], garbage["type"], garbage["group"]) == (
        False, "realtime", "City appearance")
    assert "暴露垃圾" in garbage["description"] and "Sanitation" in garbage["description"]


def test_services_in_chinese_with_locale(client: TestClient, world: CaseWorld) -> None:
    services = client.get(f"{V2}/services.json", params={"locale": "zh_CN"}).json()
    garbage = next(s for s in services if s["service_code"] == "E010101")
    assert (garbage["service_name"], garbage["group"]) == ("暴露垃圾", "市容环境")


def test_services_xml_has_the_spec_elements(client: TestClient, world: CaseWorld) -> None:
    root = xml(client.get(f"{V2}/services.xml"))
    assert root.tag == "services"
    first = root.find("service")
    assert [child.tag for child in first] == SERVICE_FIELDS
    assert first.findtext("metadata") == "false"
    assert first.findtext("type") == "realtime"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_service_definition_has_no_required_attributes(client: TestClient, world: CaseWorld,
                                                       fmt: str) -> None:
    resp = client.get(f"{V2}/services/E010101.{fmt}")
    assert resp.status_code == 200
    if fmt == "json":
        assert resp.json() == {"service_code": "E010101", "attributes": []}
    else:
        root = xml(resp)
        assert (root.tag, root.findtext("service_code")) == ("service_definition", "E010101")
        assert list(root.find("attributes")) == []


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("code", ["NOPE", "E01"])  # unknown, and a class (not reportable)
def test_unknown_service_definition_is_404_in_spec_format(client: TestClient, world: CaseWorld,
                                                          fmt: str, code: str) -> None:
    assert_spec_error(client.get(f"{V2}/services/{code}.{fmt}"), 404, code, fmt=fmt)


# --- POST requests: the spec's example ------------------------------------------------------

def test_spec_example_post_creates_a_case_through_the_intake(
        client: TestClient, conn: Connection, world: CaseWorld, api_key: str) -> None:
    resp = post_form(client, spec_example(api_key, world))
    assert resp.status_code == 201, resp.text
    (answer,) = resp.json()
    assert set(answer) == {"service_request_id", "token", "service_notice", "account_id"}
    assert "Roads" in answer["service_notice"] and "grid 99010100100102" in answer["service_notice"]
    row = conn.execute(text(
        "SELECT c.channel, c.reporter_contact, c.description, k.code, a.code AS grid"
        " FROM cases c JOIN categories k ON k.id = c.category_id JOIN areas a ON a.id = c.area_id"
        " WHERE c.id = :id"), {"id": int(answer["service_request_id"])}).one()
    assert (row.channel, row.code, row.grid) == ("open311", SINKHOLE, "99010100100102")
    assert row.reporter_contact == {"name": "john smith", "email": "smit222@sfgov.edu",
                                    "phone": "111111111",
                                    "note": "open311 device_id=tt222111, account_id=123456"}
    assert row.description.startswith("A large sinkhole is destroying the street\n\n[Open311]")
    assert "attribute[WHISDORN]: COISL001" in row.description


def test_spec_example_post_answers_in_xml(client: TestClient, world: CaseWorld,
                                          api_key: str) -> None:
    resp = post_form(client, spec_example(api_key, world), fmt="xml")
    assert resp.status_code == 201
    root = xml(resp)
    assert root.tag == "service_requests"
    request = root.find("request")
    assert request.findtext("service_request_id").isdigit()
    assert request.findtext("token").startswith("gtr_")
    assert request.find("account_id") is not None
    assert resp.headers["location"] == f"{V2}/requests/{request.findtext('service_request_id')}.xml"


def test_get_request_has_every_spec_field_and_no_private_data(
        client: TestClient, world: CaseWorld, api_key: str) -> None:
    rid = created(client, api_key, world)
    resp = client.get(f"{V2}/requests/{rid}.json")
    (request,) = resp.json()
    assert list(request) == REQUEST_FIELDS
    lon, lat = world.point(1, 2)
    assert request["service_request_id"] == rid
    assert (request["status"], request["service_code"]) == ("open", SINKHOLE)
    assert request["description"] == "A large sinkhole is destroying the street"
    assert request["address"] == "1234 5th street"
    assert request["media_url"] == "http://domain.com/image.jpg"
    assert request["agency_responsible"] == "Roads and Municipal Works (市政道路)"
    assert request["status_notes"] == STATUS_NOTES["reported"]
    assert (request["lat"], request["long"]) == (pytest.approx(lat), pytest.approx(lon))
    for word in PRIVATE:
        assert word not in resp.text
        assert word not in client.get(f"{V2}/requests/{rid}.xml").text


def test_get_request_xml_has_the_spec_elements(client: TestClient, world: CaseWorld,
                                               api_key: str) -> None:
    rid = created(client, api_key, world)
    root = xml(client.get(f"{V2}/requests/{rid}.xml"))
    assert [c.tag for c in root.find("request")] == REQUEST_FIELDS
    assert root.findtext("request/status") == "open"
    assert root.findtext("request/zipcode") == ""  # an empty element


def test_datetimes_carry_a_timezone(client: TestClient, world: CaseWorld, api_key: str) -> None:
    rid = created(client, api_key, world)
    (request,) = client.get(f"{V2}/requests/{rid}.json").json()
    for key in ("requested_datetime", "updated_datetime", "expected_datetime"):
        assert request[key].endswith("+00:00"), key
    assert request["expected_datetime"] > request["requested_datetime"]


# --- POST requests: other encodings -------------------------------------------------------------

def test_json_body_is_tolerated(client: TestClient, world: CaseWorld, api_key: str) -> None:
    lon, lat = world.point(2, 1)
    resp = client.post(f"{V2}/requests.json", json={
        "api_key": api_key, "service_code": "E010101", "lat": lat, "long": lon,
        "description": "bags", "attribute": {"BAGS": "3"}})
    assert resp.status_code == 201, resp.text
    (request,) = client.get(f"{V2}/requests/{resp.json()[0]['service_request_id']}.json").json()
    assert (request["service_code"], request["description"]) == ("E010101", "bags")


def test_xml_body_is_tolerated(client: TestClient, world: CaseWorld, api_key: str) -> None:
    lon, lat = world.point(2, 1)
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><request><api_key>{api_key}</api_key>'
           f"<service_code>E010101</service_code><lat>{lat}</lat><long>{lon}</long>"
           '<description>垃圾 &amp; bags</description><attribute code="BAGS">3</attribute>'
           "</request>")
    resp = client.post(f"{V2}/requests.xml", content=doc.encode(),
                       headers={"Content-Type": "application/xml"})
    assert resp.status_code == 201, resp.text
    rid = xml(resp).findtext("request/service_request_id")
    (request,) = client.get(f"{V2}/requests/{rid}.json").json()
    assert request["description"] == "垃圾 & bags"


def test_api_key_in_the_query_string_like_the_python_open311_client(
        client: TestClient, world: CaseWorld, api_key: str) -> None:
    lon, lat = world.point(2, 2)
    resp = client.post(f"{V2}/requests.json?api_key={api_key}&jurisdiction_id=TEST-TINY",
                       content=f"service_code=E010101&lat={lat}&long={lon}", headers=FORM)
    assert resp.status_code == 201, resp.text


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_malformed_json_is_400_in_spec_format(client: TestClient, world: CaseWorld,
                                              fmt: str) -> None:
    resp = client.post(f"{V2}/requests.{fmt}", content=b'{"service_code": ',
                       headers={"Content-Type": "application/json"})
    assert_spec_error(resp, 400, "malformed JSON", fmt=fmt)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_malformed_xml_is_400_in_spec_format(client: TestClient, world: CaseWorld,
                                             fmt: str) -> None:
    resp = client.post(f"{V2}/requests.{fmt}", content=b"<request><service_code>E01",
                       headers={"Content-Type": "text/xml"})
    assert_spec_error(resp, 400, "malformed XML", fmt=fmt)


def test_xml_entities_are_refused(client: TestClient, world: CaseWorld, api_key: str) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><request><description>&b;</description>'
            b"</request>")
    resp = client.post(f"{V2}/requests.xml", content=bomb, headers={"Content-Type": "text/xml"})
    assert_spec_error(resp, 400, "DTD", fmt="xml")


@pytest.mark.parametrize(("key", "words"), [
    (None, ["api_key was not provided"]),
    ("ggt_not-a-real-token", ["invalid api_key", "unknown token"]),
])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_missing_or_invalid_api_key_is_403(client: TestClient, world: CaseWorld, fmt: str,
                                           key: str | None, words: list[str]) -> None:
    lon, lat = world.point()
    body = f"service_code=E010101&lat={lat}&long={lon}" + (f"&api_key={key}" if key else "")
    assert_spec_error(post_form(client, body, fmt), 403, *words, fmt=fmt)


def test_expired_api_key_is_403(client: TestClient, conn: Connection, world: CaseWorld) -> None:
    from datetime import timedelta

    from gis.auth import create_user, issue_token

    uid = create_user(conn, f"expired-{uuid.uuid4().hex[:6]}", "reporter")
    token = issue_token(conn, uid, expires_in=timedelta(seconds=-1))
    assert_spec_error(post_form(client, spec_example(token, world)), 403, "expired")


def test_api_key_of_a_role_that_may_not_report_is_403(client: TestClient, conn: Connection,
                                                       world: CaseWorld) -> None:
    _, token = account(conn, "planner")
    assert_spec_error(post_form(client, spec_example(token, world)), 403, "planner")


@pytest.mark.parametrize("role", ["reporter", "call_taker", "admin"])
def test_api_key_roles_that_may_report(client: TestClient, conn: Connection, world: CaseWorld,
                                       role: str) -> None:
    _, token = account(conn, role)
    assert post_form(client, spec_example(token, world)).status_code == 201


@pytest.mark.parametrize(("change", "field"), [
    ({"service_code": ""}, "service_code was not provided"),
    ({"service_code": "NOPE"}, "service_code"),
    ({"service_code": "E01"}, "is a class"),
    ({"lat": "", "long": ""}, "location missing: send lat and long"),
    ({"lat": "", "long": "", "address_string": "5th street"}, "does not geocode"),
    ({"long": ""}, "long is missing"),
    ({"lat": "north"}, "lat must be a number"),
    ({"lat": "50.01", "long": "11.5"}, "outside every grid"),
    ({"email": "not-an-address"}, "email"),
    ({"media_url": "javascript:alert(1)"}, "media_url"),
    ({"description": "x" * 4001}, "description is 4,001 characters"),
    ({"jurisdiction_id": "ATLANTIS"}, "jurisdiction_id 'ATLANTIS' was not found"),
])
def test_bad_post_is_400_naming_the_field_and_writes_nothing(
        client: TestClient, conn: Connection, world: CaseWorld, api_key: str,
        change: dict[str, str], field: str) -> None:
    before = conn.execute(text("SELECT count(*) FROM cases")).scalar()
    lon, lat = world.point()
    fields = {"api_key": api_key, "service_code": "E010101", "lat": str(lat),
              "long": str(lon), "description": "x", **change}
    body = "&".join(f"{k}={quote(v)}" for k, v in fields.items())
    assert_spec_error(post_form(client, body), 400, field)
    assert conn.execute(text("SELECT count(*) FROM cases")).scalar() == before


def test_point_outside_the_named_jurisdiction_is_400_and_rolled_back(
        client: TestClient, conn: Connection, world: CaseWorld, api_key: str) -> None:
    other = case_world(conn, code="TEST-OTHER", x0=11.0, y0=51.0)
    before = conn.execute(text("SELECT count(*) FROM cases")).scalar()
    lon, lat = other.point()
    body = f"api_key={api_key}&jurisdiction_id=TEST-TINY&service_code=E010101&lat={lat}&long={lon}"
    assert_spec_error(post_form(client, body), 400, "outside jurisdiction_id 'TEST-TINY'")
    assert conn.execute(text("SELECT count(*) FROM cases")).scalar() == before


def test_unsupported_content_type_and_unknown_format(client: TestClient, world: CaseWorld) -> None:
    resp = client.post(f"{V2}/requests.json", content=b"x", headers={"Content-Type": "text/csv"})
    assert_spec_error(resp, 415, "text/csv")
    assert_spec_error(client.get(f"{V2}/services.csv"), 404, "use .json or .xml")
    assert_spec_error(client.get(f"{V2}/nothing.xml"), 404, "nothing.xml", fmt="xml")


def test_unknown_request_id_is_404(client: TestClient, world: CaseWorld) -> None:
    assert_spec_error(client.get(f"{V2}/requests/999999999.json"), 404, "999999999")
    assert_spec_error(client.get(f"{V2}/requests/abc.xml"), 404, "abc", fmt="xml")


# --- idempotency --------------------------------------------------------------------------------

def test_idempotency_key_retry_returns_the_same_request(client: TestClient, conn: Connection,
                                                        world: CaseWorld, api_key: str) -> None:
    key = str(uuid.uuid4())
    first = post_form(client, spec_example(api_key, world), **{"Idempotency-Key": key})
    again = post_form(client, spec_example(api_key, world), **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    rid = int(first.json()[0]["service_request_id"])
    assert conn.execute(text("SELECT count(*) FROM cases WHERE channel = 'open311'"
                             " AND id >= :id"), {"id": rid}).scalar() == 1


def test_idempotency_key_reused_for_another_request_is_400(client: TestClient, world: CaseWorld,
                                                           api_key: str) -> None:
    key = str(uuid.uuid4())
    post_form(client, spec_example(api_key, world), **{"Idempotency-Key": key})
    other = post_form(client, spec_example(api_key, world, service_code="E010101"),
                      **{"Idempotency-Key": key})
    assert_spec_error(other, 400, "Idempotency-Key")


# --- GET requests: filters and the status mapping -----------------------------------------------

def _ids(resp: Any) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [r["service_request_id"] for r in resp.json()]


def test_get_requests_by_id_list_overrides_other_filters(client: TestClient, world: CaseWorld,
                                                        api_key: str) -> None:
    a = created(client, api_key, world)
    b = created(client, api_key, world, service_code="E010101")
    got = _ids(client.get(f"{V2}/requests.json", params={
        "service_request_id": f"{a},{b}", "service_code": "C010101", "status": "closed"}))
    assert sorted(got) == sorted([a, b])


def test_get_requests_by_service_code_and_dates(client: TestClient, world: CaseWorld,
                                               api_key: str) -> None:
    a = created(client, api_key, world)
    b = created(client, api_key, world, service_code="E010101")
    got = _ids(client.get(f"{V2}/requests.json", params={"service_code": f"{SINKHOLE},C010101",
                                                        "jurisdiction_id": "TEST-TINY"}))
    assert a in got and b not in got
    assert _ids(client.get(f"{V2}/requests.json", params={
        "start_date": "2010-01-01T00:00:00Z", "end_date": "2010-03-01T00:00:00-08:00"})) == []
    assert {a, b} <= set(_ids(client.get(f"{V2}/requests.json")))  # default: the last 90 days


def test_status_follows_the_lifecycle(client: TestClient, conn: Connection, world: CaseWorld,
                                      api_key: str) -> None:
    from gis.lifecycle import ActionRequest, apply_action

    rid = created(client, api_key, world)
    admin, _ = account(conn, "admin")
    handler, _ = account(conn, "handler", department="ROADS")
    for who, step in [(admin, ActionRequest("file")), (admin, ActionRequest("dispatch")),
                      (handler, ActionRequest("handle", note="filled")),
                      (admin, ActionRequest("verify", result="pass")),
                      (admin, ActionRequest("close"))]:
        (request,) = client.get(f"{V2}/requests/{rid}.json").json()
        assert request["status"] == "open"
        apply_action(conn, int(rid), step, who)
    (request,) = client.get(f"{V2}/requests/{rid}.json").json()
    assert (request["status"], request["status_notes"]) == ("closed", STATUS_NOTES["closed"])
    assert request["updated_datetime"] > request["requested_datetime"]
    assert rid in _ids(client.get(f"{V2}/requests.json", params={"status": "closed"}))
    assert rid not in _ids(client.get(f"{V2}/requests.json", params={"status": "open"}))


def test_rejected_is_closed_and_duplicates_are_noted(client: TestClient, conn: Connection,
                                                     world: CaseWorld, api_key: str) -> None:
    from gis.lifecycle import ActionRequest, apply_action

    first = created(client, api_key, world)
    dup = created(client, api_key, world)
    (request,) = client.get(f"{V2}/requests/{dup}.json").json()
    assert f"duplicate of request {first}" in request["status_notes"]
    admin, _ = account(conn, "admin")
    apply_action(conn, int(dup), ActionRequest("reject", note="duplicate"), admin)
    (request,) = client.get(f"{V2}/requests/{dup}.json").json()
    assert (request["status"], request["status_notes"].split(" Linked")[0]) == (
        "closed", STATUS_NOTES["rejected"])
    assert "duplicate" not in request["status_notes"].split(" Linked")[0]  # staff note stays inside


@pytest.mark.parametrize(("params", "words"), [
    ({"status": "pending"}, ["status must be open or closed"]),
    ({"start_date": "yesterday"}, ["start_date must be a w3c date/time"]),
    ({"start_date": "2010-01-01T00:00:00Z", "end_date": "2010-06-01T00:00:00Z"}, ["90 days"]),
    ({"service_request_id": "1,two"}, ["service_request_id"]),
    ({"service_code": "NOPE"}, ["service_code 'NOPE' was not found"]),
    ({"jurisdiction_id": "ATLANTIS"}, ["jurisdiction_id"]),
])
def test_bad_get_requests_filters_are_400(client: TestClient, world: CaseWorld,
                                          params: dict[str, str], words: list[str]) -> None:
    assert_spec_error(client.get(f"{V2}/requests.json", params=params), 400, *words)
    assert_spec_error(client.get(f"{V2}/requests.xml", params=params), 400, *words, fmt="xml")


# --- tokens and discovery -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_token_maps_to_the_request_id(client: TestClient, world: CaseWorld, api_key: str,
                                      fmt: str) -> None:
    (answer,) = post_form(client, spec_example(api_key, world)).json()
    resp = client.get(f"{V2}/tokens/{answer['token']}.{fmt}")
    if fmt == "json":
        assert resp.json() == [{"service_request_id": answer["service_request_id"],
                                "token": answer["token"]}]
    else:
        root = xml(resp)
        assert root.findtext("request/service_request_id") == answer["service_request_id"]
        assert root.findtext("request/token") == answer["token"]
    assert_spec_error(client.get(f"{V2}/tokens/gtr_nope.{fmt}"), 404, "token", fmt=fmt)


def test_token_of_a_case_reported_through_the_api(client: TestClient, world: CaseWorld) -> None:
    lon, lat = world.point()
    case = client.post("/api/cases", json={"category": "E010101", "lon": lon, "lat": lat}).json()
    resp = client.get(f"{V2}/tokens/{case['tracking_token']}.json")
    assert resp.json()[0]["service_request_id"] == str(case["id"])


def test_discovery_names_this_endpoint_and_both_formats(client: TestClient) -> None:
    doc = client.get(f"{V2}/discovery.json").json()
    (endpoint,) = doc["endpoints"]
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    root = xml(client.get(f"{V2}/discovery.xml"))
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml", "application/json"]


def test_openapi_lists_the_open311_routes(client: TestClient) -> None:
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    assert {f"{V2}/services.{{fmt}}", f"{V2}/requests.{{fmt}}",
            f"{V2}/tokens/{{token}}.{{fmt}}"} <= set(paths)

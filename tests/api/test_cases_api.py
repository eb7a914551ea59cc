"""``POST /api/cases`` and the case queries over HTTP: status codes, bodies, uploads,
idempotency, tokens, privacy (scanned in the JSON), paging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from tests.factories import DISTRICT, CaseWorld, TinyCity, account, case_world

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64
CONTACT = {"name": "Wang Fang", "phone": "+86 138 0013 8000", "email": "wf@example.org"}
SECRET_KEY = "idem-key-3f9a1c"


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


@pytest.fixture(autouse=True)
def media_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GRIDGOV_MEDIA_DIR", str(tmp_path))
    return tmp_path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body(world: CaseWorld, street: int = 1, **kw: Any) -> dict[str, Any]:
    lon, lat = world.point(street, 1)
    return {"category": "E010101", "lon": lon, "lat": lat, "description": "rubbish", **kw}


def cases(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())


def test_report_answers_201_with_grid_department_and_due_at(client: TestClient,
                                                            world: CaseWorld) -> None:
    r = client.post("/api/cases", json=body(world, street=2))
    assert r.status_code == 201, r.text
    data = r.json()
    assert {"id", "status", "area_code", "department", "due_at"} <= data.keys()
    assert data["area_code"] == TinyCity.grid_code(2, 1) and data["department"] == "SANITATION"
    assert r.headers["location"] == f"/api/cases/{data['id']}"


def test_report_with_photos_stores_them_by_sha256(client: TestClient, world: CaseWorld,
                                                  media_dir: Path) -> None:
    fields = {k: str(v) for k, v in body(world).items()}
    fields["contact"] = json.dumps(CONTACT)
    files = [("photos", ("a.png", PNG, "image/png")), ("photos", ("b.jpg", JPEG, "image/jpeg"))]
    r = client.post("/api/cases", data=fields, files=files)
    assert r.status_code == 201, r.text
    assert len(list(media_dir.iterdir())) == 2


@pytest.mark.parametrize(("files", "status", "match"), [
    ([("photos", ("a.gif", GIF, "image/gif"))], 415, "declares type 'image/gif'"),
    ([("photos", ("a.png", b"#!/bin/sh\necho hi", "image/png"))], 415, "content is not an image"),
    ([("photos", ("a.png", JPEG, "image/png"))], 415, "its content is a JPEG image"),
    ([("photos", ("a.png", PNG + b"\x00" * 2000, "image/png"))], 413, "the limit is"),
    ([("photos", (f"{i}.png", PNG, "image/png")) for i in range(6)], 422, "at most 5 photos"),
])
def test_bad_upload_is_refused_and_nothing_is_written(
        client: TestClient, conn: Connection, world: CaseWorld, media_dir: Path,
        monkeypatch: pytest.MonkeyPatch, files: list, status: int, match: str) -> None:
    monkeypatch.setenv("GRIDGOV_MEDIA_MAX_BYTES", "1000")
    before = cases(conn)
    r = client.post("/api/cases", data={k: str(v) for k, v in body(world).items()}, files=files)
    assert r.status_code == status and match in r.json()["detail"]
    assert cases(conn) == before and list(media_dir.iterdir()) == []


@pytest.mark.parametrize(("payload", "field", "match"), [
    ('{"category": "E010101", "lon": 10.0', "body", "malformed JSON"),
    ("[1, 2]", "body", "JSON object"),
    ({"category": "X1", "lon": 10.005, "lat": 50.01}, "category", "unknown category"),
    ({"category": "E010101"}, "location", "missing location"),
    ({"category": "E010101", "lon": 100.0, "lat": 10.0}, "location", "outside every grid"),
    ({"category": "E010101", "lon": 10.005, "lat": 50.01, "description": "x" * 100_000},
     "description", "100,000 characters"),
    ({"category": "E010101", "lon": 10.005, "lat": 50.01, "colour": "red"}, "colour", "Extra"),
    ({"category": "E010101", "lon": "east", "lat": 50.01}, "lon", "number"),
])
def test_bad_report_is_a_422_naming_the_field_and_writes_nothing(
        client: TestClient, conn: Connection, world: CaseWorld, payload: Any, field: str,
        match: str) -> None:
    before = cases(conn)
    content = payload if isinstance(payload, str) else json.dumps(payload)
    r = client.post("/api/cases", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == field and match in r.json()["detail"]
    assert cases(conn) == before


def test_idempotency_key_retry_answers_the_same_case(client: TestClient, conn: Connection,
                                                     world: CaseWorld) -> None:
    headers = {"Idempotency-Key": SECRET_KEY}
    first = client.post("/api/cases", json=body(world), headers=headers)
    again = client.post("/api/cases", json=body(world), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = client.post("/api/cases", json=body(world, description="other"), headers=headers)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize(("header", "match"), [
    ("Bearer ggt_unknown", "unknown token"),
    ("Basic dXNlcjpwdw==", "Bearer <token>"),
    ("Bearer ", "Bearer <token>"),
])
def test_bad_token_is_401_with_a_reason(client: TestClient, world: CaseWorld, header: str,
                                        match: str) -> None:
    r = client.post("/api/cases", json=body(world), headers={"Authorization": header})
    assert r.status_code == 401 and match in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_expired_token_is_401(client: TestClient, conn: Connection, world: CaseWorld) -> None:
    from datetime import timedelta

    from gis.auth import create_user, issue_token

    uid = create_user(conn, "short-lived", "dispatcher")
    token = issue_token(conn, uid, expires_in=timedelta(seconds=-1))
    r = client.get("/api/cases", headers=bearer(token))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_public_may_not_use_staff_channels(client: TestClient, world: CaseWorld) -> None:
    r = client.post("/api/cases", json=body(world, channel="patrol"))
    assert r.status_code == 401 and "patrol" in r.json()["detail"]


def _private_case(client: TestClient, world: CaseWorld) -> int:
    r = client.post("/api/cases", json=body(world, contact=CONTACT),
                    headers={"Idempotency-Key": SECRET_KEY})
    assert r.status_code == 201
    return int(r.json()["id"])


def test_public_responses_never_carry_contacts_or_keys(client: TestClient,
                                                       world: CaseWorld) -> None:
    cid = _private_case(client, world)
    lon, lat = world.point()
    texts = [client.get(url).text for url in (
        "/api/cases", f"/api/cases/{cid}", f"/api/cases/{cid}/events",
        f"/api/cases/nearby?lon={lon}&lat={lat}")]
    for secret in (*CONTACT.values(), SECRET_KEY, "reporter_contact", "idempotency",
                   "tracking_sha256"):
        assert all(secret not in t for t in texts), secret


def test_staff_see_contacts_only_inside_their_scope(client: TestClient, conn: Connection,
                                                    world: CaseWorld) -> None:
    cid = _private_case(client, world)
    _, inside = account(conn, "call_taker", areas=(f"{DISTRICT}001",))
    _, outside = account(conn, "call_taker", areas=(f"{DISTRICT}002",))
    _, analyst = account(conn, "analyst")
    seen = client.get(f"/api/cases/{cid}", headers=bearer(inside)).json()["properties"]
    assert seen["reporter_contact"] == CONTACT
    for token in (outside, analyst):
        text_ = client.get(f"/api/cases/{cid}", headers=bearer(token)).text
        assert CONTACT["phone"] not in text_ and SECRET_KEY not in text_


def test_list_is_geojson_paged_with_a_next_link(client: TestClient, world: CaseWorld) -> None:
    ids = [client.post("/api/cases", json=body(world, street=1 + i % 2)).json()["id"]
           for i in range(5)]
    first = client.get(f"/api/cases?area={DISTRICT}&limit=3").json()
    assert first["type"] == "FeatureCollection" and len(first["features"]) == 3
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    second = client.get(nxt).json()
    got = [f["id"] for f in first["features"] + second["features"]]
    assert got == sorted(ids, reverse=True) and second["next_cursor"] is None


def test_list_filters_by_area_status_category_and_bbox(client: TestClient,
                                                       world: CaseWorld) -> None:
    a = client.post("/api/cases", json=body(world, street=1)).json()["id"]
    b = client.post("/api/cases", json=body(world, street=2, category="E050103")).json()["id"]

    def ids(query: str) -> list[int]:
        return [f["id"] for f in client.get(f"/api/cases?{query}").json()["features"]]

    assert ids(f"area={DISTRICT}002") == [b]
    assert ids(f"area={DISTRICT}&category=E0501") == [b]
    assert ids(f"area={DISTRICT}&status=reported") == [b, a]
    x0, y0 = world.x0, world.y0
    assert ids(f"bbox={x0},{y0},{x0 + 0.015},{y0 + 0.02}&area={DISTRICT}") == [a]
    assert ids(f"area={DISTRICT}&overdue=true") == []


@pytest.mark.parametrize(("query", "field"), [
    ("status=lost", "status"), ("area=nowhere", "area"), ("bbox=1,2,3", "bbox"),
    ("cursor=%%%", "cursor"), ("category=ZZ", "category"),
])
def test_bad_list_filters_are_422_naming_the_field(client: TestClient, world: CaseWorld,
                                                   query: str, field: str) -> None:
    r = client.get(f"/api/cases?{query}")
    assert r.status_code == 422 and r.json()["field"] == field


def test_unknown_case_is_404(client: TestClient, world: CaseWorld) -> None:
    assert client.get("/api/cases/987654321").status_code == 404


# --- photos and the commit's outcome -------------------------------------------------------

def _photo_report(world: CaseWorld, **kw: Any) -> dict[str, Any]:
    return {"data": {k: str(v) for k, v in body(world, **kw).items()},
            "files": [("photos", ("a.png", PNG, "image/png"))]}


def test_photo_stays_when_the_commit_outcome_is_unknown(
        client: TestClient, world: CaseWorld, media_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    def lost(conn: Connection) -> None:  # the connection died while COMMIT was in flight
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr("api.routes.cases.commit", lost)
    r = client.post("/api/cases", **_photo_report(world))
    # The COMMIT may have reached the disk: the case may name the photo, so it is kept.
    assert r.status_code == 503 and len(list(media_dir.iterdir())) == 1


def test_refused_report_writes_no_photo_and_keeps_an_existing_one(
        client: TestClient, world: CaseWorld, media_dir: Path) -> None:
    refused = client.post("/api/cases", **_photo_report(world, category="X1"))
    assert refused.status_code == 422 and list(media_dir.iterdir()) == []
    stored = client.post("/api/cases", **_photo_report(world))
    again = client.post("/api/cases", **_photo_report(world, category="X1"))
    assert (stored.status_code, again.status_code) == (201, 422)
    assert len(list(media_dir.iterdir())) == 1  # the stored case's photo is still there


# --- per-app settings and per-request authentication ----------------------------------------

def test_case_settings_are_read_once_per_app(client: TestClient, world: CaseWorld,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from api.deps import CaseConfig

    built: list[CaseConfig] = []
    real = CaseConfig.from_env

    def counting() -> CaseConfig:
        built.append(real())
        return built[-1]

    monkeypatch.setattr(CaseConfig, "from_env", staticmethod(counting))
    for _ in range(3):
        assert client.post("/api/cases", json=body(world)).status_code == 201
    assert len(built) == 1 and client.app.state.case_config is built[0]  # type: ignore[attr-defined]


def test_app_settings_can_be_overridden(client: TestClient, world: CaseWorld,
                                        tmp_path: Path) -> None:
    from dataclasses import replace

    from api.deps import CaseConfig

    app = client.app
    config = CaseConfig.from_env()
    app.state.case_config = replace(  # type: ignore[attr-defined]
        config, cases=config.cases.model_copy(update={"description_max_chars": 5}))
    r = client.post("/api/cases", json=body(world, description="too long"))
    assert r.status_code == 422 and r.json()["field"] == "description"


def test_principal_authenticated_earlier_in_the_request_is_reused() -> None:
    from starlette.requests import Request

    from api.security import get_principal, remember_principal
    from gis.auth import Principal

    def request(token: str) -> Request:
        return Request({"type": "http", "method": "POST", "path": "/api/cases",
                        "headers": [(b"authorization", f"Bearer {token}".encode())]})

    class NoDatabase:
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            raise LookupError("the token was looked up")

    staff = Principal(role="dispatcher", user_id=7, name="d")
    req = request("ggt_a")
    remember_principal(req, "ggt_a", staff)
    assert get_principal(req, NoDatabase()) is staff  # type: ignore[arg-type]
    other = request("ggt_b")
    remember_principal(other, "ggt_a", staff)
    with pytest.raises(LookupError):  # another token than the one remembered: looked up
        get_principal(other, NoDatabase())  # type: ignore[arg-type]

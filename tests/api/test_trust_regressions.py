"""Regressions found by the trust work (authorization matrix, privacy scan, fuzzing): each was a
500, a leak or a wrong answer before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection

from api.routes.live import redact
from gis.auth import PUBLIC, Principal
from tests.factories import account


def _bearer(conn: Connection, role: str) -> dict[str, str]:
    _, token = account(conn, role)
    return {"Authorization": f"Bearer {token}"}


def test_openapi_documents_the_error_body_clients_get(client: Any) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["HTTPValidationError"]
    assert set(schema["properties"]) >= {"detail", "field"}
    body = client.get("/api/locate", params={"lon": "x", "lat": 1}).json()
    assert isinstance(body["detail"], str) and body["field"] == "lon"


@pytest.mark.parametrize(("url", "params", "field"), [
    ("/api/search", {"q": "a\x00b"}, "q"),
    ("/api/cases", {"area": "91\x00"}, "area"),
    ("/api/stats/areas", {"level": "\x00"}, "level"),
    ("/api/categories/E%00", {}, "code"),
])
def test_nul_characters_are_a_422_naming_the_parameter(client: Any, url: str,
                                                       params: dict[str, str],
                                                       field: str) -> None:
    r = client.get(url, params=params)
    assert r.status_code == 422 and r.json()["field"] == field


def test_nul_in_a_report_is_a_422(client: Any) -> None:
    r = client.post("/api/cases", json={"category": "E010101", "lon": 24.94, "lat": 60.17,
                                        "description": "a\x00b"})
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_nul_in_open311_is_a_400_in_the_spec_format(client: Any) -> None:
    r = client.get("/open311/v2/requests.json", params={"service_code": "\x00"})
    assert r.status_code == 400 and "NUL" in r.json()[0]["description"]


@pytest.mark.parametrize(("url", "params"), [
    ("/api/areas", {"at": "2026-01-01T00:00:00-21:03", "parent": "910101"}),
    ("/api/locate", {"lon": 24.94, "lat": 60.17, "at": "2027-06-01T00:00:00+19:59"}),
    ("/api/cases", {"since": "1270-07-30T17:50:02.8-21:03", "limit": 1}),
])
def test_offsets_postgresql_refuses_are_converted_to_utc(client: Any, url: str,
                                                         params: dict[str, Any]) -> None:
    assert client.get(url, params=params).status_code == 200


def test_a_time_that_leaves_the_calendar_in_utc_is_a_422(client: Any) -> None:
    r = client.get("/api/cases", params={"until": "0001-01-01T00:00:00+05:00"})
    assert r.status_code == 422 and r.json()["field"] == "until"


@pytest.mark.parametrize("url", ["/api/cases", "/ogc/collections/cases/items"])
def test_an_offset_beyond_bigint_is_a_422(client: Any, url: str) -> None:
    r = client.get(url, params={"offset": str(10**30)})
    assert r.status_code == 422 and r.json()["field"] == "offset"


@pytest.mark.parametrize(("crs", "lon", "lat", "field"), [
    ("EPSG:3067", 0.0, 1.34e154, "crs"),      # PROJ used to answer 21.6°E 34.5°N
    ("EPSG:2193", 1e9, 1e9, "crs"),
    ("BD-09", 0.0, 1.34e154, "lat"),           # was a math domain error (500)
    ("GCJ-02", 500.0, 10.0, "lon"),
])
def test_coordinates_a_crs_cannot_hold_are_a_422(client: Any, crs: str, lon: float,
                                                 lat: float, field: str) -> None:
    r = client.get("/api/locate", params={"lon": lon, "lat": lat, "crs": crs})
    assert r.status_code == 422 and r.json()["field"] == field


def test_responder_tilejson_needs_staff(client: Any, conn: Connection) -> None:
    assert client.get("/tiles/responders.json").status_code == 401
    assert client.get("/tiles/responders.json",
                      headers=_bearer(conn, "reporter")).status_code == 403
    r = client.get("/tiles/responders.json", headers=_bearer(conn, "dispatcher"))
    assert r.status_code == 200 and r.json()["tiles"]
    assert client.get("/tiles/grids.json").status_code == 200


def test_live_case_events_hide_the_responder_from_non_staff() -> None:
    event = {"type": "case", "id": 7, "status": "dispatched", "responder_id": 12}
    assert "responder_id" not in redact(PUBLIC, event)
    assert "responder_id" not in redact(Principal(role="reporter", user_id=1), event)
    assert redact(Principal(role="dispatcher", user_id=2), event)["responder_id"] == 12

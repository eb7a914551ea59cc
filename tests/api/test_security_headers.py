"""Security headers on every response, request ids, and CORS (configured origins; public
read-only access to tiles, styles, OGC API Features and Open311)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from gis.settings import DatabaseSettings, SecuritySettings
from tests.ops.apps import app_client

PAGES = ["/", "/dashboard", "/command", "/dispatch", "/planner", "/report", "/cases"]
ORIGIN = "https://city.example.org"


def _csp(r: object) -> dict[str, str]:
    header = r.headers["Content-Security-Policy"]  # type: ignore[attr-defined]
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in header.split(";"))


@pytest.mark.parametrize("path", [*PAGES, "/health", "/api/areas/nope", "/static/app.js",
                                  "/no/such/route", "/tiles/grids.json", "/open311/v2/x.xml"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "no-referrer")
    assert _csp(r)["frame-ancestors"] == "'self'"


@pytest.mark.parametrize("path", [*PAGES, "/open311/v2/x.xml"])
def test_documents_get_the_page_policy_maplibre_works_under(client: TestClient,
                                                            path: str) -> None:
    csp = _csp(client.get(path))
    assert csp["script-src"] == "'self'" and csp["object-src"] == "'none'"
    assert "blob:" in csp["worker-src"] and {"data:", "blob:"} <= set(csp["img-src"].split())


def test_data_responses_only_say_who_may_frame_them(client: TestClient) -> None:
    assert _csp(client.get("/health")) == {"frame-ancestors": "'self'"}


def test_pages_that_chose_no_referrer_keep_it(client: TestClient) -> None:
    assert client.get("/report").headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_errors_carry_the_headers_and_a_request_id(client: TestClient) -> None:
    r = client.get("/api/locate", params={"lon": "x", "lat": 1})
    assert r.status_code == 422 and r.headers["X-Content-Type-Options"] == "nosniff"
    assert len(r.headers["X-Request-ID"]) == 32


def test_a_sane_incoming_request_id_is_echoed_and_a_bad_one_replaced(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "lb-42:a"}).headers[
        "X-Request-ID"] == "lb-42:a"
    replaced = client.get("/health", headers={"X-Request-ID": "x" * 65 + "\t<"})
    assert replaced.headers["X-Request-ID"] != "x" * 65 + "\t<"


def test_swagger_docs_get_a_csp_that_lets_them_load(client: TestClient) -> None:
    csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "https://cdn.jsdelivr.net" in csp and "frame-ancestors 'self'" in csp


def test_hsts_only_on_https_and_when_configured(conn: Connection,
                                                db_settings: DatabaseSettings) -> None:
    with app_client(conn, db_settings,
                    security_settings=SecuritySettings(hsts_seconds=31536000)) as c:
        assert "Strict-Transport-Security" not in c.get("/health").headers
        c.base_url = c.base_url.copy_with(scheme="https")  # type: ignore[misc]
        assert c.get("/health").headers["Strict-Transport-Security"].startswith(
            "max-age=31536000")


# --- CORS ---------------------------------------------------------------------------------

@pytest.fixture
def cors(conn: Connection, db_settings: DatabaseSettings) -> Iterator[TestClient]:
    settings = SecuritySettings(cors_origins=f"{ORIGIN}, https://other.example.org/")
    with app_client(conn, db_settings, security_settings=settings) as client:
        yield client


def test_by_default_no_origin_may_call_the_api(client: TestClient) -> None:
    r = client.get("/api/categories", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/api/cases", headers={"Origin": ORIGIN,
                                                "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_any_origin_may_read_tiles_styles_ogc_and_open311(client: TestClient) -> None:
    for path in ("/tiles/grids.json", "/ogc/collections", "/open311/v2/services.json"):
        r = client.get(path, headers={"Origin": "https://anyone.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*", path


def test_public_read_does_not_extend_to_writes(client: TestClient) -> None:
    pre = client.options("/open311/v2/requests.json",
                         headers={"Origin": "https://anyone.example",
                                  "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_configured_origins_may_call_everything_with_a_token(cors: TestClient) -> None:
    pre = cors.options("/api/cases", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    r = cors.get("/api/categories", headers={"Origin": "https://other.example.org"})
    assert r.headers["access-control-allow-origin"] == "https://other.example.org"
    assert "X-Request-ID" in r.headers["access-control-expose-headers"]


def test_unlisted_origins_get_nothing_even_when_some_are_configured(cors: TestClient) -> None:
    r = cors.get("/api/categories", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers

"""Rate limits on intake (``POST /api/cases``, Open311 POST), body size limits and upload type
sniffing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from api.limits import Caller, IntakeLimiter
from gis import media
from gis.errors import InvalidInput
from gis.settings import DatabaseSettings, LimitSettings, SecuritySettings
from tests.factories import CaseWorld, account, case_world
from tests.ops.apps import app_client

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


@pytest.fixture(autouse=True)
def media_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GRIDGOV_MEDIA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def limited(conn: Connection, db_settings: DatabaseSettings) -> Iterator[TestClient]:
    limits = LimitSettings(public="2/minute", account="3/minute", staff="")
    with app_client(conn, db_settings, limit_settings=limits) as client:
        yield client


def report(world: CaseWorld, **kw: Any) -> dict[str, Any]:
    lon, lat = world.point(1, 1)
    return {"category": "E010101", "lon": lon, "lat": lat, "description": "rubbish", **kw}


def cases(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())


def test_public_intake_over_the_limit_answers_429_naming_it(limited: TestClient, conn: Connection,
                                                            world: CaseWorld) -> None:
    before = cases(conn)
    codes = [limited.post("/api/cases", json=report(world)).status_code for _ in range(3)]
    refused = limited.post("/api/cases", json=report(world))
    assert codes == [201, 201, 429] and refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = refused.json()
    assert body["limit"] == "2 per 1 minute" and "2 per 1 minute" in body["detail"]
    assert body["tier"] == "public" and cases(conn) == before + 2


def test_staff_tokens_are_not_limited_when_the_staff_tier_is_empty(
        limited: TestClient, conn: Connection, world: CaseWorld) -> None:
    token = account(conn, "call_taker")[1]
    auth = {"Authorization": f"Bearer {token}"}
    codes = {limited.post("/api/cases", json=report(world, channel="hotline"),
                          headers=auth).status_code for _ in range(5)}
    assert codes == {201}


def test_reporter_accounts_count_per_account_not_per_address(
        limited: TestClient, conn: Connection, world: CaseWorld) -> None:
    for _ in range(2):  # the address's public allowance is used up…
        assert limited.post("/api/cases", json=report(world)).status_code == 201
    token = account(conn, "reporter")[1]
    auth = {"Authorization": f"Bearer {token}"}
    codes = [limited.post("/api/cases", json=report(world), headers=auth).status_code
             for _ in range(4)]
    assert codes == [201, 201, 201, 429]  # …the account has its own three


def test_an_invented_token_counts_as_the_address(limited: TestClient, world: CaseWorld) -> None:
    for _ in range(2):
        assert limited.post("/api/cases", json=report(world)).status_code == 201
    r = limited.post("/api/cases", json=report(world),
                     headers={"Authorization": "Bearer ggt_invented"})
    assert r.status_code == 429


def test_other_case_routes_are_not_limited(limited: TestClient, world: CaseWorld) -> None:
    codes = {limited.get("/api/cases/workflow").status_code for _ in range(5)}
    assert codes == {200}


def test_open311_post_is_limited_in_the_georeport_error_format(
        limited: TestClient, conn: Connection, world: CaseWorld) -> None:
    lon, lat = world.point(1, 2)
    form = f"service_code=E010101&lat={lat}&long={lon}&description=pothole"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    codes = [limited.post("/open311/v2/requests.json", content=form, headers=headers).status_code
             for _ in range(2)]
    refused = limited.post("/open311/v2/requests.xml", content=form, headers=headers)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert b"<code>429</code>" in refused.content and b"2 per 1 minute" in refused.content
    assert all(c != 429 for c in codes)


def test_open311_api_key_in_the_form_body_selects_the_account_tier(
        limited: TestClient, conn: Connection, world: CaseWorld) -> None:
    token = account(conn, "call_taker")[1]
    lon, lat = world.point(1, 2)
    form = f"api_key={token}&service_code=E010101&lat={lat}&long={lon}&description=pothole"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    codes = {limited.post("/open311/v2/requests.json", content=form, headers=headers).status_code
             for _ in range(4)}
    assert 429 not in codes and codes <= {200, 201}


def test_the_openapi_document_names_429_and_413(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    intake = paths["/api/cases"]["post"]["responses"]
    assert "Retry-After" in intake["429"]["headers"] and "413" in intake
    assert "429" in paths["/open311/v2/requests.{fmt}"]["post"]["responses"]
    assert "429" not in paths["/api/users"]["post"]["responses"]


def test_limiter_counts_exactly_under_concurrent_threads() -> None:
    limiter = IntakeLimiter(LimitSettings(public="50/minute"))
    allowed: list[bool] = []

    def hit() -> None:
        try:
            limiter.check(Caller("public", "ip:192.0.2.1"), "/api/cases")
            allowed.append(True)
        except Exception:  # noqa: BLE001 - RateLimited
            allowed.append(False)

    threads = [threading.Thread(target=hit) for _ in range(120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 50 and len(allowed) == 120


def test_a_malformed_limit_names_the_setting() -> None:
    with pytest.raises(ValueError, match="GRIDGOV_LIMITS_STAFF"):
        IntakeLimiter(LimitSettings(staff="lots/fortnight"))


def test_disabled_limits_let_everything_through() -> None:
    limiter = IntakeLimiter(LimitSettings(public="1/minute", enabled=False))
    for _ in range(3):
        limiter.check(Caller("public", "ip:192.0.2.2"), "/api/cases")


# --- body size ----------------------------------------------------------------------------

@pytest.fixture
def small(conn: Connection, db_settings: DatabaseSettings) -> Iterator[TestClient]:
    security = SecuritySettings(max_body_bytes=2048, max_upload_bytes=64 * 1024)
    with app_client(conn, db_settings, security_settings=security) as client:
        yield client


def test_body_over_the_limit_answers_413_naming_it(small: TestClient, world: CaseWorld) -> None:
    r = small.post("/api/users", content=b"{" + b" " * 4000 + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "2,048" in r.json()["detail"] and "GRIDGOV_MAX_BODY_BYTES" in r.json()["detail"]


def test_a_chunked_body_is_cut_off_at_the_limit(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = small.post("/api/routing-rules", content=chunks(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "2,048" in r.json()["detail"]


def test_uploads_get_the_bigger_limit(small: TestClient, world: CaseWorld) -> None:
    photo = PNG + b"\0" * 8000  # over the ordinary limit, under the upload limit
    r = small.post("/api/cases", data={k: str(v) for k, v in report(world).items()},
                   files={"photos": ("a.png", photo, "image/png")})
    assert r.status_code == 201, r.text
    big = small.post("/api/cases", data={k: str(v) for k, v in report(world).items()},
                     files={"photos": ("a.png", PNG + b"\0" * 70_000, "image/png")})
    assert big.status_code == 413 and "GRIDGOV_MAX_UPLOAD_BYTES" in big.json()["detail"]


# --- upload type sniffing -----------------------------------------------------------------

@pytest.mark.parametrize("declared", ["application/octet-stream", None, ""])
def test_a_photo_without_a_useful_declared_type_is_typed_by_its_content(
        declared: str | None) -> None:
    refs = media.check_uploads([media.Upload("p.bin", declared, JPEG)], media.MediaSettings())
    assert refs[0]["type"] == "image/jpeg"


@pytest.mark.parametrize("data", [b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                  b"<html><script>alert(1)</script>", b"GIF89a" + b"\0" * 20])
def test_content_that_is_not_an_accepted_image_is_refused_whatever_it_declares(
        data: bytes) -> None:
    with pytest.raises(media.UnsupportedMedia):
        media.check_uploads([media.Upload("x.png", "image/png", data)], media.MediaSettings())


def test_a_png_declared_as_jpeg_is_refused() -> None:
    with pytest.raises(media.UnsupportedMedia, match="content is a PNG"):
        media.check_uploads([media.Upload("x.jpg", "image/jpeg", PNG)], media.MediaSettings())


@pytest.mark.parametrize(("data", "name", "kind"), [
    (b'  {"type": "FeatureCollection", "features": []}', "a.geojson", "geojson"),
    (b"\xef\xbb\xbf{\"type\": \"Feature\"}", "a.json", "geojson"),
    (b"SQLite format 3\0" + b"\0" * 84, "a.gpkg", "gpkg"),
    (b"PK\x03\x04" + b"\0" * 26, "a.zip", "zip"),
    (b"\x00\x00\x27\x0a" + b"\0" * 96, "a.shp", "shp"),
])
def test_geodata_uploads_are_typed_by_content(data: bytes, name: str, kind: str) -> None:
    assert media.check_geodata(data, name) == kind


@pytest.mark.parametrize(("data", "name"), [
    (b"MZ\x90\x00 a windows program", "a.gpkg"),
    (b"PK\x03\x04" + b"\0" * 26, "a.geojson"),
    (b"<html>", "a.zip"),
    (b"not json at all", "a.json"),
])
def test_geodata_whose_content_disagrees_with_its_name_is_refused(data: bytes, name: str) -> None:
    with pytest.raises(media.UnsupportedMedia):
        media.check_geodata(data, name)


def test_an_empty_or_unnamed_geodata_upload_is_refused_naming_the_problem() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        media.check_geodata(b"", "a.geojson")
    with pytest.raises(InvalidInput, match=".exe"):
        media.check_geodata(b"{}", "a.exe")


def test_the_limiter_checks_out_no_connection_for_routes_it_does_not_count(
        limited: TestClient, world: CaseWorld) -> None:
    """A connection per request of the cases router, limits on or off, cost two threadpool
    hops of every case query; only an unseen token on an intake POST needs one now."""
    from api.deps import get_conn

    app: Any = limited.app
    shared = app.dependency_overrides[get_conn]
    checkouts: list[str] = []

    def counting() -> Iterator[Connection]:
        checkouts.append("out")
        yield from shared()

    app.dependency_overrides[get_conn] = counting
    assert limited.get("/api/cases/workflow").status_code == 200
    assert checkouts == []
    assert limited.post("/api/cases", json=report(world)).status_code == 201
    assert checkouts == ["out"]  # the intake itself; the public needs no token lookup

"""Open311 against a real uvicorn with an independent client from PyPI: ``georeport`` (a thin
GeoReport v2 wrapper on ``requests`` + ``xmltodict``), in JSON and XML. georeport does not
create requests, so the POST is the specification's example body sent with ``requests``.

(The older ``open311`` package on PyPI, 1.1 from 2011, is Python 2 only: it does not import on
Python 3.11, see docs/open311.md.)
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from georeport import GeoReport
from sqlalchemy import Engine, text

from gis.auth import create_user, issue_token
from gis.settings import DatabaseSettings
from tests.factories import CaseWorld, case_world, purge_jurisdiction


@pytest.fixture(scope="module")
def world(engine: Engine) -> Iterator[tuple[CaseWorld, str, str]]:
    """A committed tiny city far from everything, and a reporter account's token (api_key)."""
    code = f"O311-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        w = case_world(conn, code=code, x0=-50.0, y0=-20.0)
        uid = create_user(conn, f"open311-app-{code}", "reporter")
        token = issue_token(conn, uid)
    try:
        yield w, code, token
    finally:
        with engine.begin() as conn:
            purge_jurisdiction(conn, w.city.jurisdiction_id)
            conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": uid})
            conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": uid})


@pytest.fixture(scope="module")
def server(db_settings: DatabaseSettings, db_name: str) -> Iterator[str]:
    from api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = db_settings.model_copy(update={"db_name": db_name})
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                        log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/open311/v2"
    srv.should_exit = True
    thread.join(10)


def spec_post(server: str, token: str, w: CaseWorld, code: str, fmt: str) -> requests.Response:
    lon, lat = w.point(2, 1)
    body = (f"api_key={token}&jurisdiction_id={code}&service_code=E040102&lat={lat}&long={lon}"
            "&address_string=1234+5th+street&email=smit222%40sfgov.edu&device_id=tt222111"
            "&account_id=123456&first_name=john&last_name=smith&phone=111111111"
            "&description=A+large+sinkhole+is+destroying+the+street"
            "&media_url=http%3A%2F%2Fdomain.com%2Fimage.jpg"
            "&attribute[WHISPAWN]=123456&attribute[WHISDORN]=COISL001")
    return requests.post(f"{server}/requests.{fmt}", data=body, timeout=30,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_client_reads_services_and_definitions(server: str, world, fmt: str) -> None:
    _, code, _ = world
    client = GeoReport(server, jurisdiction=code, output_format=fmt)
    services = client.get_service_list()
    garbage = next(s for s in services if s["service_code"] == "E010101")
    assert garbage["service_name"] == "Garbage pile-up"
    assert str(garbage["metadata"]).lower() == "false"
    definition = client.get_service_definition("E010101")
    assert definition["service_code"] == "E010101"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_spec_example_post_then_georeport_client_reads_it(server: str, world, fmt: str) -> None:
    w, code, token = world
    resp = spec_post(server, token, w, code, fmt)
    assert resp.status_code == 201, resp.text
    rid = (resp.json()[0]["service_request_id"] if fmt == "json"
           else resp.text.split("<service_request_id>")[1].split("<")[0])
    client = GeoReport(server, jurisdiction=code, output_format=fmt)
    request = client.get_service_request(rid)
    assert request["service_request_id"] == rid
    assert (request["status"], request["service_code"]) == ("open", "E040102")
    assert request["address"] == "1234 5th street"
    assert request["media_url"] == "http://domain.com/image.jpg"
    assert "smit222" not in str(request) and "111111111" not in str(request)


def test_georeport_client_filters_requests(server: str, world) -> None:
    w, code, token = world
    rid = spec_post(server, token, w, code, "json").json()[0]["service_request_id"]
    client = GeoReport(server, jurisdiction=code)
    assert rid in [r["service_request_id"] for r in client.get_service_requests(
        service_code="E040102", status="open")]
    assert client.get_service_requests(service_code="E040102", status="closed") == []
    by_id = client.get_service_requests(service_request_id=rid)
    assert [r["service_request_id"] for r in by_id] == [rid]


def test_georeport_client_sees_spec_errors_as_http_errors(server: str, world) -> None:
    _, code, _ = world
    with pytest.raises(requests.HTTPError) as err:
        GeoReport(server, jurisdiction=code).get_service_definition("NOPE")
    assert err.value.response.status_code == 404
    assert err.value.response.json()[0]["code"] == 404

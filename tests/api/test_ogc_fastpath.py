"""The feature-page fast path (``api.routes.ogc.ItemsFastPath``) answers exactly as the
``items`` route — status, headers and body (but the time stamp) — and leaves every bad
request to the route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from api.routes.ogc import ItemsFastPath
from tests.api.fastpaths import no_answer, spy_answers
from tests.factories import X0, Y0
from tests.layers.mapdata import MapCity, map_city

BBOX = f"{X0 - 0.001},{Y0 - 0.001},{X0 + 0.041},{Y0 + 0.021}"
REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("grids", {}),
    ("grids", {"limit": "2"}),
    ("grids", {"limit": "2", "offset": "2", "bbox": BBOX}),
    ("grids", {"limit": "0002", "f": "json"}),
    ("cases", {"bbox": BBOX, "status": "open", "limit": "3"}),
    ("cases", {"datetime": "2026-05-01T00:00:00Z/..", "category": "E01"}),
    ("cases", {"datetime": "2026-05-02T08:00:00Z"}),
    ("cases", {"offset": "1000000"}),
    ("cases", {"bbox-crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84", "bbox": BBOX}),
    ("facilities", {"category": "police"}),
    ("grids", {"limit": "0"}),
    ("grids", {"limit": "10001"}),
    ("grids", {"limit": "-1"}),
    ("grids", {"limit": "1e2"}),
    ("grids", {"offset": "x"}),
    ("grids", {"bbox": "1,2,3"}),
    ("grids", {"bbox-crs": "EPSG:3857"}),
    ("grids", {"f": "xml"}),
    ("grids", {"status": "open"}),
    ("cases", {"datetime": "yesterday"}),
    ("cases", {"status": "nonsense"}),
    ("responders", {}),
    ("nope", {}),
]


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _exchange(client: TestClient, collection: str, params: dict[str, str]
              ) -> tuple[int, Any, list[tuple[str, str]]]:
    r = client.get(f"/ogc/collections/{collection}/items", params=params,
                   headers={"X-Request-ID": "same-id"})
    body: Any = r.content
    if r.status_code == 200:
        body = json.loads(r.content)
        assert body.pop("timeStamp")
    headers = [(k, v) for k, v in r.headers.multi_items() if k != "content-length"]
    return r.status_code, body, headers


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    return spy_answers(monkeypatch, ItemsFastPath)


@pytest.mark.parametrize(("collection", "params"), REQUESTS)
def test_items_fast_path_answers_as_the_route(
        client: TestClient, city: MapCity, monkeypatch: pytest.MonkeyPatch, collection: str,
        params: dict[str, str]) -> None:
    fast = _exchange(client, collection, params)
    monkeypatch.setattr(ItemsFastPath, "answer", no_answer)
    assert _exchange(client, collection, params) == fast


def test_items_fast_path_answers_valid_pages_and_leaves_the_rest_to_the_route(
        client: TestClient, city: MapCity, answered: list[bool]) -> None:
    assert client.get("/ogc/collections/grids/items", params={"limit": "2"}).status_code == 200
    assert client.get("/ogc/collections/cases/items",
                      params={"bbox": BBOX, "status": "open"}).status_code == 200
    assert client.get("/ogc/collections/grids/items", params={"limit": "0"}).status_code == 422
    assert client.get("/ogc/collections/grids/items", params={"x": "1"}).status_code == 422
    assert client.get("/ogc/collections/responders/items").status_code == 404
    assert answered == [True, True, False, False, False]


def test_page_links_keep_the_query_encoded_and_follow_each_requests_host(
        client: TestClient, city: MapCity) -> None:
    params = {"datetime": "2026-05-01T00:00:00Z/..", "limit": "1"}
    hrefs = {}
    for host in ("testserver", "maps.example:8443", "testserver"):
        r = client.get("/ogc/collections/cases/items", params=params, headers={"Host": host})
        links = {link["rel"]: link["href"] for link in r.json()["links"]}
        hrefs[host] = links
        base = f"http://{host}/ogc/collections/cases"
        assert links["self"] == (
            f"{base}/items?datetime=2026-05-01T00%3A00%3A00Z%2F..&limit=1&offset=0")
        assert links["next"] == (
            f"{base}/items?datetime=2026-05-01T00%3A00%3A00Z%2F..&limit=1&offset=1")
        assert links["collection"] == base
    assert hrefs["testserver"] != hrefs["maps.example:8443"]

"""HTTP: OGC API Features at /ogc — landing, conformance, collections, items, paging, 4xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box, shape
from sqlalchemy import Connection, text

from layers.registry import REGISTRY
from tests.factories import X0, Y0
from tests.layers.mapdata import CASE_POINTS, MapCity, map_city

CITY_BBOX = f"{X0 - 0.001},{Y0 - 0.001},{X0 + 0.041},{Y0 + 0.021}"


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def test_landing_page_links_the_api_parts(client: TestClient) -> None:
    body = client.get("/ogc").json()
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= set(rels)
    assert client.get(rels["service-desc"]).status_code == 200


def test_conformance_declares_core_geojson_and_oas30(client: TestClient) -> None:
    classes = client.get("/ogc/conformance", params={"f": "json"}).json()["conformsTo"]
    assert {c.rsplit("/", 1)[1] for c in classes} == {"core", "geojson", "oas30"}


def test_collections_are_the_public_layers(client: TestClient, city: MapCity) -> None:
    body = client.get("/ogc/collections").json()
    ids = {c["id"] for c in body["collections"]}
    assert ids == {n for n, layer in REGISTRY.items() if layer.public and layer.ogc}
    assert "responders" not in ids


def test_collection_has_spatial_and_temporal_extent(client: TestClient, city: MapCity) -> None:
    body = client.get("/ogc/collections/cases").json()
    west, south, east, north = body["extent"]["spatial"]["bbox"][0]
    assert west <= X0 + 0.002 and east >= X0 + 0.031
    assert body["extent"]["temporal"]["interval"][0][0] is not None


def test_items_page_with_next_and_prev_links(client: TestClient, city: MapCity) -> None:
    first = client.get("/ogc/collections/cases/items",
                       params={"bbox": CITY_BBOX, "limit": 2})
    assert first.headers["content-type"] == "application/geo+json"
    body = first.json()
    assert body["numberMatched"] == len(CASE_POINTS) and body["numberReturned"] == 2
    seen = [f["id"] for f in body["features"]]
    while (nxt := next((link for link in body["links"] if link["rel"] == "next"), None)):
        body = client.get(nxt["href"]).json()
        assert any(link["rel"] == "prev" for link in body["links"])
        seen += [f["id"] for f in body["features"]]
    assert sorted(seen) == sorted(city.case_ids)


def test_items_never_carry_private_fields(client: TestClient, city: MapCity) -> None:
    r = client.get("/ogc/collections/cases/items", params={"bbox": CITY_BBOX})
    allowed = {p.name for p in REGISTRY["cases"].source.props}
    assert all(set(f["properties"]) <= allowed for f in r.json()["features"])
    assert "private" not in r.text and "phone" not in r.text


def test_bbox_keeps_only_intersecting_features(client: TestClient, city: MapCity) -> None:
    west_half = (X0, Y0, X0 + 0.019, Y0 + 0.02)
    body = client.get("/ogc/collections/grids/items",
                      params={"bbox": ",".join(map(str, west_half))}).json()
    assert body["features"]
    assert all(shape(f["geometry"]).intersects(box(*west_half)) for f in body["features"])


@pytest.mark.parametrize(("interval", "expected"), [
    ("2026-05-01T08:00:00Z", 1),
    ("2026-05-02T00:00:00Z/..", 4),
    ("../2026-05-02T12:00:00Z", 2),
    ("2026-05-02T00:00:00Z/2026-05-03T23:00:00Z", 2),
])
def test_datetime_filters_cases_by_report_time(client: TestClient, city: MapCity,
                                               interval: str, expected: int) -> None:
    body = client.get("/ogc/collections/cases/items",
                      params={"bbox": CITY_BBOX, "datetime": interval}).json()
    assert body["numberMatched"] == expected


def test_layer_filters_work_on_items(client: TestClient, city: MapCity) -> None:
    body = client.get("/ogc/collections/cases/items",
                      params={"bbox": CITY_BBOX, "status": "closed"}).json()
    assert {f["properties"]["status"] for f in body["features"]} == {"closed", "rejected"}


def test_single_item_and_its_links(client: TestClient, city: MapCity) -> None:
    fid = city.facility_ids[0]
    r = client.get(f"/ogc/collections/facilities/items/{fid}")
    body = r.json()
    assert r.headers["content-type"] == "application/geo+json"
    assert body["id"] == fid and body["properties"]["type"] == "police"
    assert {link["rel"] for link in body["links"]} == {"self", "collection"}


def test_superseded_area_is_not_an_item(client: TestClient, city: MapCity,
                                        conn: Connection) -> None:
    grid = city.city.ids[city.city.grid_code(1, 1)]
    conn.execute(text("UPDATE areas SET valid_to = now() + interval '1 second'"
                      " WHERE id = :id"), {"id": grid})
    assert client.get(f"/ogc/collections/grids/items/{grid}").status_code == 404


@pytest.mark.parametrize(("url", "params", "status", "field"), [
    ("/ogc/collections/nope", {}, 404, "collectionId"),
    ("/ogc/collections/responders/items", {}, 404, "collectionId"),
    ("/ogc/collections/cases/items/999999999", {}, 404, "featureId"),
    ("/ogc/collections/cases/items/abc", {}, 422, "featureId"),
    ("/ogc/collections/cases/items", {"bbox": "1,2,3"}, 422, "bbox"),
    ("/ogc/collections/cases/items", {"bbox": "a,b,c,d"}, 422, "bbox"),
    ("/ogc/collections/cases/items", {"bbox": "10,50,9,51"}, 422, "bbox"),
    ("/ogc/collections/cases/items", {"limit": "0"}, 422, "limit"),
    ("/ogc/collections/cases/items", {"limit": "100000"}, 422, "limit"),
    ("/ogc/collections/cases/items", {"offset": "-1"}, 422, "offset"),
    ("/ogc/collections/cases/items", {"datetime": "last week"}, 422, "datetime"),
    ("/ogc/collections/grids/items", {"datetime": "2026-01-01T00:00:00Z"}, 422, "datetime"),
    ("/ogc/collections/cases/items", {"status": "open' OR '1'='1"}, 422, "status"),
    ("/ogc/collections/cases/items", {"name": "x"}, 422, "name"),
    ("/ogc/collections/cases/items", {"f": "html"}, 422, "f"),
    ("/ogc/collections/cases/items", {"bbox-crs": "EPSG:3857"}, 422, "bbox-crs"),
])
def test_bad_ogc_requests_are_4xx_naming_the_parameter(client: TestClient, url: str,
                                                       params: dict, status: int,
                                                       field: str) -> None:
    r = client.get(url, params=params)
    assert r.status_code == status and r.json()["field"] == field, r.text

"""HTTP: /health, /api/areas, /api/areas/{code}, /api/locate — shapes and clear 4xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape
from sqlalchemy import Connection

from gis import crs
from tests.factories import DISTRICT, X0, Y0, TinyCity, tiny_city


@pytest.fixture
def city(conn: Connection) -> TinyCity:
    return tiny_city(conn)


def test_health_reports_database_and_postgis_versions(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["database"]["postgis"].startswith("3.")


def test_areas_is_a_feature_collection_of_the_level(client: TestClient, city: TinyCity) -> None:
    body = client.get("/api/areas", params={"level": "grid",
                                            "bbox": f"{X0},{Y0},{X0 + 0.04},{Y0 + 0.02}"}).json()
    assert body["type"] == "FeatureCollection"
    codes = {f["properties"]["code"] for f in body["features"]}
    assert TinyCity.grid_code(2, 2) in codes
    assert all(shape(f["geometry"]).is_valid for f in body["features"])


def test_area_by_code_lists_children(client: TestClient, city: TinyCity) -> None:
    body = client.get(f"/api/areas/{DISTRICT}001001").json()
    assert body["properties"]["children"] == [TinyCity.grid_code(1, 1), TinyCity.grid_code(1, 2)]


def test_unknown_area_code_is_404(client: TestClient) -> None:
    r = client.get("/api/areas/00000000000000")
    assert r.status_code == 404 and "00000000000000" in r.json()["detail"]


def test_locate_returns_levels_top_to_grid(client: TestClient, city: TinyCity) -> None:
    body = client.get("/api/locate", params={"lon": X0 + 0.035, "lat": Y0 + 0.01}).json()
    assert [a["level"] for a in body["areas"]] == ["district", "street", "community", "grid"]
    assert body["areas"][-1]["code"] == TinyCity.grid_code(2, 2)


@pytest.mark.parametrize(("params", "field"), [
    ({"lon": "east", "lat": 50}, "lon"),
    ({"lon": 10, "lat": 95}, "lat"),
    ({"lon": 200, "lat": 50}, "lon"),
    ({"lat": 50}, "lon"),
    ({"lon": 10, "lat": 50, "crs": "EPSG:999999"}, "crs"),
])
def test_locate_bad_input_is_422_naming_the_field(client: TestClient, params: dict,
                                                  field: str) -> None:
    r = client.get("/api/locate", params=params)
    assert r.status_code == 422 and r.json()["field"] == field


def test_locate_outside_every_grid_is_404_saying_so(client: TestClient, city: TinyCity) -> None:
    r = client.get("/api/locate", params={"lon": 0.0, "lat": 0.0})
    assert r.status_code == 404 and "outside every area" in r.json()["detail"]


def test_locate_accepts_projected_crs(client: TestClient, city: TinyCity) -> None:
    x, y = crs.transformer(crs.WGS84, crs.WEB_MERCATOR).transform(X0 + 0.005, Y0 + 0.01)
    body = client.get("/api/locate", params={"lon": x, "lat": y, "crs": "EPSG:3857"}).json()
    assert body["areas"][-1]["code"] == TinyCity.grid_code(1, 1)


def test_bad_bbox_is_422_naming_bbox(client: TestClient) -> None:
    r = client.get("/api/areas", params={"bbox": "1,2,3"})
    assert r.status_code == 422 and r.json()["field"] == "bbox"


def test_openapi_lists_the_area_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/api/areas", "/api/areas/{code}", "/api/locate"} <= set(paths)

"""HTTP: /tiles/{layer}/{z}/{x}/{y}.mvt and /tiles/{layer}.json — content, headers, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import mapbox_vector_tile
import mercantile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from layers.registry import REGISTRY
from tests.factories import X0, Y0, account
from tests.layers.mapdata import CASE_POINTS, FAR_TILE, GRID_TILE, MapCity, map_city

MVT = "application/vnd.mapbox-vector-tile"
AGG_TILE = mercantile.tile(X0 + 0.02, Y0 + 0.01, 10)


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def _url(layer: str, tile: mercantile.Tile = GRID_TILE) -> str:
    return f"/tiles/{layer}/{tile.z}/{tile.x}/{tile.y}.mvt"


def _features(client: TestClient, layer: str, tile: mercantile.Tile = GRID_TILE,
              mvt_layer: str | None = None, **params: str) -> list[dict]:
    r = client.get(_url(layer, tile), params=params)
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204:
        return []
    return mapbox_vector_tile.decode(r.content)[mvt_layer or layer]["features"]


def test_grid_tile_has_the_grids_of_the_tile(client: TestClient, city: MapCity) -> None:
    r = client.get(_url("grids"))
    assert r.status_code == 200 and r.headers["content-type"] == MVT
    codes = {f["properties"]["code"] for f in mapbox_vector_tile.decode(r.content)["grids"]
             ["features"]}
    assert {city.city.grid_code(1, 1), city.city.grid_code(1, 2)} <= codes


def test_tile_has_strong_etag_and_answers_304(client: TestClient, city: MapCity) -> None:
    r = client.get(_url("grids"))
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get(_url("grids"), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content


@pytest.mark.parametrize(("layer", "expected"), [
    ("grids", "public, max-age=300"),
    ("cases", "public, max-age=5, must-revalidate"),
    ("responders", "private, max-age=2, must-revalidate"),
])
def test_cache_control_is_short_for_live_layers(client: TestClient, city: MapCity, layer: str,
                                                expected: str, conn: Connection) -> None:
    _, token = account(conn, "dispatcher")  # responders are staff-only
    r = client.get(_url(layer), headers={"Authorization": f"Bearer {token}"})
    assert r.headers["cache-control"] == expected


def test_empty_tile_is_204(client: TestClient, city: MapCity) -> None:
    r = client.get(_url("grids", FAR_TILE))
    assert r.status_code == 204 and not r.content and r.headers["etag"]


def test_tile_below_minzoom_is_204(client: TestClient, city: MapCity) -> None:
    assert client.get(_url("grids", mercantile.tile(X0, Y0, 8))).status_code == 204


def test_case_tile_never_carries_private_fields(client: TestClient, city: MapCity) -> None:
    r = client.get(_url("cases"))
    features = mapbox_vector_tile.decode(r.content)["cases"]["features"]
    allowed = {p.name for p in REGISTRY["cases"].source.props}
    assert features and all(set(f["properties"]) <= allowed for f in features)
    assert b"private" not in r.content and b"phone" not in r.content


def test_case_tile_filters_by_status_category_and_time(client: TestClient, city: MapCity
                                                       ) -> None:
    everything = _features(client, "cases")
    open_ = _features(client, "cases", status="open")
    litter = _features(client, "cases", category="E9901")
    assert {f["properties"]["status"] for f in everything} >= {"reported", "closed"}
    assert {f["properties"]["status"] for f in open_} == {"reported", "dispatched", "in_progress"}
    assert len(litter) == 3  # E990101 x2 and E990102 in the tile, not C990101
    first_day = _features(client, "cases", since="2026-05-01", until="2026-05-02")
    assert [f["properties"]["status"] for f in first_day] == ["reported"]


def test_case_features_have_ids_and_numeric_times(client: TestClient, city: MapCity) -> None:
    feature = _features(client, "cases", status="reported")[0]
    assert feature["id"] in city.case_ids
    assert isinstance(feature["properties"]["reported_at"], int)


def test_cases_below_z13_are_counts_per_cell(client: TestClient, city: MapCity) -> None:
    cells = _features(client, "cases", AGG_TILE, "cases_agg")
    assert sum(c["properties"]["count"] for c in cells) == len(CASE_POINTS)
    assert sum(c["properties"]["open"] for c in cells) == 3
    only_open = _features(client, "cases", AGG_TILE, "cases_agg", status="open")
    assert sum(c["properties"]["count"] for c in only_open) == 3


def test_rollup_and_row_counts_give_the_same_tile(client: TestClient, city: MapCity) -> None:
    for tile in (AGG_TILE, mercantile.tile(X0 + 0.01, Y0 + 0.01, 12)):
        rollup = client.get(_url("cases", tile), params={"status": "open"}).content
        rows = client.get(_url("cases", tile),
                          params={"status": "open", "since": "1900-01-01"}).content
        assert mapbox_vector_tile.decode(rollup) == mapbox_vector_tile.decode(rows)


def test_responder_tile_shows_only_fresh_on_duty_staff(client: TestClient, city: MapCity,
                                                       conn: Connection) -> None:
    _, token = account(conn, "dispatcher")
    client.headers["Authorization"] = f"Bearer {token}"
    features = _features(client, "responders")
    assert [f["properties"]["status"] for f in features] == ["available"]
    assert "name" not in features[0]["properties"]


def test_facility_tile_filters_by_type(client: TestClient, city: MapCity) -> None:
    assert [f["properties"]["type"] for f in _features(client, "facilities",
                                                        category="police")] == ["police"]
    assert _features(client, "facilities", category="school") == []


def test_tilejson_describes_layer_fields_and_filtered_url(client: TestClient, city: MapCity
                                                          ) -> None:
    body = client.get("/tiles/cases.json", params={"status": "open"}).json()
    assert body["tilejson"] == "3.0.0"
    assert body["tiles"] == ["http://testserver/tiles/cases/{z}/{x}/{y}.mvt?status=open"]
    layers = {v["id"]: v for v in body["vector_layers"]}
    assert layers["cases_agg"]["maxzoom"] == 12 and layers["cases"]["minzoom"] == 13
    assert layers["cases"]["fields"]["overdue"] == "Boolean"
    assert "reporter_contact" not in layers["cases"]["fields"]
    west, south, east, north = body["bounds"]
    assert west <= X0 + 0.002 and east >= X0 + 0.031 and south <= Y0 + 0.011 <= north


def test_layer_list_links_every_tilejson(client: TestClient) -> None:
    body = client.get("/tiles").json()
    assert {layer["name"] for layer in body["layers"]} == set(REGISTRY)


INJECTIONS = ["open'; DROP TABLE cases; --", "open) OR 1=1 --", "%27%20OR%201=1", "E01%",
              "reported,closed' UNION SELECT reporter_contact FROM cases --"]


@pytest.mark.parametrize(("url", "params", "status", "field"), [
    ("/tiles/nope/14/1/1.mvt", {}, 404, "layer"),
    ("/tiles/cases;DROP TABLE cases/14/1/1.mvt", {}, 404, "layer"),
    ("/tiles/grids/25/0/0.mvt", {}, 422, "z"),
    ("/tiles/grids/3/8/0.mvt", {}, 422, "x"),
    ("/tiles/grids/3/0/8.mvt", {}, 422, "y"),
    ("/tiles/grids/3/-1/0.mvt", {}, 422, "x"),
    ("/tiles/grids/abc/0/0.mvt", {}, 422, "z"),
    ("/tiles/grids/17/0/0.mvt", {}, 422, "z"),
    ("/tiles/cases/14/0/0.mvt", {"since": "yesterday"}, 422, "since"),
    ("/tiles/cases/14/0/0.mvt", {"until": "2026-13-45"}, 422, "until"),
    ("/tiles/cases/14/0/0.mvt", {"since": "2026-05-02", "until": "2026-05-01"}, 422, "until"),
    ("/tiles/cases/14/0/0.mvt", {"status": "lost"}, 422, "status"),
    ("/tiles/cases/14/0/0.mvt", {"status": ""}, 422, "status"),
    ("/tiles/grids/14/0/0.mvt", {"status": "open"}, 422, "status"),
    ("/tiles/cases/14/0/0.mvt", {"stauts": "open"}, 422, "stauts"),
    ("/tiles/facilities/14/0/0.mvt", {"category": "Police Station"}, 422, "category"),
    ("/tiles/nope.json", {}, 404, "layer"),
    ("/tiles/cases.json", {"status": "lost"}, 422, "status"),
    ("/styles/nope.json", {}, 404, "name"),
])
def test_bad_tile_requests_are_4xx_naming_the_parameter(client: TestClient, url: str,
                                                        params: dict, status: int,
                                                        field: str) -> None:
    r = client.get(url, params=params)
    assert r.status_code == status and r.json()["field"] == field, r.text


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("param", ["status", "category", "since", "until"])
def test_injection_attempts_are_rejected_before_sql(client: TestClient, param: str,
                                                    value: str) -> None:
    r = client.get("/tiles/cases/14/8647/5555.mvt", params={param: value})
    assert r.status_code == 422 and r.json()["field"] == param


def test_cases_table_survives_injection_attempts(client: TestClient, city: MapCity,
                                                 conn: Connection) -> None:
    for value in INJECTIONS:
        client.get(_url("cases"), params={"status": value})
    assert len(_features(client, "cases")) == 4


def _record_connection_use(client: TestClient, conn: Connection) -> list[tuple[str, int]]:
    """Swap the app's connection provider for one recording the threads it runs in."""
    from api.deps import get_conn

    events: list[tuple[str, int]] = []

    def provider() -> Iterator[Connection]:
        events.append(("open", threading.get_ident()))
        yield conn
        events.append(("close", threading.get_ident()))

    client.app.dependency_overrides[get_conn] = provider  # type: ignore[attr-defined]
    return events


def test_a_rendered_tile_takes_and_returns_its_connection_in_one_hop(
        client: TestClient, city: MapCity, conn: Connection) -> None:
    events = _record_connection_use(client, conn)
    assert client.get(_url("grids")).status_code == 200
    assert [e for e, _ in events] == ["open", "close"] and events[0][1] == events[1][1]


def test_a_feature_page_takes_and_returns_its_connection_in_one_hop(
        client: TestClient, city: MapCity, conn: Connection) -> None:
    events = _record_connection_use(client, conn)
    assert client.get("/ogc/collections/grids/items", params={"limit": "2"}).status_code == 200
    assert [e for e, _ in events] == ["open", "close"] and events[0][1] == events[1][1]

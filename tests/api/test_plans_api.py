"""The plans API over HTTP (TestClient in the test's transaction)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta

import pyogrio
import pytest
from shapely.geometry import mapping, shape

from tests.factories import account

COMMUNITY = "910102002002"


@pytest.fixture
def planner(conn) -> dict[str, str]:
    _, token = account(conn, "planner")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def plan(client, planner) -> dict:
    r = client.post("/api/plans", json={"root": COMMUNITY, "name": "api plan"}, headers=planner)
    assert r.status_code == 201, r.text
    return r.json()


def grids(client, planner, plan) -> list[dict]:
    r = client.get(f"/api/plans/{plan['id']}/areas", params={"level": 3}, headers=planner)
    assert r.status_code == 200
    return r.json()["features"]


def crossing(feature: dict) -> dict:
    g = shape(feature["geometry"])
    x0, y0, x1, y1 = g.bounds
    c = g.representative_point()
    return {"type": "LineString", "coordinates": [[c.x, y0 - 0.001], [c.x, y1 + 0.001]]}


def test_plans_need_a_planner_token(client, conn):
    assert client.post("/api/plans", json={"root": COMMUNITY}).status_code == 401
    _, token = account(conn, "analyst")
    r = client.post("/api/plans", json={"root": COMMUNITY},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_create_then_list_areas_with_deviation(client, planner, plan):
    features = grids(client, planner, plan)
    assert len(features) == 3
    props = features[0]["properties"]
    assert {"key", "code", "version", "households", "deviation_households"} <= set(props)
    assert plan["root"] == COMMUNITY and plan["status"] == "draft"


def test_split_then_stale_edit_is_409_and_nothing_is_lost(client, planner, plan):
    g = grids(client, planner, plan)[0]
    key, version = g["id"], g["properties"]["version"]
    r = client.post(f"/api/plans/{plan['id']}/areas/{key}/split",
                    json={"line": crossing(g), "version": version}, headers=planner)
    assert r.status_code == 200, r.text
    assert len(r.json()["created"]) == 1
    r2 = client.post(f"/api/plans/{plan['id']}/areas/{key}/reshape",
                     json={"geometry": g["geometry"], "version": version}, headers=planner)
    assert r2.status_code == 409
    body = r2.json()
    assert body["field"] == "version" and body["current_version"] == version + 1
    assert body["current"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert len(grids(client, planner, plan)) == 4


def test_bad_input_is_422_with_where(client, planner, plan):
    g = grids(client, planner, plan)[0]
    url = f"/api/plans/{plan['id']}/areas/{g['id']}"
    x0, y0, x1, y1 = shape(g["geometry"]).bounds
    bowtie = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1],
                                                  [x0, y0]]]}
    r = client.post(url + "/reshape", json={"geometry": bowtie}, headers=planner)
    assert r.status_code == 422 and r.json()["geometry"]["type"] == "Point"
    r = client.post(url + "/split", json={"line": {"type": "LineString",
                                                   "coordinates": [[0, 0], [1, 1]]}},
                    headers=planner)
    assert r.status_code == 422 and r.json()["field"] == "line"
    r = client.post(url + "/split", json={"line": {"type": "Nonsense"}}, headers=planner)
    assert r.status_code == 422 and r.json()["field"] == "line"


def test_undo_redo_over_http(client, planner, plan):
    g = grids(client, planner, plan)[0]
    client.post(f"/api/plans/{plan['id']}/areas/{g['id']}/split", json={"line": crossing(g)},
                headers=planner)
    r = client.post(f"/api/plans/{plan['id']}/undo", headers=planner)
    assert r.status_code == 200 and r.json()["kind"] == "split"
    assert len(grids(client, planner, plan)) == 3
    assert client.post(f"/api/plans/{plan['id']}/redo", headers=planner).status_code == 200
    assert len(grids(client, planner, plan)) == 4
    ops = client.get(f"/api/plans/{plan['id']}/ops", headers=planner).json()["ops"]
    assert [o["kind"] for o in ops] == ["split"]


def test_check_partition_diff_publish(client, planner, plan):
    pid = plan["id"]
    check = client.get(f"/api/plans/{pid}/check", headers=planner).json()
    assert check["ok"] and check["summary"]["grids"] == 3
    r = client.post(f"/api/plans/{pid}/partition",
                    json={"parent_code": COMMUNITY, "n": 4}, headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["metrics"]["count"] == 4 and r.json()["metrics"]["contiguous"]
    diff = client.get(f"/api/plans/{pid}/diff", headers=planner).json()
    assert diff["households_moved"] >= 0 and diff["features"]["features"]
    r = client.post(f"/api/plans/{pid}/publish", headers=planner)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "published"
    assert client.post(f"/api/plans/{pid}/publish", headers=planner).status_code == 409
    # Everything runs in the test's one transaction, whose now() is before the new version.
    later = (datetime.fromisoformat(r.json()["published_at"]) + timedelta(seconds=1)).isoformat()
    areas = client.get("/api/areas", params={"parent": COMMUNITY, "at": later}).json()["features"]
    assert len(areas) == 4


def test_infeasible_partition_is_422_explaining_why(client, planner):
    plan = client.post("/api/plans", json={"root": "910101001001"}, headers=planner).json()
    r = client.post(f"/api/plans/{plan['id']}/partition",
                    json={"parent_code": "910101001001", "target": 200, "tolerance": 0.1},
                    headers=planner)
    assert r.status_code == 422
    assert "no whole number" in r.json()["detail"] and r.json()["geometry"]


def test_merge_non_adjacent_is_422(client, planner, plan):
    g = grids(client, planner, plan)
    pairs = [(a, b) for a in g for b in g if a["id"] < b["id"]
             and shape(a["geometry"]).intersection(shape(b["geometry"])).length == 0]
    if not pairs:
        pytest.skip("every pair of demo grids here is adjacent")
    a, b = pairs[0]
    r = client.post(f"/api/plans/{plan['id']}/merge", json={"keys": [a["id"], b["id"]]},
                    headers=planner)
    assert r.status_code == 422 and r.json()["problem"] == "not_adjacent"


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "shp"])
def test_export_and_import_round_trip(client, planner, plan, fmt, tmp_path):
    pid = plan["id"]
    r = client.get(f"/api/plans/{pid}/export", params={"format": fmt, "level": 3},
                   headers=planner)
    assert r.status_code == 200
    suffix = {"geojson": ".geojson", "gpkg": ".gpkg", "shp": ".zip"}[fmt]
    path = tmp_path / f"plan{suffix}"
    path.write_bytes(r.content)
    if fmt == "shp":
        assert {n.rsplit(".", 1)[1] for n in zipfile.ZipFile(path).namelist()} >= {"shp", "dbf",
                                                                                     "prj"}
    else:
        assert len(pyogrio.read_dataframe(path)) == 3
    r = client.post(f"/api/plans/{pid}/import", headers=planner,
                    files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    assert r.json()["check"]["ok"] and r.json()["imported"] == 3


def test_import_of_a_broken_file_lists_the_problems(client, planner, plan):
    g = grids(client, planner, plan)[0]
    x0, y0, x1, y1 = shape(g["geometry"]).bounds
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "x"},
         "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0],
                                                          [x0, y1], [x0, y0]]]}},
        {"type": "Feature", "properties": {}, "geometry": mapping(shape(g["geometry"])
                                                                   .centroid)}]}
    r = client.post(f"/api/plans/{plan['id']}/import", headers=planner,
                    files={"file": ("bad.geojson", io.BytesIO(json.dumps(doc).encode()))})
    assert r.status_code == 422
    kinds = {p["problem"] for p in r.json()["problems"]}
    assert {"self_intersection", "not_polygon"} <= kinds


def test_import_checks_the_content_not_just_the_file_name(client, planner, plan):
    """A program renamed .gpkg is refused before GDAL ever opens it."""
    r = client.post(f"/api/plans/{plan['id']}/import", headers=planner,
                    files={"file": ("plan.gpkg", io.BytesIO(b"MZ\x90\x00" + b"\x00" * 200))})
    assert r.status_code == 415 and "gpkg" in r.text.lower()


def test_buildings_of_an_area_carry_counts_and_their_grid(client, planner, plan):
    features = grids(client, planner, plan)
    root = client.get(f"/api/plans/{plan['id']}/areas", params={"level": 2},
                      headers=planner).json()["features"][0]
    r = client.get(f"/api/plans/{plan['id']}/buildings", params={"parent": root["id"]},
                   headers=planner)
    assert r.status_code == 200
    buildings = r.json()["features"]
    assert sum(b["properties"]["households"] for b in buildings) == root["properties"][
        "households"]
    by_grid = {f["id"]: 0 for f in features}
    for b in buildings:
        by_grid[b["properties"]["grid"]] += b["properties"]["households"]
    assert by_grid == {f["id"]: f["properties"]["households"] for f in features}
    # Moving the one nearest another grid there changes the grid the list reports for it.
    _, bid, to = min((shape(b["geometry"]).distance(shape(f["geometry"])), b["id"], f["id"])
                     for b in buildings for f in features if f["id"] != b["properties"]["grid"])
    moved = client.post(f"/api/plans/{plan['id']}/move", json={"to": to, "buildings": [bid]},
                        headers=planner)
    assert moved.status_code == 200, moved.text
    again = client.get(f"/api/plans/{plan['id']}/buildings", params={"parent": to},
                       headers=planner).json()["features"]
    assert bid in {x["id"] for x in again}
    assert all(x["properties"]["grid"] == to for x in again)


def test_buildings_need_a_reader_and_a_known_area(client, planner, plan):
    assert client.get(f"/api/plans/{plan['id']}/buildings?parent=1").status_code == 401
    r = client.get(f"/api/plans/{plan['id']}/buildings", params={"parent": 10**9},
                   headers=planner)
    assert r.status_code == 404
    r = client.get(f"/api/plans/{plan['id']}/buildings", headers=planner)
    assert r.status_code == 422 and "parent" in r.text


def test_too_many_buildings_is_422_asking_for_a_smaller_area(client, planner, plan,
                                                             monkeypatch):
    from gis.planning import plans as planning

    monkeypatch.setattr(planning, "MAX_BUILDINGS", 3)
    root = client.get(f"/api/plans/{plan['id']}/areas", params={"level": 2},
                      headers=planner).json()["features"][0]
    r = client.get(f"/api/plans/{plan['id']}/buildings", params={"parent": root["id"]},
                   headers=planner)
    assert r.status_code == 422
    assert r.json()["field"] == "parent" and "more than 3 buildings" in r.json()["detail"]


# --- area scope --------------------------------------------------------------------------------

def scoped(conn, street: str) -> dict[str, str]:
    _, token = account(conn, "planner", areas=(street,))
    return {"Authorization": f"Bearer {token}"}


def test_edits_of_a_plan_rooted_outside_the_scope_are_403_naming_the_plan(client, conn, plan):
    outsider = scoped(conn, "910101002")  # another street
    g = grids(client, outsider, plan)[0]  # reading is not scoped
    pid = plan["id"]
    refused = [
        client.post(f"/api/plans/{pid}/areas/{g['id']}/split", json={"line": crossing(g)},
                    headers=outsider),
        client.patch(f"/api/plans/{pid}/areas/{g['id']}", json={"locked": True},
                     headers=outsider),
        client.post(f"/api/plans/{pid}/publish", headers=outsider),
        client.delete(f"/api/plans/{pid}", headers=outsider),
    ]
    for r in refused:
        assert r.status_code == 403, r.text
        assert r.json()["field"] == "plan" and f"plan {pid} covers {COMMUNITY}" in r.json()[
            "detail"]
    assert len(grids(client, outsider, plan)) == 3
    assert client.get(f"/api/plans/{pid}", headers=outsider).json()["status"] == "draft"


def test_edits_inside_the_scope_pass_and_unknown_plans_stay_404(client, conn, plan):
    insider = scoped(conn, COMMUNITY[:9])  # the community's street
    g = grids(client, insider, plan)[0]
    r = client.post(f"/api/plans/{plan['id']}/areas/{g['id']}/split",
                    json={"line": crossing(g)}, headers=insider)
    assert r.status_code == 200, r.text
    assert client.post("/api/plans/987654321/undo", headers=insider).status_code == 404

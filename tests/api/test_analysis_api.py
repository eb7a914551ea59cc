"""HTTP: KPIs, coverage, hot spots, recurrence and siting — JSON, CSV and clear 4xx."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import Connection, text

from tests.factories import account


def _csv(response) -> list[dict[str, str]]:
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))


def test_kpis_json_and_csv_agree(client) -> None:
    data = client.get("/api/kpis?level=street&period=365d").json()
    assert data["level"] == "street" and data["rows"][0]["rank"] == 1
    rows = _csv(client.get("/api/kpis?level=street&period=365d&format=csv"))
    assert [r["code"] for r in rows] == [r["code"] for r in data["rows"]]
    assert sum(int(r["n"]) for r in rows) == data["total"]["n"]


def test_kpis_over_a_year_by_grid_equal_the_direct_engine_over_http(client) -> None:
    """The rollup's quarters, months and days, the numpy scoring and ranking, and the JSON:
    the same rows, ranks and totals as the direct computation."""
    fast = client.get("/api/kpis?level=grid&period=365d").json()
    slow = client.get("/api/kpis?level=grid&period=365d&engine=cases").json()
    assert fast["total"] == slow["total"] and fast["total"]["n"] > 0
    assert fast["rows"] == slow["rows"]


def test_kpi_series_and_targets(client) -> None:
    series = client.get("/api/kpis/series?interval=week&period=90d").json()
    assert len(series["rows"]) >= 12
    assert _csv(client.get("/api/kpis/series?period=90d&format=csv"))[0]["period"]
    assert client.get("/api/kpis/targets").json()["targets"]["closure_rate"]["target"] == 0.95


def test_changing_a_target_needs_an_admin(client, conn: Connection) -> None:
    assert client.put("/api/kpis/targets/closure_rate", json={"target": 0.9}).status_code == 401
    _, token = account(conn, "admin")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.put("/api/kpis/targets/closure_rate", json={"target": 0.9}, headers=auth)
    assert r.status_code == 200 and r.json()["target"] == 0.9
    bad = client.put("/api/kpis/targets/closure_rate", json={"direction": "up"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["field"] == "direction"


def test_kpis_per_responder_are_for_staff(client, conn: Connection) -> None:
    assert client.get("/api/kpis?by=responder").status_code == 401  # send a token
    _, token = account(conn, "analyst")
    r = client.get("/api/kpis?by=responder", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["engine"] == "cases"


@pytest.mark.parametrize(("query", "field"), [
    ("level=ward", "level"), ("by=mood", "by"), ("period=2026-13", "period"),
    ("since=2026-10-10&until=2026-10-01", "until"), ("category=Z9", "category"),
    ("basis=later", "basis"), ("format=xml", "format"),
])
def test_bad_kpi_queries_are_422_naming_the_parameter(client, query: str, field: str) -> None:
    r = client.get(f"/api/kpis?{query}")
    assert r.status_code == 422 and r.json()["field"] == field


def test_coverage_is_geojson_with_gaps_and_csv(client) -> None:
    data = client.get("/api/coverage?facility_type=clinic&radius_m=300&level=street").json()
    assert data["type"] == "FeatureCollection" and data["summary"]["facilities"] > 0
    short = [f for f in data["features"] if f["properties"]["households_uncovered"] > 0]
    assert short and all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in short)
    rows = _csv(client.get("/api/coverage?facility_type=clinic&radius_m=300&level=street"
                           "&format=csv"))
    assert len(rows) == len(data["features"]) and "share_households" in rows[0]
    road = client.get("/api/coverage?facility_type=clinic&mode=road&minutes=10").json()
    assert road["summary"]["mode"] == "road"
    cams = client.get("/api/coverage/roads?level=district").json()
    assert 0 < cams["summary"]["share"] < 1


@pytest.mark.parametrize(("query", "field"), [
    ("facility_type=unicorn", "facility_type"), ("facility_type=clinic&radius_m=0", "radius_m"),
    ("facility_type=clinic&radius_m=99999", "radius_m"),
    ("facility_type=clinic&mode=road&minutes=-1", "minutes"),
    ("facility_type=clinic&mode=road&minutes=600", "minutes"),
    ("facility_type=clinic&level=ward", "level"), ("radius_m=100", "facility_type"),
])
def test_bad_coverage_queries(client, query: str, field: str) -> None:
    r = client.get(f"/api/coverage?{query}")
    assert r.status_code == 422 and r.json()["field"] == field


def test_hotspots_and_recurrence(client, conn: Connection) -> None:
    hot = client.get("/api/analysis/hotspots?permutations=99").json()
    assert len(hot["areas"]) == 39
    assert _csv(client.get("/api/analysis/hotspots?permutations=0&format=csv"))[0]["class"]
    st = client.get("/api/analysis/hotspots/space-time?interval=month&period=180d").json()
    assert len(st["steps"]) >= 6
    case = conn.execute(text("SELECT id FROM cases ORDER BY reported_at DESC LIMIT 1")).scalar()
    one = client.get(f"/api/cases/{case}/recurrence").json()
    assert one["case"] == case and isinstance(one["links"], list)
    assert client.get(f"/api/analysis/recurrence?case={case}").json() == one
    assert client.get("/api/cases/999999999/recurrence").status_code == 404
    assert client.get(f"/api/cases/{case}/recurrence?radius_m=0").json()["field"] == "radius_m"
    assert client.get("/api/analysis/recurrence?level=street").json()["n"] > 0


def test_siting_needs_staff_and_returns_gains(client, conn: Connection) -> None:
    url = "/api/analysis/siting?facility_type=clinic&radius_m=400&k=2"
    assert client.get(url).status_code == 401
    _, token = account(conn, "planner")
    r = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.json()["sites"]) == 2
    bad = client.get(url.replace("k=2", "k=0"), headers={"Authorization": f"Bearer {token}"})
    assert bad.status_code == 422 and bad.json()["field"] == "k"

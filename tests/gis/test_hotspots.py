"""Hot spots (Gi*), space-time classes and recurrence links."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box
from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound
from gis.hotspots import (
    HotspotQuery,
    classify,
    emerging_class,
    gi_star,
    hotspots,
    mann_kendall,
    recurrence,
    recurrence_by_area,
    space_time,
    weights,
)


def _lattice(n: int = 7) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=[box(i, j, i + 1, j + 1) for j in range(n) for i in range(n)])


def test_a_cluster_of_high_counts_is_a_hot_spot_and_its_opposite_cold() -> None:
    gdf = _lattice()
    y = np.full(49, 5.0)
    for i in (16, 17, 18, 23, 24, 25, 30, 31, 32):  # the 3 × 3 centre
        y[i] = 40.0
    stats = gi_star(y, weights(gdf), permutations=199)
    assert classify(stats["z"][24], stats["p"][24]) == "hot 99"
    assert classify(stats["z"][0], stats["p"][0]).startswith(("cold", "not"))
    assert stats["z"][24] == stats["z"].max()


@pytest.mark.parametrize(("z", "p", "label"), [
    (3.0, 0.002, "hot 99"), (2.0, 0.04, "hot 95"), (-1.7, 0.09, "cold 90"),
    (1.0, 0.3, "not significant")])
def test_classes(z: float, p: float, label: str) -> None:
    assert classify(z, p) == label


def _steps(hot: list[int]) -> tuple[np.ndarray, np.ndarray]:
    z = np.array([2.5 if h > 0 else (-2.5 if h < 0 else 0.1) for h in hot], dtype=float)
    p = np.array([0.01 if h else 0.9 for h in hot])
    return z, p


@pytest.mark.parametrize(("pattern", "label"), [
    ([0, 0, 0, 0, 0, 1], "new hot spot"),
    ([0, 0, 0, 1, 1, 1], "consecutive hot spot"),
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "persistent hot spot"),
    ([1, 0, 1, 0, 0, 1], "sporadic hot spot"),
    ([-1, 0, 0, 1, 0, 1], "oscillating hot spot"),
    ([0, 0, 0, 0, 0, -1], "new cold spot"),
    ([0, 0, 0, 0, 0, 0], "no pattern"),
])
def test_emerging_classes(pattern: list[int], label: str) -> None:
    assert emerging_class(*_steps(pattern)) == label


def test_intensifying_needs_a_rising_trend() -> None:
    z = np.linspace(2.0, 6.0, 12)
    assert emerging_class(z, np.full(12, 0.01)) == "intensifying hot spot"
    assert mann_kendall(z)[0] > 0 and mann_kendall(z[::-1])[0] < 0


def test_demo_hotspots_cover_every_grid_and_count_every_case(conn: Connection) -> None:
    result = hotspots(conn, HotspotQuery(permutations=99))
    assert len(result["areas"]) == 39 and result["hot"] >= 1
    total = conn.execute(text(
        "SELECT count(*) FROM cases c JOIN jurisdictions j ON j.id = c.jurisdiction_id"
        " WHERE j.code = 'FI-HEL-DEMO' AND c.reported_at >= CAST(:s AS timestamp) AT TIME ZONE"
        " j.timezone AND c.reported_at < CAST(:u AS timestamp) AT TIME ZONE j.timezone"),
        {"s": result["since"], "u": result["until"]}).scalar_one()
    assert sum(a["n"] for a in result["areas"]) == total


def test_category_hotspots_and_space_time(conn: Connection) -> None:
    one = hotspots(conn, HotspotQuery(category="E05", permutations=0))
    assert one["areas"] and all(a["p_sim"] is None for a in one["areas"])
    st = space_time(conn, HotspotQuery(period="120d"), interval="month")
    assert len(st["steps"]) >= 4
    assert {a["class"] for a in st["areas"]} - {"no pattern"}
    with pytest.raises(InvalidInput):
        space_time(conn, HotspotQuery(period="2026-10-01"), interval="week")


def _case(conn: Connection, category: str, lon: float, lat: float, *, status: str,
          days_ago: float, closed_days_ago: float | None = None) -> int:
    return int(conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, status, reported_at,"
        " closed_at, due_at, area_id, geom) SELECT j.id, (SELECT id FROM categories WHERE code ="
        " :cat), 'app', :status, now() - make_interval(days => :ago),"
        " CASE WHEN CAST(:closed AS float8) IS NULL THEN NULL ELSE now() -"
        " make_interval(secs => CAST(:closed AS float8) * 86400) END,"
        " now() - make_interval(days => :ago) + interval '1 day',"
        " (SELECT min(id) FROM areas WHERE level = 3 AND jurisdiction_id = j.id),"
        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) FROM jurisdictions j"
        " WHERE j.code = 'FI-HEL-DEMO' RETURNING id"),
        {"cat": category, "status": status, "ago": days_ago, "closed": closed_days_ago,
         "lon": lon, "lat": lat}).scalar_one())


def test_recurrence_links_a_new_case_to_the_closed_one_at_the_same_place(conn: Connection
                                                                          ) -> None:
    lon, lat = 24.90123, 60.15789  # off the hotspots
    old = _case(conn, "E010101", lon, lat, status="closed", days_ago=40, closed_days_ago=30)
    _case(conn, "E010102", lon, lat, status="closed", days_ago=40, closed_days_ago=30)
    far = _case(conn, "E010101", lon + 0.002, lat, status="closed", days_ago=40,
                closed_days_ago=30)
    new = _case(conn, "E010101", lon + 0.0002, lat, status="reported", days_ago=0)
    links = recurrence(conn, new, radius_m=50, window_days=180)
    assert [link["id"] for link in links["links"]] == [old]
    assert 10 < links["links"][0]["distance_m"] < 12
    assert recurrence(conn, new, radius_m=50, window_days=20)["links"] == []
    assert far in [link["id"] for link in recurrence(conn, new, radius_m=200)["links"]]


def test_recurrence_rates_by_area_and_bad_input(conn: Connection) -> None:
    result = recurrence_by_area(conn, level="street")
    assert result["n"] > 0 and 0 < result["recurrence_rate"] < 1
    with pytest.raises(InvalidInput) as err:
        recurrence_by_area(conn, radius_m=0)
    assert err.value.field == "radius_m"
    with pytest.raises(NotFound):
        recurrence(conn, 10**12)

"""Coverage: straight and road modes against brute force and single-source routing, gaps,
camera coverage of main roads, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from sqlalchemy import Connection, text

from gis.coverage import CoverageQuery, coverage, population, road_coverage
from gis.crs import WGS84, transformer
from gis.errors import InvalidInput
from gis.routing import get_graph, search, snap_points


def _demo(conn: Connection) -> int:
    return int(conn.execute(text("SELECT id FROM jurisdictions WHERE code = 'FI-HEL-DEMO'"))
               .scalar_one())


def test_straight_coverage_matches_brute_force(conn: Connection) -> None:
    jid = _demo(conn)
    got = coverage(conn, CoverageQuery("clinic", radius_m=400, gaps=False))["summary"]
    srid = conn.execute(text("SELECT local_srid FROM jurisdictions WHERE id = :j"),
                        {"j": jid}).scalar_one()
    expected = conn.execute(text(
        "SELECT COALESCE(sum(b.households) FILTER (WHERE EXISTS (SELECT 1 FROM facilities f"
        " WHERE f.jurisdiction_id = :j AND f.type = 'clinic' AND ST_DWithin("
        " ST_Transform(f.geom, :s), ST_Transform(b.pt, :s), 400))), 0)"
        " FROM buildings b WHERE b.jurisdiction_id = :j"), {"j": jid, "s": srid}).scalar_one()
    assert got["households_covered"] == expected
    assert got["households"] == conn.execute(text(
        "SELECT sum(households) FROM areas WHERE level = 3 AND valid_to IS NULL"
        " AND jurisdiction_id = :j"), {"j": jid}).scalar_one()


def test_bigger_radius_covers_more_and_everything_at_the_limit(conn: Connection) -> None:
    shares = [coverage(conn, CoverageQuery("clinic", radius_m=r, gaps=False))
              ["summary"]["share_households"] for r in (200, 500, 1000, 50_000)]
    assert shares == sorted(shares) and shares[-1] == 1.0


def test_road_coverage_matches_single_source_routing(conn: Connection) -> None:
    """The one fire station: its drive-time service area by multi-source search equals the
    single-source search of gis.routing."""
    jid = _demo(conn)
    got = coverage(conn, CoverageQuery("fire_station", mode="road", travel="drive", minutes=3,
                                       gaps=False))["summary"]
    graph = get_graph(conn, jid)
    lon, lat = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM facilities WHERE"
                                 " jurisdiction_id = :j AND type = 'fire_station'"),
                            {"j": jid}).one()
    origin = snap_points(graph, np.array([lon]), np.array([lat]))
    tree = search(graph, origin, direction="from", limit=180.0)
    pop = population(conn, jid)
    snaps = pop.snaps(graph)
    t = tree.costs(snaps).time_s + snaps.offroad_m / (5 / 3.6) + origin.offroad_m[0] / (5 / 3.6)
    inside = (t <= 180.0 + 1e-6) & (pop.grid_id >= 0)
    assert got["households_covered"] == int(pop.households[inside].sum())
    assert 0 < got["share_households"] < 1


def test_road_minutes_are_monotone_and_walking_is_slower_than_driving(conn: Connection) -> None:
    walk = [coverage(conn, CoverageQuery("clinic", mode="road", minutes=m, gaps=False))
            ["summary"]["households_covered"] for m in (3, 8, 15)]
    assert walk == sorted(walk)
    drive = coverage(conn, CoverageQuery("clinic", mode="road", travel="drive", minutes=3,
                                         gaps=False))["summary"]["households_covered"]
    assert drive >= walk[0]


def test_gaps_hold_the_uncovered_buildings_and_not_the_covered(conn: Connection) -> None:
    jid = _demo(conn)
    result = coverage(conn, CoverageQuery("clinic", radius_m=300, level="street"))
    gaps = [shapely.from_geojson(a["gap"]) for a in result["areas"] if a["gap"]]
    assert gaps and all(g.is_valid for g in gaps)
    union = shapely.union_all(gaps)
    srid = conn.execute(text("SELECT local_srid FROM jurisdictions WHERE id = :j"),
                        {"j": jid}).scalar_one()
    rows = conn.execute(text(
        "SELECT ST_X(b.pt), ST_Y(b.pt), EXISTS (SELECT 1 FROM facilities f WHERE f.type ="
        " 'clinic' AND f.jurisdiction_id = :j AND ST_DWithin(ST_Transform(f.geom, :s),"
        " ST_Transform(b.pt, :s), 300)) FROM buildings b WHERE b.jurisdiction_id = :j"),
        {"j": jid, "s": srid}).all()
    tf = transformer(WGS84, srid)
    local = shapely.transform(union, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))
    hits = [local.buffer(3).contains(shapely.Point(*tf.transform(x, y))) for x, y, _ in rows]
    covered = [c for _, _, c in rows]
    uncovered_in = [h for h, c in zip(hits, covered, strict=True) if not c]
    covered_in = [h for h, c in zip(hits, covered, strict=True) if c]
    assert np.mean(uncovered_in) > 0.97 and np.mean(covered_in) < 0.05


def test_extra_sites_cover_more(conn: Connection) -> None:
    base = coverage(conn, CoverageQuery("clinic", radius_m=300, gaps=False))["summary"]
    more = coverage(conn, CoverageQuery("clinic", radius_m=300, gaps=False,
                                        extra_sites=((24.945, 60.168),)))["summary"]
    assert more["facilities"] == base["facilities"] + 1
    assert more["households_covered"] >= base["households_covered"]


def test_camera_coverage_of_main_roads(conn: Connection) -> None:
    result = road_coverage(conn, level="street")
    s = result["summary"]
    assert 0 < s["share"] < 1 and s["facilities"] > 0
    assert sum(a["road_m"] for a in result["areas"]) == pytest.approx(s["road_m"], abs=1.0)
    part = next(a for a in result["areas"] if a["gap"])
    assert json.loads(part["gap"])["type"] == "MultiLineString"
    wider = road_coverage(conn, level="street", radius_m=200, gaps=False)["summary"]
    assert wider["share"] > s["share"]


@pytest.mark.parametrize(("query", "field"), [
    (CoverageQuery("spaceport"), "facility_type"),
    (CoverageQuery("clinic", radius_m=0), "radius_m"),
    (CoverageQuery("clinic", radius_m=-5), "radius_m"),
    (CoverageQuery("clinic", radius_m=60_000), "radius_m"),
    (CoverageQuery("clinic", mode="road", minutes=0), "minutes"),
    (CoverageQuery("clinic", mode="road", minutes=181), "minutes"),
    (CoverageQuery("clinic", mode="teleport"), "mode"),
    (CoverageQuery("clinic", mode="road", travel="fly"), "travel"),
    (CoverageQuery("clinic", level="ward"), "level"),
    (CoverageQuery("clinic", minutes=10), "minutes"),
])
def test_bad_coverage_queries_name_the_parameter(conn: Connection, query: CoverageQuery,
                                                 field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        coverage(conn, query)
    assert err.value.field == field

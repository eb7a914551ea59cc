"""The synthetic city: deterministic, exactly nested, correctly coded, consistent counts.

Small cities (40 grids, 200 cases) are built inside the test's rolled-back transaction with
``build_synth_in``; pure-geometry properties are checked on ``plan_city`` without a database.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from sqlalchemy import Connection, text

from gis.calendar import WorkingCalendar
from gis.errors import Conflict
from gis.synth import build_synth_in, default_code
from gis.synth.cases import WorkClock
from gis.synth.city import COUNTY_PREFIX, LOCAL_SRID, CitySpec, plan_city, street_network

AS_OF = datetime(2026, 3, 16, 10, tzinfo=UTC)


def build(conn: Connection, code: str = "SYNTEST-40", seed: int = 7, grids: int = 40,
          cases: int = 200) -> dict:
    return build_synth_in(conn, grids=grids, seed=seed, cases=cases, jurisdiction_code=code,
                          as_of=AS_OF)


@pytest.fixture
def city(conn: Connection) -> dict:
    return build(conn)


def fingerprint(conn: Connection, jid: int) -> dict[str, str]:
    """md5 of each table's rows of one jurisdiction, surrogate ids left out."""
    queries = {
        "areas": "SELECT level, code, name, grid_type, households, population,"
                 " ST_AsEWKB(geom) FROM areas WHERE jurisdiction_id = :j",
        "buildings": "SELECT use, levels, households, residents, ST_AsEWKB(geom), ST_AsEWKB(pt)"
                     " FROM buildings WHERE jurisdiction_id = :j",
        "roads": "SELECT highway, oneway, cost, reverse_cost, ST_AsEWKB(geom) FROM road_edges"
                 " WHERE jurisdiction_id = :j",
        "responders": "SELECT name, kind, skills, status, ST_AsEWKB(geom) FROM responders"
                      " WHERE jurisdiction_id = :j",
        "cases": "SELECT c.code, s.channel, s.status, s.reported_at, s.due_at, s.closed_at,"
                 " s.satisfaction, ST_AsEWKB(s.geom) FROM cases s"
                 " JOIN categories c ON c.id = s.category_id WHERE s.jurisdiction_id = :j",
    }
    return {name: conn.execute(
        text(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ({sql}) t"),
        {"j": jid}).scalar_one() for name, sql in queries.items()}


def test_plan_is_deterministic_for_a_seed() -> None:
    a, b = plan_city(CitySpec(grids=60, seed=3)), plan_city(CitySpec(grids=60, seed=3))
    other = plan_city(CitySpec(grids=60, seed=4))
    assert a.grids.codes == b.grids.codes
    assert shapely.to_wkb(a.grid_polygons).tolist() == shapely.to_wkb(b.grid_polygons).tolist()
    assert shapely.to_wkb(a.grid_polygons).tolist() != shapely.to_wkb(other.grid_polygons
                                                                      ).tolist()


@pytest.mark.parametrize("grids", [1, 20, 40, 333, 1300])
def test_plan_has_exactly_the_grids_asked_for_with_valid_polygons(grids: int) -> None:
    city = plan_city(CitySpec(grids=grids, seed=1))
    assert len(city.grids) == grids
    assert shapely.is_valid(city.grid_polygons).all()
    assert np.bincount(city.block_grid.ravel()).min() >= 1


def test_codes_are_14_digits_nested_and_numbered_north_to_south_west_to_east() -> None:
    city = plan_city(CitySpec(grids=300, seed=2))
    lengths = [6, 9, 12, 14]
    for depth, level in enumerate(city.levels):
        assert {len(c) for c in level.codes} == {lengths[depth]}
        assert all(c.isdigit() and c.startswith(COUNTY_PREFIX) for c in level.codes)
        if depth:
            above = city.levels[depth - 1].codes
            assert all(c.startswith(above[p]) for c, p in zip(level.codes, level.parent,
                                                              strict=True))
    grids = city.grids
    for parent in set(grids.parent.tolist()):
        mine = [i for i in range(len(grids)) if grids.parent[i] == parent]
        reading = sorted(mine, key=lambda i: (grids.rects[i][0], grids.rects[i][2]))
        assert [grids.codes[i] for i in reading] == sorted(grids.codes[i] for i in mine)
        assert 1 <= len(mine) <= 99


def test_city_sits_in_beijing_with_a_cgcs2000_local_crs() -> None:
    from pyproj import CRS

    x0, y0, x1, y1 = plan_city(CitySpec(grids=20000, seed=1)).bbox
    assert 116.29 < x0 < x1 < 116.61 and 39.79 < y0 < y1 < 40.01
    crs = CRS.from_epsg(LOCAL_SRID)
    assert "CGCS2000" in crs.name and "117E" in crs.name


def test_street_network_has_oneway_lanes_and_faster_arterials() -> None:
    net = street_network(plan_city(CitySpec(grids=200, seed=1)))
    assert 0.1 < net.oneway.mean() < 0.3
    assert not net.oneway[net.highway == "primary"].any()
    assert net.speed_kmh[net.highway == "primary"].min() > net.speed_kmh[
        net.highway == "residential"].max()
    assert len(net.source) >= 5 * 200


def test_default_code_fits_the_jurisdiction_column() -> None:
    assert default_code(20000, 1) == "SYN-20000-1"
    assert len(default_code(20000, 123456789)) <= 12


def test_work_clock_matches_the_working_calendar() -> None:
    cal = WorkingCalendar(tz="Asia/Shanghai")
    clock = WorkClock(cal, datetime(2025, 12, 1).date(), 120)
    rng = np.random.default_rng(0)
    starts = rng.integers(int(datetime(2025, 12, 2, tzinfo=UTC).timestamp()),
                          int(datetime(2026, 1, 31, tzinfo=UTC).timestamp()), 300)
    seconds = rng.choice([3600, 4 * 3600, 8 * 3600, 5 * 8 * 3600, 5400], 300)
    expected = [int(cal.add_working_seconds(datetime.fromtimestamp(int(s), UTC), int(d))
                    .timestamp()) for s, d in zip(starts, seconds, strict=True)]
    assert clock.add(starts, seconds).tolist() == expected


def test_synth_loads_the_requested_rows(conn: Connection, city: dict) -> None:
    j = {"j": city["jurisdiction_id"]}
    count = lambda table: conn.execute(  # noqa: E731
        text(f"SELECT count(*) FROM {table} WHERE jurisdiction_id = :j"), j).scalar_one()
    assert count("areas") == sum(city["areas"].values()) and city["areas"]["grid"] == 40
    assert count("buildings") == 40 * 50
    assert count("cases") == 200
    assert count("responders") == 160
    assert count("facilities") == sum(city["facilities"].values()) >= 8
    assert count("road_edges") == city["road_edges"] >= 5 * 40
    assert conn.execute(text("SELECT local_srid, timezone FROM jurisdictions WHERE id = :j"),
                        j).one() == (4548, "Asia/Shanghai")


def test_levels_tile_their_parents_exactly(conn: Connection, city: dict) -> None:
    j = {"j": city["jurisdiction_id"]}
    bad_parents = conn.execute(text("""
        SELECT count(*) FROM areas p
          JOIN LATERAL (SELECT ST_Union(c.geom) AS u, sum(c.area_m2) AS m2 FROM areas c
                         WHERE c.parent_id = p.id) k ON true
         WHERE p.jurisdiction_id = :j AND p.level < 3
           AND NOT (ST_Equals(k.u, p.geom) AND abs(k.m2 - p.area_m2) < 1e-6 * p.area_m2)
    """), j).scalar_one()
    overlaps = conn.execute(text("""
        SELECT count(*) FROM areas a JOIN areas b ON a.id < b.id AND a.level = b.level
           AND a.geom && b.geom AND ST_Relate(a.geom, b.geom, '2********')
         WHERE a.jurisdiction_id = :j AND b.jurisdiction_id = :j
    """), j).scalar_one()
    assert (bad_parents, overlaps) == (0, 0)


def test_same_seed_gives_the_same_rows_and_another_seed_does_not(conn: Connection) -> None:
    a = build(conn, "SYNTEST-A", seed=5, grids=20, cases=100)
    b = build(conn, "SYNTEST-B", seed=5, grids=20, cases=100)
    c = build(conn, "SYNTEST-C", seed=6, grids=20, cases=100)
    fa, fb, fc = (fingerprint(conn, s["jurisdiction_id"]) for s in (a, b, c))
    assert fa == fb
    assert all(fa[k] != fc[k] for k in fa)


def test_every_case_is_in_the_grid_the_sql_locate_picks(conn: Connection, city: dict) -> None:
    wrong = conn.execute(text("""
        SELECT count(*) FROM cases s
          LEFT JOIN LATERAL (SELECT a.id FROM area_parts p JOIN areas a ON a.id = p.area_id
                              WHERE ST_Covers(p.geom, s.geom) AND p.valid_to IS NULL
                              ORDER BY p.level DESC, a.code LIMIT 1) g ON true
         WHERE s.jurisdiction_id = :j AND s.area_id IS DISTINCT FROM g.id
    """), {"j": city["jurisdiction_id"]}).scalar_one()
    assert wrong == 0


def test_household_counts_equal_refresh_counts(conn: Connection, city: dict) -> None:
    from gis.areas import refresh_counts

    sql = text("SELECT code, households, population FROM areas WHERE jurisdiction_id = :j"
               " ORDER BY code")
    before = conn.execute(sql, {"j": city["jurisdiction_id"]}).all()
    refresh_counts(conn, city["jurisdiction_id"])
    assert conn.execute(sql, {"j": city["jurisdiction_id"]}).all() == before
    assert sum(r.households for r in before if len(r.code) == 14) == city["households"] > 0


def test_cases_are_mostly_closed_with_some_open_and_overdue(conn: Connection) -> None:
    summary = build(conn, "SYNTEST-K", grids=100, cases=5000)["cases"]
    assert summary["closed"] > 0.85 * summary["total"]
    assert summary["open"] > 0 and summary["overdue_open"] > 0
    assert 0.3 * summary["closed"] < summary["rated"] < 0.6 * summary["closed"]


def test_cases_follow_a_daily_rhythm_and_the_past_year(conn: Connection, city: dict) -> None:
    row = conn.execute(text("""
        SELECT count(*) FILTER (WHERE h BETWEEN 9 AND 16), count(*) FILTER (WHERE h < 6),
               min(reported_at), max(reported_at), bool_and(due_at > reported_at OR due_at IS NULL)
          FROM (SELECT *, extract(hour FROM reported_at AT TIME ZONE 'Asia/Shanghai') AS h
                  FROM cases WHERE jurisdiction_id = :j) s
    """), {"j": city["jurisdiction_id"]}).one()
    day, night, first, last, due_after = row
    assert day > 4 * night
    assert (AS_OF - first).days <= 366 and last < AS_OF and due_after


def test_an_existing_code_is_a_conflict(conn: Connection, city: dict) -> None:
    with pytest.raises(Conflict, match="SYNTEST-40"):
        build(conn)

"""Demo patrols (``gridgov responders simulate``): on-duty responders move along the roads and
stay fresh, busy ones hold their position, off-duty ones are never given a position, and one-way
streets are driven only their way. On the ladder network of ``tests/dispatch_factories``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from api.cli import build_parser
from gis.dispatch import DispatchSettings, PatrolSimulator
from gis.errors import NotFound
from tests.dispatch_factories import Town, add_responder, ladder_town

SETTINGS = DispatchSettings()


@pytest.fixture
def town(conn: Connection) -> Town:
    return ladder_town(conn)


def position(conn: Connection, rid: int) -> tuple[float | None, float | None, datetime | None]:
    row = conn.execute(text("SELECT ST_X(geom), ST_Y(geom), position_at FROM responders"
                            " WHERE id = :r"), {"r": rid}).one()
    return row[0], row[1], row[2]


def road_distance_m(conn: Connection, jid: int, lon: float, lat: float) -> float:
    return float(conn.execute(text(
        "SELECT min(ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
        "::geography)) FROM road_edges WHERE jurisdiction_id = :j AND component = 0"),
        {"x": lon, "y": lat, "j": jid}).scalar_one())


def test_available_responders_patrol_along_the_roads_and_stay_fresh(
        conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "patrol", town.mid("t1", "t2"), age_s=3000)
    sim = PatrolSimulator(conn, town.jurisdiction_id, seed=3)
    before = position(conn, rid)
    result = sim.tick(conn, dt_s=10, settings=SETTINGS)
    lon, lat, at = position(conn, rid)
    assert result["moved"] == 1 and result["rejected"] == 0
    assert at is not None and datetime.now(UTC) - at < timedelta(seconds=5)
    assert road_distance_m(conn, town.jurisdiction_id, lon, lat) < 0.5
    # 10 s at 12 km/h (staff, slower than the 30 km/h street) is 33 m, turns included.
    moved = conn.execute(text("SELECT ST_Distance(ST_SetSRID(ST_MakePoint(:a, :b), 4326)"
                              "::geography, ST_SetSRID(ST_MakePoint(:c, :d), 4326)::geography)"),
                         {"a": before[0], "b": before[1], "c": lon, "d": lat}).scalar_one()
    assert 5 < moved <= 33.4


def test_busy_responders_hold_their_position_but_report_it(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "at work", town.at["t3"], status="busy",
                        age_s=500)
    result = PatrolSimulator(conn, town.jurisdiction_id).tick(conn, dt_s=10, settings=SETTINGS)
    lon, lat, at = position(conn, rid)
    assert result["held"] == 1 and result["moved"] == 0
    assert (lon, lat) == pytest.approx(town.at["t3"])
    assert at is not None and datetime.now(UTC) - at < timedelta(seconds=5)


def test_off_duty_responders_are_never_given_a_position(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "home", None, status="off")
    sim = PatrolSimulator(conn, town.jurisdiction_id)
    for _ in range(3):
        sim.tick(conn, dt_s=10, settings=SETTINGS)
    assert position(conn, rid) == (None, None, None)
    assert conn.execute(text("SELECT count(*) FROM responder_positions WHERE responder_id = :r"),
                        {"r": rid}).scalar() == 0


def test_going_off_duty_stops_the_patrol(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "shift ends", town.at["t1"])
    sim = PatrolSimulator(conn, town.jurisdiction_id)
    sim.tick(conn, dt_s=10, settings=SETTINGS)
    conn.execute(text("UPDATE responders SET status = 'off', geom = NULL, position_at = NULL"
                      " WHERE id = :r"), {"r": rid})
    assert sim.tick(conn, dt_s=10, settings=SETTINGS)["moved"] == 0
    assert position(conn, rid) == (None, None, None)
    assert rid not in sim.walkers


def test_patrols_drive_one_way_streets_only_their_way(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "van", town.mid("b0", "b1", 0.1),
                        kind="vehicle")
    sim = PatrolSimulator(conn, town.jurisdiction_id, seed=5)
    g = sim.graph
    visited = set()
    for _ in range(60):   # 2 s at up to 50 km/h: about 1.5 km over blocks of 100 m
        sim.tick(conn, dt_s=2, settings=SETTINGS)
        w = sim.walkers[rid]
        assert (g.cost[w.edge] if w.forward else g.reverse_cost[w.edge]) >= 0
        lon, lat, _ = position(conn, rid)
        assert road_distance_m(conn, town.jurisdiction_id, lon, lat) < 0.5
        visited.add((w.edge, w.forward))
    one_way = {int(e) for e in range(len(g.edge_ids)) if g.reverse_cost[e] < 0}
    assert len(visited) >= 8 and any(e in one_way for e, _ in visited)


def test_a_jurisdiction_without_roads_cannot_be_simulated(conn: Connection) -> None:
    from gis.areas import create_jurisdiction

    jid = create_jurisdiction(conn, code="TEST-NOROADS", name="No roads", local_srid=25832)
    with pytest.raises(NotFound):
        PatrolSimulator(conn, jid)


def test_the_cli_offers_simulate_with_its_options() -> None:
    args = build_parser().parse_args(["responders", "simulate", "--interval", "5",
                                      "--duration", "60", "--jurisdiction", "FI-HEL-DEMO"])
    assert (args.action, args.interval, args.duration, args.jurisdiction, args.once) == (
        "simulate", 5.0, 60.0, "FI-HEL-DEMO", False)

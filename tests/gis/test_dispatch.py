"""Responders, positions and nearest queries (gis.dispatch) on the hand-made ladder town."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import Point, shape
from sqlalchemy import Connection, text

from gis import dispatch, nearest
from gis.areas import create_jurisdiction
from gis.dispatch import DispatchSettings, PositionIn
from gis.errors import Conflict, InvalidInput, NotFound
from gis.nearest import NearestQuery
from tests.dispatch_factories import (
    Town,
    add_facility,
    add_responder,
    ensure_departments,
    ladder_town,
    pgr_costs,
)

SETTINGS = DispatchSettings()


@pytest.fixture
def town(conn: Connection) -> Town:
    ensure_departments(conn, "FIRE", "SANITATION")
    return ladder_town(conn)


def near(conn: Connection, town: Town, at: tuple[float, float], **kw: object) -> dict:
    q = NearestQuery(lon=at[0], lat=at[1], jurisdiction_id=town.jurisdiction_id, **kw)  # type: ignore[arg-type]
    return nearest.nearest(conn, q, settings=SETTINGS)


def names(result: dict) -> list[str]:
    return [r["name"] for r in result["results"]]


# --- nearest: ranking -------------------------------------------------------------------------


def test_road_mode_ranks_by_eta_not_by_straight_distance(conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "ahead", town.at["b2"])    # 50 m, past the case
    add_responder(conn, town.jurisdiction_id, "top", town.at["t1"])      # 112 m, round a corner
    add_responder(conn, town.jurisdiction_id, "behind", town.at["b0"])   # 150 m, straight on
    case = town.mid("b1", "b2")
    assert names(near(conn, town, case, k=3)) == ["ahead", "top", "behind"]
    road = near(conn, town, case, k=3, mode="road")
    assert names(road) == ["behind", "top", "ahead"]
    etas = [r["eta_s"] for r in road["results"]]
    assert etas == pytest.approx([7.2 + 3.6, 12 + 3.6, 36 + 3.6], abs=1.0)
    assert road["reason"] is None


def test_a_responder_off_the_road_first_walks_to_it(
        conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "near", town.at["b1"])
    lon, lat = town.at["t2"]
    add_responder(conn, town.jurisdiction_id, "in the park", (lon, lat + 0.0018))  # 200 m
    result = near(conn, town, town.at["b2"], k=2, mode="road")
    assert names(result) == ["near", "in the park"] and result["reason"] is None
    assert result["results"][1]["eta_s"] > 144      # 200 m on foot at 5 km/h, then the road


def test_road_eta_between_nodes_equals_pgr_dijkstra(conn: Connection, town: Town) -> None:
    for n in ("b0", "b3", "t0", "t4"):
        add_responder(conn, town.jurisdiction_id, n, town.at[n])
    road = near(conn, town, town.at["b2"], k=4, mode="road")
    starts = [town.node[r["name"]] for r in road["results"]]
    expected = pgr_costs(conn, town.jurisdiction_id, starts, town.node["b2"])
    assert [r["eta_s"] for r in road["results"]] == pytest.approx(
        [round(expected[s], 1) for s in starts], abs=0.051)


def test_road_route_is_a_linestring_from_the_responder_to_the_case(
        conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "ahead", town.at["b2"])
    case = town.mid("b1", "b2")
    [hit] = near(conn, town, case, k=1, mode="road", route=True)["results"]
    line = shape(hit["route"])
    assert line.geom_type == "LineString"
    assert Point(line.coords[0]).distance(Point(town.at["b2"])) < 1e-9
    assert Point(line.coords[-1]).distance(Point(case)) < 1e-7
    assert line.distance(Point(town.at["t1"])) < 1e-9          # round the block
    assert hit["distance_m"] == pytest.approx(350, rel=0.03)


def test_straight_mode_ranks_by_metres_not_degrees_at_high_latitude(conn: Connection) -> None:
    jid = create_jurisdiction(conn, code="TEST-NORTH", name="North", local_srid=25832)
    add_responder(conn, jid, "north 0.010 deg (1.1 km)", (10.0, 60.01))
    add_responder(conn, jid, "east 0.015 deg (0.84 km)", (10.015, 60.0))
    q = NearestQuery(lon=10.0, lat=60.0, k=1, jurisdiction_id=jid)
    [hit] = nearest.nearest(conn, q, settings=SETTINGS)["results"]
    assert hit["name"].startswith("east") and hit["distance_m"] == pytest.approx(837, abs=5)


def test_skill_and_department_filters(conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "fire", town.at["b3"], skills=("fire",),
                  department="FIRE")
    add_responder(conn, town.jurisdiction_id, "bins", town.at["b2"], skills=("bins",),
                  department="SANITATION")
    assert names(near(conn, town, town.at["b2"], k=1, skill="fire")) == ["fire"]
    assert names(near(conn, town, town.at["b2"], k=1, department="FIRE",
                      mode="road")) == ["fire"]


def test_facilities_road_direction_matters_on_a_one_way(conn: Connection, town: Town) -> None:
    add_facility(conn, town.jurisdiction_id, "shelter", "west", town.at["b1"])
    add_facility(conn, town.jurisdiction_id, "shelter", "east", town.at["b3"])
    point = town.at["b2"]       # equally far from both by line
    q = NearestQuery(lon=point[0], lat=point[1], k=2, mode="road", type="shelter",
                     jurisdiction_id=town.jurisdiction_id)
    going = nearest.nearest(conn, replace_dir(q, "from_point"), settings=SETTINGS,
                             kind="facilities")
    coming = nearest.nearest(conn, q, settings=SETTINGS, kind="facilities")
    assert names(going)[0] == "east"    # from b2 east with the one-way, west is round a block
    assert names(coming)[0] == "west"   # from b1 to b2 with the one-way


def replace_dir(q: NearestQuery, direction: str) -> NearestQuery:
    from dataclasses import replace

    return replace(q, direction=direction)  # type: ignore[arg-type]


def test_eta_of_one_responder_for_the_case_timeline(conn: Connection, town: Town) -> None:
    busy = add_responder(conn, town.jurisdiction_id, "busy", town.at["b2"], status="busy")
    off = add_responder(conn, town.jurisdiction_id, "off", None, status="off")
    case = town.mid("b1", "b2")
    eta = nearest.responder_eta(conn, busy, *case, settings=SETTINGS, route=True)
    assert eta["eta_s"] == pytest.approx(36 + 3.6, abs=1.0) and eta["route"]["type"] == "LineString"
    assert nearest.responder_eta(conn, off, *case, settings=SETTINGS)["eta_s"] is None


# --- nearest: bad input and empty answers ------------------------------------------------------


@pytest.mark.parametrize("kw, field", [
    ({"skill": "juggling"}, "skill"), ({"department": "NOPE"}, "department"),
    ({"k": 0}, "k"), ({"k": 51}, "k"), ({"mode": "flying"}, "mode"), ({"status": "off"}, "status"),
])
def test_bad_parameters_raise_naming_the_field(conn: Connection, town: Town, kw: dict,
                                               field: str) -> None:
    add_responder(conn, town.jurisdiction_id, "fire", town.at["b3"], skills=("fire",))
    with pytest.raises(InvalidInput) as err:
        near(conn, town, town.at["b2"], **kw)
    assert err.value.field == field


def test_unknown_skill_lists_the_valid_ones(conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "fire", town.at["b3"], skills=("fire", "ladder"))
    with pytest.raises(InvalidInput, match="'juggling'.*fire.*ladder"):
        near(conn, town, town.at["b2"], skill="juggling")


def test_stale_positions_are_excluded_and_the_reason_says_so(
        conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "fresh", town.at["b3"])
    add_responder(conn, town.jurisdiction_id, "stale", town.at["b2"],
                  age_s=SETTINGS.stale_after_s + 60)
    for mode in ("straight", "road"):
        result = near(conn, town, town.at["b2"], k=2, mode=mode)
        assert names(result) == ["fresh"]
        assert "1 available responder(s) excluded: stale position" in result["reason"]


def test_no_responder_available_gives_an_empty_list_with_a_reason(
        conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "busy", town.at["b3"], status="busy")
    for mode in ("straight", "road"):
        result = near(conn, town, town.at["b2"], mode=mode)
        assert result["results"] == []
        assert result["reason"] == "no available responder"


def test_point_far_outside_the_network_gives_the_distance_to_the_nearest_road(
        conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "r", town.at["b3"])
    far = (town.at["b2"][0], town.at["b2"][1] + 0.01)          # ≈ 1.1 km north
    result = near(conn, town, far, mode="road")
    assert result["results"] == []
    assert result["reason"].startswith("outside network: nearest road is 10")


def test_responders_beyond_the_horizon_are_not_ranked(conn: Connection, town: Town) -> None:
    add_responder(conn, town.jurisdiction_id, "near", town.at["b1"])
    add_responder(conn, town.jurisdiction_id, "far", town.at["t4"])
    q = NearestQuery(lon=town.at["b2"][0], lat=town.at["b2"][1], k=2, mode="road",
                     jurisdiction_id=town.jurisdiction_id)
    result = nearest.nearest(conn, q, settings=DispatchSettings(max_travel_s=30))
    assert names(result) == ["near"]
    assert "horizon of 30 s" in result["reason"]


# --- responders and positions -----------------------------------------------------------------


def test_positions_are_refused_off_duty_and_going_off_clears_the_position(
        conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", town.at["b1"])
    dispatch.update_responder(conn, rid, settings=SETTINGS, status="off")
    row = dispatch.get_responder(conn, rid, settings=SETTINGS)
    assert (row["lon"], row["position_at"]) == (None, None)
    with pytest.raises(Conflict, match="off duty"):
        dispatch.record_position(conn, PositionIn(rid, *town.at["b2"]), settings=SETTINGS)


def test_batch_reports_unknown_off_duty_and_bad_items_and_stores_the_rest(
        conn: Connection, town: Town) -> None:
    on = add_responder(conn, town.jurisdiction_id, "on", None)
    off = add_responder(conn, town.jurisdiction_id, "off", None, status="off")
    result = dispatch.record_positions(conn, [
        PositionIn(on, *town.at["b1"]), PositionIn(off, *town.at["b1"]),
        PositionIn(999_999_999, *town.at["b1"]), PositionIn(on, 200.0, 50.0),
    ], settings=SETTINGS)
    assert (result.accepted, result.moved, result.recorded) == (1, 1, 1)
    reasons = {r["id"]: r["reason"] for r in result.rejected}
    assert "off duty" in reasons[off] and "no responder" in reasons[999_999_999]
    assert "lon=200.0" in reasons[on]


def test_history_is_thinned_and_older_reports_do_not_move_the_responder(
        conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", None)
    now = datetime.now(UTC)
    gap = SETTINGS.history_interval_s
    for dt, at in ((0, "b1"), (gap / 3, "b2"), (gap * 1.5, "b3"), (gap, "b4")):
        when = now - timedelta(seconds=3 * gap - dt)
        dispatch.record_positions(conn, [PositionIn(rid, *town.at[at], recorded_at=when)],
                                  settings=SETTINGS, now=now)
    history = dispatch.position_history(conn, rid, settings=SETTINGS, now=now)
    assert len(history) == 2                         # b2 and b4 were within the gap of others
    row = dispatch.get_responder(conn, rid, settings=SETTINGS)
    assert (row["lon"], row["lat"]) == pytest.approx(town.at["b3"])   # newest report wins


def test_history_beyond_retention_is_pruned_and_capped(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", town.at["b1"])
    conn.execute(text("INSERT INTO responder_positions (responder_id, recorded_at, geom)"
                      " SELECT :id, now() - make_interval(mins => i), geom"
                      " FROM responders, generate_series(1, 2000) AS i WHERE id = :id"),
                 {"id": rid})
    small = DispatchSettings(retention_h=24, max_positions_per_responder=100)
    deleted = dispatch.prune_positions(conn, settings=small)
    count = conn.execute(text("SELECT count(*) FROM responder_positions"
                              " WHERE responder_id = :id"), {"id": rid}).scalar()
    assert count == 100 and deleted >= 1900


def test_unknown_responder_is_not_found(conn: Connection, town: Town) -> None:
    with pytest.raises(NotFound):
        dispatch.record_position(conn, PositionIn(999_999_999, *town.at["b1"]),
                                 settings=SETTINGS)


def test_future_and_too_old_reports_are_refused(conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", None)
    for delta in (timedelta(hours=1), -timedelta(hours=SETTINGS.retention_h + 1)):
        with pytest.raises(InvalidInput) as err:
            dispatch.record_position(conn, PositionIn(
                rid, *town.at["b1"], recorded_at=datetime.now(UTC) + delta), settings=SETTINGS)
        assert err.value.field == "recorded_at"


def test_position_history_never_returns_points_beyond_retention(
        conn: Connection, town: Town) -> None:
    rid = add_responder(conn, town.jurisdiction_id, "r", None)
    now = datetime.now(UTC)
    for hours, at in ((SETTINGS.retention_h + 1, "b1"), (1, "b2")):
        conn.execute(text("INSERT INTO responder_positions (responder_id, recorded_at, geom)"
                          " VALUES (:r, :t, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                     {"r": rid, "t": now - timedelta(hours=hours), "x": town.at[at][0],
                      "y": town.at[at][1]})
    history = dispatch.position_history(conn, rid, settings=SETTINGS, now=now)
    assert [(h["lon"], h["lat"]) for h in history] == [pytest.approx(town.at["b2"])]


def test_a_department_scoped_account_reports_only_its_departments_responders(
        conn: Connection, town: Town) -> None:
    from gis.auth import Forbidden
    from tests.factories import account

    own = add_responder(conn, town.jurisdiction_id, "own", None, department="FIRE")
    other = add_responder(conn, town.jurisdiction_id, "other", None, department="SANITATION")
    fire, _ = account(conn, "handler", department="FIRE")
    unscoped, _ = account(conn, "dispatcher")
    assert dispatch.foreign_responders(conn, fire, [own, other, 999_999_999]) == {
        other: "SANITATION"}
    assert dispatch.foreign_responders(conn, unscoped, [own, other]) == {}
    result = dispatch.record_positions(conn, [PositionIn(own, *town.at["b1"]),
                                              PositionIn(other, *town.at["b1"])],
                                       settings=SETTINGS, principal=fire)
    assert result.accepted == 1 and [r["id"] for r in result.rejected] == [other]
    with pytest.raises(Forbidden, match=f"responder {other} belongs to department SANITATION"):
        dispatch.record_position(conn, PositionIn(other, *town.at["b2"]), settings=SETTINGS,
                                 principal=fire)
    assert dispatch.get_responder(conn, other, settings=SETTINGS)["lon"] is None

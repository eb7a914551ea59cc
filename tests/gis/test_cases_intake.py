"""Intake: grid in force, department routing precedence, deadlines, duplicates, idempotency,
bad input (nothing written)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import LineString, box
from sqlalchemy import Connection, text

from gis import crs, routing_rules
from gis.auth import PUBLIC, Forbidden, Unauthorized
from gis.calendar import set_days
from gis.casequery import nearby
from gis.errors import InvalidInput
from gis.intake import NEAR_LIMIT, Report, create_case
from tests.factories import (
    STEP,
    CaseWorld,
    TinyCity,
    account,
    add_component,
    add_zone,
    case_world,
)

FRIDAY_4PM = datetime(2026, 1, 9, 16, 0, tzinfo=UTC)
GARBAGE, BARBECUE, STREET_LIGHT = "E010101", "E050103", "C020101"


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


def report(world: CaseWorld, category: str = GARBAGE, street: int = 1, grid: int = 1,
           **kw: object) -> Report:
    lon, lat = world.point(street, grid)
    return Report(category=category, lon=lon, lat=lat, **kw)  # type: ignore[arg-type]


def count(conn: Connection, table: str = "cases") -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_report_gets_grid_department_and_due_at(conn: Connection, world: CaseWorld) -> None:
    body = create_case(conn, report(world, street=2, grid=1), now=FRIDAY_4PM).body
    assert body["status"] == "reported" and body["area_code"] == TinyCity.grid_code(2, 1)
    assert body["department"] == "SANITATION" and body["routed_by"] == "category:E010101"
    assert body["due_at"] == "2026-01-12T11:00:00+00:00"  # 4 working hours over the weekend
    assert body["tracking_token"].startswith("gtr_")


def test_due_at_skips_a_holiday_of_the_jurisdiction(conn: Connection, world: CaseWorld) -> None:
    set_days(conn, world.city.jurisdiction_id, [datetime(2026, 1, 12).date()], working=False)
    body = create_case(conn, report(world), now=FRIDAY_4PM).body
    assert body["due_at"] == "2026-01-13T11:00:00+00:00"


def test_report_on_a_shared_edge_goes_to_the_smallest_grid_code(conn: Connection,
                                                                 world: CaseWorld) -> None:
    lon = world.x0 + STEP  # the edge between grids 1-1 and 1-2
    body = create_case(conn, Report(category=GARBAGE, lon=lon, lat=world.y0 + 0.01)).body
    assert body["area_code"] == TinyCity.grid_code(1, 1)


def test_report_in_gcj02_is_converted_to_wgs84(conn: Connection, world: CaseWorld) -> None:
    # Outside China GCJ-02 is WGS84 itself: the point must land in the same grid.
    lon, lat = crs.wgs84_to_gcj02(*world.point(2, 2))
    body = create_case(conn, Report(category=GARBAGE, lon=lon, lat=lat, crs="GCJ-02")).body
    assert body["area_code"] == TinyCity.grid_code(2, 2)


def test_report_event_is_appended_with_the_actor(conn: Connection, world: CaseWorld) -> None:
    worker, _ = account(conn, "grid_worker")
    body = create_case(conn, report(world, channel="patrol"), principal=worker).body
    event = conn.execute(text("SELECT actor_id, action, to_state FROM case_events"
                              " WHERE case_id = :c"), {"c": body["id"]}).one()
    assert tuple(event) == (worker.user_id, "report", "reported")


def test_component_report_takes_its_location_and_owner(conn: Connection,
                                                      world: CaseWorld) -> None:
    lon, lat = world.point(2, 2)
    cid = add_component(conn, world.city.jurisdiction_id, lon, lat, category=STREET_LIGHT,
                        department="POWER")
    body = create_case(conn, Report(category=STREET_LIGHT, component_id=cid)).body
    assert body["area_code"] == TinyCity.grid_code(2, 2)
    assert body["department"] == "POWER" and body["routed_by"].startswith("component:")


def test_zone_covering_the_point_overrides_the_category_department(conn: Connection,
                                                                   world: CaseWorld) -> None:
    add_zone(conn, world.city.jurisdiction_id, "Z1", box(world.x0, world.y0, world.x0 + STEP,
                                                         world.y0 + 0.02),
             "ENFORCE", categories=[GARBAGE])
    inside = create_case(conn, report(world, street=1, grid=1)).body
    outside = create_case(conn, report(world, street=2, grid=1)).body
    assert (inside["department"], inside["routed_by"]) == ("ENFORCE", "zone:duty:Z1")
    assert outside["department"] == "SANITATION"


def test_zone_for_other_categories_does_not_override(conn: Connection, world: CaseWorld) -> None:
    add_zone(conn, world.city.jurisdiction_id, "Z1", box(world.x0, world.y0, world.x0 + 0.04,
                                                         world.y0 + 0.02),
             "ENFORCE", categories=[BARBECUE])
    assert create_case(conn, report(world)).body["department"] == "SANITATION"


def test_most_specific_zone_wins_then_the_smallest(conn: Connection, world: CaseWorld) -> None:
    j = world.city.jurisdiction_id
    everything = box(world.x0, world.y0, world.x0 + 0.04, world.y0 + 0.02)
    add_zone(conn, j, "ALL", everything, "CITYMGMT", categories=None)
    add_zone(conn, j, "DOMAIN", everything, "ENVIRON", categories=["E01"])
    add_zone(conn, j, "SMALL", box(world.x0, world.y0, world.x0 + 0.01, world.y0 + 0.02),
             "PARKS", categories=["E01"])
    assert create_case(conn, report(world)).body["department"] == "PARKS"
    assert create_case(conn, report(world, street=2)).body["department"] == "ENVIRON"
    assert create_case(conn, report(world, BARBECUE, street=2)).body["department"] == "CITYMGMT"


def test_line_zone_covers_points_near_it(conn: Connection, world: CaseWorld) -> None:
    lon, lat = world.point(1, 1)
    river = LineString([(lon - 0.001, lat + 0.00005), (lon + 0.001, lat + 0.00005)])
    add_zone(conn, world.city.jurisdiction_id, "R1", river, "WATER", kind="river")
    assert create_case(conn, report(world)).body["routed_by"] == "zone:river:R1"


def test_area_rule_overrides_category_and_zone_overrides_rule(conn: Connection,
                                                             world: CaseWorld) -> None:
    j = world.city.jurisdiction_id
    routing_rules.set_rule(conn, jurisdiction_id=j, area_code=world.city.grid_code(1, 1)[:9],
                           category_code="E0101", department="CITYMGMT")
    assert create_case(conn, report(world, street=1)).body["routed_by"] == "rule:990101001:E0101"
    assert create_case(conn, report(world, street=2)).body["department"] == "SANITATION"
    add_zone(conn, j, "Z", box(world.x0, world.y0, world.x0 + 0.02, world.y0 + 0.02), "PARKS")
    assert create_case(conn, report(world, street=1)).body["department"] == "PARKS"


def test_same_category_nearby_and_recent_is_linked_as_duplicate(conn: Connection,
                                                               world: CaseWorld) -> None:
    first = create_case(conn, report(world)).body
    lon, lat = world.point(1, 1)
    second = create_case(conn, Report(category=GARBAGE, lon=lon + 0.0003, lat=lat)).body
    assert second["duplicate_of"] == first["id"]
    actions = conn.execute(text("SELECT case_id, action FROM case_events WHERE action LIKE"
                                " 'duplicate%' ORDER BY case_id")).all()
    assert [tuple(a) for a in actions] == [(first["id"], "duplicate_linked"),
                                           (second["id"], "duplicate")]


@pytest.mark.parametrize(("dlon", "category", "hours_later"), [
    (0.002, GARBAGE, 1),      # ~140 m away: outside the 50 m radius
    (0.0003, BARBECUE, 1),    # another category
    (0.0003, GARBAGE, 100),   # outside the 72 h window
])
def test_not_a_duplicate_when_far_other_category_or_old(conn: Connection, world: CaseWorld,
                                                        dlon: float, category: str,
                                                        hours_later: int) -> None:
    create_case(conn, report(world), now=FRIDAY_4PM)
    lon, lat = world.point(1, 1)
    later = FRIDAY_4PM + timedelta(hours=hours_later)
    body = create_case(conn, Report(category=category, lon=lon + dlon, lat=lat), now=later).body
    assert body["duplicate_of"] is None


@pytest.mark.parametrize("crowd", [NEAR_LIMIT - 2, NEAR_LIMIT])
def test_duplicate_search_answers_the_same_in_a_crowded_spot(conn: Connection, world: CaseWorld,
                                                             crowd: int) -> None:
    # Below NEAR_LIMIT cases in the box the search filters the geometry index's rows; at it,
    # the time-first plan takes over. Both must link the same case.
    lon, lat = world.point(1, 1)
    for i in range(crowd):
        create_case(conn, Report(category=BARBECUE, lon=lon + i * 1e-6, lat=lat),
                    now=FRIDAY_4PM - timedelta(hours=1))
    first = create_case(conn, Report(category=GARBAGE, lon=lon + 0.0002, lat=lat),
                        now=FRIDAY_4PM).body
    again = create_case(conn, Report(category=GARBAGE, lon=lon + 0.0003, lat=lat),
                        now=FRIDAY_4PM + timedelta(hours=1)).body
    other = create_case(conn, Report(category=STREET_LIGHT, lon=lon, lat=lat),
                        now=FRIDAY_4PM + timedelta(hours=1)).body
    assert again["duplicate_of"] == first["id"] and other["duplicate_of"] is None


def test_nearby_lists_open_cases_with_public_fields_only(conn: Connection,
                                                        world: CaseWorld) -> None:
    first = create_case(conn, report(world, contact={"phone": "555-0100"})).body
    lon, lat = world.point(1, 1)
    rows = nearby(conn, lon=lon + 0.001, lat=lat, category=GARBAGE)
    assert [r["id"] for r in rows] == [first["id"]] and 60 < rows[0]["distance_m"] < 80
    assert "555-0100" not in str(rows) and "reporter_contact" not in rows[0]


def test_same_idempotency_key_returns_the_same_case(conn: Connection, world: CaseWorld) -> None:
    before = count(conn)
    first = create_case(conn, report(world, idempotency_key="k-1"))
    again = create_case(conn, report(world, idempotency_key="k-1"))
    assert first.created and not again.created and again.body == first.body
    assert count(conn) == before + 1


def test_same_key_with_another_body_is_refused(conn: Connection, world: CaseWorld) -> None:
    create_case(conn, report(world, idempotency_key="k-1"))
    before = count(conn)
    with pytest.raises(InvalidInput, match="already used for a different report"):
        create_case(conn, report(world, idempotency_key="k-1", description="changed"))
    assert count(conn) == before


def test_idempotency_keys_are_per_account(conn: Connection, world: CaseWorld) -> None:
    a, _ = account(conn, "call_taker")
    b, _ = account(conn, "call_taker")
    one = create_case(conn, report(world, idempotency_key="k", channel="hotline"), principal=a)
    two = create_case(conn, report(world, idempotency_key="k", channel="hotline"), principal=b)
    assert one.body["id"] != two.body["id"]


@pytest.mark.parametrize(("change", "field"), [
    ({"category": "X999999"}, "category"),
    ({"category": "E0101"}, "category"),             # a class, not a minor category
    ({"lon": None, "lat": None}, "location"),
    ({"lat": None}, "lat"),
    ({"lon": 0.0, "lat": 0.0}, "location"),           # outside every grid
    ({"lon": 10.0, "lat": 95.0}, "lat"),
    ({"description": "x" * 100_000}, "description"),
    ({"component_id": 999_999_999}, "component_id"),
    ({"channel": "telepathy"}, "channel"),
    ({"contact": {"ssn": "1"}}, "contact.ssn"),
    ({"idempotency_key": "k" * 500}, "Idempotency-Key"),
    ({"crs": "EPSG:999999"}, "crs"),
])
def test_bad_report_is_refused_naming_the_field_and_writes_nothing(
        conn: Connection, world: CaseWorld, change: dict, field: str) -> None:
    lon, lat = world.point()
    base = {"category": GARBAGE, "lon": lon, "lat": lat, **change}
    before = count(conn), count(conn, "case_events")
    with pytest.raises(InvalidInput) as info:
        create_case(conn, Report(**base))
    assert info.value.field == field
    assert (count(conn), count(conn, "case_events")) == before


def test_public_cannot_report_through_staff_channels(conn: Connection, world: CaseWorld) -> None:
    before = count(conn)
    with pytest.raises(Unauthorized, match="patrol"):
        create_case(conn, report(world, channel="patrol"), principal=PUBLIC)
    analyst, _ = account(conn, "analyst")
    with pytest.raises(Forbidden, match="hotline"):
        create_case(conn, report(world, channel="hotline"), principal=analyst)
    assert count(conn) == before


def test_report_in_the_demo_city_lands_in_the_grid_it_is_in(conn: Connection) -> None:
    grid = conn.execute(text(
        "SELECT a.code, ST_X(ST_PointOnSurface(a.geom)) AS lon,"
        " ST_Y(ST_PointOnSurface(a.geom)) AS lat FROM areas a"
        " JOIN jurisdictions j ON j.id = a.jurisdiction_id"
        " WHERE j.code = 'FI-HEL-DEMO' AND a.valid_to IS NULL"
        " AND a.level = (SELECT max(level) FROM areas WHERE jurisdiction_id = j.id)"
        " ORDER BY a.code LIMIT 1 OFFSET 7")).one()
    body = create_case(conn, Report(category="C020101", lon=grid.lon, lat=grid.lat)).body
    assert body["area_code"] == grid.code and body["department"] is not None
    assert body["due_at"] is not None  # 2 working days in Europe/Helsinki

"""Bulk import of historical cases: set-based grid assignment at reported_at, per-row errors,
strict all-or-nothing, re-import safety."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from shapely.geometry import box
from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.bulk import import_cases, read_csv, read_geojson
from gis.errors import ImportFailed
from tests.factories import CaseWorld, TinyCity, add_zone, case_world

ADMIN = Principal(role="admin", name="test-import")


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


def csv_rows(world: CaseWorld, body: str) -> list:
    lon, lat = world.point(2, 2)
    return list(read_csv(io.StringIO(body.format(lon=lon, lat=lat))))


def run(conn: Connection, world: CaseWorld, rows: list, **kw: object) -> dict:
    return import_cases(conn, rows, principal=ADMIN, jurisdiction_id=world.city.jurisdiction_id,
                        **kw)  # type: ignore[arg-type]


GOOD_AND_BAD = """lon,lat,category,reported_at,closed_at,description
{lon},{lat},E010101,2025-03-01T10:00:00+00:00,2025-03-01T15:00:00+00:00,ok closed
{lon},{lat},E050103,2025-03-02 09:00,,ok open
{lon},{lat},NOPE,2025-03-02T09:00:00Z,,bad category
,,E010101,2025-03-02T09:00:00Z,,no location
0,0,E010101,2025-03-02T09:00:00Z,,outside
{lon},{lat},E010101,yesterday,,bad time
{lon},{lat},E010101,2025-03-02T09:00:00Z,2025-03-01T09:00:00Z,closed before reported
"""


def test_valid_rows_go_in_and_invalid_rows_are_reported(conn: Connection,
                                                        world: CaseWorld) -> None:
    report = run(conn, world, csv_rows(world, GOOD_AND_BAD))
    assert (report["rows"], report["inserted"], report["rejected"]) == (7, 2, 5)
    assert [(e["row"], e["field"]) for e in report["errors"]] == [
        (3, "category"), (4, "location"), (5, "location"), (6, "reported_at"), (7, "closed_at")]


def test_imported_rows_get_grid_department_status_and_an_event(conn: Connection,
                                                               world: CaseWorld) -> None:
    run(conn, world, csv_rows(world, GOOD_AND_BAD))
    rows = conn.execute(text(
        "SELECT a.code, d.code AS dep, c.status, c.closed_at, c.due_at, c.channel,"
        " (SELECT count(*) FROM case_events e WHERE e.case_id = c.id AND e.action = 'import')"
        " AS events FROM cases c JOIN areas a ON a.id = c.area_id"
        " JOIN departments d ON d.id = c.department_id WHERE c.jurisdiction_id = :j"
        " ORDER BY c.reported_at"), {"j": world.city.jurisdiction_id}).mappings().all()
    assert [(r["code"], r["dep"], r["status"], r["events"]) for r in rows] == [
        (TinyCity.grid_code(2, 2), "SANITATION", "closed", 1),
        (TinyCity.grid_code(2, 2), "ENFORCE", "reported", 1)]
    assert rows[0]["due_at"] == datetime(2025, 3, 3, 14, tzinfo=UTC)  # Sat → Mon 9–12, 13–14
    assert rows[1]["channel"] == "import"


def test_strict_import_writes_nothing_when_a_row_is_invalid(conn: Connection,
                                                            world: CaseWorld) -> None:
    with pytest.raises(ImportFailed) as info:
        run(conn, world, csv_rows(world, GOOD_AND_BAD), strict=True)
    assert len(info.value.problems) == 5
    # The caller's transaction is rolled back on the exception (the CLI's, the API's).


def test_historical_case_gets_the_grid_in_force_when_it_was_reported(conn: Connection,
                                                                     world: CaseWorld) -> None:
    old = world.city.ids[TinyCity.grid_code(1, 1)]
    redraw = datetime(2024, 1, 1, tzinfo=UTC)
    conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = :a"), {"t": redraw, "a": old})
    conn.execute(text(
        "INSERT INTO areas (jurisdiction_id, level, code, name, parent_id, valid_from, geom)"
        " SELECT jurisdiction_id, level, code || 'X', name, parent_id, :t, geom FROM areas"
        " WHERE id = :a"), {"t": redraw, "a": old})
    lon, lat = world.point(1, 1)
    rows = list(read_csv(io.StringIO(f"lon,lat,category,reported_at\n{lon},{lat},E010101,"
                                     f"2023-06-01T10:00:00Z\n{lon},{lat},E010101,"
                                     "2025-06-01T10:00:00Z\n")))
    run(conn, world, rows)
    codes = conn.execute(text("SELECT a.code FROM cases c JOIN areas a ON a.id = c.area_id"
                              " WHERE c.jurisdiction_id = :j ORDER BY c.reported_at"),
                         {"j": world.city.jurisdiction_id}).scalars().all()
    assert codes == [TinyCity.grid_code(1, 1), TinyCity.grid_code(1, 1) + "X"]


def test_reimporting_rows_with_ids_skips_those_already_imported(conn: Connection,
                                                                world: CaseWorld) -> None:
    body = "id,lon,lat,category,reported_at\nA1,{lon},{lat},E010101,2025-01-01T00:00:00Z\n"
    assert run(conn, world, csv_rows(world, body))["inserted"] == 1
    again = run(conn, world, csv_rows(world, body))
    assert (again["inserted"], again["skipped_existing"]) == (0, 1)


def test_geojson_features_and_zones_route_like_intake(conn: Connection, world: CaseWorld) -> None:
    add_zone(conn, world.city.jurisdiction_id, "Z", box(world.x0, world.y0, world.x0 + 0.04,
                                                        world.y0 + 0.02), "PARKS")
    lon, lat = world.point(1, 2)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
         "properties": {"category": "E010101", "reported_at": "2025-05-05T08:00:00Z"}},
        {"type": "Feature", "geometry": None, "properties": {"category": "E010101"}}]}
    report = run(conn, world, list(read_geojson(fc)))
    assert report["inserted"] == 1 and report["errors"][0]["row"] == 2
    routed = conn.execute(text("SELECT routed_by FROM cases WHERE jurisdiction_id = :j"),
                          {"j": world.city.jurisdiction_id}).scalar()
    assert routed == "zone:duty:Z"


def test_many_rows_import_in_chunks(conn: Connection, world: CaseWorld) -> None:
    lon, lat = world.point(1, 1)
    rows = [(i, {"lon": lon + (i % 100) * 1e-5, "lat": lat, "category": "E010101",
                 "reported_at": "2025-02-02T10:00:00Z"}) for i in range(1, 2501)]
    report = run(conn, world, rows, chunk_size=1000)
    assert report["inserted"] == 2500 and report["errors"] == []
    grid = world.city.ids[TinyCity.grid_code(1, 1)]
    n = conn.execute(text("SELECT count(*) FROM cases WHERE area_id = :a"), {"a": grid}).scalar()
    assert n == 2500

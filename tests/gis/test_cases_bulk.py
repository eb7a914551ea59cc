"""Bulk import of historical cases: set-based grid assignment at reported_at, per-row errors,
strict all-or-nothing, re-import safety."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from shapely.geometry import box
from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.bulk import _normalise, import_cases, read_csv, read_geojson
from gis.errors import ImportFailed
from gis.live import expand
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


# --- the set-based path equals the row-by-row path --------------------------------------------

CATEGORIES = ("E010101", "E050103", "C020101", "E030101", "E040102", "C010104", "E060102")


def mixed_csv(world: CaseWorld, n: int, seed: int = 7) -> str:
    """``n`` rows over (and around) the tiny city: shared edges and corners, outside points,
    naive local and offset times across DST, open and closed, departments, ratings, ids, text
    that needs quoting, and a few invalid rows."""
    rng = random.Random(seed)
    lines = ["id,lon,lat,category,reported_at,closed_at,department,satisfaction,description"]
    edges = [world.x0 + k * 0.01 for k in range(5)]
    for i in range(n):
        lon = rng.choice(edges) if i % 7 == 0 else world.x0 - 0.002 + rng.random() * 0.044
        lat = world.y0 + (0.02 if i % 11 == 0 else rng.random() * 0.02)
        start = datetime(2024, 9, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(400 * 86400))
        reported = (start.replace(tzinfo=None).isoformat(" ") if i % 3 == 0
                    else start.isoformat())
        closed = ((start + timedelta(seconds=rng.randrange(60, 30 * 86400))).isoformat()
                  if i % 2 else "")
        category = "NOPE" if i % 53 == 5 else rng.choice(CATEGORIES)
        lines.append(",".join([
            f"R{i}" if i % 5 == 0 else "", f"{lon!r}", f"{lat!r}", category, reported, closed,
            "PARKS" if i % 13 == 0 else "", str(1 + i % 5) if closed and i % 4 == 1 else "",
            f'"case {i}, ""quoted""\nsecond line"',
        ]))
    return "\n".join(lines) + "\n"


def _snapshot(conn: Connection, jid: int) -> dict[str, Any]:
    cases = conn.execute(text(
        "SELECT id, category_id, channel, urgency, description, area_id, department_id, status,"
        " reported_at, due_at, closed_at, satisfaction, idempotency_key, routed_by,"
        " ST_AsEWKB(geom) AS g FROM cases WHERE jurisdiction_id = :j ORDER BY id"),
        {"j": jid}).all()
    ordinal = {r.id: n for n, r in enumerate(cases)}
    events = conn.execute(text(
        "SELECT e.case_id, e.action, e.from_state, e.to_state, e.note, e.data, e.at"
        " FROM case_events e JOIN cases c ON c.id = e.case_id WHERE c.jurisdiction_id = :j"
        " ORDER BY e.case_id, e.id"), {"j": jid}).all()
    cells = conn.execute(text("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells"
                              " ORDER BY 1, 2, 3, 4, 5")).all()
    # ttc_s is a multiset: a statement appends its cases in any order.
    kpi = [(*r[:-1], sorted(r[-1])) for r in conn.execute(text(
        "SELECT day, area_id, category_id, department_id, n, n_due, n_closed, n_on_time,"
        " n_rated, sat_sum, n_handled, n_reopened, n_verify, n_verify_pass, ttc_s"
        " FROM kpi_daily ORDER BY 1, 2, 3, 4"))]
    notes = live_notes(conn)
    live = sorted((ordinal[e["id"]], json.dumps({**e, "id": None}, sort_keys=True))
                  for p in notes for e in expand(p))
    return {"cases": [tuple(r)[1:] for r in cases],
            "events": [(ordinal[r[0]], *r[1:]) for r in events],
            "cells": cells, "kpi": kpi, "live": live, "n_notes": len(notes)}


def live_notes(conn: Connection) -> list[str]:
    """The live-feed payloads (``live_changes``) this never-committed transaction appended."""
    return list(conn.execute(text(
        "SELECT payload FROM live_changes WHERE txid = CAST(CAST(pg_current_xact_id() AS text)"
        " AS bigint) ORDER BY seq")).scalars().all())


def _import_twice(conn: Connection, world: CaseWorld, data: str, **bulk: Any
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    jid = world.city.jurisdiction_id
    results = []
    for options in (bulk, {"chunk_size": 1, "use_index": False, "fast": False}):
        savepoint = conn.begin_nested()
        report = run(conn, world, list(read_csv(io.StringIO(data))), **options)
        results.append((report, _snapshot(conn, jid)))
        savepoint.rollback()
    (bulk_report, bulk_state), (row_report, row_state) = results
    return bulk_report, bulk_state, row_report, row_state


@pytest.fixture
def routed_world(conn: Connection) -> CaseWorld:
    """Boundaries redrawn mid-2025 (grid 1-1), a zone, a category × area rule, DST time zone."""
    world = case_world(conn, timezone="Europe/Helsinki")
    jid = world.city.jurisdiction_id
    old = world.city.ids[TinyCity.grid_code(1, 1)]
    redraw = datetime(2025, 6, 1, tzinfo=UTC)
    conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = :a"), {"t": redraw, "a": old})
    conn.execute(text(
        "INSERT INTO areas (jurisdiction_id, level, code, name, parent_id, valid_from, geom)"
        " SELECT jurisdiction_id, level, code || 'X', name, parent_id, :t, geom FROM areas"
        " WHERE id = :a"), {"t": redraw, "a": old})
    add_zone(conn, jid, "Z", box(world.x0 + 0.025, world.y0, world.x0 + 0.04, world.y0 + 0.01),
             "ROADS", ["E05"])
    conn.execute(text("INSERT INTO routing_rules (jurisdiction_id, area_code, category_code,"
                      " department_id) SELECT :j, :a, 'E0101', id FROM departments"
                      " WHERE code = 'MARKET'"), {"j": jid, "a": TinyCity.grid_code(2, 1)[:9]})
    return world


def test_bulk_import_equals_one_statement_per_row(conn: Connection,
                                                  routed_world: CaseWorld) -> None:
    data = mixed_csv(routed_world, 300)
    bulk_report, bulk, row_report, rowwise = _import_twice(
        conn, routed_world, data, chunk_size=120, use_index=True)
    assert bulk_report == row_report
    assert bulk_report["inserted"] > 200 and bulk_report["rejected"] > 10
    assert {e["field"] for e in bulk_report["errors"]} == {"category", "location"}
    for part in ("cases", "events", "cells", "kpi", "live"):
        assert bulk[part] == rowwise[part], part
    assert len(bulk["live"]) == bulk_report["inserted"]
    assert bulk["n_notes"] < rowwise["n_notes"] == bulk_report["inserted"]
    routes = {c[12].split(":")[0] for c in bulk["cases"]}
    assert routes == {"category", "zone", "rule", "import"}


def test_large_import_on_the_trigger_path_sends_one_resync_note_per_chunk(
        conn: Connection, routed_world: CaseWorld) -> None:
    lon, lat = routed_world.point(2, 2)
    rows = [(i, {"lon": lon, "lat": lat, "category": "E010101",
                 "reported_at": "2025-08-01T10:00:00Z"}) for i in range(1, 12_001)]
    assert run(conn, routed_world, rows, chunk_size=6000, fast=False)["inserted"] == 12_000
    notes = live_notes(conn)
    assert [json.loads(n) for n in notes] == [{"type": "case", "op": "bulk", "count": 6000}] * 2


def test_rollups_after_a_bulk_import_equal_their_rebuild(conn: Connection,
                                                         routed_world: CaseWorld) -> None:
    run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 400, seed=3)))),
        chunk_size=150, use_index=True)
    # Cells whose count went back to zero may stay as rows (browser tests on this database
    # commit and delete cases); they draw nothing, and a rebuild drops them.
    cells = ("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells WHERE n <> 0"
             " ORDER BY 1, 2, 3, 4, 5")
    kpi = ("SELECT day, area_id, category_id, department_id, n, n_due, n_closed, n_on_time,"
           " n_rated, sat_sum, (SELECT array_agg(t ORDER BY t) FROM unnest(ttc_s) t)"
           " FROM kpi_daily ORDER BY 1, 2, 3, 4")
    before = conn.execute(text(cells)).all(), conn.execute(text(kpi)).all()
    # The cells as migration 0002_tiles defined them: every level projected on its own.
    by_level = conn.execute(text(
        "SELECT lv.z, gridgov_tile_x(ST_X(p), lv.z), gridgov_tile_y(ST_Y(p), lv.z), cat.id,"
        " open, count(*) FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,"
        " gridgov_case_open(status) AS open FROM cases) r"
        " CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)"
        " CROSS JOIN LATERAL (VALUES (0), (r.category_id)) AS cat(id)"
        " WHERE p IS NOT NULL AND NOT ST_IsEmpty(p) GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
    )).all()
    assert before[0] == by_level
    conn.execute(text("SELECT gridgov_rebuild_case_cells(), gridgov_kpi_rebuild()"))
    assert (conn.execute(text(cells)).all(), conn.execute(text(kpi)).all()) == before


def test_index_and_sql_assign_the_same_grids_on_shared_edges(conn: Connection,
                                                             routed_world: CaseWorld) -> None:
    data = mixed_csv(routed_world, 150, seed=11)
    _, indexed, _, rowwise = _import_twice(conn, routed_world, data, use_index=True)
    assert [c[4] for c in indexed["cases"]] == [c[4] for c in rowwise["cases"]]


def test_read_csv_equals_dictreader_with_normalise() -> None:
    body = ("LON, Lat ,category,lon,extra\n"
            "1,2,A,,x\n\n"
            " 3 ,4,B,5\n"
            "6,7,C,8,y,overflow\n"
            ",,,9,\n")
    ours = list(read_csv(io.StringIO(body)))
    reference = [(i, _normalise(r)) for i, r in
                 enumerate(csv.DictReader(io.StringIO(body)), start=1)]
    assert ours == reference
    assert ours[1] == (2, {"lon": "5", "lat": "4", "category": "B", "extra": None})


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Helsinki", "America/St_Johns"])
def test_vectorised_deadlines_equal_the_calendar_row_by_row(tz: str) -> None:
    from gis.calendar import CalendarSettings, build_calendar

    cal = build_calendar(tz, CalendarSettings(), [(date(2026, 3, 30), False),
                                                  (date(2026, 4, 4), True)])
    rng = random.Random(5)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    base = datetime(2025, 9, 1, tzinfo=UTC)
    starts = [base + timedelta(seconds=rng.randrange(400 * 86400),
                               microseconds=rng.choice([0, rng.randrange(10**6)]))
              for _ in range(3000)]
    starts += [s.replace(minute=0, second=0, microsecond=0) for s in starts[:500]]
    us = [(s - epoch) // timedelta(microseconds=1) for s in starts]
    for value, unit in [(4, "working_hours"), (0, "working_hours"), (2.5, "working_hours"),
                        (1, "working_days"), (20, "working_days"), (2, "hours"), (3, "days")]:
        expected = [(cal.add(s, value, unit) - epoch) // timedelta(microseconds=1)
                    for s in starts]
        assert cal.add_many(us, value, unit).tolist() == expected, (value, unit)

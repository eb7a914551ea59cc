"""Live case counts per area (``gis.stats.area_counts``), the level summary, household classes
and area search, on the tiny city inside the test's transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from gis import search, stats
from gis.errors import InvalidInput
from tests.factories import DISTRICT, CaseWorld, TinyCity, case_world

NOW = datetime(2026, 3, 9, 17, 0, tzinfo=UTC)  # 01:00 on 10 March in Shanghai
S1, S2 = f"{DISTRICT}001", f"{DISTRICT}002"


def add_case(conn: Connection, city: TinyCity, grid: str, *, status: str = "reported",
             due: timedelta = timedelta(days=1), closed_at: datetime | None = None,
             now: datetime = NOW, contact: str | None = None) -> int:
    """A case in ``grid`` (its area row), due ``due`` after ``now``."""
    return int(conn.execute(text("""
        INSERT INTO cases (jurisdiction_id, category_id, channel, status, reported_at, due_at,
                           closed_at, area_id, geom, description, reporter_contact)
        SELECT :j, (SELECT id FROM categories WHERE code = 'E010101'), 'patrol', :status,
               CAST(:now AS timestamptz) - interval '1 day', :due, :closed, a.id,
               ST_PointOnSurface(a.geom), 'private words',
               CAST(:contact AS jsonb)
          FROM areas a WHERE a.id = :area
        RETURNING id
    """), {"j": city.jurisdiction_id, "status": status, "now": now, "due": now + due,
           "closed": closed_at, "area": city.ids[grid],
           "contact": None if contact is None else f'{{"phone": "{contact}"}}'}).scalar_one())


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn, code="TEST-STATS", timezone="Asia/Shanghai")


def by_code(result: dict) -> dict[str, tuple[int, int, int]]:
    return {a["code"]: (a["open"], a["overdue"], a["closed_today"]) for a in result["areas"]}


def counts(conn: Connection, **kw) -> dict:
    return stats.area_counts(conn, jurisdiction="TEST-STATS", now=NOW, **kw)


# --- counting rules ------------------------------------------------------------------------

def test_open_overdue_and_closed_today_are_counted_per_street(conn: Connection,
                                                              world: CaseWorld) -> None:
    g11, g12, g21 = (world.city.grid_code(1, 1), world.city.grid_code(1, 2),
                     world.city.grid_code(2, 1))
    add_case(conn, world.city, g11)                                   # open
    add_case(conn, world.city, g12, status="dispatched", due=-timedelta(hours=2))  # overdue
    add_case(conn, world.city, g21, status="closed", closed_at=NOW - timedelta(minutes=30))
    result = counts(conn, level="street")
    assert by_code(result) == {S1: (2, 1, 0), S2: (0, 0, 1)}
    assert result["totals"] == {"open": 2, "overdue": 1, "closed_today": 1}


@pytest.mark.parametrize(("status", "counted_open"), [
    ("reported", True), ("handled", True), ("reopened", True), ("redirected", True),
    ("rejected", False), ("closed", False)])
def test_open_means_not_in_a_terminal_state_as_on_the_map(conn: Connection, world: CaseWorld,
                                                          status: str, counted_open: bool) -> None:
    add_case(conn, world.city, world.city.grid_code(1, 1), status=status, due=-timedelta(hours=1))
    expected = (1, 1, 0) if counted_open else (0, 0, 0)
    assert by_code(counts(conn, level="street"))[S1] == expected


def test_closed_today_starts_at_midnight_in_the_jurisdictions_time_zone(
        conn: Connection, world: CaseWorld) -> None:
    grid = world.city.grid_code(1, 1)
    # 00:30 on 10 March in Shanghai (today) and 23:30 on 9 March (yesterday).
    add_case(conn, world.city, grid, status="closed", closed_at=NOW - timedelta(minutes=30))
    add_case(conn, world.city, grid, status="closed", closed_at=NOW - timedelta(minutes=90))
    result = counts(conn, level="street")
    assert by_code(result)[S1] == (0, 0, 1)
    assert result["day_start"]["TEST-STATS"] == "2026-03-09T16:00:00+00:00"


def test_counts_keep_cases_of_a_redrawn_grid(conn: Connection, world: CaseWorld) -> None:
    grid = world.city.grid_code(1, 1)
    add_case(conn, world.city, grid)
    # Redraw: the old version ends, a new one with the same code starts; the case keeps the old.
    conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = :i"),
                 {"t": NOW - timedelta(hours=1), "i": world.city.ids[grid]})
    conn.execute(text("""
        INSERT INTO areas (jurisdiction_id, level, code, name, parent_id, valid_from, geom)
        SELECT jurisdiction_id, level, code, name || ' (redrawn)', parent_id, :t, geom
          FROM areas WHERE id = :i"""), {"t": NOW - timedelta(hours=1), "i": world.city.ids[grid]})
    assert by_code(counts(conn, level="street"))[S1] == (1, 0, 0)
    community = by_code(counts(conn, parent=f"{S1}001"))
    assert community[grid] == (1, 0, 0)


# --- what is listed ------------------------------------------------------------------------

def test_parent_lists_its_children_with_its_own_counts_and_ancestors(conn: Connection,
                                                                   world: CaseWorld) -> None:
    add_case(conn, world.city, world.city.grid_code(1, 2), due=-timedelta(hours=1))
    result = counts(conn, parent=f"{S1}001")
    assert [a["code"] for a in result["areas"]] == [world.city.grid_code(1, g) for g in (1, 2)]
    assert by_code(result)[world.city.grid_code(1, 2)] == (1, 1, 0)
    parent = result["parent"]
    assert (parent["code"], parent["open"], parent["overdue"]) == (f"{S1}001", 1, 1)
    assert [a["code"] for a in parent["ancestors"]] == [DISTRICT, S1]
    assert result["totals"] == {"open": 1, "overdue": 1, "closed_today": 0}


def test_no_level_lists_the_top_level(conn: Connection, world: CaseWorld) -> None:
    assert [a["code"] for a in counts(conn)["areas"]] == [DISTRICT]


@pytest.mark.parametrize("level", ["street", "1"])
def test_level_is_a_name_or_a_rank(conn: Connection, world: CaseWorld, level: str) -> None:
    result = counts(conn, level=level)
    assert [a["code"] for a in result["areas"]] == [S1, S2]
    area = result["areas"][0]
    west, south, east, north = area["bbox"]
    assert west < area["point"][0] < east and south < area["point"][1] < north


def test_overdue_cases_are_listed_most_overdue_first_with_public_fields_only(
        conn: Connection, world: CaseWorld) -> None:
    a = add_case(conn, world.city, world.city.grid_code(1, 1), due=-timedelta(hours=1),
                 contact="+86 10 0000")
    b = add_case(conn, world.city, world.city.grid_code(2, 2), due=-timedelta(days=2))
    add_case(conn, world.city, world.city.grid_code(2, 2), due=timedelta(days=2))
    listed = counts(conn)["overdue_cases"]
    assert [c["id"] for c in listed] == [b, a]
    assert not {"description", "reporter_contact", "media"} & set(listed[0])
    assert [c["id"] for c in counts(conn, parent=S1)["overdue_cases"]] == [a]
    assert counts(conn, overdue_limit=1)["overdue_cases"][0]["id"] == b


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"level": "ward"}, "level"), ({"level": "street' OR 1=1 --"}, "level"),
    ({"parent": "nope"}, "parent"), ({"level": "street", "parent": S1}, "level"),
    ({"overdue_limit": 1000}, "overdue_limit"), ({"jurisdiction": "NOPE"}, "jurisdiction")])
def test_bad_arguments_name_the_field(conn: Connection, world: CaseWorld, kwargs: dict,
                                      field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        stats.area_counts(conn, **kwargs)
    assert err.value.field == field


# --- levels and classes --------------------------------------------------------------------

def test_level_summary_counts_areas_and_households(conn: Connection, world: CaseWorld) -> None:
    conn.execute(text("UPDATE areas SET households = 100 WHERE jurisdiction_id = :j"
                      " AND level = 3"), {"j": world.city.jurisdiction_id})
    summary = stats.level_summary(conn, jurisdiction="TEST-STATS")
    assert [(lv["rank"], lv["name"], lv["count"]) for lv in summary["levels"]] == [
        (0, "district", 1), (1, "street", 2), (2, "community", 2), (3, "grid", 4)]
    assert summary["levels"][3]["households"] == 400
    assert summary["levels"][3]["classes"] == [
        {"min": 100, "max": 100, "count": 4, "step_from": 1}]
    assert summary["bbox"] == pytest.approx([10.0, 50.0, 10.04, 50.02])


@pytest.mark.parametrize(("values", "expected"), [
    ([], []),
    ([0, 0], [(0, 0, 2)]),
    ([0, 5, 5], [(0, 0, 1), (5, 5, 2)]),
    ([10, 20, 30, 40], [(10, 19, 1), (20, 29, 1), (30, 39, 1), (40, 40, 1)]),
    ([650, 1013, 1283, 1365, 1510, 1839], [(650, 999, 1), (1000, 1299, 2), (1300, 1499, 1),
                                           (1500, 1839, 2)]),
])
def test_household_classes_are_quantiles_with_readable_breaks(values, expected) -> None:
    classes = stats.household_classes(values)
    assert [(c["min"], c["max"], c["count"]) for c in classes] == expected
    assert sum(c["count"] for c in classes) == len(values)


# --- search --------------------------------------------------------------------------------

def test_search_finds_by_code_prefix_shortest_code_first(conn: Connection,
                                                         world: CaseWorld) -> None:
    found = [a["code"] for a in search.search_areas(conn, S1, limit=5)]
    assert found[:2] == [S1, f"{S1}001"]


def test_search_finds_by_part_of_a_name_exact_match_first(conn: Connection,
                                                          world: CaseWorld) -> None:
    found = search.search_areas(conn, "grid 1-2")
    assert found[0]["code"] == world.city.grid_code(1, 2)
    assert found[0]["level_name"] == "grid" and found[0]["parent_code"] == f"{S1}001"
    assert [a["name"] for a in search.search_areas(conn, "community 2-")] == ["Community 2-1"]


@pytest.mark.parametrize("q", ["%", "_", "\\"])
def test_search_treats_like_wildcards_as_text(conn: Connection, world: CaseWorld, q: str) -> None:
    assert search.search_areas(conn, q) == []


@pytest.mark.parametrize(("q", "limit"), [("", 10), ("   ", 10), ("x" * 101, 10), ("a", 0)])
def test_search_refuses_bad_input(conn: Connection, q: str, limit: int) -> None:
    with pytest.raises(InvalidInput):
        search.search_areas(conn, q, limit=limit)

"""What intake does for speed keeps its answers exact (migration 0008_intake_speed, gis.intake):
tile cells counted at commit, the retry found by the resolve query, prepared statements."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text

from gis.errors import InvalidInput
from gis.intake import Report, create_case
from tests.factories import CaseWorld, case_world

CELLS = ("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells WHERE n <> 0"
         " ORDER BY 1, 2, 3, 4, 5")


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn)


def cells(conn: Connection) -> list[Any]:
    return list(conn.execute(text(CELLS)).all())


def rebuilt_cells(conn: Connection) -> list[Any]:
    savepoint = conn.begin_nested()
    conn.execute(text("SELECT gridgov_rebuild_case_cells()"))
    found = cells(conn)
    savepoint.rollback()
    return found


def test_intake_counts_its_tile_cells_at_commit_exactly(conn: Connection,
                                                        world: CaseWorld) -> None:
    before = cells(conn)
    for street, grid in ((1, 1), (1, 1), (2, 2)):
        lon, lat = world.point(street, grid)
        create_case(conn, Report(category="E010101", lon=lon, lat=lat))
    assert cells(conn) == before          # held back: no counter row locked until commit
    conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))   # what COMMIT does first
    assert cells(conn) == rebuilt_cells(conn) != before


def test_a_statement_after_intake_counts_its_cells_at_once(conn: Connection,
                                                           world: CaseWorld) -> None:
    lon, lat = world.point(2, 1)
    create_case(conn, Report(category="E010101", lon=lon, lat=lat))
    conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, geom) SELECT :j, id, 'hotline',"
        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) FROM categories WHERE code = 'E010101'"),
        {"j": world.city.jurisdiction_id, "lon": lon, "lat": lat})
    assert cells(conn) == rebuilt_cells(conn)


@pytest.mark.parametrize("prepare", [True, False])
def test_a_retry_is_answered_from_the_resolve_query_with_or_without_prepare(
        conn: Connection, world: CaseWorld, prepare: bool) -> None:
    lon, lat = world.point(1, 2)
    first = create_case(conn, Report(category="E010101", lon=lon, lat=lat,
                                     idempotency_key="k-1"), prepare=prepare)
    again = create_case(conn, Report(category="E010101", lon=lon, lat=lat,
                                     idempotency_key="k-1"), prepare=prepare)
    assert (first.created, again.created) == (True, False) and again.body == first.body
    with pytest.raises(InvalidInput) as err:
        create_case(conn, Report(category="E010101", lon=lon, lat=lat, description="other",
                                 idempotency_key="k-1"), prepare=prepare)
    assert err.value.field == "Idempotency-Key"


def test_prepared_resolve_leaves_the_plan_cache_mode_as_it_was(conn: Connection,
                                                               world: CaseWorld) -> None:
    lon, lat = world.point(2, 2)
    create_case(conn, Report(category="E010101", lon=lon, lat=lat))
    assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"
    assert conn.execute(text("SELECT current_setting('gridgov.cells_at_commit', true)")
                        ).scalar_one() in (None, "")

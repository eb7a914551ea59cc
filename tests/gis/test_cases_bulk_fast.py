"""The fast bulk load path (``gis.bulk``, ``fast=True``): inserts without row triggers or RI
checks, every derived table maintained by one set-based statement per import, foreign keys
guaranteed by set-based ``FOR KEY SHARE`` locks. It must leave exactly what the trigger path
leaves, stay exact under concurrent intake, and step aside when it cannot stand in."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from gis.auth import Principal
from gis.bulk import fast_load_refusal, import_cases, read_csv
from gis.bulk_fast import DERIVED_STEPS
from gis.errors import ImportFailed
from gis.intake import Report, create_case
from tests.factories import CaseWorld, case_world, purge_jurisdiction
from tests.gis.test_cases_bulk import _snapshot, mixed_csv, routed_world, run

__all__ = ["routed_world"]  # the fixture, shared with test_cases_bulk

ADMIN = Principal(role="admin", name="test-import")
_ROLLUPS = {
    "kpi_area": "SELECT * FROM kpi_area ORDER BY monthly, period, area_id",
    "kpi_area_quarter": "SELECT * FROM kpi_area_quarter ORDER BY period, area_id",
}


def _state(conn: Connection, jid: int) -> dict[str, Any]:
    """_snapshot (cases, events, cells, kpi_daily, live items) plus the other derived tables."""
    state = _snapshot(conn, jid)
    ids = conn.execute(text("SELECT id FROM cases WHERE jurisdiction_id = :j ORDER BY id"),
                       {"j": jid}).scalars().all()
    ordinal = {i: n for n, i in enumerate(ids)}
    state["case_tiles"] = sorted(
        (ordinal[r[0]], *r[1:]) for r in conn.execute(text(
            "SELECT t.id, t.category_id, t.urgency, t.status, t.reported_at, t.due_at,"
            " ST_AsEWKB(t.geom), t.category FROM case_tiles t JOIN cases c ON c.id = t.id"
            " WHERE c.jurisdiction_id = :j"), {"j": jid}))
    for name, sql in _ROLLUPS.items():
        state[name] = conn.execute(text(sql)).all()
    state["invalidations"] = conn.execute(text(
        "SELECT table_name, lon_min, lat_min, lon_max, lat_max, n_rows FROM tile_invalidations"
        " WHERE txid = CAST(CAST(pg_current_xact_id() AS text) AS bigint)"
        " ORDER BY 1, 2, 3, 4, 5, 6")).all()
    return state


def _both_paths(conn: Connection, world: CaseWorld, data: str, *, fast_chunk: int,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fast path state, trigger path state) after importing ``data`` each way in a savepoint;
    the trigger path in one statement, so its statement triggers see what the fast path
    applies at once."""
    out = []
    for options in ({"fast": True, "chunk_size": fast_chunk},
                    {"fast": False, "chunk_size": 100_000}):
        savepoint = conn.begin_nested()
        report = run(conn, world, list(read_csv(io.StringIO(data))), use_index=True, **options)
        out.append({"report": report, **_state(conn, world.city.jurisdiction_id)})
        savepoint.rollback()
    return out[0], out[1]


def test_the_fast_path_is_available_on_the_current_schema(conn: Connection) -> None:
    # Fails when a migration changes a trigger or foreign key on cases, case_events or
    # kpi_daily: gis/bulk_fast.py must then follow it (and update _TRIGGER_SIGNATURE).
    assert fast_load_refusal(conn) is None


def test_fast_load_leaves_exactly_what_the_triggers_leave(conn: Connection,
                                                           routed_world: CaseWorld) -> None:
    # Existing cases on the same days and grids: the upserts meet existing rollup rows.
    run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 200, seed=2)))),
        fast=False)
    fast, slow = _both_paths(conn, routed_world, mixed_csv(routed_world, 300, seed=7),
                             fast_chunk=70)
    assert fast["report"] == slow["report"] and fast["report"]["inserted"] > 200
    for part in ("cases", "events", "cells", "kpi", "kpi_area", "kpi_area_quarter",
                 "case_tiles", "live", "n_notes", "invalidations"):
        assert fast[part] == slow[part], part


def test_fast_load_rollups_equal_their_rebuild(conn: Connection,
                                               routed_world: CaseWorld) -> None:
    run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 400, seed=3)))),
        chunk_size=150, use_index=True, fast=True)
    kpi = ("SELECT day, area_id, category_id, department_id, n, n_due, n_closed, n_on_time,"
           " n_rated, sat_sum, n_handled, n_reopened, n_verify, n_verify_pass,"
           " (SELECT array_agg(t ORDER BY t) FROM unnest(ttc_s) t) FROM kpi_daily"
           " ORDER BY 1, 2, 3, 4")
    cells = "SELECT * FROM tile_case_cells WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5"
    reads = [kpi, cells, *_ROLLUPS.values()]
    before = [conn.execute(text(sql)).all() for sql in reads]
    conn.execute(text("SELECT gridgov_kpi_rebuild(), gridgov_kpi_area_rebuild(),"
                      " gridgov_kpi_quarter_rebuild(), gridgov_rebuild_case_cells()"))
    assert [conn.execute(text(sql)).all() for sql in reads] == before


class _Bar:
    """What ``import_cases`` uses of a tqdm bar: rows read, and the postfix it shows."""

    def __init__(self) -> None:
        self.rows = 0
        self.postfixes: list[str] = []

    def update(self, n: int) -> None:
        self.rows += n

    def set_postfix_str(self, text: str) -> None:
        self.postfixes.append(text)


def test_the_progress_bar_names_each_step_after_the_rows(conn: Connection,
                                                          routed_world: CaseWorld) -> None:
    # A million rows take a minute past the last chunk: the full bar must say what it waits on.
    bar, timings = _Bar(), {}
    report = run(conn, routed_world,
                 list(read_csv(io.StringIO(mixed_csv(routed_world, 120, seed=4)))),
                 chunk_size=50, use_index=True, fast=True, progress=bar, timings=timings)
    steps = ("lock references", *DERIVED_STEPS)
    assert bar.rows == report["rows"] > 100
    assert bar.postfixes == [f"finishing {i}/{len(steps)}: {name}"
                             for i, name in enumerate(steps, start=1)]
    # The steps named are the phases timed, no more and no fewer.
    assert set(steps) == set(timings) - {"fast path", "insert chunks"}


def test_fast_load_turns_the_triggers_back_on(conn: Connection, routed_world: CaseWorld) -> None:
    run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 50)))), fast=True)
    assert conn.execute(text("SHOW session_replication_role")).scalar() == "origin"
    with pytest.raises(ImportFailed):
        run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 50)))),
            fast=True, strict=True)
    assert conn.execute(text("SHOW session_replication_role")).scalar() == "origin"


def test_without_the_privilege_the_import_takes_the_trigger_path(
        conn: Connection, routed_world: CaseWorld) -> None:
    role = f"gg_bulk_{uuid.uuid4().hex[:8]}"
    conn.execute(text(f"CREATE ROLE {role}"))
    conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
    conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    conn.execute(text(f"SET LOCAL ROLE {role}"))
    assert "session_replication_role" in (fast_load_refusal(conn) or "")
    with pytest.raises(RuntimeError, match="not available"):
        run(conn, routed_world, [], fast=True)
    report = run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 60)))))
    assert report["inserted"] > 40
    conn.execute(text("RESET ROLE"))


def test_a_changed_trigger_makes_the_import_take_the_trigger_path(
        conn: Connection, routed_world: CaseWorld) -> None:
    conn.execute(text(
        "CREATE TABLE _t_seen (n bigint); CREATE FUNCTION _t_count() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN INSERT INTO _t_seen SELECT count(*) FROM new_rows;"
        " RETURN NULL; END $$; CREATE TRIGGER cases_zz_test AFTER INSERT ON cases"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION _t_count()"))
    assert "fingerprint" in (fast_load_refusal(conn) or "")
    report = run(conn, routed_world, list(read_csv(io.StringIO(mixed_csv(routed_world, 60)))))
    assert conn.execute(text("SELECT sum(n) FROM _t_seen")).scalar() == report["inserted"]


# --- concurrency: committed data, two connections ---------------------------------------------

@pytest.fixture
def committed_world(engine: Engine) -> Iterator[CaseWorld]:
    with engine.begin() as conn:
        world = case_world(conn, code=f"BULK-{uuid.uuid4().hex[:6]}", x0=40.0, y0=-30.0)
    try:
        yield world
    finally:
        with engine.begin() as conn:
            purge_jurisdiction(conn, world.city.jurisdiction_id)


def _intake(engine: Engine, world: CaseWorld, n: int, done: list[int]) -> None:
    lon, lat = world.point(1, 1)
    for i in range(n):
        with engine.begin() as conn:
            create_case(conn, Report(category="E010101", lon=lon + i * 1e-6, lat=lat,
                                     description="during a bulk load"))
        done.append(i)


class _Hook:
    """A progress bar whose second update (after the first chunk is in) runs ``action``."""

    def __init__(self, action: Any) -> None:
        self.calls = 0
        self.action = action

    def update(self, n: int) -> None:
        self.calls += 1
        if self.calls == 2:
            self.action()


def _rebuilt_equal(engine: Engine, jid: int) -> None:
    """Every rollup row of the city equals its recomputation from the committed cases."""
    area_rows = ("SELECT {} FROM {} WHERE area_id IN (SELECT id FROM areas"
                 " WHERE jurisdiction_id = :j) ORDER BY 1, 2, 3")
    reads = [area_rows.format("day, area_id, category_id, department_id, n, n_due, n_closed,"
                              " n_on_time, n_rated, sat_sum, n_handled, (SELECT array_agg(t"
                              " ORDER BY t) FROM unnest(ttc_s) t)", "kpi_daily"),
             area_rows.format("*", "kpi_area"), area_rows.format("*", "kpi_area_quarter")]
    cells = ("SELECT cz, cx, cy, category_id, open, n FROM tile_case_cells WHERE n <> 0"
             " AND cx BETWEEN gridgov_tile_x(39.9, cz) AND gridgov_tile_x(40.1, cz)"
             " AND cy BETWEEN gridgov_tile_y(-29.9, cz) AND gridgov_tile_y(-30.1, cz)"
             " ORDER BY 1, 2, 3, 4, 5")
    with engine.connect() as conn:
        kept = [conn.execute(text(sql), {"j": jid}).all() for sql in reads]
        kept_cells = conn.execute(text(cells), {}).all()
        tiles = conn.execute(text("SELECT count(*) FROM case_tiles t JOIN cases c USING (id)"
                                  " WHERE c.jurisdiction_id = :j"), {"j": jid}).scalar()
        n = conn.execute(text("SELECT count(*) FROM cases WHERE jurisdiction_id = :j"),
                         {"j": jid}).scalar()
        conn.execute(text("SELECT gridgov_kpi_rebuild(), gridgov_kpi_area_rebuild(),"
                          " gridgov_kpi_quarter_rebuild(), gridgov_rebuild_case_cells()"))
        assert [conn.execute(text(sql), {"j": jid}).all() for sql in reads] == kept
        assert conn.execute(text(cells), {}).all() == kept_cells
        assert tiles == n
        conn.rollback()


@pytest.mark.parametrize("fast", [True, False])
def test_intake_during_a_bulk_load_is_neither_lost_nor_counted_twice(
        engine: Engine, committed_world: CaseWorld, fast: bool) -> None:
    world, jid = committed_world, committed_world.city.jurisdiction_id
    lon, lat = world.point(1, 1)
    today = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    body = "lon,lat,category,reported_at\n" + "".join(
        f"{lon + i * 1e-6},{lat},E010101,{today.isoformat()}\n" for i in range(300))
    during: list[int] = []
    after: list[int] = []
    threads: list[threading.Thread] = []

    def intake_while_loading() -> None:
        # Fast path: nothing of the rollups is locked yet, the intake commits at once.
        # Trigger path: chunk 1 holds the same rollup rows, the intake waits for the commit.
        threads.append(threading.Thread(target=_intake, args=(engine, world, 3, during)))
        threads[-1].start()
        threads[-1].join(60 if fast else 0.5)

    with engine.connect() as conn:
        tx = conn.begin()
        report = import_cases(conn, read_csv(io.StringIO(body)), principal=ADMIN,
                              jurisdiction_id=jid, chunk_size=100, fast=fast,
                              progress=_Hook(intake_while_loading))
        assert report["inserted"] == 300
        if fast:
            assert len(during) == 3
        threads.append(threading.Thread(target=_intake, args=(engine, world, 2, after)))
        threads[-1].start()
        threads[-1].join(0.5)
        assert after == [], "intake on the same rollup rows waits for the bulk load"
        tx.commit()
    for thread in threads:
        thread.join(20)
    assert len(during) == 3 and len(after) == 2
    _rebuilt_equal(engine, jid)


def test_fast_load_holds_the_referenced_rows_like_foreign_keys_do(
        engine: Engine, committed_world: CaseWorld) -> None:
    jid = committed_world.city.jurisdiction_id
    lon, lat = committed_world.point(2, 1)
    body = f"lon,lat,category,department\n{lon},{lat},E010101,PARKS\n"
    with engine.connect() as conn:
        tx = conn.begin()
        assert import_cases(conn, read_csv(io.StringIO(body)), principal=ADMIN,
                            jurisdiction_id=jid, fast=True)["inserted"] == 1
        area = conn.execute(text("SELECT area_id FROM cases WHERE jurisdiction_id = :j"),
                            {"j": jid}).scalar()
        with engine.connect() as other:
            for sql in ("SELECT 1 FROM departments WHERE code = 'PARKS' FOR UPDATE NOWAIT",
                        "SELECT 1 FROM categories WHERE code = 'E010101' FOR UPDATE NOWAIT",
                        f"SELECT 1 FROM areas WHERE id = {area} FOR UPDATE NOWAIT",
                        f"SELECT 1 FROM jurisdictions WHERE id = {jid} FOR UPDATE NOWAIT"):
                with pytest.raises(OperationalError, match="could not obtain lock"):
                    other.execute(text(sql))
                other.rollback()
            # A lock that does not touch the key (FOR NO KEY UPDATE) is not blocked, as with
            # foreign keys: the referenced rows stay editable.
            other.execute(text("SELECT 1 FROM departments WHERE code = 'PARKS'"
                               " FOR NO KEY UPDATE NOWAIT"))
            other.rollback()
        tx.rollback()


def test_fast_load_fails_when_a_referenced_row_is_gone(conn: Connection,
                                                        routed_world: CaseWorld) -> None:
    # The row-level RI check would fail the same way: simulated by a department deleted
    # after its rows were staged (the replica role lets the insert through).
    lon, lat = routed_world.point(2, 2)
    conn.execute(text("INSERT INTO departments (code, name) VALUES ('GONE', 'gone')"))
    rows = list(read_csv(io.StringIO(f"lon,lat,category,department\n{lon},{lat},E010101,GONE\n")))

    class Drop:
        def update(self, n: int) -> None:
            conn.execute(text("DELETE FROM departments WHERE code = 'GONE'"))

    with pytest.raises(Exception, match="departments referenced by the import were deleted"):
        run(conn, routed_world, rows, fast=True, progress=Drop())


def test_fast_load_live_note_counts_the_whole_import(conn: Connection,
                                                     routed_world: CaseWorld) -> None:
    lon, lat = routed_world.point(2, 2)
    rows = [(i, {"lon": lon, "lat": lat, "category": "E010101",
                 "reported_at": "2025-08-01T10:00:00Z"}) for i in range(1, 6_002)]
    assert run(conn, routed_world, rows, chunk_size=2000, fast=True)["inserted"] == 6_001
    notes = conn.execute(text(
        "SELECT payload FROM live_changes WHERE txid = CAST(CAST(pg_current_xact_id() AS text)"
        " AS bigint) ORDER BY seq")).scalars().all()
    assert [json.loads(n) for n in notes] == [{"type": "case", "op": "bulk", "count": 6_001}]

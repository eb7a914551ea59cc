"""``gis.tiles.read_only``: tiles and feature pages run without a transaction (no BEGIN, no
ROLLBACK round trip), their ``SET LOCAL`` still holds for their own statement only, and the
connection goes back to the pool as it came."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from gis import tiles


def _autocommit(conn: Connection) -> bool:
    return bool(conn.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


def test_a_fresh_connection_reads_in_autocommit(engine: Engine) -> None:
    with engine.connect() as conn, tiles.read_only(conn) as reading:
        assert reading is conn and _autocommit(conn)


def test_set_local_holds_for_its_own_statement_only(engine: Engine) -> None:
    with engine.connect() as conn, tiles.read_only(conn):
        inside = conn.execute(text(tiles.SERIAL + " SELECT current_setting("
                                   "'max_parallel_workers_per_gather'),"
                                   " current_setting('enable_indexscan')")).one()
        after = conn.execute(text("SELECT current_setting('enable_indexscan')")).scalar_one()
    assert tuple(inside) == ("0", "off") and after == "on"


def test_autocommit_ends_with_the_block(engine: Engine) -> None:
    with engine.connect() as conn:
        with tiles.read_only(conn):
            conn.execute(text("SELECT 1"))
        assert not _autocommit(conn)
        conn.execute(text("SELECT 1"))
        assert conn.in_transaction()


def test_an_open_transaction_is_left_alone(conn: Connection) -> None:
    with tiles.read_only(conn) as reading:
        assert reading is conn and conn.in_transaction() and not _autocommit(conn)

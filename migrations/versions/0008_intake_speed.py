"""intake speed (issue 3): no NOTIFY inside a writing transaction; the live feed as a change log

Revision ID: 0008_intake_speed
Revises: 0007_merge
Create Date: 2026-11-23 02:40:00

Every transaction that calls ``pg_notify`` takes one cluster-wide lock at commit and holds it
until its commit record is flushed, so such commits run one at a time and group commit stops
working (a microbenchmark of 8 threads: 1,721 commits/s plain, 377/s with ``pg_notify``). Every
case intake notified twice (the live feed and ``gridgov_tiles``), which capped intake at
~180 req/s whatever the CPU. Now:

- ``live_changes``: the live feed's payloads (the same JSON the triggers used to send with
  ``NOTIFY gridgov_live``, at most ~7,000 bytes each), appended by ``gridgov_live_emit()`` and
  read by ``gis.live.ChangeListener``, which polls it by transaction visibility (every row
  exactly once, in commit order between polls, rolled-back rows never). Insert-only: writers
  never wait for each other. Rows older than 15 minutes are pruned with ``SKIP LOCKED``.
- ``gridgov_live_send()``, ``gridgov_notify_cases()`` and ``gridgov_notify_responders()`` call
  ``gridgov_live_emit(payload)`` where they called ``pg_notify('gridgov_live', payload)``: the
  functions are rewritten from their installed definitions, nothing else in them changes.
- ``gridgov_tile_invalidate()`` no longer sends ``pg_notify('gridgov_tiles', table)``: nothing
  listens to it (the tile cache polls ``tile_invalidations``), and it serialized every commit
  that touched a map table.
- Tile cells at commit, for intake: the per-cell counters of ``tile_case_cells`` (0002_tiles)
  are shared by every case in a cell (category 0 at level 12 spans kilometres), and a counter
  row an INSERT updated stays locked until that transaction commits: concurrent intakes queued
  on them (sampling ``pg_stat_activity`` at 200 req/s: 3 of 4 intake backends in
  ``Lock: transactionid``). A statement that sets ``gridgov.cells_at_commit`` (the intake
  INSERT does, for itself) leaves its inserted rows to ``cases_cells_at_commit``, a deferred
  constraint trigger that adds them just before COMMIT, so the lock lives only as long as the
  commit itself. ``gridgov_case_cells()`` clears the flag when its statement ends: every other
  statement counts at once, as before. Counts are exact at every commit, as before; inside the
  intake's own transaction they are not updated until its commit (nothing reads them there).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_intake_speed'
down_revision: str | None = '0007_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_NOTIFY = "pg_notify('gridgov_live', "
LIVE_EMIT = "gridgov_live_emit("
LIVE_FUNCTIONS = ("gridgov_live_send", "gridgov_notify_cases", "gridgov_notify_responders")

TILES_NOTIFY = "PERFORM pg_notify('gridgov_tiles', TG_TABLE_NAME);"
TILES_NO_NOTIFY = "NULL;  -- 0008_intake_speed: no NOTIFY, its lock serializes commits"

EMIT_UP = """
CREATE FUNCTION gridgov_live_emit(payload text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO live_changes (payload) VALUES (payload);
    -- Prune now and then; SKIP LOCKED: a writer never waits for another one's pruning.
    IF random() < 0.002 THEN
        DELETE FROM live_changes WHERE seq IN (
            SELECT seq FROM live_changes
             WHERE at < clock_timestamp() - interval '15 minutes'
             ORDER BY seq LIMIT 10000 FOR UPDATE SKIP LOCKED);
    END IF;
END $$
"""


CELLS_ANCHOR = """    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM tile_case_cells;"""
CELLS_AT_COMMIT_CHECK = """    IF TG_OP = 'INSERT' AND current_setting('gridgov.cells_at_commit', true) = 'on' THEN
        -- 0008_intake_speed: this statement's rows are counted at commit
        -- (cases_cells_at_commit); later statements count at once again.
        PERFORM set_config('gridgov.cells_at_commit', '', true);
        RETURN NULL;
    END IF;
"""

CELLS_AT_COMMIT_UP = """
CREATE FUNCTION gridgov_case_cells_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One inserted case, the same rows as gridgov_case_cells() counts for it: level 16 from
    -- the projection, 14 and 12 by shifting, category 0 and its own, +1 each.
    INSERT INTO tile_case_cells AS c (cz, cx, cy, category_id, open, n)
    SELECT lv.z, f.cx >> (16 - lv.z), f.cy >> (16 - lv.z), cat.id, f.open, 1
      FROM (SELECT gridgov_tile_x(ST_X(a.p), 16) AS cx, gridgov_tile_y(ST_Y(a.p), 16) AS cy,
                   gridgov_case_open(NEW.status) AS open
              FROM (SELECT gridgov_case_anchor(NEW.geom) AS p) a
             WHERE a.p IS NOT NULL AND NOT ST_IsEmpty(a.p)) f
     CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)
     CROSS JOIN (VALUES (0), (NEW.category_id)) AS cat(id)
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (cz, cx, cy, category_id, open) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$
"""
CELLS_AT_COMMIT_TRIGGER = (
    "CREATE CONSTRAINT TRIGGER cases_cells_at_commit AFTER INSERT ON cases"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
    " WHEN (current_setting('gridgov.cells_at_commit', true) = 'on')"
    " EXECUTE FUNCTION gridgov_case_cells_at_commit()")


def _rewrite(name: str, old: str, new: str, *, required: bool = False) -> None:
    """Re-create function ``name`` from its installed definition with ``old`` replaced."""
    bind = op.get_bind()
    source = bind.execute(sa.text("SELECT pg_get_functiondef(CAST(:f AS regproc))"),
                          {"f": name}).scalar_one()
    if old in source:
        bind.exec_driver_sql(source.replace(old, new).replace("%", "%%"))
    elif required:
        raise RuntimeError(f"{name}() does not hold the text this migration rewrites: {old!r}")


def upgrade() -> None:
    op.create_table(
        "live_changes",
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("txid", sa.BigInteger(), nullable=False,
                  server_default=sa.text("(pg_current_xact_id())::text::bigint"),
                  comment="writing transaction (xid8 as bigint)"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("clock_timestamp()")),
        sa.Column("payload", sa.Text(), nullable=False,
                  comment="one live-feed note: {type, items} or {type, op: bulk, count}"),
        sa.PrimaryKeyConstraint("seq", name="pk_live_changes"),
    )
    op.create_index("ix_live_changes_txid", "live_changes", ["txid"])
    op.execute(EMIT_UP)
    for name in LIVE_FUNCTIONS:
        _rewrite(name, LIVE_NOTIFY, LIVE_EMIT)
    _rewrite("gridgov_tile_invalidate", TILES_NOTIFY, TILES_NO_NOTIFY)
    op.execute(CELLS_AT_COMMIT_UP)
    op.execute(CELLS_AT_COMMIT_TRIGGER)
    _rewrite("gridgov_case_cells", CELLS_ANCHOR, CELLS_AT_COMMIT_CHECK + CELLS_ANCHOR,
             required=True)


def downgrade() -> None:
    _rewrite("gridgov_case_cells", CELLS_AT_COMMIT_CHECK + CELLS_ANCHOR, CELLS_ANCHOR)
    op.execute("DROP TRIGGER IF EXISTS cases_cells_at_commit ON cases")
    op.execute("DROP FUNCTION IF EXISTS gridgov_case_cells_at_commit()")
    _rewrite("gridgov_tile_invalidate", TILES_NO_NOTIFY, TILES_NOTIFY)
    for name in LIVE_FUNCTIONS:
        _rewrite(name, LIVE_EMIT, LIVE_NOTIFY)
    op.execute("DROP FUNCTION IF EXISTS gridgov_live_emit(text)")
    op.drop_table("live_changes")

"""cases speed: bounded live-feed triggers, a cheaper tile-cell rollup, responder index

Revision ID: 0004_cases_speed
Revises: 0003_merge
Create Date: 2026-11-23 23:59:00

- ``gridgov_notify_cases()`` / ``gridgov_notify_responders()`` (live feed, 0002_dispatch) count
  the changed rows first and send the single ``bulk`` note without building anything when a
  statement changed more rows than the feed streams (5,000 cases, 50,000 responder rows).
  Before, they built one JSON item per row and an array of all of them before deciding: a
  10⁷-row COPY asked for more than 1 GB and failed after 40 minutes. Small statements are
  unchanged (items packed into payloads of at most ~7,000 bytes).
- ``gridgov_case_cells()`` (tile cells, 0002_tiles) groups the changed rows once at the finest
  cell level (16) and derives levels 14 and 12 and the all-categories rows from those groups by
  shifting the cell numbers (``floor(u·2¹⁶) >> 2 = floor(u·2¹⁴)``: multiplying by a power of two
  is exact in floating point, and the clamping to the tile range commutes with the shift), instead
  of computing the Web Mercator projection six times per row. Same rows, same counts.
  ``gridgov_rebuild_case_cells()`` (a full recount, e.g. after a load that bypassed triggers)
  does the same.
- ``ix_cases_responder``: KPIs by responder and the dispatch console filter cases by
  ``responder_id``.
- ``ix_cases_open_due`` (open cases by deadline) INCLUDEs ``reported_at``, ``jurisdiction_id``,
  ``area_id``, ``category_id`` and ``department_id``: the KPI query's correction for open
  cases whose deadline is still ahead (gis/kpis.py) reads them from the index alone instead of
  fetching ~6·10⁴ scattered heap rows of a 10⁷-case table.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004_cases_speed'
down_revision: str | None = '0003_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CASE_CHANGED = """
                 n.status IS DISTINCT FROM o.status
                OR n.responder_id IS DISTINCT FROM o.responder_id
                OR n.department_id IS DISTINCT FROM o.department_id
                OR n.area_id IS DISTINCT FROM o.area_id
                OR n.urgency IS DISTINCT FROM o.urgency
                OR n.due_at IS DISTINCT FROM o.due_at
                OR n.closed_at IS DISTINCT FROM o.closed_at
                OR n.escalation_level IS DISTINCT FROM o.escalation_level
                OR n.geom IS DISTINCT FROM o.geom"""

NOTIFY_CASES_UP = f"""
CREATE OR REPLACE FUNCTION gridgov_notify_cases() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
    bulk constant integer := 5000;
    changed bigint;
    items json[];
BEGIN
    -- Count first: a statement above the streaming limit gets one "bulk" note (browsers
    -- refetch) and no per-row work, whatever its size.
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO changed FROM old_rows;
    ELSE
        SELECT count(*) INTO changed FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE {_CASE_CHANGED};
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    ELSIF changed > bulk THEN
        PERFORM pg_notify('gridgov_live', json_build_object(
            'type', 'case', 'op', 'bulk', 'count', changed)::text);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(gridgov_case_item(n, 'insert')) INTO items FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(gridgov_case_item(o, 'delete')) INTO items FROM old_rows o;
    ELSE
        SELECT array_agg(gridgov_case_item(n, 'update')) INTO items
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE {_CASE_CHANGED};
    END IF;
    PERFORM gridgov_live_send('case', items, bulk);
    RETURN NULL;
END $$
"""

NOTIFY_CASES_DOWN = f"""
CREATE OR REPLACE FUNCTION gridgov_notify_cases() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
    items json[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(gridgov_case_item(n, 'insert')) INTO items FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(gridgov_case_item(o, 'delete')) INTO items FROM old_rows o;
    ELSE
        SELECT array_agg(gridgov_case_item(n, 'update')) INTO items
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE {_CASE_CHANGED};
    END IF;
    PERFORM gridgov_live_send('case', items, 5000);
    RETURN NULL;
END $$
"""

_RESPONDER_CHANGES = """
         CROSS JOIN LATERAL (SELECT array_remove(ARRAY[
                    CASE WHEN n.position_at IS DISTINCT FROM o.position_at
                              OR n.geom IS DISTINCT FROM o.geom THEN 'position' END,
                    CASE WHEN n.status IS DISTINCT FROM o.status THEN 'status' END,
                    CASE WHEN n.name IS DISTINCT FROM o.name
                              OR n.department_id IS DISTINCT FROM o.department_id
                              OR n.skills IS DISTINCT FROM o.skills
                              OR n.kind IS DISTINCT FROM o.kind THEN 'details' END
                ], NULL) AS changes) x
         WHERE cardinality(x.changes) > 0"""


def _notify_responders(bounded: bool) -> str:
    count = f"""
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO changed FROM old_rows;
    ELSE
        SELECT count(*) INTO changed FROM new_rows n JOIN old_rows o ON o.id = n.id
        {_RESPONDER_CHANGES};
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    ELSIF changed > bulk THEN
        PERFORM pg_notify('gridgov_live', json_build_object(
            'type', 'responder', 'op', 'bulk', 'count', changed)::text);
        RETURN NULL;
    END IF;
    """ if bounded else ""
    return f"""
CREATE OR REPLACE FUNCTION gridgov_notify_responders() RETURNS trigger LANGUAGE plpgsql
SET enable_nestloop = off AS $$
DECLARE
    -- above the largest position batch (20,000): a gateway's batch is always streamed
    bulk constant integer := 50000;
    changed bigint;
    items json[];
BEGIN
    {count}
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(gridgov_responder_item(n, 'insert', ARRAY['created']))
          INTO items FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(gridgov_responder_item(o, 'delete', ARRAY['deleted']))
          INTO items FROM old_rows o;
    ELSE
        SELECT array_agg(gridgov_responder_item(n, 'update', x.changes)) INTO items
          FROM new_rows n JOIN old_rows o ON o.id = n.id
        {_RESPONDER_CHANGES};
    END IF;
    PERFORM gridgov_live_send('responder', items, bulk);
    RETURN NULL;
END $$
"""


_CELL_ROWS = """
    rows_sql := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT geom, category_id, status, 1 AS d FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT geom, category_id, status, -1 AS d FROM old_rows'
        ELSE 'SELECT geom, category_id, status, -1 AS d FROM old_rows UNION ALL '
             'SELECT geom, category_id, status, 1 FROM new_rows'
    END;
"""

CELLS_UP = f"""
CREATE OR REPLACE FUNCTION gridgov_case_cells() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rows_sql text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM tile_case_cells;
        RETURN NULL;
    END IF;
    -- Old rows count -1, new rows +1; an update that keeps cell, category and open/closed
    -- nets to zero and writes nothing (no lock taken on hot cells).
    {_CELL_ROWS}
    -- Project once, at level 16; coarser cells are the level-16 numbers shifted right.
    EXECUTE format($q$
        WITH fine AS (
            SELECT gridgov_tile_x(ST_X(r.p), 16) AS cx, gridgov_tile_y(ST_Y(r.p), 16) AS cy,
                   r.category_id, r.open, sum(r.d) AS n
              FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,
                           gridgov_case_open(status) AS open, d FROM (%s) s) r
             WHERE r.p IS NOT NULL AND NOT ST_IsEmpty(r.p)
             GROUP BY 1, 2, 3, 4
        )
        INSERT INTO tile_case_cells AS c (cz, cx, cy, category_id, open, n)
        SELECT lv.z, f.cx >> (16 - lv.z), f.cy >> (16 - lv.z), cat.id, f.open, sum(f.n)
          FROM fine f
         CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)
         CROSS JOIN LATERAL (VALUES (0), (f.category_id)) AS cat(id)
         GROUP BY 1, 2, 3, 4, 5
        HAVING sum(f.n) <> 0
         ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (cz, cx, cy, category_id, open) DO UPDATE SET n = c.n + EXCLUDED.n
    $q$, rows_sql);
    RETURN NULL;
END $$
"""

CELLS_DOWN = f"""
CREATE OR REPLACE FUNCTION gridgov_case_cells() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rows_sql text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM tile_case_cells;
        RETURN NULL;
    END IF;
    {_CELL_ROWS}
    EXECUTE format($q$
        INSERT INTO tile_case_cells AS c (cz, cx, cy, category_id, open, n)
        SELECT lv.z, gridgov_tile_x(ST_X(r.p), lv.z), gridgov_tile_y(ST_Y(r.p), lv.z),
               cat.id, r.open, sum(r.d)
          FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,
                       gridgov_case_open(status) AS open, d FROM (%s) s) r
         CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)
         CROSS JOIN LATERAL (VALUES (0), (r.category_id)) AS cat(id)
         WHERE r.p IS NOT NULL AND NOT ST_IsEmpty(r.p)
         GROUP BY 1, 2, 3, 4, 5
        HAVING sum(r.d) <> 0
         ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (cz, cx, cy, category_id, open) DO UPDATE SET n = c.n + EXCLUDED.n
    $q$, rows_sql);
    RETURN NULL;
END $$
"""


_OPEN = sa.text("status NOT IN ('closed', 'rejected')")
_OPEN_DUE_INCLUDE = ("reported_at", "jurisdiction_id", "area_id", "category_id",
                     "department_id")


REBUILD_UP = """
CREATE OR REPLACE FUNCTION gridgov_rebuild_case_cells() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
BEGIN
    DELETE FROM tile_case_cells;
    -- Project once per case at level 16; levels 14 and 12 are those cells shifted right.
    INSERT INTO tile_case_cells (cz, cx, cy, category_id, open, n)
    WITH fine AS (
        SELECT gridgov_tile_x(ST_X(p), 16) AS cx, gridgov_tile_y(ST_Y(p), 16) AS cy,
               category_id, open, count(*) AS n
          FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,
                       gridgov_case_open(status) AS open FROM cases) r
         WHERE p IS NOT NULL AND NOT ST_IsEmpty(p)
         GROUP BY 1, 2, 3, 4
    )
    SELECT lv.z, f.cx >> (16 - lv.z), f.cy >> (16 - lv.z), cat.id, f.open, sum(f.n)
      FROM fine f
     CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)
     CROSS JOIN LATERAL (VALUES (0), (f.category_id)) AS cat(id)
     GROUP BY 1, 2, 3, 4, 5;
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO tile_invalidations (table_name) VALUES ('cases');
    RETURN written;
END $$
"""

REBUILD_DOWN = """
CREATE OR REPLACE FUNCTION gridgov_rebuild_case_cells() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
BEGIN
    DELETE FROM tile_case_cells;
    INSERT INTO tile_case_cells (cz, cx, cy, category_id, open, n)
    SELECT lv.z, gridgov_tile_x(ST_X(p), lv.z), gridgov_tile_y(ST_Y(p), lv.z), cat.id,
           open, count(*)
      FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,
                   gridgov_case_open(status) AS open FROM cases) r
      CROSS JOIN (VALUES (12), (14), (16)) AS lv(z)
      CROSS JOIN LATERAL (VALUES (0), (r.category_id)) AS cat(id)
     WHERE p IS NOT NULL AND NOT ST_IsEmpty(p)
     GROUP BY 1, 2, 3, 4, 5;
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO tile_invalidations (table_name) VALUES ('cases');
    RETURN written;
END $$
"""


def upgrade() -> None:
    op.execute(NOTIFY_CASES_UP)
    op.execute(_notify_responders(bounded=True))
    op.execute(CELLS_UP)
    op.execute(REBUILD_UP)
    op.create_index('ix_cases_responder', 'cases', ['responder_id'], unique=False)
    op.drop_index('ix_cases_open_due', table_name='cases', postgresql_where=_OPEN)
    op.create_index('ix_cases_open_due', 'cases', ['due_at'], unique=False,
                    postgresql_include=list(_OPEN_DUE_INCLUDE), postgresql_where=_OPEN)


def downgrade() -> None:
    op.drop_index('ix_cases_open_due', table_name='cases', postgresql_where=_OPEN)
    op.create_index('ix_cases_open_due', 'cases', ['due_at'], unique=False,
                    postgresql_where=_OPEN)
    op.drop_index('ix_cases_responder', table_name='cases')
    op.execute(REBUILD_DOWN)
    op.execute(CELLS_DOWN)
    op.execute(_notify_responders(bounded=False))
    op.execute(NOTIFY_CASES_DOWN)

"""tiles: precise tile-cache invalidation and the case-count rollup for low-zoom tiles

Revision ID: 0002_tiles
Revises: 0001
Create Date: 2026-11-22 21:00:00

- ``tile_invalidations``: what changed where. Statement-level triggers (with transition tables)
  on every table a map layer reads record the bounding boxes of the changed rows' old and new
  geometry, one row per distinct box for small statements and one extent per 0.1° cell for
  bulk statements; a transaction that keeps writing (a loader issuing one INSERT per row) folds
  everything past 256 rows per table into a single growing extent row. Each row carries the
  writing transaction's id, so a reader can tell which rows may still appear later (see
  ``gis/tilecache.py``). A NULL box means "everything" (TRUNCATE, category edits). Rows older
  than 15 minutes are pruned by the writers themselves. ``pg_notify('gridgov_tiles', table)``
  is sent per statement for anyone who prefers LISTEN.
- ``tile_case_cells``: case counts per Web Mercator cell (tile-pyramid aligned, levels 12, 14
  and 16), per category (0 = all categories) and open/closed, kept exact by statement triggers
  on ``cases``. Aggregated case tiles (z <= 12) read this instead of scanning a million points.
  ``gridgov_rebuild_case_cells()`` recomputes it (after a load that bypassed triggers).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_tiles'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables read by map layers, with their geometry column ('' = no geometry: any change
# invalidates every tile of the layers that depend on the table).
WATCHED = {
    'areas': 'geom',
    'cases': 'geom',
    'facilities': 'geom',
    'components': 'geom',
    'responders': 'geom',
    'responsibility_zones': 'geom',
    'road_edges': 'geom',
    'categories': '',
}

CELL_LEVELS = (12, 14, 16)

FUNCTIONS_UP = [
    # Tile-pyramid column/row of a lon/lat at zoom z (the same arithmetic as mercantile).
    """
    CREATE FUNCTION gridgov_tile_x(lon double precision, z integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT least(greatest(floor((lon + 180.0) / 360.0 * (1::bigint << z))::bigint, 0),
                     (1::bigint << z) - 1)::integer
    $$
    """,
    """
    CREATE FUNCTION gridgov_tile_y(lat double precision, z integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT least(greatest(floor(
                   (1.0 - ln(tan(radians(least(greatest(lat, -85.0511287798), 85.0511287798)))
                             + 1.0 / cos(radians(least(greatest(lat, -85.0511287798),
                                                       85.0511287798)))) / pi())
                   / 2.0 * (1::bigint << z))::bigint, 0),
                     (1::bigint << z) - 1)::integer
    $$
    """,
    # The point a case is counted at: itself, or a point on its line/polygon.
    """
    CREATE FUNCTION gridgov_case_anchor(g geometry) RETURNS geometry
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT CASE WHEN GeometryType(g) = 'POINT' THEN g ELSE ST_PointOnSurface(g) END
    $$
    """,
    # Open = not in a terminal state (layers/registry.py CLOSED_STATUSES says the same).
    """
    CREATE FUNCTION gridgov_case_open(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT status NOT IN ('closed', 'rejected', 'redirected')
    $$
    """,
    """
    CREATE FUNCTION gridgov_tile_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        geom_col text := coalesce(TG_ARGV[0], '');
        rows_sql text;
        written bigint := 0;
        counter_key text := 'gridgov.tile_inv_' || TG_TABLE_NAME;
        so_far bigint := coalesce(nullif(current_setting(counter_key, true), ''), '0')::bigint;
        overflow_key text := 'gridgov.tile_inv_overflow_' || TG_TABLE_NAME;
        overflow bigint := nullif(current_setting(overflow_key, true), '')::bigint;
        box box2d;
    BEGIN
        IF TG_OP = 'TRUNCATE' OR geom_col = '' THEN
            INSERT INTO tile_invalidations (table_name) VALUES (TG_TABLE_NAME);
            PERFORM pg_notify('gridgov_tiles', TG_TABLE_NAME);
            RETURN NULL;
        END IF;
        rows_sql := CASE TG_OP
            WHEN 'INSERT' THEN format('SELECT %I AS g FROM new_rows', geom_col)
            WHEN 'DELETE' THEN format('SELECT %I AS g FROM old_rows', geom_col)
            ELSE format('SELECT %1$I AS g FROM old_rows UNION ALL SELECT %1$I FROM new_rows',
                        geom_col)
        END;
        IF so_far >= 256 THEN
            -- A long-running writer: grow one extent row instead of adding rows.
            EXECUTE format('SELECT ST_Extent(g) FROM (%s) s WHERE g IS NOT NULL', rows_sql)
               INTO box;
            IF box IS NULL THEN
                RETURN NULL;
            END IF;
            IF overflow IS NULL THEN
                INSERT INTO tile_invalidations (table_name, lon_min, lat_min, lon_max, lat_max, n_rows)
                VALUES (TG_TABLE_NAME, ST_XMin(box), ST_YMin(box), ST_XMax(box), ST_YMax(box), 1)
                RETURNING seq INTO overflow;
                PERFORM set_config(overflow_key, overflow::text, true);
            ELSE
                UPDATE tile_invalidations
                   SET lon_min = least(lon_min, ST_XMin(box)), lat_min = least(lat_min, ST_YMin(box)),
                       lon_max = greatest(lon_max, ST_XMax(box)),
                       lat_max = greatest(lat_max, ST_YMax(box)),
                       n_rows = n_rows + 1, at = clock_timestamp()
                 WHERE seq = overflow;
            END IF;
            PERFORM pg_notify('gridgov_tiles', TG_TABLE_NAME);
            RETURN NULL;
        END IF;
        EXECUTE format($q$
            INSERT INTO tile_invalidations (table_name, lon_min, lat_min, lon_max, lat_max, n_rows)
            WITH changed AS (
                SELECT Box2D(g) AS b FROM (%s) s WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
            ), total AS (
                SELECT count(*) AS n FROM changed
            ), keyed AS (
                SELECT CASE WHEN total.n <= 64 THEN b::text
                            ELSE floor((ST_XMin(b) + ST_XMax(b)) * 5)::text || ':'
                                 || floor((ST_YMin(b) + ST_YMax(b)) * 5)::text END AS k, b
                  FROM changed, total
            )
            SELECT $1, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
              FROM (SELECT ST_Extent(b) AS e, count(*) AS n FROM keyed GROUP BY k) x
        $q$, rows_sql) USING TG_TABLE_NAME;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written > 0 THEN
            PERFORM set_config(counter_key, (so_far + written)::text, true);
            PERFORM pg_notify('gridgov_tiles', TG_TABLE_NAME);
            IF random() < 0.01 THEN
                DELETE FROM tile_invalidations
                 WHERE at < clock_timestamp() - interval '15 minutes'
                   AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
            END IF;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION gridgov_case_cells() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        rows_sql text;
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM tile_case_cells;
            RETURN NULL;
        END IF;
        -- Old rows count -1, new rows +1; an update that keeps cell, category and
        -- open/closed nets to zero and writes nothing (no lock taken on hot cells).
        rows_sql := CASE TG_OP
            WHEN 'INSERT' THEN 'SELECT geom, category_id, status, 1 AS d FROM new_rows'
            WHEN 'DELETE' THEN 'SELECT geom, category_id, status, -1 AS d FROM old_rows'
            ELSE 'SELECT geom, category_id, status, -1 AS d FROM old_rows UNION ALL '
                 'SELECT geom, category_id, status, 1 FROM new_rows'
        END;
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
    """,
    """
    CREATE FUNCTION gridgov_rebuild_case_cells() RETURNS bigint LANGUAGE plpgsql AS $$
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
    """,
]


def _triggers_up() -> list[str]:
    sql = []
    for table, geom in WATCHED.items():
        arg = f"'{geom}'"
        if geom:
            for event, refs in (("INSERT", "NEW TABLE AS new_rows"),
                                ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                                ("DELETE", "OLD TABLE AS old_rows")):
                sql.append(
                    f"CREATE TRIGGER {table}_tiles_{event.lower()} AFTER {event} ON {table}"
                    f" REFERENCING {refs} FOR EACH STATEMENT"
                    f" EXECUTE FUNCTION gridgov_tile_invalidate({arg})")
        else:
            sql.append(f"CREATE TRIGGER {table}_tiles_change AFTER INSERT OR UPDATE OR DELETE"
                       f" ON {table} FOR EACH STATEMENT"
                       f" EXECUTE FUNCTION gridgov_tile_invalidate({arg})")
        sql.append(f"CREATE TRIGGER {table}_tiles_truncate AFTER TRUNCATE ON {table}"
                   f" FOR EACH STATEMENT EXECUTE FUNCTION gridgov_tile_invalidate('')")
    for event, refs in (("INSERT", "NEW TABLE AS new_rows"),
                        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                        ("DELETE", "OLD TABLE AS old_rows")):
        sql.append(f"CREATE TRIGGER cases_cells_{event.lower()} AFTER {event} ON cases"
                   f" REFERENCING {refs} FOR EACH STATEMENT"
                   " EXECUTE FUNCTION gridgov_case_cells()")
    sql.append("CREATE TRIGGER cases_cells_truncate AFTER TRUNCATE ON cases"
               " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_case_cells()")
    return sql


def _triggers_down() -> list[str]:
    sql = []
    for table, geom in WATCHED.items():
        events = ("insert", "update", "delete") if geom else ("change",)
        for event in (*events, "truncate"):
            sql.append(f"DROP TRIGGER IF EXISTS {table}_tiles_{event} ON {table}")
    for event in ("insert", "update", "delete", "truncate"):
        sql.append(f"DROP TRIGGER IF EXISTS cases_cells_{event} ON cases")
    return sql


FUNCTIONS_DOWN = [
    "DROP FUNCTION IF EXISTS gridgov_rebuild_case_cells()",
    "DROP FUNCTION IF EXISTS gridgov_case_cells()",
    "DROP FUNCTION IF EXISTS gridgov_tile_invalidate()",
    "DROP FUNCTION IF EXISTS gridgov_case_open(text)",
    "DROP FUNCTION IF EXISTS gridgov_case_anchor(geometry)",
    "DROP FUNCTION IF EXISTS gridgov_tile_y(double precision, integer)",
    "DROP FUNCTION IF EXISTS gridgov_tile_x(double precision, integer)",
]


def upgrade() -> None:
    op.create_table('tile_invalidations',
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('txid', sa.BigInteger(), server_default=sa.text('(pg_current_xact_id())::text::bigint'), nullable=False, comment='writing transaction (xid8 as bigint)'),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('clock_timestamp()'), nullable=False, comment='time of the (last) write'),
    sa.Column('table_name', sa.Text(), nullable=False),
    sa.Column('lon_min', sa.Float(), nullable=True, comment='lon/lat box; NULL = everything'),
    sa.Column('lat_min', sa.Float(), nullable=True),
    sa.Column('lon_max', sa.Float(), nullable=True),
    sa.Column('lat_max', sa.Float(), nullable=True),
    sa.Column('n_rows', sa.Integer(), nullable=True, comment='changed boxes folded into this row'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_tile_invalidations'))
    )
    op.create_index('ix_tile_invalidations_txid', 'tile_invalidations', ['txid'], unique=False)
    op.create_index('ix_tile_invalidations_at', 'tile_invalidations', ['at'], unique=False)
    op.create_table('tile_case_cells',
    sa.Column('cz', sa.SmallInteger(), nullable=False, comment='cell level (tile zoom)'),
    sa.Column('cx', sa.Integer(), nullable=False),
    sa.Column('cy', sa.Integer(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False, comment='0 = all categories'),
    sa.Column('open', sa.Boolean(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('cz', 'cx', 'cy', 'category_id', 'open', name=op.f('pk_tile_case_cells'))
    )
    for statement in FUNCTIONS_UP + _triggers_up():
        op.execute(statement)
    op.execute("SELECT gridgov_rebuild_case_cells()")


def downgrade() -> None:
    for statement in _triggers_down() + FUNCTIONS_DOWN:
        op.execute(statement)
    op.drop_table('tile_case_cells')
    op.drop_index('ix_tile_invalidations_at', table_name='tile_invalidations')
    op.drop_index('ix_tile_invalidations_txid', table_name='tile_invalidations')
    op.drop_table('tile_invalidations')

"""intake delta (issue 3): new cases add to the KPI rollups in one statement; static tile
invalidation for small inserts; the live feed's item inlined

Revision ID: 0011_intake_delta
Revises: 0010_kpi_speed
Create Date: 2026-11-23 05:45:00

Per case intake (one INSERT of one case), PostgreSQL spent ≈ 0.6 ms in the KPI rollup
triggers, ≈ 0.3 ms in tile invalidation and 0.16–0.3 ms in the live feed (``EXPLAIN
ANALYZE``, warm session); after: 0.23, 0.08 and 0.08 ms.

- **KPI delta for new cases.** ``gridgov_kpi_cases()`` (0002_analysis) upserts the new cases
  into ``kpi_daily``; that upsert fired the ``kpi_daily`` triggers of ``kpi_area``
  (0006_kpi_fast) and ``kpi_area_quarter`` (0010_kpi_speed) twice each (INSERT and UPDATE
  statement triggers of ``ON CONFLICT DO UPDATE``), and each ran its general signed-delta
  statements (old row −1, new row +1, times to close unnested, 40 histogram bins, sorted
  arrays merged) for what is, for a new case that is not closed, ``n + 1`` and maybe
  ``n_due + 1``. Now, when no inserted row is closed (no time to close: every intake, any
  open-case import), the INSERT branch adds the grouped counts to ``kpi_daily``,
  ``kpi_area`` (day and month rows) and ``kpi_area_quarter`` itself, in one statement, and
  the ``kpi_daily`` triggers of the two rollups stand aside for that statement (``WHEN``
  ``gridgov.kpi_delta`` is not ``on``; the flag is set only around that statement, local
  to the transaction). Inserted closed cases, updates, events and deletes take the general
  path as before. Exact either way: the same counts (the new rows have no times to close, no
  verify events, so ``n_closed``, ``n_on_time``, ``ttc_sum``, the bins, ``ttc_s``,
  ``n_verify`` and ``n_verify_pass`` add zero), added in place under row locks.
- **Static tile invalidation for small inserts.** ``gridgov_tile_invalidate()`` (0002_tiles)
  built its statement as text and ran it with ``EXECUTE``, parsed and planned on every call.
  For an INSERT of at most 64 rows on a table whose geometry column is ``geom`` (every
  watched table) it now runs that statement's at-most-64 form (one row per distinct box) as
  static SQL, whose plan PL/pgSQL keeps per session; the rows written are the same. Larger
  inserts keep ``EXECUTE``: a static plan kept from a one-row insert rescanned the transition
  table per row (8,000 rows: 4.8 s instead of 0.01 s).
- **The live feed's item inline.** ``gridgov_case_item()`` (0002_dispatch) computed the
  anchor point in a ``FROM`` subquery, so the planner could not inline it and ran it through
  the SQL-function executor for every changed case; it is the same expression without the
  subquery now (same JSON).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_intake_delta'
down_revision: str | None = '0010_kpi_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The per-case facts of 0002_analysis (kpi_daily) that a new case without a time to close can
# have non-zero; n_closed, n_on_time, ttc_s, n_verify and n_verify_pass are zero for it.
_CLOSED = "(c.status = 'closed' AND c.due_at IS NOT NULL AND c.closed_at IS NOT NULL)"
DELTA_COUNTS = {
    "n": "1",
    "n_due": "CAST(c.status <> 'rejected' AND c.due_at IS NOT NULL AS integer)",
    "n_rated": "CAST(c.satisfaction IS NOT NULL AS integer)",
    "sat_sum": "COALESCE(c.satisfaction, 0)",
    "n_handled": "CAST(c.status IN ('handled', 'verified', 'closed', 'reopened') AS integer)",
    "n_reopened": "CAST(c.status = 'reopened' AS integer)",
}
_NAMES = ", ".join(DELTA_COUNTS)
_SUMS = ", ".join(f"sum(d.{c})" for c in DELTA_COUNTS)
_ADD = ", ".join(f"{c} = k.{c} + EXCLUDED.{c}" for c in DELTA_COUNTS)
FLAG = "gridgov.kpi_delta"

KPI_ANCHOR = """        ELSIF TG_OP = 'INSERT' THEN
"""
KPI_NEXT = """            -- New cases only add: one grouped upsert per statement (COPY included).
"""
KPI_DELTA = f"""            IF NOT EXISTS (SELECT 1 FROM new_rows c
                            WHERE c.area_id IS NOT NULL AND {_CLOSED}) THEN
            -- 0011_intake_delta: no inserted case has a time to close (every intake): add
            -- the counts to kpi_daily and both rollups here, in one statement; the kpi_daily
            -- triggers of the rollups stand aside while {FLAG} is on.
            PERFORM set_config('{FLAG}', 'on', true);
            WITH d AS MATERIALIZED (
                SELECT CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day, c.area_id,
                       c.category_id, COALESCE(c.department_id, 0) AS department_id,
                       {", ".join(f"sum({e}) AS {c}" for c, e in DELTA_COUNTS.items())}
                  FROM new_rows c JOIN jurisdictions j ON j.id = c.jurisdiction_id
                 WHERE c.area_id IS NOT NULL
                 GROUP BY 1, 2, 3, 4
            ), daily AS (
                INSERT INTO kpi_daily AS k (day, area_id, category_id, department_id, {_NAMES})
                SELECT * FROM d ORDER BY 1, 2, 3, 4
                ON CONFLICT (day, area_id, category_id, department_id) DO UPDATE SET {_ADD}
            ), area AS (
                INSERT INTO kpi_area AS k (monthly, period, area_id, {_NAMES})
                SELECT m.monthly, CASE WHEN m.monthly THEN CAST(date_trunc('month', d.day) AS date)
                       ELSE d.day END, d.area_id, {_SUMS}
                  FROM d CROSS JOIN (VALUES (false), (true)) AS m(monthly)
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                ON CONFLICT (monthly, period, area_id) DO UPDATE SET {_ADD}
            )
            INSERT INTO kpi_area_quarter AS k (period, area_id, {_NAMES})
            SELECT CAST(date_trunc('quarter', d.day) AS date), d.area_id, {_SUMS}
              FROM d GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (period, area_id) DO UPDATE SET {_ADD};
            PERFORM set_config('{FLAG}', '', true);
            RETURN NULL;
            END IF;
"""

# (trigger, event, transition tables, function): the kpi_daily triggers of 0006 and 0010.
ROLLUP_TRIGGERS = [
    (f"kpi_daily_{rollup}_{event.lower()}", event, refs, function)
    for rollup, function in (("area", "gridgov_kpi_area_daily"),
                             ("quarter", "gridgov_kpi_quarter_daily"))
    for event, refs in (("INSERT", "NEW TABLE AS new_rows"),
                        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                        ("DELETE", "OLD TABLE AS old_rows"))
]
STAND_ASIDE = f"WHEN (current_setting('{FLAG}', true) IS DISTINCT FROM 'on') "

TILES_ANCHOR = """        EXECUTE format($q$
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
"""
TILES_STATIC = """        IF TG_OP = 'INSERT' AND geom_col = 'geom' THEN
            SELECT count(*) INTO written FROM new_rows;
        END IF;
        IF TG_OP = 'INSERT' AND geom_col = 'geom' AND written <= 64 THEN
            -- 0011_intake_delta: the statement below for an insert of at most 64 rows (one
            -- row per box), as static SQL: its plan is kept. Larger ones stay with EXECUTE,
            -- planned for their size (a plan kept from a one-row insert rescans new_rows).
            INSERT INTO tile_invalidations (table_name, lon_min, lat_min, lon_max, lat_max, n_rows)
            SELECT TG_TABLE_NAME, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
              FROM (SELECT ST_Extent(b) AS e, count(*) AS n
                      FROM (SELECT Box2D(s.geom) AS b FROM new_rows s
                             WHERE s.geom IS NOT NULL AND NOT ST_IsEmpty(s.geom)) c
                     GROUP BY b::text) x;
        ELSE
"""
TILES_STATIC_END = "        END IF;\n"

# gridgov_case_item() (0002_dispatch), the live feed's item of a case: the anchor point in a
# FROM subquery made it a function the planner cannot inline, run by the SQL-function
# executor (set up and planned) once per changed row. The same expression inline.
ITEM_FROM = """            'lon', ST_X(p.pt), 'lat', ST_Y(p.pt))
          FROM (SELECT CASE WHEN GeometryType(c.geom) = 'POINT' THEN c.geom
                            ELSE ST_PointOnSurface(c.geom) END AS pt) p
"""
ITEM_INLINE = """            'lon', ST_X(CASE WHEN GeometryType(c.geom) = 'POINT' THEN c.geom
                             ELSE ST_PointOnSurface(c.geom) END),
            'lat', ST_Y(CASE WHEN GeometryType(c.geom) = 'POINT' THEN c.geom
                             ELSE ST_PointOnSurface(c.geom) END))
"""


def _rewrite(name: str, old: str, new: str) -> None:
    """Re-create function ``name`` from its installed definition with ``old`` replaced."""
    bind = op.get_bind()
    source = bind.execute(sa.text("SELECT pg_get_functiondef(CAST(:f AS regproc))"),
                          {"f": name}).scalar_one()
    if source.count(old) != 1:
        raise RuntimeError(f"{name}() does not hold the text this migration rewrites once:"
                           f" {old[:80]!r}")
    bind.exec_driver_sql(source.replace(old, new).replace("%", "%%"))


def _rollup_triggers(when: str) -> None:
    for name, event, refs, function in ROLLUP_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON kpi_daily")
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON kpi_daily REFERENCING {refs}"
                   f" FOR EACH STATEMENT {when}EXECUTE FUNCTION {function}()")


def upgrade() -> None:
    _rollup_triggers(STAND_ASIDE)
    _rewrite("gridgov_kpi_cases", KPI_ANCHOR + KPI_NEXT, KPI_ANCHOR + KPI_DELTA + KPI_NEXT)
    _rewrite("gridgov_tile_invalidate", TILES_ANCHOR,
             TILES_STATIC + TILES_ANCHOR + TILES_STATIC_END)
    _rewrite("gridgov_case_item", ITEM_FROM, ITEM_INLINE)


def downgrade() -> None:
    _rewrite("gridgov_case_item", ITEM_INLINE, ITEM_FROM)
    _rewrite("gridgov_tile_invalidate", TILES_STATIC + TILES_ANCHOR + TILES_STATIC_END,
             TILES_ANCHOR)
    _rewrite("gridgov_kpi_cases", KPI_ANCHOR + KPI_DELTA + KPI_NEXT, KPI_ANCHOR + KPI_NEXT)
    _rollup_triggers("")

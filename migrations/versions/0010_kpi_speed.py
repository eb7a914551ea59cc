"""KPI speed (issue 6): quarter rows of the per-area rollup

Revision ID: 0010_kpi_speed
Revises: 0009_tile_speed
Create Date: 2026-11-23 02:40:00

- ``kpi_area_quarter``: the rows of ``kpi_area`` (migration 0006_kpi_fast) for calendar
  quarters (``period`` = the quarter's first day): counts, ``ttc_sum``, histogram ``h00``…
  ``h39`` and the sorted times to close. A level × period query reads quarter rows for the
  whole quarters, month rows for the other whole months and day rows for the ragged ends: a
  365-day period at grid level reads ≈ 5 instead of 11 month-or-longer rows per grid
  (≈ 1.9·10⁵ instead of 3.6·10⁵ rows for 20,000 grids), in both passes of the exact p90.
- Kept exact from ``kpi_daily`` like ``kpi_area``: statement triggers
  ``kpi_daily_quarter_{insert,update,delete,truncate}`` apply the signed changed rows as
  deltas in place (values that left taken out of the sorted array, new ones merged in);
  statements of more than 50,000 rows recompute the table (``gridgov_kpi_quarter_rebuild()``).
  Static statements per operation, so PL/pgSQL keeps their plans.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0010_kpi_speed'
down_revision: str | None = '0009_tile_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
          "n_reopened", "n_verify", "n_verify_pass")
BINS = [f"h{i:02d}" for i in range(40)]  # edges: gridgov_kpi_ttc_edges() (0006_kpi_fast)
BULK = 50_000
QUARTER = "CAST(date_trunc('quarter', {}) AS date)"

_COLUMNS = ", ".join(["period", "area_id", *COUNTS, "ttc_sum", *BINS, "ttc_s"])
_BIN_COUNTS = ", ".join(f"count(*) FILTER (WHERE u.b = {i}) AS {b}" for i, b in enumerate(BINS))
_ZEROS = ", ".join(f"COALESCE(t.{b}, 0)" for b in BINS)

_REBUILD = f"""
CREATE FUNCTION gridgov_kpi_quarter_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    written bigint;
BEGIN
    DELETE FROM kpi_area_quarter;
    INSERT INTO kpi_area_quarter ({_COLUMNS})
    WITH s AS MATERIALIZED (
        SELECT {QUARTER.format('d.day')} AS period, d.area_id,
               {", ".join(f"d.{c}" for c in COUNTS)}, d.ttc_s
          FROM kpi_daily d
    ), c AS (
        SELECT s.period, s.area_id, {", ".join(f"sum(s.{c})" for c in COUNTS)}
          FROM s GROUP BY 1, 2
    ), t AS (
        SELECT u.period, u.area_id, sum(u.t) AS ttc_sum, {_BIN_COUNTS},
               array_agg(u.t ORDER BY u.t) AS ttc_s
          FROM (SELECT s.period, s.area_id, v.t,
                       width_bucket(v.t, gridgov_kpi_ttc_edges()) AS b
                  FROM s CROSS JOIN LATERAL unnest(s.ttc_s) AS v(t)
                 WHERE cardinality(s.ttc_s) > 0) u
         GROUP BY 1, 2
    )
    SELECT c.*, COALESCE(t.ttc_sum, 0), {_ZEROS}, COALESCE(t.ttc_s, '{{}}')
      FROM c LEFT JOIN t USING (period, area_id);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$
"""

_SIGNED = f"d.day, d.area_id, {', '.join(f'd.{c}' for c in COUNTS)}, d.ttc_s"
_NET = f"""
    SELECT {QUARTER.format('r.day')} AS period, r.area_id, x.t, sum(r.sg) AS d
      FROM (%1$s) r CROSS JOIN LATERAL unnest(r.ttc_s) AS x(t)
     GROUP BY 1, 2, 3 HAVING sum(r.sg) <> 0"""
_DELTA_BINS = ", ".join(
    f"COALESCE(sum(v.d) FILTER (WHERE width_bucket(v.t, gridgov_kpi_ttc_edges()) = {i}),"
    f" 0) AS {b}" for i, b in enumerate(BINS))
_ADD = ", ".join([f"{c} = k.{c} + EXCLUDED.{c}" for c in (*COUNTS, "ttc_sum", *BINS)]
                 + ["ttc_s = CASE WHEN cardinality(EXCLUDED.ttc_s) = 0 THEN k.ttc_s ELSE ARRAY("
                    "SELECT x.t FROM unnest(k.ttc_s || EXCLUDED.ttc_s) AS x(t) ORDER BY 1) END"])


def _apply(rows: str, *, removals: bool) -> str:
    """Statements applying the signed kpi_daily ``rows`` (sg = ±1) to kpi_area_quarter (the
    same steps as 0006_kpi_fast's for kpi_area, keyed by quarter)."""
    net = _NET.replace("%1$s", rows)
    minus = f"""
            -- values that left, taken out first (a row is written once per statement)
            UPDATE kpi_area_quarter k SET ttc_s = gridgov_kpi_ttc_minus(k.ttc_s, r.gone)
              FROM (SELECT v.period, v.area_id, array_agg(v.t) AS gone
                      FROM ({net}) v
                     CROSS JOIN LATERAL generate_series(1, CAST(-v.d AS integer)) g
                     WHERE v.d < 0 GROUP BY 1, 2) r
             WHERE k.period = r.period AND k.area_id = r.area_id;
    """ if removals else ""
    sums = ", ".join(f"sum(s.sg * s.{c})" for c in COUNTS)
    return minus + f"""
            WITH s AS MATERIALIZED (
                SELECT {QUARTER.format('r.day')} AS period, r.* FROM ({rows}) r
            ), v AS MATERIALIZED ({net}
            ), c AS (
                SELECT s.period, s.area_id, {sums} FROM s GROUP BY 1, 2
            ), t AS (
                SELECT v.period, v.area_id, sum(v.t * v.d) AS ttc_sum, {_DELTA_BINS}
                  FROM v GROUP BY 1, 2
            ), a AS (
                SELECT v.period, v.area_id, array_agg(v.t ORDER BY v.t) AS added
                  FROM v CROSS JOIN LATERAL generate_series(1, CAST(v.d AS integer)) g
                 WHERE v.d > 0 GROUP BY 1, 2
            )
            INSERT INTO kpi_area_quarter AS k ({_COLUMNS})
            SELECT c.*, COALESCE(t.ttc_sum, 0), {_ZEROS}, COALESCE(a.added, '{{}}')
              FROM c LEFT JOIN t USING (period, area_id)
              LEFT JOIN a USING (period, area_id)
             ORDER BY 1, 2
            ON CONFLICT (period, area_id) DO UPDATE SET {_ADD};
    """ + (f"""
            -- rows whose cases all left
            DELETE FROM kpi_area_quarter k
             USING (SELECT DISTINCT {QUARTER.format('r.day')} AS period, r.area_id
                      FROM ({rows}) r) y
             WHERE k.area_id = y.area_id AND k.period = y.period AND k.n = 0;
    """ if removals else "")


_TRIGGER_FN = f"""
CREATE FUNCTION gridgov_kpi_quarter_daily() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM kpi_area_quarter;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO changed FROM new_rows;
    ELSE
        SELECT count(*) INTO changed FROM old_rows;
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    ELSIF changed > {BULK} THEN
        PERFORM gridgov_kpi_quarter_rebuild();
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        {_apply(f"SELECT 1 AS sg, {_SIGNED} FROM new_rows d", removals=False)}
    ELSIF TG_OP = 'DELETE' THEN
        {_apply(f"SELECT -1 AS sg, {_SIGNED} FROM old_rows d", removals=True)}
    ELSE
        {_apply(f"SELECT -1 AS sg, {_SIGNED} FROM old_rows d UNION ALL "
                f"SELECT 1, {_SIGNED} FROM new_rows d", removals=True)}
    END IF;
    RETURN NULL;
END $$
"""

TRIGGERS = [
    "CREATE TRIGGER kpi_daily_quarter_insert AFTER INSERT ON kpi_daily"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_quarter_daily()",
    "CREATE TRIGGER kpi_daily_quarter_update AFTER UPDATE ON kpi_daily"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_quarter_daily()",
    "CREATE TRIGGER kpi_daily_quarter_delete AFTER DELETE ON kpi_daily"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_quarter_daily()",
    "CREATE TRIGGER kpi_daily_quarter_truncate AFTER TRUNCATE ON kpi_daily"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_quarter_daily()",
]

DOWN = [
    "DROP TRIGGER IF EXISTS kpi_daily_quarter_truncate ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_quarter_delete ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_quarter_update ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_quarter_insert ON kpi_daily",
    "DROP FUNCTION IF EXISTS gridgov_kpi_quarter_daily()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_quarter_rebuild()",
]


def upgrade() -> None:
    op.create_table(
        'kpi_area_quarter',
        sa.Column('period', sa.Date(), nullable=False,
                  comment="first day of the quarter (local report days)"),
        sa.Column('area_id', sa.BigInteger(), nullable=False),
        *(sa.Column(c, sa.Integer(), server_default='0', nullable=False) for c in COUNTS),
        sa.Column('ttc_sum', sa.BigInteger(), server_default='0', nullable=False,
                  comment='sum of the times to close (s)'),
        *(sa.Column(b, sa.Integer(), server_default='0', nullable=False) for b in BINS),
        sa.Column('ttc_s', postgresql.ARRAY(sa.Integer()), server_default='{}',
                  nullable=False, comment='time to close of each closed case, sorted'),
        sa.ForeignKeyConstraint(['area_id'], ['areas.id'],
                                name=op.f('fk_kpi_area_quarter_area_id_areas'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('period', 'area_id', name=op.f('pk_kpi_area_quarter')),
    )
    op.create_index('ix_kpi_area_quarter_area', 'kpi_area_quarter', ['area_id'], unique=False)
    for statement in (_REBUILD, _TRIGGER_FN, *TRIGGERS):
        op.execute(statement)
    op.execute("SELECT gridgov_kpi_quarter_rebuild()")
    op.execute("ANALYZE kpi_area_quarter")


def downgrade() -> None:
    for statement in DOWN:
        op.execute(statement)
    op.drop_index('ix_kpi_area_quarter_area', table_name='kpi_area_quarter')
    op.drop_table('kpi_area_quarter')

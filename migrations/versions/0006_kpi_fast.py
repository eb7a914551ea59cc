"""kpi fast: per-area rollup by day and by month with a time-to-close histogram

Revision ID: 0006_kpi_fast
Revises: 0005_merge
Create Date: 2026-11-24 01:10:00

- ``kpi_area``: one row per (``monthly`` false: local report day | true: first day of the
  month, area in force at report time) with the counts of ``kpi_daily`` summed over categories
  and departments, ``ttc_sum`` (sum of the times to close), a histogram of the times to close
  in fixed log-spaced bins as plain integer columns ``h00``…``h39`` (bin ``i`` holds
  ``edges[i] <= t < edges[i+1]``, ``edges`` = ``gridgov_kpi_ttc_edges()``, open at both ends)
  and the times to close themselves **sorted** (``ttc_s``). A level × period query reads the
  month rows of the whole months of the period and the day rows of its ragged ends (≈ 2.4·10⁵
  rows for a year of 20,000 grids instead of 1.7·10⁶ ``kpi_daily`` rows with 10⁷ values), and
  gets the exact p90 in two passes (gis/kpis.py): summed histograms give each group the bin
  holding the ranks percentile_cont needs, then only that bin's values are sliced out of the
  sorted arrays (``width_bucket(x, ttc_s)`` = how many values are <= x, a binary search).
- Kept exact from ``kpi_daily`` (itself kept exact from ``cases`` and ``case_events``) by
  statement triggers with transition tables: the changed ``kpi_daily`` rows name their (day,
  area) and (month, area) keys, and those ``kpi_area`` rows are recomputed from ``kpi_daily``
  (index ``ix_kpi_daily_area``). Statements of more than 50,000 ``kpi_daily`` rows (bulk loads,
  ``gridgov_kpi_rebuild()``) recompute the whole table instead (``gridgov_kpi_area_rebuild()``).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006_kpi_fast'
down_revision: str | None = '0005_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
          "n_reopened", "n_verify", "n_verify_pass")
# 40 bins: [0, 600), [600·1.25^(i-1), 600·1.25^i) … [600·1.25^38, ∞) seconds. Only speed depends
# on them (how many values pass 2 reads), never the answer.
EDGES = [round(600 * 1.25 ** i) for i in range(39)]
BINS = [f"h{i:02d}" for i in range(len(EDGES) + 1)]
BULK = 50_000

_EDGES_FN = f"""
CREATE FUNCTION gridgov_kpi_ttc_edges() RETURNS integer[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CAST('{{{",".join(map(str, EDGES))}}}' AS integer[]) $$
"""


def _aggregate(src: str) -> str:
    """``SELECT`` of ``kpi_area`` rows from ``src`` (columns monthly, period, area_id, the
    counts and ttc_s of ``kpi_daily`` rows)."""
    sums = ", ".join(f"sum(s.{c})" for c in COUNTS)
    zeros = ", ".join(f"COALESCE(t.{b}, 0)" for b in BINS)
    return f"""
        WITH s AS MATERIALIZED ({src}),
        c AS (SELECT s.monthly, s.period, s.area_id, {sums} FROM s GROUP BY 1, 2, 3),
        t AS (SELECT u.monthly, u.period, u.area_id, sum(u.t) AS ttc_sum,
                     {", ".join(f"count(*) FILTER (WHERE u.b = {i}) AS {b}"
                                for i, b in enumerate(BINS))},
                     array_agg(u.t ORDER BY u.t) AS ttc_s
                FROM (SELECT s.monthly, s.period, s.area_id, v.t,
                             width_bucket(v.t, gridgov_kpi_ttc_edges()) AS b
                        FROM s CROSS JOIN LATERAL unnest(s.ttc_s) AS v(t)
                       WHERE cardinality(s.ttc_s) > 0) u
               GROUP BY 1, 2, 3)
        SELECT c.*, COALESCE(t.ttc_sum, 0), {zeros}, COALESCE(t.ttc_s, '{{}}')
          FROM c LEFT JOIN t USING (monthly, period, area_id)
    """


_COLUMNS = ", ".join(["monthly", "period", "area_id", *COUNTS, "ttc_sum", *BINS, "ttc_s"])
_SIGNED = f"d.day, d.area_id, {', '.join(f'd.{c}' for c in COUNTS)}, d.ttc_s"
_SIGNED_SUMS = ", ".join(f"sum(s.sg * s.{c})" for c in COUNTS)
_NET = """
    SELECT m.monthly, CASE WHEN m.monthly THEN CAST(date_trunc('month', r.day) AS date)
           ELSE r.day END AS period, r.area_id, x.t, sum(r.sg) AS d
      FROM (%1$s) r CROSS JOIN (VALUES (false), (true)) AS m(monthly)
     CROSS JOIN LATERAL unnest(r.ttc_s) AS x(t)
     GROUP BY 1, 2, 3, 4 HAVING sum(r.sg) <> 0"""
_DELTA_BINS = ", ".join(
    f"COALESCE(sum(v.d) FILTER (WHERE width_bucket(v.t, gridgov_kpi_ttc_edges()) = {i}),"
    f" 0) AS {b}" for i, b in enumerate(BINS))
_ZEROS = ", ".join(f"COALESCE(t.{b}, 0)" for b in BINS)
_ADD = ", ".join([f"{c} = k.{c} + EXCLUDED.{c}" for c in (*COUNTS, "ttc_sum", *BINS)]
                 + ["ttc_s = CASE WHEN cardinality(EXCLUDED.ttc_s) = 0 THEN k.ttc_s ELSE ARRAY("
                    "SELECT x.t FROM unnest(k.ttc_s || EXCLUDED.ttc_s) AS x(t) ORDER BY 1) END"])
_DAILY = f"d.area_id, {', '.join(f'd.{c}' for c in COUNTS)}, d.ttc_s"


def _apply(rows: str, *, removals: bool) -> str:
    """Statements applying the signed kpi_daily ``rows`` (sg = ±1) to kpi_area."""
    net = _NET.replace("%1$s", rows)
    minus = f"""
            -- values that left, taken out first (a row is written once per statement)
            UPDATE kpi_area k SET ttc_s = gridgov_kpi_ttc_minus(k.ttc_s, r.gone)
              FROM (SELECT v.monthly, v.period, v.area_id, array_agg(v.t) AS gone
                      FROM ({net}) v
                     CROSS JOIN LATERAL generate_series(1, CAST(-v.d AS integer)) g
                     WHERE v.d < 0 GROUP BY 1, 2, 3) r
             WHERE k.monthly = r.monthly AND k.period = r.period AND k.area_id = r.area_id;
    """ if removals else ""
    return minus + f"""
            WITH s AS MATERIALIZED (
                SELECT m.monthly, CASE WHEN m.monthly
                       THEN CAST(date_trunc('month', r.day) AS date) ELSE r.day END AS period,
                       r.*
                  FROM ({rows}) r CROSS JOIN (VALUES (false), (true)) AS m(monthly)
            ), v AS MATERIALIZED ({net}
            ), c AS (
                SELECT s.monthly, s.period, s.area_id, {_SIGNED_SUMS} FROM s GROUP BY 1, 2, 3
            ), t AS (
                SELECT v.monthly, v.period, v.area_id, sum(v.t * v.d) AS ttc_sum, {_DELTA_BINS}
                  FROM v GROUP BY 1, 2, 3
            ), a AS (
                SELECT v.monthly, v.period, v.area_id, array_agg(v.t ORDER BY v.t) AS added
                  FROM v CROSS JOIN LATERAL generate_series(1, CAST(v.d AS integer)) g
                 WHERE v.d > 0 GROUP BY 1, 2, 3
            )
            INSERT INTO kpi_area AS k ({_COLUMNS})
            SELECT c.*, COALESCE(t.ttc_sum, 0), {_ZEROS}, COALESCE(a.added, '{{}}')
              FROM c LEFT JOIN t USING (monthly, period, area_id)
              LEFT JOIN a USING (monthly, period, area_id)
             ORDER BY 1, 2, 3
            ON CONFLICT (monthly, period, area_id) DO UPDATE SET {_ADD};
    """ + (f"""
            -- rows whose cases all left
            DELETE FROM kpi_area k
             USING (SELECT DISTINCT r.day, r.area_id FROM ({rows}) r) y
             WHERE k.area_id = y.area_id AND k.n = 0
               AND ((NOT k.monthly AND k.period = y.day) OR
                    (k.monthly AND k.period = CAST(date_trunc('month', y.day) AS date)));
    """ if removals else "")


FUNCTIONS_UP = [
    _EDGES_FN,
    f"""
    CREATE FUNCTION gridgov_kpi_area_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
    BEGIN
        DELETE FROM kpi_area;
        INSERT INTO kpi_area ({_COLUMNS})
        {_aggregate(f'''SELECT m.monthly, CASE WHEN m.monthly
                               THEN CAST(date_trunc('month', d.day) AS date) ELSE d.day END
                               AS period, {_DAILY}
                          FROM kpi_daily d CROSS JOIN (VALUES (false), (true)) AS m(monthly)''')};
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    END $$
    """,
    """
    CREATE FUNCTION gridgov_kpi_ttc_minus(a integer[], b integer[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        -- The multiset a − b, sorted (each value of b takes away one equal value of a).
        SELECT COALESCE(array_agg(v.t ORDER BY v.t), '{}')
          FROM (SELECT u.t, sum(u.s) AS m
                  FROM (SELECT x.t, 1 AS s FROM unnest(a) AS x(t)
                        UNION ALL SELECT y.t, -1 FROM unnest(b) AS y(t)) u
                 GROUP BY u.t) v
         CROSS JOIN LATERAL generate_series(1, v.m) AS g
    $$
    """,
    f"""
    CREATE FUNCTION gridgov_kpi_area_daily() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed bigint;
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM kpi_area;
            RETURN NULL;
        ELSIF TG_OP = 'INSERT' THEN
            SELECT count(*) INTO changed FROM new_rows;
        ELSE
            SELECT count(*) INTO changed FROM old_rows;
        END IF;
        IF changed = 0 THEN
            RETURN NULL;
        ELSIF changed > {BULK} THEN
            -- bulk loads and gridgov_kpi_rebuild(): one pass over kpi_daily is cheaper
            PERFORM gridgov_kpi_area_rebuild();
            RETURN NULL;
        END IF;
        -- Deltas are applied to the rows in place (row locks, latest row version): exact
        -- under concurrent intake, unlike recomputing rows from a statement's snapshot.
        -- Static statements per operation: PL/pgSQL keeps their plans (intake pays no
        -- planning).
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
    """,
]

TRIGGERS_UP = [
    "CREATE TRIGGER kpi_daily_area_insert AFTER INSERT ON kpi_daily"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_area_daily()",
    "CREATE TRIGGER kpi_daily_area_update AFTER UPDATE ON kpi_daily"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_area_daily()",
    "CREATE TRIGGER kpi_daily_area_delete AFTER DELETE ON kpi_daily"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION gridgov_kpi_area_daily()",
    "CREATE TRIGGER kpi_daily_area_truncate AFTER TRUNCATE ON kpi_daily"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_area_daily()",
]

DOWN = [
    "DROP TRIGGER IF EXISTS kpi_daily_area_truncate ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_area_delete ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_area_update ON kpi_daily",
    "DROP TRIGGER IF EXISTS kpi_daily_area_insert ON kpi_daily",
    "DROP FUNCTION IF EXISTS gridgov_kpi_area_daily()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_ttc_minus(integer[], integer[])",
    "DROP FUNCTION IF EXISTS gridgov_kpi_area_rebuild()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_ttc_edges()",
]


def upgrade() -> None:
    op.create_table(
        'kpi_area',
        sa.Column('monthly', sa.Boolean(), nullable=False,
                  comment='false: period is a local day; true: the first day of a month'),
        sa.Column('period', sa.Date(), nullable=False),
        sa.Column('area_id', sa.BigInteger(), nullable=False),
        *(sa.Column(c, sa.Integer(), server_default='0', nullable=False) for c in COUNTS),
        sa.Column('ttc_sum', sa.BigInteger(), server_default='0', nullable=False,
                  comment='sum of the times to close (s)'),
        *(sa.Column(b, sa.Integer(), server_default='0', nullable=False) for b in BINS),
        sa.Column('ttc_s', postgresql.ARRAY(sa.Integer()), server_default='{}',
                  nullable=False, comment='time to close of each closed case, sorted'),
        sa.ForeignKeyConstraint(['area_id'], ['areas.id'],
                                name=op.f('fk_kpi_area_area_id_areas'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('monthly', 'period', 'area_id', name=op.f('pk_kpi_area')),
    )
    op.create_index('ix_kpi_area_area', 'kpi_area', ['area_id'], unique=False)
    for statement in FUNCTIONS_UP + TRIGGERS_UP:
        op.execute(statement)
    op.execute("SELECT gridgov_kpi_area_rebuild()")
    op.execute("ANALYZE kpi_area")


def downgrade() -> None:
    for statement in DOWN:
        op.execute(statement)
    op.drop_index('ix_kpi_area_area', table_name='kpi_area')
    op.drop_table('kpi_area')

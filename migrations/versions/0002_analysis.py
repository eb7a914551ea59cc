"""analysis: daily KPI rollup of cases, KPI targets, change markers for coverage caches

Revision ID: 0002_analysis
Revises: 0002_dispatch (its ``data_versions`` table and ``gridgov_bump_data_version()``)
Create Date: 2026-11-23 22:00:00

- ``kpi_daily``: one row per (local report day, grid in force at report time, category,
  department) with the counts every KPI needs and the exact time to close of each closed case
  (``ttc_s``, so means and percentiles are exact). Kept exact by statement-level triggers with
  transition tables: an INSERT on ``cases`` adds its rows' counts (one grouped upsert per
  statement, also for COPY); an UPDATE that touches a column KPIs read, a DELETE, and
  ``case_events`` rows that change a KPI (handle, verify, reopen) recompute just the keys
  involved from ``cases`` and ``case_events`` (``gridgov_kpi_refresh``).
  ``gridgov_kpi_rebuild()`` recomputes everything (after loads that bypassed triggers).
- ``kpi_targets``: target, direction (higher/lower is better) and weight of each KPI.
- ``data_versions`` rows for ``buildings``, ``facilities`` and ``areas``, stamped by statement
  triggers, so the in-memory population cache of ``gis/coverage.py`` reloads exactly when the
  data changed.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002_analysis'
down_revision: str | None = '0002_dispatch'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "day, area_id, category_id, department_id"
COUNTS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
          "n_reopened", "n_verify", "n_verify_pass")

# Per-case facts of a ``cases`` row ``c`` and its events summary ``ev`` (NULL when not joined).
# gis/kpis.py computes the very same expressions for its direct (no rollup) path.
_CLOSED = "(c.status = 'closed' AND c.due_at IS NOT NULL AND c.closed_at IS NOT NULL)"
FACTS = {
    "day": "CAST(c.reported_at AT TIME ZONE j.timezone AS date)",
    "area_id": "c.area_id",
    "category_id": "c.category_id",
    "department_id": "COALESCE(c.department_id, 0)",
    "n": "1",
    "n_due": "CAST(c.status <> 'rejected' AND c.due_at IS NOT NULL AS integer)",
    "n_closed": f"CAST({_CLOSED} AS integer)",
    "n_on_time": f"CAST({_CLOSED} AND c.closed_at <= c.due_at AS integer)",
    "ttc": f"CASE WHEN {_CLOSED} THEN CAST(GREATEST(0, round(EXTRACT(EPOCH FROM"
           " c.closed_at - c.reported_at))) AS integer) END",
    "n_rated": "CAST(c.satisfaction IS NOT NULL AS integer)",
    "sat_sum": "COALESCE(c.satisfaction, 0)",
    "n_handled": "CAST(c.status IN ('handled', 'verified', 'closed', 'reopened')"
                 " OR COALESCE(ev.handled, false) AS integer)",
    "n_reopened": "CAST(c.status = 'reopened' OR COALESCE(ev.reopened, false) AS integer)",
    "n_verify": "CAST(COALESCE(ev.verify, 0) AS integer)",
    "n_verify_pass": "CAST(COALESCE(ev.verify_pass, 0) AS integer)",
}
EVENTS_SUMMARY = """
    SELECT bool_or(e.action = 'handle') AS handled, bool_or(e.to_state = 'reopened') AS reopened,
           count(*) FILTER (WHERE e.action = 'verify') AS verify,
           count(*) FILTER (WHERE e.action = 'verify' AND e.to_state = 'verified') AS verify_pass
      FROM case_events e
"""


def _aggregate(source: str, events: str) -> str:
    """``SELECT key, sums FROM <source> c ... GROUP BY key`` (source is a table or rows)."""
    sums = ", ".join(f"sum({FACTS[k]})" for k in COUNTS[:4])
    sums2 = ", ".join(f"sum({FACTS[k]})" for k in COUNTS[4:])
    return f"""
        SELECT {FACTS['day']}, c.area_id, c.category_id, {FACTS['department_id']}, {sums},
               COALESCE(array_agg({FACTS['ttc']}) FILTER (WHERE {_CLOSED}), '{{}}'), {sums2}
          FROM {source} c
          JOIN jurisdictions j ON j.id = c.jurisdiction_id
          {events}
         WHERE c.area_id IS NOT NULL
         GROUP BY 1, 2, 3, 4
    """


_COLUMNS = f"{KEY}, n, n_due, n_closed, n_on_time, ttc_s, n_rated, sat_sum, n_handled," \
           " n_reopened, n_verify, n_verify_pass"
_NO_EVENTS = ("CROSS JOIN (SELECT CAST(NULL AS boolean) AS handled, CAST(NULL AS boolean)"
              " AS reopened, 0 AS verify, 0 AS verify_pass) ev")
_ADD = ", ".join([f"{k} = k.{k} + EXCLUDED.{k}" for k in COUNTS] + ["ttc_s = k.ttc_s || EXCLUDED.ttc_s"])
_SET = ", ".join([f"{k} = EXCLUDED.{k}" for k in COUNTS] + ["ttc_s = EXCLUDED.ttc_s"])
_KEY_OF = ("CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day, c.area_id,"
           " c.category_id, COALESCE(c.department_id, 0) AS department_id")
# Columns whose change can change a KPI (escalation, responder, media... do not).
_RELEVANT = ("status", "area_id", "category_id", "department_id", "reported_at", "due_at",
             "closed_at", "satisfaction", "jurisdiction_id")

FUNCTIONS_UP = [
    f"""
    CREATE FUNCTION gridgov_kpi_refresh(k_day date[], k_area bigint[], k_cat integer[],
                                        k_dep integer[]) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        -- Recompute whole rows from the source tables: exact whatever changed.
        DELETE FROM kpi_daily k
         USING unnest(k_day, k_area, k_cat, k_dep) AS x(day, area_id, category_id, department_id)
         WHERE k.day = x.day AND k.area_id = x.area_id AND k.category_id = x.category_id
           AND k.department_id = x.department_id;
        INSERT INTO kpi_daily AS k ({_COLUMNS})
        {_aggregate('''(SELECT c.* FROM (SELECT DISTINCT area_id, category_id, department_id
                          FROM unnest(k_area, k_cat, k_dep) AS y(area_id, category_id,
                                                                  department_id)) y
                          JOIN cases c ON c.area_id = y.area_id
                           AND c.category_id = y.category_id
                           AND COALESCE(c.department_id, 0) = y.department_id)''',
                    f"LEFT JOIN LATERAL ({EVENTS_SUMMARY} WHERE e.case_id = c.id) ev ON true")
          .replace("WHERE c.area_id IS NOT NULL",
                   "WHERE c.area_id IS NOT NULL AND (CAST(c.reported_at AT TIME ZONE"
                   " j.timezone AS date), c.area_id, c.category_id, COALESCE(c.department_id,"
                   " 0)) IN (SELECT * FROM unnest(k_day, k_area, k_cat, k_dep))")}
        ON CONFLICT ({KEY}) DO UPDATE SET {_SET};
    END $$
    """,
    f"""
    CREATE FUNCTION gridgov_kpi_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        written bigint;
    BEGIN
        DELETE FROM kpi_daily;
        INSERT INTO kpi_daily ({_COLUMNS})
        {_aggregate('cases', f"LEFT JOIN ({EVENTS_SUMMARY.replace('SELECT ', 'SELECT e.case_id, ', 1)} GROUP BY e.case_id) ev ON ev.case_id = c.id")};
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    END $$
    """,
    f"""
    CREATE FUNCTION gridgov_kpi_cases() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        k_day date[]; k_area bigint[]; k_cat integer[]; k_dep integer[];
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM kpi_daily;
            RETURN NULL;
        ELSIF TG_OP = 'INSERT' THEN
            -- New cases only add: one grouped upsert per statement (COPY included).
            INSERT INTO kpi_daily AS k ({_COLUMNS})
            {_aggregate('new_rows', _NO_EVENTS)}
            ORDER BY 1, 2, 3, 4
            ON CONFLICT ({KEY}) DO UPDATE SET {_ADD};
            RETURN NULL;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(day), array_agg(area_id), array_agg(category_id),
                   array_agg(department_id) INTO k_day, k_area, k_cat, k_dep
              FROM (SELECT DISTINCT {_KEY_OF} FROM old_rows c
                      JOIN jurisdictions j ON j.id = c.jurisdiction_id
                     WHERE c.area_id IS NOT NULL) s;
        ELSE
            SELECT array_agg(day), array_agg(area_id), array_agg(category_id),
                   array_agg(department_id) INTO k_day, k_area, k_cat, k_dep
              FROM (SELECT {_KEY_OF.replace('c.', 'o.')}
                      FROM old_rows o JOIN new_rows n ON n.id = o.id
                      JOIN jurisdictions j ON j.id = o.jurisdiction_id
                     WHERE o.area_id IS NOT NULL AND ({' OR '.join(f'n.{c} IS DISTINCT FROM o.{c}' for c in _RELEVANT)})
                    UNION
                    SELECT {_KEY_OF.replace('c.', 'n.')}
                      FROM old_rows o JOIN new_rows n ON n.id = o.id
                      JOIN jurisdictions j ON j.id = n.jurisdiction_id
                     WHERE n.area_id IS NOT NULL AND ({' OR '.join(f'n.{c} IS DISTINCT FROM o.{c}' for c in _RELEVANT)})) s;
        END IF;
        IF k_day IS NOT NULL THEN
            PERFORM gridgov_kpi_refresh(k_day, k_area, k_cat, k_dep);
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION gridgov_kpi_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        k_day date[]; k_area bigint[]; k_cat integer[]; k_dep integer[];
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            PERFORM gridgov_kpi_rebuild();
            RETURN NULL;
        ELSIF TG_OP = 'INSERT' THEN
            SELECT array_agg(day), array_agg(area_id), array_agg(category_id),
                   array_agg(department_id) INTO k_day, k_area, k_cat, k_dep
              FROM (SELECT DISTINCT {_KEY_OF} FROM cases c
                      JOIN jurisdictions j ON j.id = c.jurisdiction_id
                     WHERE c.area_id IS NOT NULL AND c.id IN (
                           SELECT e.case_id FROM new_rows e
                            WHERE e.action IN ('handle', 'verify', 'reopen')
                               OR e.to_state = 'reopened')) s;
        ELSE
            SELECT array_agg(day), array_agg(area_id), array_agg(category_id),
                   array_agg(department_id) INTO k_day, k_area, k_cat, k_dep
              FROM (SELECT DISTINCT {_KEY_OF} FROM cases c
                      JOIN jurisdictions j ON j.id = c.jurisdiction_id
                     WHERE c.area_id IS NOT NULL AND c.id IN (
                           SELECT e.case_id FROM old_rows e
                            WHERE e.action IN ('handle', 'verify', 'reopen')
                               OR e.to_state = 'reopened')) s;
        END IF;
        IF k_day IS NOT NULL THEN
            PERFORM gridgov_kpi_refresh(k_day, k_area, k_cat, k_dep);
        END IF;
        RETURN NULL;
    END $$
    """,
]

TRIGGERS_UP = [
    "CREATE TRIGGER cases_kpi_insert AFTER INSERT ON cases REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_cases()",
    "CREATE TRIGGER cases_kpi_update AFTER UPDATE ON cases"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_cases()",
    "CREATE TRIGGER cases_kpi_delete AFTER DELETE ON cases REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_cases()",
    "CREATE TRIGGER cases_kpi_truncate AFTER TRUNCATE ON cases"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_cases()",
    "CREATE TRIGGER case_events_kpi_insert AFTER INSERT ON case_events"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_events()",
    "CREATE TRIGGER case_events_kpi_delete AFTER DELETE ON case_events"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_events()",
    "CREATE TRIGGER case_events_kpi_truncate AFTER TRUNCATE ON case_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_kpi_events()",
]
VERSIONED = ("buildings", "facilities", "areas")
for _table in VERSIONED:
    TRIGGERS_UP.append(
        f"CREATE TRIGGER {_table}_data_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
        f" ON {_table} FOR EACH STATEMENT EXECUTE FUNCTION gridgov_bump_data_version()")

DOWN = [
    *(f"DROP TRIGGER IF EXISTS {t}_data_version ON {t}" for t in VERSIONED),
    "DELETE FROM data_versions WHERE name IN ('buildings', 'facilities', 'areas')",
    "DROP TRIGGER IF EXISTS case_events_kpi_truncate ON case_events",
    "DROP TRIGGER IF EXISTS case_events_kpi_delete ON case_events",
    "DROP TRIGGER IF EXISTS case_events_kpi_insert ON case_events",
    "DROP TRIGGER IF EXISTS cases_kpi_truncate ON cases",
    "DROP TRIGGER IF EXISTS cases_kpi_delete ON cases",
    "DROP TRIGGER IF EXISTS cases_kpi_update ON cases",
    "DROP TRIGGER IF EXISTS cases_kpi_insert ON cases",
    "DROP FUNCTION IF EXISTS gridgov_kpi_events()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_cases()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_rebuild()",
    "DROP FUNCTION IF EXISTS gridgov_kpi_refresh(date[], bigint[], integer[], integer[])",
]

TARGETS = [
    # kpi, label, target, direction, weight, unit
    ("closure_rate", "Closure rate", 0.95, "higher", 1.0, "share"),
    ("on_time_rate", "On-time closure rate", 0.90, "higher", 2.0, "share"),
    ("mean_ttc_h", "Mean time to close", 72.0, "lower", 1.0, "h"),
    ("p90_ttc_h", "90th percentile time to close", 240.0, "lower", 1.0, "h"),
    ("reopen_rate", "Reopen rate", 0.05, "lower", 1.0, "share"),
    ("verify_pass_rate", "Verification pass rate", 0.90, "higher", 1.0, "share"),
    ("satisfaction", "Satisfaction", 4.0, "higher", 2.0, "of 5"),
    ("cases_per_1000", "Cases per 1,000 residents", None, "lower", 0.0, "cases"),
    ("cases_per_responder", "Cases per responder", None, "lower", 0.0, "cases"),
]


def upgrade() -> None:
    op.create_table('kpi_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('area_id', sa.BigInteger(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False, comment='0 = none'),
    sa.Column('n', sa.Integer(), server_default='0', nullable=False, comment='cases reported'),
    sa.Column('n_due', sa.Integer(), server_default='0', nullable=False, comment='with a deadline, not rejected'),
    sa.Column('n_closed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('n_on_time', sa.Integer(), server_default='0', nullable=False),
    sa.Column('ttc_s', postgresql.ARRAY(sa.Integer()), server_default='{}', nullable=False, comment='time to close of each closed case'),
    sa.Column('n_rated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sat_sum', sa.Integer(), server_default='0', nullable=False),
    sa.Column('n_handled', sa.Integer(), server_default='0', nullable=False, comment='cases handled at least once'),
    sa.Column('n_reopened', sa.Integer(), server_default='0', nullable=False, comment='cases reopened at least once'),
    sa.Column('n_verify', sa.Integer(), server_default='0', nullable=False, comment='verify actions'),
    sa.Column('n_verify_pass', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_kpi_daily_area_id_areas'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('day', 'area_id', 'category_id', 'department_id', name=op.f('pk_kpi_daily'))
    )
    op.create_index('ix_kpi_daily_area', 'kpi_daily', ['area_id', 'day'], unique=False)
    op.create_table('kpi_targets',
    sa.Column('kpi', sa.String(length=32), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('target', sa.Float(), nullable=True),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('weight', sa.Float(), server_default='1', nullable=False, comment='weight in the composite score (0 = none)'),
    sa.Column('unit', sa.Text(), nullable=True),
    sa.CheckConstraint("direction IN ('higher', 'lower')", name=op.f('ck_kpi_targets_direction')),
    sa.CheckConstraint('weight >= 0', name=op.f('ck_kpi_targets_weight')),
    sa.PrimaryKeyConstraint('kpi', name=op.f('pk_kpi_targets'))
    )
    op.bulk_insert(sa.table('kpi_targets', sa.column('kpi'), sa.column('label'),
                            sa.column('target'), sa.column('direction'), sa.column('weight'),
                            sa.column('unit')),
                   [dict(zip(('kpi', 'label', 'target', 'direction', 'weight', 'unit'), t,
                             strict=True)) for t in TARGETS])
    for statement in FUNCTIONS_UP + TRIGGERS_UP:
        op.execute(statement)
    for table in VERSIONED:
        op.execute(f"INSERT INTO data_versions (name, version) VALUES ('{table}',"
                   " nextval('data_version_seq')) ON CONFLICT (name) DO NOTHING")
    op.execute("SELECT gridgov_kpi_rebuild()")


def downgrade() -> None:
    for statement in DOWN:
        op.execute(statement)
    op.drop_table('kpi_targets')
    op.drop_index('ix_kpi_daily_area', table_name='kpi_daily')
    op.drop_table('kpi_daily')

"""The fast load path of ``gis.bulk.import_cases``: what it needs and what it writes.

A load of many cases pays most of its time in the triggers on ``cases`` (tile cells, the
``case_tiles`` copy, the KPI rollup and, through ``kpi_daily``'s own triggers, ``kpi_area``
and ``kpi_area_quarter``) and in eight row-level foreign-key checks per case. The fast path
inserts the chunks with ``session_replication_role = replica`` (no triggers, no RI checks),
keeps the inserted rows in ``_gg_new`` (``gis.bulk``) and, once per import:

- ``lock_references``: the foreign keys' guarantee, set-based;
- ``apply_derived``: every derived table gets the statement its trigger would run over one
  statement's transition table holding all those rows.

``fast_load_refusal`` says when it may not run: a role that may not set
``session_replication_role``, or triggers and foreign keys on ``cases``/``case_events``/
``kpi_daily`` other than the ones written for here (``_TRIGGER_SIGNATURE``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

from gis.errors import InvalidInput

# What the fast path stands in for: every trigger on cases, case_events and kpi_daily (name,
# type, arguments, condition, function source) and their foreign keys. Any change (a new
# migration adding or editing a trigger, say) makes the fingerprint differ and imports take
# the trigger path until this module is updated with it; a test asserts the fast path is
# taken on head.
_SIGNATURE_SQL = """
SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
    SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname || ' ' || t.tgtype
           || ' ' || CAST(t.tgenabled AS text) || ' ' || encode(t.tgargs, 'hex') || ' '
           || p.proname || ' ' || md5(p.prosrc) || ' '
           || COALESCE(pg_get_expr(t.tgqual, t.tgrelid), '') AS x
      FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgrelid IN ('cases'::regclass, 'case_events'::regclass, 'kpi_daily'::regclass)
       AND NOT t.tgisinternal
    UNION ALL
    SELECT 'fk ' || c.conrelid::regclass::text || ' ' || c.conname || ' '
           || pg_get_constraintdef(c.oid)
      FROM pg_constraint c
     WHERE c.conrelid IN ('cases'::regclass, 'case_events'::regclass, 'kpi_daily'::regclass)
       AND c.contype = 'f'
) s
"""
_TRIGGER_SIGNATURE = "f5a398f9a3a19270555b181c461b7781"

# Foreign keys of cases and case_events that a bulk row can set, as (column of _gg_new,
# referenced table). The fast path locks the referenced rows FOR KEY SHARE, as the RI
# triggers do row by row, and fails if one is gone.
_REFERENCES = (("category_id", "categories"), ("department_id", "departments"),
               ("area_id", "areas"), ("jurisdiction_id", "jurisdictions"))

# The statements of the triggers on cases (migrations 0002_tiles/0009_tile_speed: cells and
# case_tiles; 0006_kpi_fast: kpi_daily) with the transition table replaced by _gg_new.
_FAST_CELLS = """
WITH fine AS (
    SELECT gridgov_tile_x(ST_X(r.p), 16) AS cx, gridgov_tile_y(ST_Y(r.p), 16) AS cy,
           r.category_id, r.open, sum(r.d) AS n
      FROM (SELECT gridgov_case_anchor(geom) AS p, category_id,
                   gridgov_case_open(status) AS open, 1 AS d FROM _gg_new) r
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
"""

_FAST_CASE_TILES = """
INSERT INTO case_tiles (id, category_id, urgency, status, reported_at, due_at, geom, category)
SELECT c.id, c.category_id, c.urgency, c.status, c.reported_at, c.due_at, c.geom, cat.code
  FROM _gg_new c LEFT JOIN categories cat ON cat.id = c.category_id
 ORDER BY c.geom
"""

_KPI_COUNTS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
               "n_reopened", "n_verify", "n_verify_pass")
_CLOSED_DUE = "(c.status = 'closed' AND c.due_at IS NOT NULL AND c.closed_at IS NOT NULL)"
_FAST_KPI_DELTA = f"""
CREATE TEMP TABLE _gg_kpi ON COMMIT DROP AS
SELECT CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day, c.area_id, c.category_id,
       COALESCE(c.department_id, 0) AS department_id,
       CAST(sum(1) AS integer) AS n,
       CAST(sum(CAST(c.status <> 'rejected' AND c.due_at IS NOT NULL AS integer)) AS integer)
         AS n_due,
       CAST(sum(CAST({_CLOSED_DUE} AS integer)) AS integer) AS n_closed,
       CAST(sum(CAST({_CLOSED_DUE} AND c.closed_at <= c.due_at AS integer)) AS integer)
         AS n_on_time,
       COALESCE(array_agg(CASE WHEN {_CLOSED_DUE} THEN CAST(GREATEST(0, round(EXTRACT(
           EPOCH FROM c.closed_at - c.reported_at))) AS integer) END)
         FILTER (WHERE {_CLOSED_DUE}), '{{}}') AS ttc_s,
       CAST(sum(CAST(c.satisfaction IS NOT NULL AS integer)) AS integer) AS n_rated,
       CAST(sum(COALESCE(c.satisfaction, 0)) AS integer) AS sat_sum,
       CAST(sum(CAST(c.status IN ('handled', 'verified', 'closed', 'reopened') AS integer))
            AS integer) AS n_handled,
       CAST(sum(CAST(c.status = 'reopened' AS integer)) AS integer) AS n_reopened,
       0 AS n_verify, 0 AS n_verify_pass
  FROM _gg_new c JOIN jurisdictions j ON j.id = c.jurisdiction_id
 WHERE c.area_id IS NOT NULL
 GROUP BY 1, 2, 3, 4
"""
_KPI_COLUMNS = ("day", "area_id", "category_id", "department_id", "n", "n_due", "n_closed",
                "n_on_time", "ttc_s", "n_rated", "sat_sum", "n_handled", "n_reopened",
                "n_verify", "n_verify_pass")
_FAST_KPI_APPLY = f"""
INSERT INTO kpi_daily AS k ({", ".join(_KPI_COLUMNS)})
SELECT {", ".join(_KPI_COLUMNS)} FROM _gg_kpi
 ORDER BY 1, 2, 3, 4
ON CONFLICT (day, area_id, category_id, department_id) DO UPDATE SET
    {", ".join(f"{c} = k.{c} + EXCLUDED.{c}" for c in _KPI_COUNTS)},
    ttc_s = k.ttc_s || EXCLUDED.ttc_s
"""

# kpi_daily's statement triggers (migrations 0006_kpi_fast, 0010_kpi_speed) roll its rows
# up into kpi_area (day and month rows) and kpi_area_quarter; a statement of more than 50,000
# rows makes them recompute both tables whole from kpi_daily (and under 50,000 their delta
# statement costs ≈ 50 µs a row). The fast path writes kpi_daily with the triggers off and
# applies the same insert-only delta itself: counts summed, times to close summed, binned
# (gridgov_kpi_ttc_edges(), once per value) and merged into the sorted arrays.
_KPI_BINS = [f"h{i:02d}" for i in range(40)]
_KPI_AREA_COLUMNS = (*_KPI_COUNTS, "ttc_sum", *_KPI_BINS, "ttc_s")
_FAST_KPI_TTC = """
CREATE TEMP TABLE _gg_ttc ON COMMIT DROP AS
SELECT k.day, k.area_id, x.t, width_bucket(x.t, gridgov_kpi_ttc_edges()) AS b
  FROM _gg_kpi k CROSS JOIN LATERAL unnest(k.ttc_s) AS x(t)
 WHERE cardinality(k.ttc_s) > 0
"""


def _kpi_rollup_sql(table: str, period: str, key: str) -> str:
    """The delta of ``_gg_kpi`` (rows added to kpi_daily) applied to a per-area rollup."""
    add = ", ".join([f"{c} = k.{c} + EXCLUDED.{c}" for c in (*_KPI_COUNTS, "ttc_sum",
                                                              *_KPI_BINS)]
                    + ["ttc_s = CASE WHEN cardinality(EXCLUDED.ttc_s) = 0 THEN k.ttc_s ELSE"
                       " ARRAY(SELECT x.t FROM unnest(k.ttc_s || EXCLUDED.ttc_s) AS x(t)"
                       " ORDER BY 1) END"])
    cols = "" if table == "kpi_area_quarter" else "monthly, "
    head = "" if table == "kpi_area_quarter" else f"{key}, "
    return f"""
WITH c AS (
    SELECT {period.format("d.day")} AS period, d.area_id,
           {", ".join(f"sum(d.{c}) AS {c}" for c in _KPI_COUNTS)}
      FROM _gg_kpi d GROUP BY 1, 2
), t AS (
    SELECT {period.format("u.day")} AS period, u.area_id, sum(u.t) AS ttc_sum,
           {", ".join(f"count(*) FILTER (WHERE u.b = {i}) AS {b}"
                      for i, b in enumerate(_KPI_BINS))},
           array_agg(u.t ORDER BY u.t) AS ttc_s
      FROM _gg_ttc u GROUP BY 1, 2
)
INSERT INTO {table} AS k ({cols}period, area_id, {", ".join(_KPI_AREA_COLUMNS)})
SELECT {head}c.period, c.area_id, {", ".join(f"c.{c}" for c in _KPI_COUNTS)},
       COALESCE(t.ttc_sum, 0), {", ".join(f"COALESCE(t.{b}, 0)" for b in _KPI_BINS)},
       COALESCE(t.ttc_s, '{{}}')
  FROM c LEFT JOIN t USING (period, area_id)
 ORDER BY 1, 2{", 3" if head else ""}
ON CONFLICT ({cols}period, area_id) DO UPDATE SET {add}
"""


_FAST_KPI_ROLLUPS = (
    ("kpi_area days", _kpi_rollup_sql("kpi_area", "{}", "false")),
    ("kpi_area months", _kpi_rollup_sql("kpi_area", "CAST(date_trunc('month', {}) AS date)",
                                        "true")),
    ("kpi_area_quarter", _kpi_rollup_sql("kpi_area_quarter",
                                         "CAST(date_trunc('quarter', {}) AS date)", "")),
)

# gridgov_tile_invalidate('geom') (migration 0008_intake_speed) for one INSERT statement on
# cases whose transition table is _gg_new.
_FAST_TILE_INVALIDATE = """
DO $$
DECLARE
    written bigint := 0;
    so_far bigint := coalesce(nullif(current_setting('gridgov.tile_inv_cases', true), ''),
                              '0')::bigint;
    overflow bigint := nullif(current_setting('gridgov.tile_inv_overflow_cases', true),
                              '')::bigint;
    box box2d;
BEGIN
    IF so_far >= 256 THEN
        SELECT ST_Extent(geom) INTO box FROM _gg_new WHERE geom IS NOT NULL;
        IF box IS NULL THEN
            RETURN;
        END IF;
        IF overflow IS NULL THEN
            INSERT INTO tile_invalidations (table_name, lon_min, lat_min, lon_max, lat_max,
                                            n_rows)
            VALUES ('cases', ST_XMin(box), ST_YMin(box), ST_XMax(box), ST_YMax(box), 1)
            RETURNING seq INTO overflow;
            PERFORM set_config('gridgov.tile_inv_overflow_cases', overflow::text, true);
        ELSE
            UPDATE tile_invalidations
               SET lon_min = least(lon_min, ST_XMin(box)), lat_min = least(lat_min, ST_YMin(box)),
                   lon_max = greatest(lon_max, ST_XMax(box)),
                   lat_max = greatest(lat_max, ST_YMax(box)),
                   n_rows = n_rows + 1, at = clock_timestamp()
             WHERE seq = overflow;
        END IF;
        RETURN;
    END IF;
    INSERT INTO tile_invalidations (table_name, lon_min, lat_min, lon_max, lat_max, n_rows)
    WITH changed AS (
        SELECT Box2D(geom) AS b FROM _gg_new WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)
    ), total AS (
        SELECT count(*) AS n FROM changed
    ), keyed AS (
        SELECT CASE WHEN total.n <= 64 THEN b::text
                    ELSE floor((ST_XMin(b) + ST_XMax(b)) * 5)::text || ':'
                         || floor((ST_YMin(b) + ST_YMax(b)) * 5)::text END AS k, b
          FROM changed, total
    )
    SELECT 'cases', ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
      FROM (SELECT ST_Extent(b) AS e, count(*) AS n FROM keyed GROUP BY k) x;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 THEN
        PERFORM set_config('gridgov.tile_inv_cases', (so_far + written)::text, true);
    END IF;
END $$
"""

# gridgov_notify_cases() (the live-feed trigger on cases) for one INSERT statement: above
# 5,000 cases one "bulk" note (browsers resync), else the items in notes of at most 7,000
# bytes.
_LIVE_BULK = 5_000
_FAST_LIVE = """
SELECT CASE WHEN n.total > :bulk
            THEN gridgov_live_emit(json_build_object('type', 'case', 'op', 'bulk',
                                                     'count', n.total)::text)
            ELSE gridgov_live_send('case', (SELECT array_agg(gridgov_case_item(c, 'insert')
                                                             ORDER BY c.id)
                                              FROM cases c
                                             WHERE c.id IN (SELECT id FROM _gg_new)), :bulk)
       END
  FROM (SELECT count(*) AS total FROM _gg_new) n WHERE n.total > 0
"""


def fast_load_refusal(conn: Connection) -> str | None:
    """Why this connection cannot take the fast load path (``None``: it can).

    The fast path needs to set ``session_replication_role`` (superuser, or PostgreSQL 15's
    ``GRANT SET ON PARAMETER session_replication_role``) and the triggers and foreign keys on
    ``cases``/``case_events`` to be the ones it was written for.
    """
    superuser, version = conn.execute(text(
        "SELECT current_setting('is_superuser') = 'on',"
        " CAST(current_setting('server_version_num') AS integer)")).one()
    allowed = superuser or (version >= 150000 and conn.execute(text(
        # PostgreSQL 15+ only (GRANT SET ON PARAMETER); parsed only there
        "SELECT has_parameter_privilege('session_replication_role', 'SET')")).scalar())
    if not allowed:
        return "the role may not set session_replication_role"
    signature = conn.execute(text(_SIGNATURE_SQL)).scalar()
    if signature != _TRIGGER_SIGNATURE:
        return (f"the triggers or foreign keys on cases/case_events changed (fingerprint"
                f" {signature}, the fast path knows {_TRIGGER_SIGNATURE})")
    return None


def restore_role(conn: Connection, role: str | None) -> None:
    """Triggers back on: the replica role set for the inserts ends before anything else."""
    if role is None:
        return
    # In a failed transaction this raises; its rollback resets the role anyway.
    with contextlib.suppress(Exception):
        conn.execute(text("SELECT set_config('session_replication_role', :r, true)"),
                     {"r": role})


def lock_references(conn: Connection, actor_id: int | None) -> None:
    """The foreign-key guarantee of the rows in ``_gg_new`` without the row-level checks:
    every referenced row is locked ``FOR KEY SHARE`` (as the RI triggers lock it), so none can
    be deleted or re-keyed before this transaction ends, and one that is already gone fails
    the import, as the RI check would."""
    for column, table in _REFERENCES:
        wanted, locked = conn.execute(text(
            f"WITH ids AS (SELECT DISTINCT {column} AS id FROM _gg_new"
            f"              WHERE {column} IS NOT NULL),"
            f" l AS (SELECT r.id FROM {table} r WHERE r.id IN (SELECT id FROM ids)"
            f"        FOR KEY SHARE OF r)"
            " SELECT (SELECT count(*) FROM ids), (SELECT count(*) FROM l)")).one()
        if wanted != locked:
            raise InvalidInput(f"{wanted - locked} {table} referenced by the import were"
                               " deleted meanwhile; nothing was imported", field=column)
    if actor_id is not None:
        found = conn.execute(text("SELECT count(*) FROM (SELECT 1 FROM users WHERE id = :u"
                                  " FOR KEY SHARE) s"), {"u": actor_id}).scalar()
        if found != 1:
            raise InvalidInput(f"user {actor_id} was deleted meanwhile", field="actor")


# The steps of apply_derived, in order (what a progress bar shows while they run).
DERIVED_STEPS = ("analyze", "tile cells", "case_tiles", "tile invalidation", "live feed",
                 "kpi_daily", *(name for name, _ in _FAST_KPI_ROLLUPS))


def apply_derived(conn: Connection, role: str, timings: dict[str, float],
                  on_step: Callable[[str], None] | None = None) -> None:
    """Every table the triggers on ``cases`` maintain, once, for all rows in ``_gg_new``.

    ``on_step`` is called with the name of each step of ``DERIVED_STEPS`` as it starts."""
    started_steps: set[str] = set()

    def step(name: str, sql: str, **params: Any) -> None:
        if on_step is not None and name not in started_steps:
            on_step(name)
        started_steps.add(name)
        started = time.perf_counter()
        conn.execute(text(sql), params)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started

    step("analyze", "ANALYZE _gg_new")
    step("tile cells", _FAST_CELLS)
    step("case_tiles", _FAST_CASE_TILES)
    step("tile invalidation", _FAST_TILE_INVALIDATE)
    step("live feed", _FAST_LIVE, bulk=_LIVE_BULK)
    step("kpi_daily", "DROP TABLE IF EXISTS _gg_kpi, _gg_ttc")
    step("kpi_daily", _FAST_KPI_DELTA)
    # kpi_daily's triggers off (replica): the rollups below are their statement for these rows.
    step("kpi_daily", "SELECT set_config('session_replication_role', 'replica', true)")
    try:
        step("kpi_daily", _FAST_KPI_APPLY)
    finally:
        restore_role(conn, role)
    step("kpi_daily", _FAST_KPI_TTC)
    for name, sql in _FAST_KPI_ROLLUPS:
        step(name, sql)


__all__ = ["DERIVED_STEPS", "apply_derived", "fast_load_refusal", "lock_references", "restore_role"]

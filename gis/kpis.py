"""KPIs of case handling (DOMAIN.md, "Evaluation"), per area, department, category or responder.

Every KPI is over the **cohort of cases reported in the period** (local days of the
jurisdiction, ``since`` inclusive, ``until`` exclusive), evaluated now:

============================  ================================================================
``closure_rate``              closed / due to close; *due to close* = not rejected, with a
                              deadline, and either closed or past its deadline
``on_time_rate``              closed by the deadline / due to close
``mean_ttc_h``, ``p90_ttc_h`` time from report to close of the closed cases (hours, exact)
``reopen_rate``               cases reopened at least once / cases handled at least once
``verify_pass_rate``          verifications that passed / verifications
``satisfaction``              mean rating (1–5) of the rated cases
``cases_per_1000``            cases per 1,000 residents of the area
``cases_per_responder``       cases per responder based in the area
============================  ================================================================

Two engines give the same numbers: ``rollup`` (default) reads ``kpi_daily`` (migration
0002_analysis, kept exact by triggers) plus the few open cases whose deadline is still ahead;
``cases`` computes everything from ``cases`` and ``case_events`` directly (reference, tests,
and ``by=responder``, which the rollup does not key on).

**Comparable across redraws**: ``basis="reported"`` groups cases by the area in force when they
were reported (``cases.area_id`` and its ancestors, merged by code); ``basis="current"`` by the
current area containing the case's point: cases whose grid is still current keep it, the others
are placed again with ``ST_Covers`` on the current subdivided grids.

Targets, directions and weights are rows of ``kpi_targets``; each row gets a composite
``score`` (0–100, weighted mean of min(1, value/target) or min(1, target/value)) and a rank.

>>> # compute_kpis(conn, KpiQuery(level="street", period="2026-10"))["rows"][0]["closure_rate"]
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis.areas import default_jurisdiction, level_rank, levels
from gis.errors import InvalidInput, NotFound

By = Literal["area", "department", "category", "responder"]
BY_VALUES = ("area", "department", "category", "responder")
INTERVALS = ("day", "week", "month")
KPI_NAMES = ("closure_rate", "on_time_rate", "mean_ttc_h", "p90_ttc_h", "reopen_rate",
             "verify_pass_rate", "satisfaction", "cases_per_1000", "cases_per_responder")
COUNT_COLUMNS = ("n", "n_due", "n_closed", "n_on_time", "n_rated", "sat_sum", "n_handled",
                 "n_reopened", "n_verify", "n_verify_pass")
MAX_DAYS = 3 * 366 + 1


@dataclass(frozen=True)
class KpiQuery:
    """What to compute. ``period`` (``2026``, ``2026-Q3``, ``2026-10``, ``2026-W40``,
    ``2026-10-05``, ``30d``) or ``since``/``until`` (dates, until exclusive); default: the last
    365 days."""

    level: str | int | None = None
    by: str = "area"
    period: str | None = None
    since: date | None = None
    until: date | None = None
    category: str | None = None
    area: str | None = None
    basis: str = "reported"
    engine: str = "rollup"
    rank_by: str | None = None
    jurisdiction_id: int | None = None


# --------------------------------------------------------------------------- periods


def parse_period(period: str | None, since: date | None, until: date | None,
                 today: date) -> tuple[date, date]:
    """``(since, until)`` as local dates, until exclusive; 422 naming the bad parameter.

    >>> parse_period("2026-Q3", None, None, date(2026, 11, 1))
    (datetime.date(2026, 7, 1), datetime.date(2026, 10, 1))
    >>> parse_period("2026-10", None, None, date(2026, 11, 1))
    (datetime.date(2026, 10, 1), datetime.date(2026, 11, 1))
    """
    if period is not None and (since is not None or until is not None):
        raise InvalidInput("give either period or since/until, not both", field="period")
    if period is not None:
        p = period.strip()
        try:
            if m := re.fullmatch(r"(\d{4})", p):
                y = int(m[1])
                start, end = date(y, 1, 1), date(y + 1, 1, 1)
            elif m := re.fullmatch(r"(\d{4})-Q([1-4])", p, re.IGNORECASE):
                y, q = int(m[1]), int(m[2])
                start = date(y, 3 * q - 2, 1)
                end = date(y + (q == 4), (3 * q) % 12 + 1, 1)
            elif m := re.fullmatch(r"(\d{4})-(\d{2})", p):
                y, mo = int(m[1]), int(m[2])
                start = date(y, mo, 1)
                end = date(y + (mo == 12), mo % 12 + 1, 1)
            elif m := re.fullmatch(r"(\d{4})-W(\d{2})", p, re.IGNORECASE):
                start = date.fromisocalendar(int(m[1]), int(m[2]), 1)
                end = start + timedelta(days=7)
            elif m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})", p):
                start = date.fromisoformat(m[1])
                end = start + timedelta(days=1)
            elif m := re.fullmatch(r"(\d{1,4})d", p):
                days = int(m[1])
                if days < 1:
                    raise ValueError("at least one day")
                end = today + timedelta(days=1)
                start = end - timedelta(days=days)
            else:
                raise ValueError("unknown form")
        except ValueError as exc:
            raise InvalidInput(
                f"period {period!r} is not one of YYYY, YYYY-Qn, YYYY-MM, YYYY-Www, "
                f"YYYY-MM-DD or Nd (last N days)", field="period") from exc
        return start, end
    end = until if until is not None else today + timedelta(days=1)
    start = since if since is not None else end - timedelta(days=365)
    if start >= end:
        raise InvalidInput(f"since ({start}) must be before until ({end}); until is exclusive",
                           field="until")
    if (end - start).days > MAX_DAYS:
        raise InvalidInput(f"the period from {start} to {end} is longer than {MAX_DAYS} days",
                           field="since")
    return start, end


# --------------------------------------------------------------------------- SQL pieces

_CLOSED = "(c.status = 'closed' AND c.due_at IS NOT NULL AND c.closed_at IS NOT NULL)"
# Per-case facts: the same expressions as the rollup's (migration 0002_analysis), except that
# "due" is evaluated now (closed, or past the deadline).
_DIRECT_FACTS = f"""
    CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day,
    {{area}} AS area_id, c.category_id, COALESCE(c.department_id, 0) AS department_id,
    c.responder_id,
    1 AS n,
    CAST(c.status <> 'rejected' AND c.due_at IS NOT NULL
         AND (c.status = 'closed' OR c.due_at <= CAST(:now AS timestamptz)) AS integer) AS n_due,
    CAST({_CLOSED} AS integer) AS n_closed,
    CAST({_CLOSED} AND c.closed_at <= c.due_at AS integer) AS n_on_time,
    CASE WHEN {_CLOSED} THEN ARRAY[CAST(GREATEST(0, round(EXTRACT(EPOCH FROM
         c.closed_at - c.reported_at))) AS integer)]
         ELSE CAST('{{{{}}}}' AS integer[]) END AS ttc_s,
    CAST(c.satisfaction IS NOT NULL AS integer) AS n_rated,
    COALESCE(c.satisfaction, 0) AS sat_sum,
    CAST(c.status IN ('handled', 'verified', 'closed', 'reopened')
         OR COALESCE(ev.handled, false) AS integer) AS n_handled,
    CAST(c.status = 'reopened' OR COALESCE(ev.reopened, false) AS integer) AS n_reopened,
    CAST(COALESCE(ev.verify, 0) AS integer) AS n_verify,
    CAST(COALESCE(ev.verify_pass, 0) AS integer) AS n_verify_pass
"""
_EVENTS = """
    LEFT JOIN LATERAL (
        SELECT bool_or(e.action = 'handle') AS handled,
               bool_or(e.to_state = 'reopened') AS reopened,
               count(*) FILTER (WHERE e.action = 'verify') AS verify,
               count(*) FILTER (WHERE e.action = 'verify' AND e.to_state = 'verified')
                 AS verify_pass
          FROM case_events e WHERE e.case_id = c.id) ev ON true
"""
# The current grid of a case point (deepest level, smallest code: as intake assigns).
_CURRENT_GRID = """
    LEFT JOIN LATERAL (
        SELECT a2.id FROM area_parts p JOIN areas a2 ON a2.id = p.area_id
         WHERE a2.jurisdiction_id = :j AND p.valid_to IS NULL
           AND ST_Covers(p.geom, CASE WHEN GeometryType(c.geom) = 'POINT' THEN c.geom
                                      ELSE ST_PointOnSurface(c.geom) END)
         ORDER BY p.level DESC, a2.code LIMIT 1) cur ON {when}
"""
_PERIOD = ("c.reported_at >= CAST(:since AS timestamp) AT TIME ZONE j.timezone"
           " AND c.reported_at < CAST(:until AS timestamp) AT TIME ZONE j.timezone")


def _direct(where_area: str, area_expr: str, join_current: str, cat_filter: str) -> str:
    return f"""
        SELECT {_DIRECT_FACTS.format(area=area_expr)}
          FROM cases c
          JOIN jurisdictions j ON j.id = c.jurisdiction_id
          LEFT JOIN areas ca ON ca.id = c.area_id
          {join_current}
          {_EVENTS}
         WHERE c.jurisdiction_id = :j AND c.area_id IS NOT NULL AND {_PERIOD}
           {where_area} {cat_filter}
    """


def _rollup(where_area: str, cat_filter: str) -> str:
    counts = ", ".join(f"k.{c}" for c in COUNT_COLUMNS)
    return f"""
        SELECT k.day, k.area_id, k.category_id, k.department_id, CAST(NULL AS bigint)
               AS responder_id, {counts.replace('k.n_rated', 'k.ttc_s, k.n_rated')}
          FROM kpi_daily k
          JOIN areas ca ON ca.id = k.area_id
         WHERE ca.jurisdiction_id = :j AND k.day >= CAST(:since AS date)
           AND k.day < CAST(:until AS date) {where_area} {cat_filter.replace('c.', 'k.')}
    """


def _not_yet_due(where_area: str, cat_filter: str) -> str:
    """Open cases whose deadline is still ahead: counted as due by the rollup, not due now."""
    zeros = ", ".join(f"0 AS {c}" for c in COUNT_COLUMNS if c not in ("n_due",))
    return f"""
        SELECT CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day, c.area_id,
               c.category_id, COALESCE(c.department_id, 0) AS department_id,
               CAST(NULL AS bigint) AS responder_id, -1 AS n_due,
               CAST('{{}}' AS integer[]) AS ttc_s, {zeros}
          FROM cases c
          JOIN jurisdictions j ON j.id = c.jurisdiction_id
          JOIN areas ca ON ca.id = c.area_id
         WHERE c.jurisdiction_id = :j AND c.status NOT IN ('closed', 'rejected')
           AND c.due_at > CAST(:now AS timestamptz) AND {_PERIOD}
           {where_area} {cat_filter}
    """


_COLUMNS = ("day", "area_id", "category_id", "department_id", "responder_id", "n", "n_due",
            "n_closed", "n_on_time", "ttc_s", "n_rated", "sat_sum", "n_handled", "n_reopened",
            "n_verify", "n_verify_pass")


def _facts_sql(q: KpiQuery, cat_filter: str) -> str:
    """A SELECT of uniform fact rows (columns ``_COLUMNS``) for the query's engine and basis."""
    cols = ", ".join(_COLUMNS)

    def uniform(sql: str) -> str:
        return f"SELECT {cols} FROM ({sql}) s"

    if q.engine == "cases" or q.by == "responder":
        if q.basis == "current":
            return uniform(_direct("", "COALESCE(cur.id, c.area_id)",
                                   _CURRENT_GRID.format(when="ca.valid_to IS NOT NULL"),
                                   cat_filter))
        return uniform(_direct("", "c.area_id", "", cat_filter))
    if q.basis == "current":
        current = "AND ca.valid_to IS NULL"
        return " UNION ALL ".join([
            uniform(_rollup(current, cat_filter)),
            uniform(_not_yet_due(current, cat_filter)),
            uniform(_direct("AND ca.valid_to IS NOT NULL", "cur.id",
                            _CURRENT_GRID.format(when="true"), cat_filter)),
        ])
    return " UNION ALL ".join([uniform(_rollup("", cat_filter)),
                               uniform(_not_yet_due("", cat_filter))])


# --------------------------------------------------------------------------- computing


def targets(conn: Connection) -> dict[str, dict[str, Any]]:
    """``{kpi: {label, target, direction, weight, unit}}`` from ``kpi_targets``."""
    rows = conn.execute(text("SELECT kpi, label, target, direction, weight, unit"
                             " FROM kpi_targets ORDER BY kpi")).mappings()
    return {r["kpi"]: dict(r) for r in rows}


def set_target(conn: Connection, kpi: str, *, target: float | None = None,
               direction: str | None = None, weight: float | None = None,
               label: str | None = None) -> dict[str, Any]:
    """Change a KPI's target, direction or weight (the evaluation model is configuration)."""
    if kpi not in KPI_NAMES:
        raise NotFound(f"unknown KPI {kpi!r}; KPIs are: {', '.join(KPI_NAMES)}", field="kpi")
    if direction is not None and direction not in ("higher", "lower"):
        raise InvalidInput("direction must be 'higher' or 'lower'", field="direction")
    if weight is not None and (not math.isfinite(weight) or weight < 0):
        raise InvalidInput("weight must be a finite number >= 0", field="weight")
    if target is not None and not math.isfinite(target):
        raise InvalidInput("target must be a finite number", field="target")
    conn.execute(text(
        "INSERT INTO kpi_targets (kpi, label, target, direction, weight) VALUES"
        " (:kpi, COALESCE(:label, :kpi), :target, COALESCE(:direction, 'higher'),"
        " COALESCE(:weight, 1)) ON CONFLICT (kpi) DO UPDATE SET"
        " target = COALESCE(:target, kpi_targets.target),"
        " direction = COALESCE(:direction, kpi_targets.direction),"
        " weight = COALESCE(:weight, kpi_targets.weight),"
        " label = COALESCE(:label, kpi_targets.label)"),
        {"kpi": kpi, "label": label, "target": target, "direction": direction,
         "weight": weight})
    return targets(conn)[kpi]


def _resolve(conn: Connection, q: KpiQuery, now: datetime) -> tuple[KpiQuery, int, date, date]:
    if q.by not in BY_VALUES:
        raise InvalidInput(f"by must be one of {', '.join(BY_VALUES)}, not {q.by!r}", field="by")
    if q.basis not in ("reported", "current"):
        raise InvalidInput(f"basis must be 'reported' or 'current', not {q.basis!r}",
                           field="basis")
    if q.engine not in ("rollup", "cases"):
        raise InvalidInput(f"engine must be 'rollup' or 'cases', not {q.engine!r}",
                           field="engine")
    if q.rank_by is not None and q.rank_by not in ("score", *KPI_NAMES, "n"):
        raise InvalidInput(f"rank_by must be score, n or a KPI ({', '.join(KPI_NAMES)})",
                           field="rank_by")
    jid = q.jurisdiction_id if q.jurisdiction_id is not None else default_jurisdiction(conn)
    tz = conn.execute(text("SELECT timezone FROM jurisdictions WHERE id = :j"),
                      {"j": jid}).scalar()
    if tz is None:
        raise NotFound(f"no jurisdiction {jid}", field="jurisdiction")
    from zoneinfo import ZoneInfo

    today = now.astimezone(ZoneInfo(str(tz))).date()
    since, until = parse_period(q.period, q.since, q.until, today)
    level = q.level
    if level is None:
        level = levels(conn, jid)[-1]["rank"]
    rank = level_rank(conn, level, jid)
    if q.category is not None:
        found = conn.execute(text("SELECT 1 FROM categories WHERE code = :c"),
                             {"c": q.category}).first()
        if found is None:
            raise InvalidInput(f"unknown category {q.category!r}", field="category")
    if q.area is not None:
        found = conn.execute(text("SELECT 1 FROM areas WHERE jurisdiction_id = :j AND code = :c"),
                             {"j": jid, "c": q.area}).first()
        if found is None:
            raise InvalidInput(f"unknown area {q.area!r}", field="area")
    return replace(q, level=rank, jurisdiction_id=jid), jid, since, until


def _group_sql(q: KpiQuery, interval: str | None) -> tuple[str, str, str]:
    """(join clause, integer group id, text group key) over ``facts f``.

    Grouping and sorting run on the integer id (the time-to-close percentiles sort every
    closed case by group: integers sort several times faster than text under a non-C
    collation). By area, the id comes from :func:`_area_groups` (bound as two arrays) and the
    code is attached afterwards; otherwise the text key is carried along as ``min()``.
    """
    if interval is not None:
        return ("", f"CAST(date_trunc('{interval}', f.day) AS date) - DATE '2000-01-01'",
                f"to_char(date_trunc('{interval}', f.day), 'YYYY-MM-DD')")
    if q.by == "area":
        # A lookup array indexed by area id: no join to plan (the planner, misled by the
        # estimates of the UNION ALL below, sorted ~10⁶ fact rows for a merge join).
        return "", "(CAST(:map_lookup AS integer[]))[f.area_id - :map_base]", "NULL"
    if q.by == "department":
        return "", "f.department_id", "CAST(f.department_id AS text)"
    if q.by == "category":
        return "JOIN categories kc ON kc.id = f.category_id", "f.category_id", "kc.code"
    return ("", "COALESCE(f.responder_id, -1)",
            "COALESCE(CAST(f.responder_id AS text), '-')")


_GROUPS_CACHE: OrderedDict[tuple[str, int, int, str],
                           tuple[int, tuple[int, list[int], list[str]]]] = OrderedDict()
_GROUPS_LOCK = threading.Lock()


def _areas_version(conn: Connection) -> int:
    return int(conn.execute(text(
        "SELECT COALESCE((SELECT version FROM data_versions WHERE name = 'areas'), 0)")
    ).scalar_one())


def _area_groups(conn: Connection, q: KpiQuery) -> tuple[int, list[int], list[str]]:
    """The group of every area (any version) with an ancestor-or-self at ``q.level``:
    ``(base, lookup, codes)`` with ``lookup[area_id - base]`` (SQL: 1-based) the group id,
    -1 for none, and ``codes[group id]`` its code. The versions of one code share a group id
    (a grid keeps its history through redraws). With ``basis=current`` only current areas
    start a chain. Cached until ``data_versions['areas']`` changes."""
    version = _areas_version(conn)
    key = (conn.engine.url.render_as_string(hide_password=True), int(q.jurisdiction_id or 0),
           int(q.level or 0), q.basis)
    with _GROUPS_LOCK:
        hit = _GROUPS_CACHE.get(key)
        if hit is not None and hit[0] == version:
            _GROUPS_CACHE.move_to_end(key)
            return hit[1]
    current_only = "AND a.valid_to IS NULL" if q.basis == "current" else ""
    rows = conn.execute(text(f"""
        {_chain_cte(current_only)}
        SELECT start_id, code FROM chain WHERE level = :level ORDER BY start_id
        """), {"j": q.jurisdiction_id, "level": q.level}).all()
    gid_of: dict[str, int] = {}
    base = int(rows[0][0]) - 1 if rows else 0
    lookup = [-1] * (int(rows[-1][0]) - base if rows else 0)
    for start_id, code in rows:
        lookup[int(start_id) - base - 1] = gid_of.setdefault(str(code), len(gid_of))
    value = (base, lookup, list(gid_of))
    with _GROUPS_LOCK:
        _GROUPS_CACHE[key] = (version, value)
        _GROUPS_CACHE.move_to_end(key)
        while len(_GROUPS_CACHE) > 16:
            _GROUPS_CACHE.popitem(last=False)
    return value


# Sorting every closed case's time to close (the exact p90) needs memory, not temp files.
_KPI_WORK_MEM = "256MB"


def _aggregate(conn: Connection, q: KpiQuery, since: date, until: date, now: datetime,
               interval: str | None = None) -> list[dict[str, Any]]:
    cat_filter = ""
    params: dict[str, Any] = {"j": q.jurisdiction_id, "since": since, "until": until,
                              "now": now, "level": q.level, "area": q.area,
                              "category": q.category}
    if q.category is not None:
        cat_filter = ("AND c.category_id IN (SELECT id FROM categories"
                      " WHERE code LIKE CAST(:category AS text) || '%')")
    current_only = "AND a.valid_to IS NULL" if q.basis == "current" else ""
    join, gid, key = _group_sql(q, interval)
    codes: list[str] = []
    if q.by == "area" and interval is None:
        base, lookup, codes = _area_groups(conn, q)
        present = [i for i, g in enumerate(lookup) if g >= 0]
        if len(lookup) <= 8 * len(present) + 65536:
            params["map_base"], params["map_lookup"] = base, lookup
        else:  # ids too sparse for a lookup array: join the (area id, group id) pairs
            join, gid = ("JOIN unnest(CAST(:map_area AS bigint[]), CAST(:map_gid AS integer[]))"
                         " AS g(area_id, gid) ON g.area_id = f.area_id"), "g.gid"
            params["map_area"] = [base + 1 + i for i in present]
            params["map_gid"] = [lookup[i] for i in present]
    area_filter = ("JOIN chain flt ON flt.start_id = f.area_id AND flt.code = :area"
                   if q.area is not None else "")
    if q.by == "area" and interval is None and q.category is None and q.engine == "rollup":
        return _aggregate_by_area(conn, q, since, until, params,
                                  group=(join, gid, area_filter, current_only, codes))
    sums = ", ".join(f"sum(f.{c}) AS {c}" for c in COUNT_COLUMNS)
    nulls = ", ".join(f"NULL AS {c}" for c in COUNT_COLUMNS)
    sql = f"""
    {_chain_cte(current_only)}, facts AS MATERIALIZED (
        SELECT * FROM (
            SELECT {gid} AS gid, {key} AS gkey, f.*
              FROM ({_facts_sql(q, cat_filter)}) f
              {join} {area_filter}
        ) x WHERE x.gid >= 0
    ), sums AS (
        SELECT f.gid, CASE WHEN GROUPING(f.gid) = 0 THEN min(f.gkey) END AS gk, {sums}
          FROM facts f
         GROUP BY GROUPING SETS ((f.gid), ())
    ), ttc AS (
        -- unnest in the select list (ProjectSet) rather than a LATERAL function scan, which
        -- fills a tuplestore per fact row.
        SELECT v.gid, avg(v.t) AS mean_ttc_s,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY v.t) AS p90_ttc_s
          FROM (SELECT f.gid, unnest(f.ttc_s) AS t FROM facts f
                 WHERE cardinality(f.ttc_s) > 0) v
         GROUP BY GROUPING SETS ((v.gid), ())
    )
    SELECT s.*, CAST(NULL AS numeric) AS mean_ttc_s, CAST(NULL AS float8) AS p90_ttc_s
      FROM sums s
    UNION ALL
    SELECT t.gid, NULL AS gk, {nulls}, t.mean_ttc_s, t.p90_ttc_s FROM ttc t
    """
    # Both halves come back as rows and are matched here: a join of the two grouped results
    # in SQL is planned as a nested loop on misestimated row counts (minutes for 20,000 grids).
    merged: dict[Any, dict[str, Any]] = {}
    previous = conn.execute(text("SELECT current_setting('work_mem')")).scalar_one()
    conn.execute(text("SELECT set_config('work_mem', :m, true)"), {"m": _KPI_WORK_MEM})
    try:
        result = conn.execute(text(sql), params)
        names = list(result.keys())
        records = result.all()
    finally:
        conn.execute(text("SELECT set_config('work_mem', :m, true)"), {"m": previous})
    count_at = [(c, names.index(c)) for c in COUNT_COLUMNS]
    i_gid, i_gk, i_mean, i_p90 = (names.index(c) for c in ("gid", "gk", "mean_ttc_s",
                                                           "p90_ttc_s"))
    for r in records:
        gid_value = r[i_gid]
        row = merged.get(gid_value)
        if row is None:
            gkey = r[i_gk]
            if gkey is None and codes and gid_value is not None:
                gkey = codes[gid_value]
            row = merged[gid_value] = {"gkey": gkey}
        elif row["gkey"] is None and r[i_gk] is not None:
            row["gkey"] = r[i_gk]
        if r[i_p90] is not None or r[i_mean] is not None:  # a time-to-close row
            row["mean_ttc_s"], row["p90_ttc_s"] = r[i_mean], r[i_p90]
        else:
            for c, i in count_at:
                row[c] = r[i]
    return list(merged.values())


# --------------------------------------------------------------------------- by area, fast
#
# ``kpi_area`` (migration 0006_kpi_fast) holds per (day or month, area) the counts, the sum of
# the times to close, their histogram in fixed bins (plain columns h00…) and the times to close
# sorted. A level × period query reads the month rows of the whole months and the day rows of
# the ragged ends, and gets percentile_cont's two ranks exactly in two passes:
#   1. per group the summed counts and histogram → the bins holding ranks ⌊0.9(n−1)⌋ and
#      ⌈0.9(n−1)⌉ and how many values lie below them;
#   2. only the values of those bins, sliced out of each sorted array with ``width_bucket(x,
#      ttc_s)`` (a binary search: how many values are <= x), sorted per group, picked by rank.
# A year of 10⁷ cases then ranks ~2·10⁵ values instead of 10⁷.

_INT4_MAX = 2**31 - 1
_EDGES_CACHE: dict[str, list[int]] = {}


def _ttc_edges(conn: Connection) -> list[int]:
    """Lower bounds of the histogram bins 1… (bin 0 starts at 0), as the rollup uses them."""
    key = conn.engine.url.render_as_string(hide_password=True)
    edges = _EDGES_CACHE.get(key)
    if edges is None:
        edges = _EDGES_CACHE[key] = [int(e) for e in conn.execute(
            text("SELECT gridgov_kpi_ttc_edges()")).scalar_one()]
    return edges


def _bins(edges: list[int]) -> list[str]:
    return [f"h{i:02d}" for i in range(len(edges) + 1)]


def _area_facts(q: KpiQuery, bins: list[str], columns: str) -> str:
    """Rows (area_id, counts, ttc_sum, h00…, ttc_s) of the period: ``kpi_area`` plus the open
    cases not yet due (and, by the current grid, the cases of retired grids placed again)."""
    counts = ", ".join(f"k.{c}" for c in COUNT_COLUMNS)
    hist = ", ".join(f"k.{b}" for b in bins)
    where_area = "AND ca.valid_to IS NULL" if q.basis == "current" else ""
    # No join with areas: the group lookup maps only the jurisdiction's areas (only current
    # ones by the current grid); every other area id gets no group and is dropped.
    rollup = f"""
        SELECT k.area_id, {counts}, k.ttc_sum, {hist}, k.ttc_s FROM kpi_area k WHERE {{when}}
    """
    parts = [
        rollup.format(when="k.monthly AND k.period >= CAST(:m_since AS date)"
                           " AND k.period < CAST(:m_until AS date)"),
        rollup.format(when="NOT k.monthly AND k.period >= CAST(:since AS date)"
                           " AND k.period < CAST(:m_since AS date)"),
        rollup.format(when="NOT k.monthly AND k.period >= CAST(:m_until AS date)"
                           " AND k.period < CAST(:until AS date)"),
    ]
    zeros = ", ".join(["0 AS ttc_sum", *(f"0 AS {b}" for b in bins)])
    counts_s = ", ".join(f"s.{c}" for c in COUNT_COLUMNS)
    parts.append(f"SELECT s.area_id, {counts_s}, {zeros}, s.ttc_s"
                 f" FROM ({_not_yet_due(where_area, '')}) s")
    if q.basis == "current":
        one = ", ".join(f"CAST(COALESCE(width_bucket(s.ttc_s[1], gridgov_kpi_ttc_edges()) = {i},"
                        f" false) AS integer) AS {b}" for i, b in enumerate(bins))
        parts.append(f"SELECT s.area_id, {counts_s}, COALESCE(s.ttc_s[1], 0) AS ttc_sum, {one},"
                     " s.ttc_s FROM ("
                     + _direct("AND ca.valid_to IS NOT NULL", "cur.id",
                               _CURRENT_GRID.format(when="true"), "") + ") s")
    return " UNION ALL ".join(f"SELECT {columns} FROM ({p}) u" for p in parts)


def _chain_cte(current_only: str) -> str:
    """``WITH RECURSIVE chain``: every area of jurisdiction ``:j`` (``current_only``: in force
    now) with each of its ancestors, as (start_id, id, parent_id, level, code)."""
    return f"""WITH RECURSIVE chain AS (
            SELECT a.id AS start_id, a.id, a.parent_id, a.level, a.code
              FROM areas a WHERE a.jurisdiction_id = :j {current_only}
            UNION ALL
            SELECT ch.start_id, p.id, p.parent_id, p.level, p.code
              FROM chain ch JOIN areas p ON p.id = ch.parent_id
        )"""


def _month_span(since: date, until: date) -> tuple[date, date]:
    """The whole months inside [since, until) as [m_since, m_until); empty: (until, until).

    >>> _month_span(date(2025, 11, 24), date(2026, 11, 24))
    (datetime.date(2025, 12, 1), datetime.date(2026, 11, 1))
    """
    m_since = since if since.day == 1 else (since.replace(day=28) + timedelta(days=4)
                                            ).replace(day=1)
    m_until = until.replace(day=1)
    return (m_since, m_until) if m_since < m_until else (until, until)


def _p90_ranks(n: int) -> tuple[float, int, int]:
    """percentile_cont(0.9)'s position and its two 0-based ranks among n values."""
    pos = 0.9 * (n - 1)
    return pos, math.floor(pos), math.ceil(pos)


def _aggregate_by_area(conn: Connection, q: KpiQuery, since: date, until: date,
                       params: dict[str, Any], *, group: tuple[str, str, str, str, list[str]]
                       ) -> list[dict[str, Any]]:
    join, gid, area_filter, current_only, codes = group
    edges = _ttc_edges(conn)
    bins = _bins(edges)
    params["m_since"], params["m_until"] = _month_span(since, until)
    chain = _chain_cte(current_only)
    cols1 = ", ".join(["area_id", *COUNT_COLUMNS, "ttc_sum", *bins])
    sums = ", ".join(f"sum(x.{c}) AS {c}" for c in COUNT_COLUMNS)
    hist = ", ".join(f"sum(x.{b})" for b in bins)
    pass1 = f"""{chain}
        SELECT x.gid, {sums}, sum(x.ttc_sum) / NULLIF(sum(x.n_closed), 0) AS mean_ttc_s,
               ARRAY[{hist}] AS hist
          FROM (SELECT {gid} AS gid, f.* FROM ({_area_facts(q, bins, cols1)}) f
                  {join} {area_filter}) x
         WHERE x.gid >= 0
         GROUP BY GROUPING SETS ((x.gid), ())
    """
    # The planner misjudges the row counts of the UNION ALL: it would sort 10⁵ wide rows for
    # the grouping sets and for a merge join with the bounds; hashing is the right plan.
    settings = {"work_mem": _KPI_WORK_MEM, "enable_sort": "off", "enable_mergejoin": "off"}
    previous = {k: conn.execute(text("SELECT current_setting(:k)"), {"k": k}).scalar_one()
                for k in settings}
    for k, v in settings.items():
        conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})
    try:
        result = conn.execute(text(pass1), params)
        names = list(result.keys())
        records = result.all()
        rows, wanted = _locate_p90(records, names, edges, codes)
        if wanted:
            _pick_p90(conn, q, params, chain, gid, join, area_filter, bins, rows, wanted)
    finally:
        for k, v in previous.items():
            conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})
    return list(rows.values())


# (slice bounds lo_x, hi_x: values v with lo_x < v <= hi_x; ranks r_lo, r_hi inside the slice;
#  position and its floor for the interpolation)
_Wanted = dict[Any, tuple[int, int, int, int, float, int]]


def _locate_p90(records: Sequence[Any], names: list[str], edges: list[int], codes: list[str]
                ) -> tuple[dict[Any, dict[str, Any]], _Wanted]:
    """Pass 1's rows as result rows, and for each group with closed cases the bins (as a value
    range) holding percentile_cont's two ranks."""
    i_gid, i_hist, i_mean = names.index("gid"), names.index("hist"), names.index("mean_ttc_s")
    count_at = [(c, names.index(c)) for c in COUNT_COLUMNS]
    rows: dict[Any, dict[str, Any]] = {}
    wanted: _Wanted = {}
    for r in records:
        g = r[i_gid]
        row: dict[str, Any] = {"gkey": codes[g] if g is not None else None}
        for c, i in count_at:
            row[c] = r[i]
        row["mean_ttc_s"], row["p90_ttc_s"] = r[i_mean], None
        rows[g] = row
        hist = [h or 0 for h in r[i_hist]]  # the () grouping set over no rows sums to NULL
        n = sum(hist)
        if n == 0:
            continue
        pos, k_lo, k_hi = _p90_ranks(n)
        below = seen = 0
        b_lo = b_hi = -1
        for b, count in enumerate(hist):
            if b_lo < 0 and seen + count > k_lo:
                b_lo, below = b, seen
            if seen + count > k_hi:
                b_hi = b
                break
            seen += count
        lo_x = edges[b_lo - 1] - 1 if b_lo > 0 else -1
        hi_x = edges[b_hi] - 1 if b_hi < len(edges) else _INT4_MAX
        wanted[g] = (lo_x, hi_x, k_lo - below, k_hi - below, pos, k_lo)
    return rows, wanted


def _pick_p90(conn: Connection, q: KpiQuery, params: dict[str, Any], chain: str, gid: str,
              join: str, area_filter: str, bins: list[str], rows: dict[Any, dict[str, Any]],
              wanted: _Wanted) -> None:
    """Pass 2: the values of each group's p90 bins only; picks the ranks."""
    groups = [g for g in wanted if g is not None]
    params.update(b_gid=groups, b_lo=[wanted[g][0] for g in groups],
                  b_hi=[wanted[g][1] for g in groups], b_rlo=[wanted[g][2] for g in groups],
                  b_rhi=[wanted[g][3] for g in groups])
    t_lo, t_hi, t_rlo, t_rhi, _pos, _k = wanted.get(None, (-1, -1, 0, 0, 0.0, 0))
    params.update(t_lo=t_lo, t_hi=t_hi, t_rlo=t_rlo, t_n=t_rhi - t_rlo + 1)
    # Bounds come as a joined relation: subscripting 20,000-element array constants per row
    # cost ~1 µs each. Ranks by one sort and row_number (a per-group ordered aggregate starts
    # a sort per group); the total's two ranks by a bounded sort (OFFSET … LIMIT).
    pass2 = f"""{chain}, y AS MATERIALIZED (
            SELECT b.gid, s.v, s.w
              FROM (SELECT {gid} AS gid, f.ttc_s FROM ({_area_facts(q, bins, "area_id, ttc_s")})
                           f {join} {area_filter}) x
              JOIN unnest(CAST(:b_gid AS integer[]), CAST(:b_lo AS integer[]),
                          CAST(:b_hi AS integer[])) AS b(gid, lo, hi) ON b.gid = x.gid
             CROSS JOIN LATERAL (SELECT
                   x.ttc_s[width_bucket(b.lo, x.ttc_s) + 1 : width_bucket(b.hi, x.ttc_s)] AS v,
                   x.ttc_s[width_bucket(CAST(:t_lo AS integer), x.ttc_s) + 1
                           : width_bucket(CAST(:t_hi AS integer), x.ttc_s)] AS w) s
             WHERE cardinality(x.ttc_s) > 0
        )
        SELECT r.gid, r.rn, r.t
          FROM (SELECT v.gid, v.t, row_number() OVER (PARTITION BY v.gid ORDER BY v.t) - 1 AS rn
                  FROM (SELECT y.gid, unnest(y.v) AS t FROM y) v) r
          JOIN unnest(CAST(:b_gid AS integer[]), CAST(:b_rlo AS integer[]),
                      CAST(:b_rhi AS integer[])) AS k(gid, rlo, rhi)
            ON k.gid = r.gid AND (r.rn = k.rlo OR r.rn = k.rhi)
        UNION ALL
        SELECT -1, CAST(:t_rlo AS bigint) + row_number() OVER () - 1, w.t
          FROM (SELECT u.t FROM (SELECT unnest(y.w) AS t FROM y) u ORDER BY u.t
                OFFSET CAST(:t_rlo AS bigint) LIMIT CAST(:t_n AS bigint)) w
    """
    picked: dict[Any, dict[int, int]] = {}
    for g, rn, t in conn.execute(text(pass2), params).all():
        picked.setdefault(None if g == -1 else g, {})[int(rn)] = int(t)
    for key, (_lo, _hi, r_lo, r_hi, pos, k_lo) in wanted.items():
        values = picked[key]
        a, b = float(values[r_lo]), float(values[r_hi])
        # percentile_cont's interpolation, in the same float8 arithmetic
        rows[key]["p90_ttc_s"] = a + (b - a) * (pos - k_lo)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b > 0 else None


_ZEROS = dict.fromkeys(COUNT_COLUMNS, 0)


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = ({c: int(row.get(c) or 0) for c in COUNT_COLUMNS} if row
                           else _ZEROS.copy())
    n_due = out["n_due"] = max(out["n_due"], 0)
    mean, p90 = row.get("mean_ttc_s"), row.get("p90_ttc_s")
    out["closure_rate"] = _ratio(out["n_closed"], n_due)
    out["on_time_rate"] = _ratio(out["n_on_time"], n_due)
    out["mean_ttc_h"] = round(float(mean) / 3600, 2) if mean is not None else None
    out["p90_ttc_h"] = round(float(p90) / 3600, 2) if p90 is not None else None
    out["reopen_rate"] = _ratio(out["n_reopened"], out["n_handled"])
    out["verify_pass_rate"] = _ratio(out["n_verify_pass"], out["n_verify"])
    out["satisfaction"] = (round(out["sat_sum"] / out["n_rated"], 3) if out["n_rated"]
                           else None)
    return out


Targets = list[tuple[str, float, float, bool]]


def _scoring(tg: dict[str, dict[str, Any]]) -> Targets:
    """(kpi, target, weight, higher is better) of the KPIs that have a target."""
    return [(kpi, float(spec["target"]), float(spec.get("weight") or 0),
             spec["direction"] == "higher")
            for kpi, spec in tg.items() if spec.get("target") is not None]


def _score(row: dict[str, Any], scoring: Targets) -> tuple[float | None, list[str]]:
    total = weight = 0.0
    met = []
    for kpi, target, w, higher in scoring:
        value = row.get(kpi)
        if value is None:
            continue
        ok = value >= target if higher else value <= target
        if ok:
            met.append(kpi)
        if w <= 0:
            continue
        if higher:
            achieved = min(value / target, 1.0) if target > 0 else 1.0
        else:
            achieved = min(target / value, 1.0) if value > 0 else 1.0
        total += w * achieved
        weight += w
    return (round(100 * total / weight, 1) if weight else None), met


_LABELS_CACHE: OrderedDict[tuple[str, int, int], tuple[int, dict[str, dict[str, Any]]]] = \
    OrderedDict()
_LABELS_LOCK = threading.Lock()


def _area_labels(conn: Connection, jurisdiction_id: int, level: int
                 ) -> dict[str, dict[str, Any]]:
    """Name, population and label point of each code of a level (its latest version), cached
    until ``data_versions['areas']`` changes (20,000 label points cost more than the KPIs'
    arithmetic). Callers must not modify the rows."""
    version = _areas_version(conn)
    key = (conn.engine.url.render_as_string(hide_password=True), jurisdiction_id, level)
    with _LABELS_LOCK:
        hit = _LABELS_CACHE.get(key)
        if hit is not None and hit[0] == version:
            _LABELS_CACHE.move_to_end(key)
            return hit[1]
    rows = conn.execute(text(
        """
        SELECT code, name, population, households, current,
               ST_Y(p) AS lat, ST_X(p) AS lon
          FROM (SELECT DISTINCT ON (a.code) a.code, a.name, a.population, a.households,
                       (a.valid_to IS NULL) AS current, ST_PointOnSurface(a.geom) AS p
                  FROM areas a WHERE a.jurisdiction_id = :j AND a.level = :level
                 ORDER BY a.code, a.valid_to IS NULL DESC, a.valid_from DESC) s
        """), {"j": jurisdiction_id, "level": level}).mappings()
    labels = {r["code"]: dict(r) for r in rows}
    with _LABELS_LOCK:
        _LABELS_CACHE[key] = (version, labels)
        _LABELS_CACHE.move_to_end(key)
        while len(_LABELS_CACHE) > 16:
            _LABELS_CACHE.popitem(last=False)
    return labels


def _labels(conn: Connection, q: KpiQuery, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Names and population of the group keys."""
    if q.by == "area":
        return _area_labels(conn, int(q.jurisdiction_id or 0), int(q.level or 0))
    if q.by == "department":
        deps = conn.execute(text("SELECT CAST(id AS text) AS k, code, name FROM departments"))
        out: dict[str, dict[str, Any]] = {str(k): {"code": c, "name": n} for k, c, n in deps}
        out["0"] = {"code": "-", "name": "no department"}
        return out
    if q.by == "category":
        cats = conn.execute(text("SELECT code, name FROM categories WHERE code = ANY(:k)"),
                            {"k": keys})
        return {str(c): {"code": c, "name": n} for c, n in cats}
    resp = conn.execute(text(
        "SELECT CAST(r.id AS text), r.name, d.code FROM responders r LEFT JOIN departments d"
        " ON d.id = r.department_id WHERE r.id = ANY(CAST(:k AS bigint[]))"),
        {"k": [int(k) for k in keys if k.isdigit()]})
    return {str(k): {"code": k, "name": n, "department": d} for k, n, d in resp}


def _responders_per_area(conn: Connection, q: KpiQuery) -> dict[str, int]:
    """Responders based in each area of the level (their home area or one below it)."""
    base, lookup, codes = _area_groups(conn, replace(q, basis="reported"))
    rows = conn.execute(text(
        "SELECT home_area_id, count(*) FROM responders WHERE jurisdiction_id = :j"
        " AND home_area_id IS NOT NULL GROUP BY home_area_id"),
        {"j": q.jurisdiction_id}).all()
    out: dict[str, int] = {}
    for area_id, n in rows:
        i = int(area_id) - base - 1
        if 0 <= i < len(lookup) and lookup[i] >= 0:
            code = codes[lookup[i]]
            out[code] = out.get(code, 0) + int(n)
    return out


def _area_filter_codes(conn: Connection, q: KpiQuery) -> set[str] | None:
    """Codes of the level's current areas inside ``q.area`` (None: no filter)."""
    if q.area is None:
        return None
    rows = conn.execute(text(
        """
        WITH RECURSIVE down AS (
            SELECT id, code, level FROM areas WHERE jurisdiction_id = :j AND code = :area
            UNION
            SELECT c.id, c.code, c.level FROM areas c JOIN down ON c.parent_id = down.id
        )
        SELECT DISTINCT code FROM down WHERE level = :level
        """), {"j": q.jurisdiction_id, "area": q.area, "level": q.level}).scalars()
    return set(rows)


def compute_kpis(conn: Connection, q: KpiQuery, *, now: datetime | None = None
                 ) -> dict[str, Any]:
    """KPIs per group (``rows``, ranked) and for the whole selection (``total``).

    Areas of the level with no case in the period are listed too (``n`` = 0, rates None).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    q, jid, since, until = _resolve(conn, q, now)
    raw = _aggregate(conn, q, since, until, now)
    tg = targets(conn)
    scoring = _scoring(tg)
    total_raw = next((r for r in raw if r["gkey"] is None), {})
    groups = {str(r["gkey"]): r for r in raw if r["gkey"] is not None}
    labels = _labels(conn, q, list(groups))
    rows: list[dict[str, Any]] = []
    keys = list(groups)
    if q.by == "area":
        wanted = _area_filter_codes(conn, q)
        current = [k for k, v in labels.items() if v.get("current")]
        keys = sorted(set(keys) | {k for k in current if wanted is None or k in wanted})
        responders = _responders_per_area(conn, q)
    for key in keys:
        row = _rates(groups.get(key, {}))
        info = labels.get(key, {"code": key, "name": None})
        out: dict[str, Any] = {"key": key, "code": info.get("code", key),
                               "name": info.get("name")}
        if q.by == "area":
            pop = int(info.get("population") or 0)
            staff = responders.get(key, 0)
            out.update(population=pop, households=int(info.get("households") or 0),
                       responders=staff, current=bool(info.get("current")))
            row["cases_per_1000"] = round(1000 * row["n"] / pop, 2) if pop else None
            row["cases_per_responder"] = round(row["n"] / staff, 2) if staff else None
        elif q.by == "responder":
            out["department"] = info.get("department")
        out.update(row)
        out["score"], out["targets_met"] = _score(out, scoring)
        rows.append(out)
    _rank(rows, q.rank_by or "score", tg)
    total = _rates(total_raw)
    if q.by == "area":
        pop = sum(r["population"] for r in rows)
        staff = sum(r["responders"] for r in rows)
        total["cases_per_1000"] = round(1000 * total["n"] / pop, 2) if pop else None
        total["cases_per_responder"] = round(total["n"] / staff, 2) if staff else None
        total.update(population=pop, responders=staff)
    total["score"], total["targets_met"] = _score(total, scoring)
    level_name = next((lv["name"] for lv in levels(conn, jid) if lv["rank"] == q.level), None)
    return {
        "jurisdiction_id": jid, "by": q.by, "level": level_name, "basis": q.basis,
        "engine": "cases" if q.by == "responder" else q.engine,
        "since": since.isoformat(), "until": until.isoformat(), "as_of": now.isoformat(),
        "category": q.category, "area": q.area, "rank_by": q.rank_by or "score",
        "targets": tg, "total": total, "rows": rows,
    }


def _rank(rows: list[dict[str, Any]], by: str, tg: dict[str, dict[str, Any]]) -> None:
    """Sort best first by ``by`` (direction from the targets; score and n: higher first);
    rows without a value go last. Equal values share a rank."""
    lower = by in tg and tg[by]["direction"] == "lower"

    def key(r: dict[str, Any]) -> tuple[int, float, str]:
        v = r.get(by)
        if v is None:
            return (1, 0.0, r["key"])
        return (0, float(v) if lower else -float(v), r["key"])

    rows.sort(key=key)
    previous: Any = object()
    rank = 0
    for i, r in enumerate(rows, start=1):
        v = r.get(by)
        if v is None:
            r["rank"] = None
            continue
        if v != previous:
            rank = i
            previous = v
        r["rank"] = rank


def kpi_series(conn: Connection, q: KpiQuery, *, interval: str = "month",
               now: datetime | None = None) -> dict[str, Any]:
    """KPIs per day, week or month of the period (for the whole selection, or ``q.area``)."""
    if interval not in INTERVALS:
        raise InvalidInput(f"interval must be one of {', '.join(INTERVALS)}", field="interval")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    q, jid, since, until = _resolve(conn, replace(q, by="area"), now)
    if q.area is not None:
        rank = conn.execute(text(
            "SELECT level FROM areas WHERE jurisdiction_id = :j AND code = :c LIMIT 1"),
            {"j": jid, "c": q.area}).scalar_one()
        q = replace(q, level=int(rank))
    raw = _aggregate(conn, q, since, until, now, interval=interval)
    rows = [{"period": str(r["gkey"]), **_rates(r)} for r in raw if r["gkey"] is not None]
    rows.sort(key=lambda r: r["period"])
    return {"interval": interval, "since": since.isoformat(), "until": until.isoformat(),
            "category": q.category, "area": q.area, "rows": rows}


__all__ = ["KPI_NAMES", "KpiQuery", "compute_kpis", "kpi_series", "parse_period", "set_target",
           "targets"]

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
0002_analysis, kept exact by triggers) — by area without a category its per-area sums
``kpi_area`` and ``kpi_area_quarter`` (0006_kpi_fast, 0010_kpi_speed) — plus the few open
cases whose deadline is still ahead;
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

import numpy as np
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
    # The areas only for their validity: a join per open case (5·10⁴ in a year) otherwise.
    join_areas = "JOIN areas ca ON ca.id = c.area_id" if "ca." in where_area else ""
    return f"""
        SELECT CAST(c.reported_at AT TIME ZONE j.timezone AS date) AS day, c.area_id,
               c.category_id, COALESCE(c.department_id, 0) AS department_id,
               CAST(NULL AS bigint) AS responder_id, -1 AS n_due,
               CAST('{{}}' AS integer[]) AS ttc_s, {zeros}
          FROM cases c
          JOIN jurisdictions j ON j.id = c.jurisdiction_id
          {join_areas}
         WHERE c.jurisdiction_id = :j AND c.status NOT IN ('closed', 'rejected')
           AND c.due_at > CAST(:now AS timestamptz) AND {_PERIOD} AND c.area_id IS NOT NULL
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


@dataclass(frozen=True)
class _Facts:
    """Summed counts, mean and p90 time to close (s) of each group, as columns: row ``i`` is
    group ``keys[i]``, the last row the whole selection. Columns rather than a dict per group:
    20,000 grids are scored and ranked with numpy instead of 20,000 Python objects."""

    keys: list[str]
    counts: np.ndarray  # int64, (groups + 1) × COUNT_COLUMNS
    mean: np.ndarray  # float64, NaN: no closed case
    p90: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> _Facts:
        groups = [r for r in rows if r["gkey"] is not None]
        total = next((r for r in rows if r["gkey"] is None), {})
        ordered = [*groups, total]
        return cls(
            keys=[str(r["gkey"]) for r in groups],
            counts=np.array([[int(r.get(c) or 0) for c in COUNT_COLUMNS] for r in ordered],
                            dtype=np.int64).reshape(len(ordered), len(COUNT_COLUMNS)),
            mean=_floats([r.get("mean_ttc_s") for r in ordered]),
            p90=_floats([r.get("p90_ttc_s") for r in ordered]))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per group (``gkey``; None: the total) with the counts, as SQL gave them."""
        out = []
        for i, key in enumerate([*self.keys, None]):
            row: dict[str, Any] = {"gkey": key}
            row.update(zip(COUNT_COLUMNS, self.counts[i].tolist(), strict=True))
            mean, p90 = float(self.mean[i]), float(self.p90[i])
            row["mean_ttc_s"] = None if math.isnan(mean) else mean
            row["p90_ttc_s"] = None if math.isnan(p90) else p90
            out.append(row)
        return out


def _floats(values: Sequence[Any]) -> np.ndarray:
    """float64 column, NaN for None (float() of a numeric rounds like PostgreSQL's cast)."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _aggregate(conn: Connection, q: KpiQuery, since: date, until: date, now: datetime,
               interval: str | None = None) -> list[dict[str, Any]]:
    """Raw sums per group as dicts (``gkey``, counts, ``mean_ttc_s``, ``p90_ttc_s``)."""
    return _aggregate_facts(conn, q, since, until, now, interval).rows()


def _aggregate_facts(conn: Connection, q: KpiQuery, since: date, until: date, now: datetime,
                     interval: str | None = None) -> _Facts:
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
    return _Facts.from_rows(list(merged.values()))


# --------------------------------------------------------------------------- by area, fast
#
# ``kpi_area`` (migration 0006_kpi_fast) holds per (day or month, area) and
# ``kpi_area_quarter`` (0010_kpi_speed) per (quarter, area) the counts, the sum of the times to
# close, their histogram in fixed bins (plain columns h00…) and the times to close sorted. A
# level × period query reads the period as pieces (_pieces: whole quarters, other whole
# months, ragged ends as days or as their month less its other days) and gets
# percentile_cont's two ranks exactly in two passes:
#   1. per group the summed counts and histogram → the bins holding ranks ⌊0.9(n−1)⌋ and
#      ⌈0.9(n−1)⌉ and how many values lie below them;
#   2. only the values of those bins, sliced out of each sorted array with ``width_bucket(x,
#      ttc_s)`` (a binary search: how many values are <= x), netted, sorted per group and
#      picked by rank in numpy.
# A year of 10⁷ cases reads ~1.4·10⁵ rows and ranks ~6·10⁵ values instead of 10⁷.

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


def _area_facts(q: KpiQuery, bins: list[str], columns: str, pieces: list[_Piece]) -> str:
    """Rows (area_id, counts, ttc_sum, h00…, ttc_s, sg) of the period: the ``pieces`` of
    ``kpi_area`` and ``kpi_area_quarter`` (:func:`_pieces`, bounds bound as ``p<i>_lo`` and
    ``p<i>_hi``) plus the open cases not yet due (and, by the current grid, the cases of
    retired grids placed again)."""
    counts = ", ".join(f"k.{c}" for c in COUNT_COLUMNS)
    hist = ", ".join(f"k.{b}" for b in bins)
    where_area = "AND ca.valid_to IS NULL" if q.basis == "current" else ""
    # No join with areas: the group lookup maps only the jurisdiction's areas (only current
    # ones by the current grid); every other area id gets no group and is dropped.
    # Pieces taken away (a month's days outside the period) come with negated counts and
    # sg = -1, so that pass 2 takes their values away too.
    minus = ", ".join(f"-k.{c} AS {c}" for c in (*COUNT_COLUMNS, "ttc_sum", *bins))
    parts = []
    for i, (kind, _lo, _hi, sign) in enumerate(pieces):
        table = "kpi_area_quarter" if kind == "quarter" else "kpi_area"
        when = {"quarter": "", "month": "k.monthly AND", "day": "NOT k.monthly AND"}[kind]
        values = f"{counts}, k.ttc_sum, {hist}" if sign > 0 else minus
        parts.append(f"SELECT k.area_id, {values}, k.ttc_s, {sign} AS sg FROM {table} k"
                     f" WHERE {when} k.period >= CAST(:p{i}_lo AS date)"
                     f" AND k.period < CAST(:p{i}_hi AS date)")
    zeros = ", ".join(["0 AS ttc_sum", *(f"0 AS {b}" for b in bins)])
    counts_s = ", ".join(f"s.{c}" for c in COUNT_COLUMNS)
    # one row per area: they only take away from n_due
    open_counts = ", ".join(f"CAST(-count(*) AS integer) AS {c}" if c == "n_due" else f"0 AS {c}"
                            for c in COUNT_COLUMNS)
    parts.append(f"SELECT s.area_id, {open_counts}, {zeros}, CAST('{{}}' AS integer[]) AS ttc_s,"
                 f" 1 AS sg FROM ({_not_yet_due(where_area, '')}) s GROUP BY s.area_id")
    if q.basis == "current":
        one = ", ".join(f"CAST(COALESCE(width_bucket(s.ttc_s[1], gridgov_kpi_ttc_edges()) = {i},"
                        f" false) AS integer) AS {b}" for i, b in enumerate(bins))
        parts.append(f"SELECT s.area_id, {counts_s}, COALESCE(s.ttc_s[1], 0) AS ttc_sum, {one},"
                     " s.ttc_s, 1 AS sg FROM ("
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


_Piece = tuple[str, date, date, int]
# What reading a month row costs, in days of day rows (a month row exists for about every area,
# a day row for the areas with a case that day). Only speed depends on it.
_MONTH_COST_DAYS = 4


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def _pieces(since: date, until: date, future: date) -> list[_Piece]:
    """How [since, until) is read: ``(kind, lo, hi, sign)`` with kind ``quarter``, ``month``
    or ``day`` (the rows of that kind whose period is in [lo, hi), added or, sign -1, taken
    away). Whole quarters as quarter rows, the other whole months as month rows; a ragged end
    as its days, or as its month less the month's other days when those are fewer (days from
    ``future`` on cost nothing: nothing is reported there yet; the trailing "365d" reads the
    current month as one row).

    >>> [p[0] + "+-"[p[3] < 0] for p in _pieces(date(2025, 11, 24), date(2026, 11, 24),
    ...                                          date(2026, 11, 25))]
    ['day+', 'month+', 'quarter+', 'month+', 'month+', 'day-']
    >>> [(p[0], str(p[1]), p[3]) for p in _pieces(date(2026, 10, 25), date(2026, 11, 24),
    ...                                           date(2026, 11, 25))]
    [('day', '2026-10-25', 1), ('month', '2026-11-01', 1), ('day', '2026-11-24', -1)]
    """
    def past_days(lo: date, hi: date) -> int:
        return max(0, (min(hi, future) - lo).days)

    def ragged(lo: date, hi: date) -> list[_Piece]:
        """[lo, hi) inside one month: its days, or the month less its other days."""
        if lo >= hi:
            return []
        start, end = _month_start(lo), _next_month(lo)
        if _MONTH_COST_DAYS + past_days(start, lo) + past_days(hi, end) < past_days(lo, hi):
            return [p for p in [("month", start, end, 1), ("day", start, lo, -1),
                                ("day", hi, end, -1)] if p[1] < p[2]]
        return [("day", lo, hi, 1)]

    m_since = since if since.day == 1 else _next_month(since)
    m_until = _month_start(until)
    if m_since > m_until:  # inside one month
        return ragged(since, until)
    q_since = m_since
    while (q_since.month - 1) % 3:
        q_since = _next_month(q_since)
    q_until = m_until.replace(month=(m_until.month - 1) // 3 * 3 + 1)
    if q_since >= q_until:  # no whole quarter
        q_since = q_until = m_until
    middle = [p for p in [("month", m_since, q_since, 1), ("quarter", q_since, q_until, 1),
                          ("month", q_until, m_until, 1)] if p[1] < p[2]]
    return ragged(since, m_since) + middle + ragged(m_until, until)


def _aggregate_by_area(conn: Connection, q: KpiQuery, since: date, until: date,
                       params: dict[str, Any], *, group: tuple[str, str, str, str, list[str]]
                       ) -> _Facts:
    join, gid, area_filter, current_only, codes = group
    edges = _ttc_edges(conn)
    bins = _bins(edges)
    # days from two days after now (UTC) are in the future in every time zone
    pieces = _pieces(since, until, params["now"].date() + timedelta(days=2))
    for i, (_kind, lo, hi, _sign) in enumerate(pieces):
        params[f"p{i}_lo"], params[f"p{i}_hi"] = lo, hi
    chain = _chain_cte(current_only)
    cols1 = ", ".join(["area_id", *COUNT_COLUMNS, "ttc_sum", *bins])
    sums = ", ".join(f"sum(x.{c}) AS {c}" for c in (*COUNT_COLUMNS, "ttc_sum", *bins))
    totals = ", ".join(f"COALESCE(sum(g.{c}), 0) AS {c}"
                       for c in (*COUNT_COLUMNS, "ttc_sum", *bins))
    # Both result rows are texts of numbers separated by spaces (the groups' row: one number
    # per group), parsed by numpy: no Python object per group. No mean: -1.
    texts = ", ".join([
        "string_agg(CAST(s.gid AS text), ' ')",
        *(f"string_agg(CAST(s.{c} AS text), ' ')" for c in COUNT_COLUMNS),
        "string_agg(CAST(COALESCE(CAST(s.ttc_sum / NULLIF(s.n_closed, 0) AS float8), -1)"
        " AS text), ' ')",
        f"string_agg(array_to_string(ARRAY[{', '.join(f's.{b}' for b in bins)}], ' '), ' ')"])
    # The total is summed from the groups' sums (20,000 rows), not by a grouping set over
    # every fact row: that doubled the 51 sums per row. Means are numeric, cast to float8
    # like float(numeric) in Python (both round the decimal correctly); float8's text is
    # the shortest that reads back as the same float. A group whose rows in the period were
    # all taken away again (n = 0) has no case in the period: left out.
    pass1 = f"""{chain}, g AS MATERIALIZED (
        SELECT x.gid, {sums}
          FROM (SELECT {gid} AS gid, f.* FROM ({_area_facts(q, bins, cols1, pieces)}) f
                  {join} {area_filter}) x
         WHERE x.gid >= 0
         GROUP BY x.gid
        ), t AS (SELECT -1 AS gid, {totals} FROM g)
        SELECT false AS total, {texts} FROM g s WHERE s.n <> 0
        UNION ALL
        SELECT true, {texts} FROM t s
    """
    # The planner misjudges the row counts of the UNION ALL: it would sort 10⁵ wide rows for
    # the grouping and for a merge join with the bounds; hashing is the right plan.
    settings = {"work_mem": _KPI_WORK_MEM, "enable_sort": "off", "enable_mergejoin": "off"}
    previous = {k: conn.execute(text("SELECT current_setting(:k)"), {"k": k}).scalar_one()
                for k in settings}
    for k, v in settings.items():
        conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})
    try:
        records = {bool(r[0]): r[1:] for r in conn.execute(text(pass1), params).all()}
        facts, gids, hist = _pass1_facts(records[False], records[True], codes, len(bins))
        wanted = _locate_p90(hist, edges)
        if len(wanted):
            _pick_p90(conn, q, params, chain, gid, join, area_filter, bins, facts, gids, wanted,
                      pieces)
    finally:
        for k, v in previous.items():
            conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})
    return facts


def _pass1_facts(groups: Sequence[str | None], total: Sequence[str | None], codes: list[str],
                 n_bins: int) -> tuple[_Facts, np.ndarray, np.ndarray]:
    """Pass 1's two rows of texts (gid, counts…, mean, hist; the groups', the total's) as
    columns, the total last; the group id of each row; the histograms."""
    width = len(COUNT_COLUMNS)
    gids = _ints(groups[0])
    counts = np.array([np.append(_ints(groups[1 + i]), _ints(total[1 + i]))
                       for i in range(width)], dtype=np.int64).T.reshape(len(gids) + 1, width)
    mean = np.append(_numbers(groups[1 + width]), _numbers(total[1 + width]))
    hist = np.append(_ints(groups[2 + width]), _ints(total[2 + width])
                     ).reshape(len(gids) + 1, n_bins)
    facts = _Facts(keys=[codes[g] for g in gids.tolist()], counts=counts,
                   mean=np.where(mean < 0, math.nan, mean), p90=np.full(len(gids) + 1, math.nan))
    return facts, gids, hist


# Per group with closed cases: (row in the facts, slice bounds lo_x, hi_x: values v with
# lo_x < v <= hi_x; ranks r_lo, r_hi inside the slice; position and its floor for the
# interpolation).
@dataclass(frozen=True)
class _Wanted:
    row: np.ndarray
    lo_x: np.ndarray
    hi_x: np.ndarray
    r_lo: np.ndarray
    r_hi: np.ndarray
    pos: np.ndarray
    k_lo: np.ndarray

    def __len__(self) -> int:
        return len(self.row)


def _locate_p90(hist: np.ndarray, edges: list[int]) -> _Wanted:
    """For each group with closed cases (and the total), the bins (as a value range) holding
    percentile_cont's two ranks ⌊0.9(n−1)⌋ and ⌈0.9(n−1)⌉, found on the summed histograms."""
    n = hist.sum(axis=1)
    row = np.flatnonzero(n > 0)
    hist, n = hist[row], n[row]
    pos = 0.9 * (n - 1).astype(np.float64)  # percentile_cont's position, in float8
    k_lo, k_hi = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    cum = hist.cumsum(axis=1)
    b_lo = (cum > k_lo[:, None]).argmax(axis=1)
    b_hi = (cum > k_hi[:, None]).argmax(axis=1)
    at = np.arange(len(row))
    below = cum[at, b_lo] - hist[at, b_lo]
    # bin b holds edges[b-1] <= t < edges[b]: as an integer range lo_x < t <= hi_x
    lower = np.array([-1, *(e - 1 for e in edges)], dtype=np.int64)
    upper = np.array([*(e - 1 for e in edges), _INT4_MAX], dtype=np.int64)
    return _Wanted(row=row, lo_x=lower[b_lo], hi_x=upper[b_hi], r_lo=k_lo - below,
                   r_hi=k_hi - below, pos=pos, k_lo=k_lo)


def _pick_p90(conn: Connection, q: KpiQuery, params: dict[str, Any], chain: str, gid: str,
              join: str, area_filter: str, bins: list[str], facts: _Facts, gids: np.ndarray,
              wanted: _Wanted, pieces: list[_Piece]) -> None:
    """Pass 2: the values of each group's p90 bins only; picks the ranks.

    Each row gives one slice of its sorted array: the values in its group's bins and in the
    total's (one range covering both; the two are usually the same bins). The slices come
    back as three texts (per slice its group id, negative for pieces taken away, and its
    length; all the values) that numpy parses, nets, sorts and picks the ranks from: a sort
    and ``row_number`` over them in SQL cost more than the slicing."""
    is_total = wanted.row == len(facts.keys)
    grp = ~is_total
    if not is_total.any():  # no closed case at all: no group has any either
        return
    t_lo, t_hi = int(wanted.lo_x[is_total][0]), int(wanted.hi_x[is_total][0])
    group_ids = gids[wanted.row[grp]]
    params.update(b_gid=group_ids.tolist(), b_lo=np.minimum(wanted.lo_x[grp], t_lo).tolist(),
                  b_hi=np.maximum(wanted.hi_x[grp], t_hi).tolist())
    pass2 = f"""{chain}
        SELECT string_agg(CAST(CASE WHEN x.sg > 0 THEN b.gid ELSE -1 - b.gid END AS text), ' '),
               string_agg(CAST(cardinality(s.v) AS text), ' '),
               string_agg(array_to_string(s.v, ' '), ' ')
          FROM (SELECT {gid} AS gid, f.ttc_s, f.sg
                  FROM ({_area_facts(q, bins, "area_id, ttc_s, sg", pieces)}) f
                  {join} {area_filter}) x
          JOIN unnest(CAST(:b_gid AS integer[]), CAST(:b_lo AS integer[]),
                      CAST(:b_hi AS integer[])) AS b(gid, lo, hi) ON b.gid = x.gid
         CROSS JOIN LATERAL (SELECT x.ttc_s[width_bucket(b.lo, x.ttc_s) + 1
                                            : width_bucket(b.hi, x.ttc_s)] AS v) s
         WHERE cardinality(x.ttc_s) > 0 AND cardinality(s.v) > 0
    """
    gid_text, size_text, value_text = conn.execute(text(pass2), params).one()
    g, t = np.repeat(_ints(gid_text), _ints(size_text)), _ints(value_text)
    sign = np.where(g < 0, -1, 1)
    g = np.where(g < 0, -1 - g, g)
    # each value against its own group's range (by group id)
    lo = np.zeros(int(group_ids.max()) + 1 if len(group_ids) else 1, dtype=np.int64)
    hi = lo.copy()
    lo[group_ids], hi[group_ids] = wanted.lo_x[grp], wanted.hi_x[grp]
    mine = (t > lo[g]) & (t <= hi[g])
    g_sorted, t_sorted = _sorted_multiset(g[mine], t[mine], sign[mine])
    start = np.searchsorted(g_sorted, group_ids, side="left")
    a = np.empty(len(wanted), dtype=np.float64)
    b = np.empty(len(wanted), dtype=np.float64)
    a[grp] = t_sorted[start + wanted.r_lo[grp]]
    b[grp] = t_sorted[start + wanted.r_hi[grp]]
    in_total = (t > t_lo) & (t <= t_hi)
    _zero, total_sorted = _sorted_multiset(np.zeros(int(in_total.sum()), dtype=np.int64),
                                           t[in_total], sign[in_total])
    a[is_total] = total_sorted[int(wanted.r_lo[is_total][0])]
    b[is_total] = total_sorted[int(wanted.r_hi[is_total][0])]
    # percentile_cont's interpolation, in the same float8 arithmetic
    facts.p90[wanted.row] = a + (b - a) * (wanted.pos - wanted.k_lo)


def _sorted_multiset(g: np.ndarray, t: np.ndarray, sign: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(group, value) pairs sorted, after each pair with sign -1 took away one equal pair
    with sign +1 (a month's values less those of its days outside the period)."""
    pairs = g << 32 | t  # one int64 key per pair (both below 2³¹): one plain sort
    if not (sign < 0).any():
        pairs = np.sort(pairs)
        return pairs >> 32, pairs & 0xFFFFFFFF
    pairs, index = np.unique(pairs, return_inverse=True)
    net = np.bincount(index.ravel(), weights=sign, minlength=len(pairs)).astype(np.int64)
    pairs = np.repeat(pairs, net)  # a piece taken away is inside the month: net >= 0
    return pairs >> 32, pairs & 0xFFFFFFFF


def _ints(values: str | None) -> np.ndarray:
    """Integers from a space-separated text (``array_to_string``, ``string_agg``)."""
    if not values:
        return np.zeros(0, dtype=np.int64)
    return np.fromstring(values, dtype=np.int64, sep=" ")


def _numbers(values: str | None) -> np.ndarray:
    """Floats from a space-separated text of float8 values (read back exactly)."""
    if not values:
        return np.zeros(0, dtype=np.float64)
    return np.fromstring(values, dtype=np.float64, sep=" ")


_SCALE = {2: 100.0, 3: 1000.0, 4: 10000.0}


def _rounded(values: np.ndarray, ok: np.ndarray, digits: int) -> list[float | None]:
    """``round(v, digits)`` where ``ok``, else None, exactly as Python's ``round`` (the value's
    exact decimal rounded half to even, then the nearest float), 20,000 at a time: ``rint(v ·
    10^d) / 10^d`` is the same float whenever v · 10^d is not within a few ulps of a half
    (its rounding error cannot cross the half; k / 10^d is then the correctly rounded
    quotient Python's ``round`` also returns); the others go through ``round``."""
    scale = _SCALE[digits]
    with np.errstate(invalid="ignore"):
        y = values * scale
        clear = np.abs(np.abs(y - np.floor(y)) - 0.5) > 8 * np.spacing(np.abs(y))
    out = (np.rint(y) / scale).astype(object)
    for i in np.flatnonzero(ok & ~clear).tolist():
        out[i] = round(float(values[i]), digits)
    out[~ok] = None
    return list(out.tolist())


def _quotient(a: np.ndarray, b: np.ndarray, digits: int) -> list[float | None]:
    """``round(a / b, digits)`` where b is not 0, else None (float64 division of integers
    below 2⁵³ is the same correctly rounded quotient as Python's ``int / int``)."""
    ok = b != 0
    return _rounded(a / np.where(ok, b, 1), ok, digits)


def _rate_columns(counts: np.ndarray, mean: np.ndarray, p90: np.ndarray) -> dict[str, list[Any]]:
    """The counts and KPIs of each row of summed counts (mean and p90 in seconds, NaN:
    none), as columns of Python values."""
    col = {c: counts[:, i] for i, c in enumerate(COUNT_COLUMNS)}
    col["n_due"] = np.maximum(col["n_due"], 0)  # the rollup's correction may overshoot 0
    out: dict[str, list[Any]] = {c: col[c].tolist() for c in COUNT_COLUMNS}
    out["closure_rate"] = _quotient(col["n_closed"], col["n_due"], 4)
    out["on_time_rate"] = _quotient(col["n_on_time"], col["n_due"], 4)
    out["mean_ttc_h"] = _rounded(mean / 3600, ~np.isnan(mean), 2)
    out["p90_ttc_h"] = _rounded(p90 / 3600, ~np.isnan(p90), 2)
    out["reopen_rate"] = _quotient(col["n_reopened"], col["n_handled"], 4)
    out["verify_pass_rate"] = _quotient(col["n_verify_pass"], col["n_verify"], 4)
    out["satisfaction"] = _quotient(col["sat_sum"], col["n_rated"], 3)
    return out


Targets = list[tuple[str, float, float, bool]]


def _scoring(tg: dict[str, dict[str, Any]]) -> Targets:
    """(kpi, target, weight, higher is better) of the KPIs that have a target."""
    return [(kpi, float(spec["target"]), float(spec.get("weight") or 0),
             spec["direction"] == "higher")
            for kpi, spec in tg.items() if spec.get("target") is not None]


def _score_columns(columns: dict[str, list[Any]], scoring: Targets, n: int
                   ) -> tuple[list[float | None], list[list[str]]]:
    """Per row the composite score (weighted mean of min(1, value/target) or
    min(1, target/value) over the KPIs it has) and the KPIs whose target it meets. The sums
    run in the targets' order, so each row's float arithmetic is that of a loop over them."""
    total, weight = np.zeros(n), np.zeros(n)
    met: list[list[str]] = [[] for _ in range(n)]
    for kpi, target, w, higher in scoring:
        if kpi not in columns:
            continue
        v = np.array(columns[kpi], dtype=np.float64)  # None → NaN
        ok = ~np.isnan(v)
        hit = ok & ((v >= target) if higher else (v <= target))
        for i in np.flatnonzero(hit).tolist():
            met[i].append(kpi)
        if w <= 0:
            continue
        if higher:
            achieved = np.minimum(v / target, 1.0) if target > 0 else np.ones(n)
        else:
            positive = ok & (v > 0)
            achieved = np.where(positive, np.minimum(target / np.where(positive, v, 1), 1.0),
                                1.0)
        total = np.where(ok, total + w * achieved, total)
        weight = np.where(ok, weight + w, weight)
    scores = [round(100 * t / wt, 1) if wt else None
              for t, wt in zip(total.tolist(), weight.tolist(), strict=True)]
    return scores, met


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
    facts = _aggregate_facts(conn, q, since, until, now)
    tg = targets(conn)
    scoring = _scoring(tg)
    labels = _labels(conn, q, facts.keys)
    keys = list(facts.keys)
    responders: dict[str, int] = {}
    if q.by == "area":
        wanted = _area_filter_codes(conn, q)
        current = [k for k, v in labels.items() if v.get("current")]
        keys = sorted(set(keys) | {k for k in current if wanted is None or k in wanted})
        responders = _responders_per_area(conn, q)
    # Groups without cases take an appended row of zeros.
    index = {k: i for i, k in enumerate(facts.keys)}
    sel = np.array([index.get(k, len(facts.keys) + 1) for k in keys], dtype=np.int64)
    counts = np.vstack([facts.counts, np.zeros((1, len(COUNT_COLUMNS)), dtype=np.int64)])[sel]
    mean, p90 = np.append(facts.mean, math.nan)[sel], np.append(facts.p90, math.nan)[sel]
    info = [labels.get(k, {"code": k, "name": None}) for k in keys]
    columns: dict[str, list[Any]] = {
        "key": keys, "code": [i.get("code", k) for i, k in zip(info, keys, strict=True)],
        "name": [i.get("name") for i in info]}
    pop = np.array([int(i.get("population") or 0) for i in info], dtype=np.int64)
    staff = np.array([responders.get(k, 0) for k in keys], dtype=np.int64)
    if q.by == "area":
        columns.update(population=pop.tolist(),
                       households=[int(i.get("households") or 0) for i in info],
                       responders=staff.tolist(), current=[bool(i.get("current")) for i in info])
    elif q.by == "responder":
        columns["department"] = [i.get("department") for i in info]
    columns.update(_rate_columns(counts, mean, p90))
    if q.by == "area":
        columns["cases_per_1000"] = _quotient(1000 * counts[:, 0], pop, 2)
        columns["cases_per_responder"] = _quotient(counts[:, 0], staff, 2)
    columns["score"], columns["targets_met"] = _score_columns(columns, scoring, len(keys))
    by = q.rank_by or "score"
    order, columns["rank"] = _rank(columns.get(by, [None] * len(keys)), keys,
                                   lower=by in tg and tg[by]["direction"] == "lower")
    # Columns put in rank order first, so no table of 20,000 tuples outlives a row: fewer
    # objects for the cyclic garbage collector to walk.
    names = list(columns)
    ranked = [[values[i] for i in order] for values in columns.values()]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*ranked, strict=True)]
    total = _total(facts, q.by == "area", int(pop.sum()), int(staff.sum()), scoring)
    level_name = next((lv["name"] for lv in levels(conn, jid) if lv["rank"] == q.level), None)
    return {
        "jurisdiction_id": jid, "by": q.by, "level": level_name, "basis": q.basis,
        "engine": "cases" if q.by == "responder" else q.engine,
        "since": since.isoformat(), "until": until.isoformat(), "as_of": now.isoformat(),
        "category": q.category, "area": q.area, "rank_by": by,
        "targets": tg, "total": total, "rows": rows,
    }


def _total(facts: _Facts, by_area: bool, pop: int, staff: int, scoring: Targets
           ) -> dict[str, Any]:
    """The whole selection's KPIs (the facts' last row); by area with the population and
    responders of all the listed areas."""
    columns = _rate_columns(facts.counts[-1:], facts.mean[-1:], facts.p90[-1:])
    if by_area:
        n = facts.counts[-1:, 0]
        columns["cases_per_1000"] = _quotient(1000 * n, np.array([pop]), 2)
        columns["cases_per_responder"] = _quotient(n, np.array([staff]), 2)
        columns.update(population=[pop], responders=[staff])
    columns["score"], columns["targets_met"] = _score_columns(columns, scoring, 1)
    return {name: values[0] for name, values in columns.items()}


def _rank(values: list[Any], keys: list[str], *, lower: bool) -> tuple[list[int], list[Any]]:
    """The order best first by ``values`` (``lower``: smallest first; otherwise largest;
    ties by key), rows without a value last; and each row's rank (equal values share one)."""
    v = np.array([math.nan if x is None else float(x) for x in values], dtype=np.float64)
    none = np.isnan(v)
    by_key = np.empty(len(keys), dtype=np.int64)
    by_key[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    order = np.lexsort((by_key, np.where(none, 0.0, v if lower else -v), none)).tolist()
    ranks: list[Any] = [None] * len(keys)
    previous: Any = object()
    rank = 0
    for i, row in enumerate(order, start=1):
        value = values[row]
        if value is None:
            continue
        if value != previous:
            rank, previous = i, value
        ranks[row] = rank
    return order, ranks


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
    facts = _aggregate_facts(conn, q, since, until, now, interval=interval)
    columns = {"period": facts.keys, **_rate_columns(facts.counts[:-1], facts.mean[:-1],
                                                      facts.p90[:-1])}
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                      strict=True)]
    rows.sort(key=lambda r: r["period"])
    return {"interval": interval, "since": since.isoformat(), "until": until.isoformat(),
            "category": q.category, "area": q.area, "rows": rows}


__all__ = ["KPI_NAMES", "KpiQuery", "compute_kpis", "kpi_series", "parse_period", "set_target",
           "targets"]

"""Live case counts per area (the command screen) and the level summary (the map viewer).

Counting rules, the same as the map's case tiles (``layers/registry.py``):

- **open**: not in a terminal state (``gridgov_case_open``: not closed or rejected);
- **overdue**: open and ``due_at`` before now;
- **closed today**: ``status = 'closed'`` and closed since the start of the day in the
  jurisdiction's time zone.

A case keeps the grid that was in force when it was reported (``cases.area_id``). An area counts
the cases of its whole subtree over every boundary version: every version with the area's code,
then their children through ``parent_id`` (old grids keep pointing at the parent they had), so
counts survive a redraw.

>>> household_classes([0, 120, 180, 200, 260, 900])[0]
{'min': 0, 'max': 0, 'count': 1, 'step_from': 0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from gis.errors import InvalidInput

OVERDUE_LIST_MAX = 100
MAX_CLASSES = 5

# Every version of each target area, then their descendants (any version) through parent_id.
_TREE = """
WITH RECURSIVE targets AS (
    SELECT a.id, a.jurisdiction_id, a.code, a.level
      FROM areas a
     WHERE a.id = ANY(CAST(:ids AS bigint[]))
), tree AS (
    SELECT t.id AS target_id, v.id AS area_id
      FROM targets t
      JOIN areas v ON v.jurisdiction_id = t.jurisdiction_id AND v.level = t.level
                  AND v.code = t.code
    UNION
    SELECT tree.target_id, ch.id
      FROM tree JOIN areas ch ON ch.parent_id = tree.area_id
), day AS (
    SELECT j.id AS jurisdiction_id,
           timezone(j.timezone, date_trunc('day', timezone(j.timezone, CAST(:now AS timestamptz))))
             AS day_start
      FROM jurisdictions j
)
"""

_COUNTS_SQL = _TREE + """
SELECT tree.target_id,
       count(*) FILTER (WHERE gridgov_case_open(c.status)) AS open,
       count(*) FILTER (WHERE gridgov_case_open(c.status)
                          AND c.due_at < CAST(:now AS timestamptz)) AS overdue,
       count(*) FILTER (WHERE c.status = 'closed' AND c.closed_at >= day.day_start
                          AND c.closed_at <= CAST(:now AS timestamptz)) AS closed_today
  FROM tree
  JOIN cases c ON c.area_id = tree.area_id
  JOIN day ON day.jurisdiction_id = c.jurisdiction_id
 WHERE gridgov_case_open(c.status)
    OR (c.status = 'closed' AND c.closed_at >= CAST(:earliest AS timestamptz))
 GROUP BY tree.target_id
"""

_OVERDUE_SQL = _TREE + """
SELECT c.id, c.status, k.code AS category, k.name AS category_name, c.urgency,
       c.reported_at, c.due_at, a.code AS area_code, a.name AS area_name,
       ST_X(gridgov_case_anchor(c.geom)) AS lon, ST_Y(gridgov_case_anchor(c.geom)) AS lat
  FROM (SELECT DISTINCT area_id FROM tree) s
  JOIN cases c ON c.area_id = s.area_id
  JOIN categories k ON k.id = c.category_id
  LEFT JOIN areas a ON a.id = c.area_id
 WHERE gridgov_case_open(c.status) AND c.due_at < CAST(:now AS timestamptz)
 ORDER BY c.due_at, c.id
 LIMIT :limit
"""

_AREA_COLUMNS = """
    a.id, a.code, a.name, a.level, l.name AS level_name, pa.code AS parent_code,
    a.grid_type, a.households, a.population, a.area_m2, j.code AS jurisdiction,
    ST_XMin(a.geom) AS west, ST_YMin(a.geom) AS south, ST_XMax(a.geom) AS east,
    ST_YMax(a.geom) AS north,
    ST_X(ST_PointOnSurface(a.geom)) AS lon, ST_Y(ST_PointOnSurface(a.geom)) AS lat
"""
_AREA_FROM = """
  FROM areas a
  JOIN jurisdictions j ON j.id = a.jurisdiction_id
  LEFT JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
  LEFT JOIN areas pa ON pa.id = a.parent_id
"""


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidInput("now must carry a time zone", field="now")
    return now


def _jurisdiction_id(conn: Connection, code: str | None) -> int | None:
    if code is None:
        return None
    jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                       {"c": code}).scalar()
    if jid is None:
        raise InvalidInput(f"unknown jurisdiction {code!r}", field="jurisdiction")
    return int(jid)


def _level_filter(conn: Connection, level: str, params: dict[str, Any]) -> str:
    """SQL selecting areas of ``level`` (a name such as ``street``, or a rank) per jurisdiction.

    Level names are per jurisdiction (area_levels), so ``street`` may be rank 1 in one city and
    rank 0 in another."""
    value = level.strip()
    if not value or len(value) > 40:
        raise InvalidInput(f"unknown level {level[:40]!r}", field="level")
    params["level_name"] = value
    params["level_rank"] = int(value) if value.isdigit() and len(value) < 4 else -1
    known = conn.execute(text(
        "SELECT 1 FROM area_levels WHERE name = :level_name OR rank = :level_rank LIMIT 1"),
        params).first()
    if known is None:
        names = conn.execute(text(
            "SELECT string_agg(DISTINCT name, ', ') FROM area_levels")).scalar() or "none"
        raise InvalidInput(f"unknown level {value!r}; levels are: {names}", field="level")
    return ("EXISTS (SELECT 1 FROM area_levels lv WHERE lv.jurisdiction_id = a.jurisdiction_id"
            " AND lv.rank = a.level AND (lv.name = :level_name OR lv.rank = :level_rank))")


def _area_dict(row: Any) -> dict[str, Any]:
    r = dict(row)
    out = {k: r[k] for k in ("id", "code", "name", "level", "level_name", "parent_code",
                             "grid_type", "households", "population", "jurisdiction")}
    out["area_m2"] = round(float(r["area_m2"] or 0.0), 1)
    out["bbox"] = [round(r[k], 7) for k in ("west", "south", "east", "north")]
    out["point"] = [round(r["lon"], 7), round(r["lat"], 7)]
    return out


def _counts(conn: Connection, ids: Sequence[int], now: datetime) -> dict[int, dict[str, int]]:
    if not ids:
        return {}
    # Cases closed before the earliest day start of any jurisdiction cannot count as closed
    # today: the filter lets the planner skip the long tail of old closed cases.
    earliest = conn.execute(text(
        "SELECT min(timezone(timezone, date_trunc('day', timezone(timezone,"
        " CAST(:now AS timestamptz))))) FROM jurisdictions"), {"now": now}).scalar() or now
    rows = conn.execute(text(_COUNTS_SQL),
                        {"ids": list(ids), "now": now, "earliest": earliest}).mappings()
    return {int(r["target_id"]): {"open": int(r["open"]), "overdue": int(r["overdue"]),
                                  "closed_today": int(r["closed_today"])} for r in rows}


def _overdue_cases(conn: Connection, ids: Sequence[int], now: datetime,
                   limit: int) -> list[dict[str, Any]]:
    if not ids or limit <= 0:
        return []
    rows = conn.execute(text(_OVERDUE_SQL), {"ids": list(ids), "now": now, "limit": limit})
    out = []
    for r in rows.mappings():
        item = dict(r)
        for key in ("reported_at", "due_at"):
            item[key] = item[key].isoformat() if item[key] else None
        item["lon"], item["lat"] = round(item["lon"], 7), round(item["lat"], 7)
        out.append(item)
    return out


def _ancestors(conn: Connection, area_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(text("""
        WITH RECURSIVE up AS (
            SELECT a.id, a.parent_id, 0 AS depth FROM areas a WHERE a.id = :id
            UNION ALL
            SELECT p.id, p.parent_id, up.depth + 1 FROM up JOIN areas p ON p.id = up.parent_id
             WHERE up.depth < 32
        )
        SELECT a.code, a.name, a.level, l.name AS level_name
          FROM up JOIN areas a ON a.id = up.id
          LEFT JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
         WHERE up.depth > 0
         ORDER BY up.depth DESC
    """), {"id": area_id}).mappings()
    return [dict(r) for r in rows]


def area_counts(
    conn: Connection,
    *,
    level: str | None = None,
    parent: str | None = None,
    jurisdiction: str | None = None,
    now: datetime | None = None,
    overdue_limit: int = 20,
) -> dict[str, Any]:
    """Areas in force with their open, overdue and closed-today case counts.

    ``parent`` lists the children of that area (and its own counts as ``parent``); ``level``
    lists every area of a level (name or rank); neither lists the top level. ``totals`` are the
    parent's own counts, else the sum over the areas listed. ``overdue_cases`` are the most
    overdue cases in scope (public fields only), at most ``overdue_limit``.
    """
    if level is not None and parent is not None:
        raise InvalidInput("give level or parent, not both", field="level")
    if not 0 <= overdue_limit <= OVERDUE_LIST_MAX:
        raise InvalidInput(f"overdue_limit must be 0 … {OVERDUE_LIST_MAX}, got {overdue_limit}",
                           field="overdue_limit")
    now = _now(now)
    params: dict[str, Any] = {"jid": _jurisdiction_id(conn, jurisdiction)}
    where = ["a.valid_to IS NULL",
             "(CAST(:jid AS integer) IS NULL OR a.jurisdiction_id = CAST(:jid AS integer))"]
    parent_row = None
    if parent is not None:
        parent_row = conn.execute(text(
            f"SELECT {_AREA_COLUMNS} {_AREA_FROM} WHERE a.code = :code AND {' AND '.join(where)}"
            " ORDER BY a.jurisdiction_id LIMIT 1"), {**params, "code": parent}).mappings().first()
        if parent_row is None:
            shown = parent if len(parent) <= 40 else parent[:37] + "..."
            raise InvalidInput(f"no area in force with code {shown!r}", field="parent")
        params["parent_id"] = parent_row["id"]
        where.append("a.parent_id = :parent_id")
    elif level is not None:
        where.append(_level_filter(conn, level, params))
    else:
        where.append("a.level = 0")
    rows = conn.execute(text(
        f"SELECT {_AREA_COLUMNS} {_AREA_FROM} WHERE {' AND '.join(where)}"
        " ORDER BY a.jurisdiction_id, a.level, a.code"), params).mappings().all()
    areas = [_area_dict(r) for r in rows]
    ids = [a["id"] for a in areas]
    scope_ids = [int(parent_row["id"])] if parent_row is not None else ids
    counts = _counts(conn, ids + ([int(parent_row["id"])] if parent_row is not None else []), now)
    zero = {"open": 0, "overdue": 0, "closed_today": 0}
    for a in areas:
        a.update(counts.get(a["id"], zero))
    out_parent = None
    if parent_row is not None:
        out_parent = _area_dict(parent_row)
        out_parent.update(counts.get(out_parent["id"], zero))
        out_parent["ancestors"] = _ancestors(conn, out_parent["id"])
        totals = {k: out_parent[k] for k in zero}
    else:
        totals = {k: sum(a[k] for a in areas) for k in zero}
    day_starts = {r["code"]: r["day_start"].isoformat() for r in conn.execute(text(
        "SELECT code, timezone(timezone, date_trunc('day', timezone(timezone,"
        " CAST(:now AS timestamptz)))) AS day_start FROM jurisdictions ORDER BY id"),
        {"now": now}).mappings()}
    return {
        "as_of": now.isoformat(),
        "day_start": day_starts,
        "parent": out_parent,
        "areas": areas,
        "totals": totals,
        "overdue_cases": _overdue_cases(conn, scope_ids, now, overdue_limit),
    }


def _nice(value: float) -> int:
    """Two significant digits: 1234 → 1200; small numbers stay as they are."""
    if value <= 10:
        return round(value)
    step = 10 ** (math.floor(math.log10(value)) - 1)
    return int(round(value / step) * step)


def household_classes(values: Sequence[int], n: int = MAX_CLASSES) -> list[dict[str, int]]:
    """Up to ``n`` quantile classes of the positive values (rounded to readable breaks), after
    a class for zeros when there are any. ``step_from`` is where a map's step expression starts
    the class (the first positive class starts at 1, whatever its smallest value).

    >>> [(c["min"], c["max"], c["count"]) for c in household_classes([10, 20, 30, 40])]
    [(10, 19, 1), (20, 29, 1), (30, 39, 1), (40, 40, 1)]
    """
    positive = sorted(v for v in values if v > 0)
    classes: list[dict[str, int]] = []
    zeros = len(values) - len(positive)
    if zeros:
        classes.append({"min": 0, "max": 0, "count": zeros, "step_from": 0})
    if not positive:
        return classes
    lo, hi = positive[0], positive[-1]
    breaks: list[int] = []
    for k in range(1, n):
        b = _nice(positive[(k * len(positive)) // n])
        if lo < b <= hi and (not breaks or b > breaks[-1]):
            breaks.append(b)
    edges = [lo, *breaks]
    for i, start in enumerate(edges):
        end = edges[i + 1] - 1 if i + 1 < len(edges) else hi
        count = sum(1 for v in positive if start <= v <= end)
        if count == 0:  # rounding left an empty class: widen the one below (never the first)
            classes[-1]["max"] = end
            continue
        classes.append({"min": start, "max": end, "count": count,
                        "step_from": 1 if i == 0 else start})
    return classes


def level_summary(conn: Connection, *, jurisdiction: str | None = None) -> dict[str, Any]:
    """The levels in force, top first: rank, name(s), how many areas, households, residents,
    household classes for a choropleth; and the extent of everything (``bbox``)."""
    jid = _jurisdiction_id(conn, jurisdiction)
    rows = conn.execute(text("""
        SELECT a.level AS rank,
               string_agg(DISTINCT COALESCE(l.name, 'level ' || a.level), ' / ') AS name,
               count(*) AS count, sum(a.households) AS households,
               sum(a.population) AS population,
               array_agg(a.households ORDER BY a.households) AS values
          FROM areas a
          LEFT JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
         WHERE a.valid_to IS NULL
           AND (CAST(:jid AS integer) IS NULL OR a.jurisdiction_id = CAST(:jid AS integer))
         GROUP BY a.level
         ORDER BY a.level
    """), {"jid": jid}).mappings().all()
    extent = conn.execute(text("""
        SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
          FROM (SELECT ST_Extent(geom) AS e FROM areas
                 WHERE valid_to IS NULL
                   AND (CAST(:jid AS integer) IS NULL OR jurisdiction_id = CAST(:jid AS integer))
               ) s
    """), {"jid": jid}).first()
    bbox = [round(float(v), 7) for v in extent] if extent and extent[0] is not None else None
    return {
        "levels": [{"rank": int(r["rank"]), "name": r["name"], "count": int(r["count"]),
                    "households": int(r["households"] or 0),
                    "population": int(r["population"] or 0),
                    "classes": household_classes([int(v) for v in r["values"]])}
                   for r in rows],
        "bbox": bbox,
    }

r"""Find areas in force by code or name (the map viewer's search box).

Ranking: exact code, exact name (case-insensitive), code prefix, name prefix, name contains;
among equals the shortest code (for code matches) or name first, so ``silta`` finds the street
Siltasaari before its communities and grids, then by level and code.

>>> escape_like("100%_a")
'100\\%\\_a'
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from gis.errors import InvalidInput

MAX_QUERY = 100
MAX_RESULTS = 50


def escape_like(value: str) -> str:
    """``value`` with LIKE's wildcards escaped (used with ``ESCAPE '\\'``)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_areas(conn: Connection, q: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """Areas in force whose code starts with ``q`` or whose name contains it, best first."""
    query = q.strip()
    if not query:
        raise InvalidInput("q must not be empty", field="q")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"q is {len(query)} characters; at most {MAX_QUERY}", field="q")
    if not 1 <= limit <= MAX_RESULTS:
        raise InvalidInput(f"limit must be 1 … {MAX_RESULTS}, got {limit}", field="limit")
    like = escape_like(query.lower())
    rows = conn.execute(text(r"""
        SELECT code, name, level, level_name, parent_code, parent_name, households, population
          FROM (
            SELECT a.code, a.name, a.level, l.name AS level_name, pa.code AS parent_code,
                   pa.name AS parent_name, a.households, a.population,
                   CASE WHEN lower(a.code) = :q THEN 0
                        WHEN lower(a.name) = :q THEN 1
                        WHEN lower(a.code) LIKE :prefix ESCAPE '\' THEN 2
                        WHEN lower(a.name) LIKE :prefix ESCAPE '\' THEN 3
                        ELSE 4 END AS score
              FROM areas a
              LEFT JOIN area_levels l
                ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
              LEFT JOIN areas pa ON pa.id = a.parent_id
             WHERE a.valid_to IS NULL
               AND (lower(a.code) LIKE :prefix ESCAPE '\'
                    OR lower(a.name) LIKE :contains ESCAPE '\')
          ) m
         ORDER BY score, CASE WHEN score = 2 THEN length(code) ELSE length(name) END, level,
                  code
         LIMIT :limit
    """), {"q": query.lower(), "prefix": like + "%", "contains": "%" + like + "%",
           "limit": limit}).mappings()
    return [dict(r) for r in rows]

"""Department routing: which department gets a case, decided in SQL at intake.

Precedence, first match wins (like FixMyStreet's asset- and area-based routing):

1. **component** — the report names a component (部件) whose owner department is set and whose
   category is the case's (or unset): the asset owner handles it.
2. **zone** — a responsibility zone in force covering the point (lines within
   ``zone_line_tolerance_m``), with a department, whose ``category_codes`` include the case's
   category or one of its ancestors (NULL = every category). Among several: the most specific
   category match (minor > major > domain > all), then the smallest zone, then the zone code.
3. **rule** — a ``routing_rules`` row (category × area) for the case's category or an ancestor,
   on the case's grid or one of its ancestor areas (matched by code, so rules survive redraws).
   Among several: the most specific category, then the deepest area.
4. **category** — the category's default department, or the nearest ancestor category's.

The chosen rule is stored in ``cases.routed_by`` (``zone:river:R12``...) so routing is explained.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound

# Needs CTEs ``pt(g)``, ``grid(id, jurisdiction_id)``, ``lineage(codes)`` (category codes from
# domain to minor) and ``cat(id)``; params :component_id, :at, :line_tol_m, :tol_deg.
ROUTING_CTE = """
anc AS (
    SELECT a.id, a.parent_id, a.code, 0 AS up FROM areas a JOIN grid ON grid.id = a.id
    UNION ALL
    SELECT p.id, p.parent_id, p.code, anc.up + 1 FROM areas p JOIN anc ON p.id = anc.parent_id
), routing AS (
    SELECT dep_id, how FROM (
        SELECT 1 AS prio, comp.department_id AS dep_id,
               'component:' || COALESCE(comp.code, CAST(comp.id AS text)) AS how,
               0 AS spec, 0.0 AS size
          FROM components comp, cat
         WHERE comp.id = CAST(:component_id AS bigint) AND comp.department_id IS NOT NULL
           AND (comp.category_id IS NULL OR comp.category_id = cat.id)
        UNION ALL
        SELECT 2, z.department_id, 'zone:' || z.kind || ':' || z.code,
               COALESCE((SELECT max(array_position(lineage.codes, cc))
                           FROM unnest(z.category_codes) cc), 0),
               ST_Area(z.geom)
          FROM responsibility_zones z, pt, grid, lineage
         WHERE z.department_id IS NOT NULL AND z.jurisdiction_id = grid.jurisdiction_id
           AND z.geom && ST_Expand(pt.g, CAST(:tol_deg AS float8))
           AND (ST_Covers(z.geom, pt.g)
                OR (ST_Dimension(z.geom) < 2
                    AND ST_DWithin(CAST(z.geom AS geography), CAST(pt.g AS geography),
                                   CAST(:line_tol_m AS float8))))
           AND z.valid_from <= CAST(:at AS timestamptz)
           AND (z.valid_to IS NULL OR z.valid_to > CAST(:at AS timestamptz))
           AND (z.category_codes IS NULL OR z.category_codes && lineage.codes)
        UNION ALL
        SELECT 3, r.department_id, 'rule:' || r.area_code || ':' || r.category_code,
               array_position(lineage.codes, CAST(r.category_code AS text)), anc.up
          FROM routing_rules r
          JOIN grid ON r.jurisdiction_id = grid.jurisdiction_id
          JOIN anc ON anc.code = r.area_code
          CROSS JOIN lineage
         WHERE r.category_code = ANY(lineage.codes)
        UNION ALL
        SELECT 4, c.department_id, 'category:' || c.code,
               array_position(lineage.codes, CAST(c.code AS text)), 0
          FROM categories c, lineage
         WHERE c.code = ANY(lineage.codes) AND c.department_id IS NOT NULL
    ) candidates
    ORDER BY prio, spec DESC, size, how
    LIMIT 1
)"""

LINEAGE_CTE = """
catl AS (
    SELECT id, code, parent_id, depth FROM categories WHERE code = :category
    UNION ALL
    SELECT p.id, p.code, p.parent_id, p.depth FROM categories p JOIN catl ON p.id = catl.parent_id
), lineage AS (
    SELECT array_agg(CAST(code AS text) ORDER BY depth) AS codes FROM catl
), cat AS (
    SELECT id FROM categories WHERE code = :category
)"""


def tolerance_degrees(line_tol_m: float, lat: float) -> float:
    """A bounding-box margin in degrees that covers ``line_tol_m`` metres at latitude ``lat``."""
    return line_tol_m / 111_000.0 / max(math.cos(math.radians(min(abs(lat), 89.0))), 0.01)


def route(conn: Connection, *, category: str, lon: float, lat: float,
          at: datetime | None = None, component_id: int | None = None,
          line_tol_m: float = 15.0) -> dict[str, Any]:
    """The department for a category at a WGS84 point, and the rule that chose it.

    >>> route(conn, category="E010101", lon=10.005, lat=50.01)  # doctest: +SKIP
    {'department': 'SANITATION', 'routed_by': 'category:E010101', 'area_code': '99010100100101'}
    """
    sql = f"""
        WITH RECURSIVE pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g),
        grid AS (
            SELECT a.id, a.code, a.jurisdiction_id
              FROM area_parts p JOIN areas a ON a.id = p.area_id, pt
             WHERE ST_Covers(p.geom, pt.g) AND p.valid_from <= CAST(:at AS timestamptz)
               AND (p.valid_to IS NULL OR p.valid_to > CAST(:at AS timestamptz))
             ORDER BY p.level DESC, a.code LIMIT 1
        ), {LINEAGE_CTE}, {ROUTING_CTE}
        SELECT grid.code AS area_code, d.code AS department, routing.how AS routed_by
          FROM grid LEFT JOIN routing ON true LEFT JOIN departments d ON d.id = routing.dep_id
    """
    row = conn.execute(text(sql), {
        "lon": lon, "lat": lat, "at": at or datetime.now().astimezone(),
        "category": category, "component_id": component_id, "line_tol_m": line_tol_m,
        "tol_deg": tolerance_degrees(line_tol_m, lat),
    }).mappings().first()
    if row is None:
        raise NotFound(f"point ({lon}, {lat}) is outside every area", field="location")
    return dict(row)


def set_rule(conn: Connection, *, jurisdiction_id: int, area_code: str, category_code: str,
             department: str, note: str | None = None) -> int:
    """Add or replace the category × area rule; area and category must exist."""
    if conn.execute(text("SELECT 1 FROM areas WHERE jurisdiction_id = :j AND code = :a LIMIT 1"),
                    {"j": jurisdiction_id, "a": area_code}).first() is None:
        raise InvalidInput(f"no area with code {area_code!r}", field="area")
    if conn.execute(text("SELECT 1 FROM categories WHERE code = :c"),
                    {"c": category_code}).first() is None:
        raise InvalidInput(f"unknown category {category_code!r}", field="category")
    dep = conn.execute(text("SELECT id FROM departments WHERE code = :d"),
                       {"d": department}).scalar()
    if dep is None:
        raise InvalidInput(f"unknown department {department!r}", field="department")
    return int(conn.execute(
        text("INSERT INTO routing_rules (jurisdiction_id, area_code, category_code,"
             " department_id, note) VALUES (:j, :a, :c, :d, :note)"
             " ON CONFLICT ON CONSTRAINT uq_routing_rules_key DO UPDATE"
             " SET department_id = EXCLUDED.department_id, note = EXCLUDED.note RETURNING id"),
        {"j": jurisdiction_id, "a": area_code, "c": category_code, "d": dep, "note": note},
    ).scalar_one())


def list_rules(conn: Connection, jurisdiction_id: int | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(
        text("SELECT r.id, r.jurisdiction_id, r.area_code, r.category_code, d.code AS department,"
             " r.note FROM routing_rules r JOIN departments d ON d.id = r.department_id"
             " WHERE CAST(:j AS integer) IS NULL OR r.jurisdiction_id = :j"
             " ORDER BY r.area_code, r.category_code"), {"j": jurisdiction_id}).mappings()
    return [dict(r) for r in rows]


def delete_rule(conn: Connection, rule_id: int) -> None:
    if conn.execute(text("DELETE FROM routing_rules WHERE id = :i"),
                    {"i": rule_id}).rowcount == 0:
        raise NotFound(f"no routing rule {rule_id}", field="id")

"""Diff a plan against the boundaries in force, and publish it as a new boundary version.

An area of the plan is *unchanged* when it was copied from an area still in force and its
outline (bit for bit), name, grid type and parent are the same: publishing leaves that row
alone (same id, same code, not re-versioned). Every other area is published as a new row
valid from the publishing instant ``t``; the row it replaces (same code) and every area the
plan removed get ``valid_to = t``, so a lookup ``at=`` an earlier time still finds them. When a
parent is re-versioned its children are too (they must point at the new parent row).

Codes: a changed area keeps its code; areas without one (split pieces, carved or partitioned
grids) get the next free numbers under their parent, west→east and north→south
(``gis.partition.reading_order``), after every number the parent ever used, so no code is ever
reused for different ground. Open cases in replaced or removed grids move to the grid now
covering them, each with a ``regrid`` case event. It all happens in the caller's transaction:
publishing is atomic.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

import shapely
from sqlalchemy import Connection, text

from gis.areas import AreaRow, insert_areas
from gis.errors import Conflict, InvalidInput
from gis.partition import reading_order, row_tolerance_for
from gis.planning import store
from gis.planning.checks import check_plan
from gis.planning.store import OPEN_CASE_SQL, PArea, PlanInfo

MAX_LISTED = 500


def _live(conn: Connection, plan: PlanInfo) -> dict[int, dict[str, Any]]:
    """The areas in force in the plan's scope, by id."""
    if plan.root_area_id is not None:
        sql = ("WITH RECURSIVE sub AS (SELECT id FROM areas WHERE id = :r UNION ALL"
               " SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id"
               " WHERE a.valid_to IS NULL) SELECT id FROM sub")
    else:
        sql = "SELECT id FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL"
    rows = conn.execute(text(
        "SELECT id, code, name, level, parent_id, grid_type, valid_from, valid_to, households,"
        f" population, ST_AsBinary(geom) AS wkb FROM areas WHERE id IN ({sql})"),
        {"r": plan.root_area_id, "j": plan.jurisdiction_id}).mappings()
    return {int(r["id"]): dict(r) for r in rows}


def _unchanged(areas: list[PArea], live: dict[int, dict[str, Any]]) -> dict[int, bool]:
    """Plan key → unchanged (see the module docstring), parents decided before children."""
    by_key = {a.key: a for a in areas}
    result: dict[int, bool] = {}
    for a in sorted(areas, key=lambda x: x.level):
        src = live.get(a.source_area_id) if a.source_area_id is not None else None
        same = (src is not None and src["valid_to"] is None
                and bytes(src["wkb"]) == shapely.to_wkb(_multi(a.geom))
                and src["name"] == a.name and src["grid_type"] == a.grid_type
                and src["code"] == a.code)
        if same and a.parent_key is not None:
            parent = by_key.get(a.parent_key)
            same = (parent is not None and result.get(parent.key, False)  # type: ignore[arg-type]
                    and parent.source_area_id == src["parent_id"])  # type: ignore[index]
        elif same:
            same = src["parent_id"] is None or a.level == min(x.level for x in areas)  # type: ignore[index]
        result[a.key] = same  # type: ignore[index]
    return result


def _multi(geom: Any) -> Any:
    return shapely.MultiPolygon([geom]) if geom.geom_type == "Polygon" else geom


_BUILDING_MOVES = """
WITH plan_grid AS (
    SELECT DISTINCT ON (b.id) b.id, pa.id AS key, pa.source_area_id AS src,
           b.households, b.residents
      FROM buildings b JOIN plan_areas pa ON pa.plan_id = :p AND pa.level = :bottom
                                         AND ST_Covers(pa.geom, b.pt)
     WHERE b.jurisdiction_id = :j
     ORDER BY b.id, pa.code NULLS LAST, pa.id
), live_grid AS (
    SELECT DISTINCT ON (b.id) b.id, a.id AS area_id, a.code
      FROM plan_grid b0 JOIN buildings b ON b.id = b0.id
      JOIN area_parts p ON ST_Covers(p.geom, b.pt) AND p.valid_to IS NULL AND p.level = :bottom
      JOIN areas a ON a.id = p.area_id AND a.jurisdiction_id = :j
     ORDER BY b.id, a.code
)
SELECT l.code AS from_code, g.key AS to_key, pa.code AS to_code, count(*) AS buildings,
       sum(g.households) AS households, sum(g.residents) AS residents
  FROM plan_grid g JOIN plan_areas pa ON pa.id = g.key
  LEFT JOIN live_grid l ON l.id = g.id
 WHERE g.src IS DISTINCT FROM l.area_id
 GROUP BY l.code, g.key, pa.code
 ORDER BY sum(g.households) DESC, l.code, g.key
"""

_CASE_MOVES = f"""
SELECT c.id, c.status, a.code AS from_code, c.area_id AS from_area,
       (SELECT pa.id FROM plan_areas pa WHERE pa.plan_id = :p AND pa.level = :bottom
           AND ST_Covers(pa.geom, c.geom) ORDER BY pa.code NULLS LAST, pa.id LIMIT 1) AS to_key
  FROM cases c JOIN areas a ON a.id = c.area_id
 WHERE c.area_id = ANY(:changed) AND {OPEN_CASE_SQL}
 ORDER BY c.id
"""


def diff(conn: Connection, plan_id: int) -> dict[str, Any]:
    """What publishing the plan would change: grids new, changed, removed and unchanged;
    buildings and households moving between grids; open cases affected."""
    plan = store.get_plan(conn, plan_id)
    areas = store.load(conn, plan_id)
    live = _live(conn, plan)
    same = _unchanged(areas, live)
    bottom = plan.bottom
    sources = {a.source_area_id for a in areas if a.source_area_id is not None}
    removed = [r for i, r in live.items() if i not in sources]
    changed_live = [a.source_area_id for a in areas
                    if a.source_area_id is not None and not same[a.key]]  # type: ignore[index]
    changed_live += [int(r["id"]) for r in removed]
    grids = [a for a in areas if a.level == bottom]
    new = [a for a in grids if a.source_area_id is None]
    changed = [a for a in grids if a.source_area_id is not None and not same[a.key]]  # type: ignore[index]
    params = {"p": plan_id, "bottom": bottom, "j": plan.jurisdiction_id}
    moves = [dict(r) for r in conn.execute(text(_BUILDING_MOVES), params).mappings()]
    cases = [dict(r) for r in conn.execute(text(_CASE_MOVES),
                                           {**params, "changed": changed_live}).mappings()]
    key_code = {a.key: a.code for a in areas}
    features = []
    for a in [*changed, *new]:
        features.append(store.feature(a, role="new", change="new" if a.source_area_id is None
                                      else "changed"))
    for a in changed:
        src = live.get(a.source_area_id)  # type: ignore[arg-type]
        if src:
            features.append(_live_feature(src, "old", "changed"))
    for r in removed:
        if r["level"] == bottom:
            features.append(_live_feature(r, "old", "removed"))
    return {
        "plan": plan_id, "version": plan.version,
        "grids": {
            "new": [_brief(a) for a in new], "changed": [_brief(a) for a in changed],
            "removed": [{"code": r["code"], "name": r["name"], "households": r["households"]}
                        for r in removed if r["level"] == bottom],
            "unchanged": sum(1 for a in grids if a.key is not None and same[a.key]),
        },
        "areas_above_grids_changed": [_brief(a) for a in areas
                                      if a.level < bottom and not same[a.key]],  # type: ignore[index]
        "buildings_moved": sum(int(m["buildings"]) for m in moves),
        "households_moved": sum(int(m["households"] or 0) for m in moves),
        "residents_moved": sum(int(m["residents"] or 0) for m in moves),
        "moves": [{**m, "households": int(m["households"] or 0),
                   "residents": int(m["residents"] or 0)} for m in moves[:MAX_LISTED]],
        "open_cases": {
            "affected": len(cases),
            "cases": [{"id": int(c["id"]), "status": c["status"], "from_code": c["from_code"],
                       "to_key": c["to_key"], "to_code": key_code.get(c["to_key"])}
                      for c in cases[:MAX_LISTED]],
        },
        "features": {"type": "FeatureCollection", "features": features},
    }


def _brief(a: PArea) -> dict[str, Any]:
    return {"key": a.key, "code": a.code, "name": a.name, "households": a.households,
            "population": a.population}


def _live_feature(row: dict[str, Any], role: str, change: str) -> dict[str, Any]:
    return {"type": "Feature", "id": f"old-{row['id']}",
            "geometry": store.geojson(shapely.from_wkb(bytes(row["wkb"]))),
            "properties": {"code": row["code"], "name": row["name"], "role": role,
                           "change": change, "households": row["households"]}}


def _stale(conn: Connection, plan: PlanInfo, areas: list[PArea],
           live: dict[int, dict[str, Any]]) -> None:
    gone = [a for a in areas if a.source_area_id is not None
            and (a.source_area_id not in live or live[a.source_area_id]["valid_to"] is not None)]
    newer = [r for r in live.values() if r["valid_from"] > plan.created_at]
    if gone or newer:
        codes = sorted({a.code or "?" for a in gone} | {r["code"] for r in newer})
        raise Conflict(
            f"the boundaries in force changed after this plan was made ({', '.join(codes[:10])}"
            "); make a new plan from the current boundaries", field="plan",
            extra={"codes": codes})


def _new_codes(conn: Connection, plan: PlanInfo, parent_code: str, digits: int,
               areas: list[PArea]) -> dict[int, str]:
    """Next free codes under ``parent_code`` for ``areas``, in reading order."""
    used = conn.execute(text(
        "SELECT code FROM areas WHERE jurisdiction_id = :j AND code LIKE :prefix"
        " AND length(code) = :n"),
        {"j": plan.jurisdiction_id, "prefix": parent_code.replace("%", r"\%") + "%",
         "n": len(parent_code) + digits}).scalars().all()
    taken = [int(c[len(parent_code):]) for c in used if c[len(parent_code):].isdigit()]
    start = max(taken, default=0) + 1
    points = [(p.x, p.y) for p in (a.geom.representative_point() for a in areas)]
    heights = [a.geom.bounds[3] - a.geom.bounds[1] for a in areas]
    order = reading_order(points, row_tolerance=row_tolerance_for(heights))
    if start + len(areas) - 1 >= 10 ** digits:
        raise InvalidInput(
            f"{parent_code} would need grid numbers up to {start + len(areas) - 1}, beyond the"
            f" {digits} digits its codes have", field="code",
            extra={"problem": "codes_exhausted"})
    return {areas[i].key: f"{parent_code}{start + n:0{digits}d}"  # type: ignore[misc]
            for n, i in enumerate(order)}


def publish(conn: Connection, plan_id: int, *, actor_id: int | None = None) -> dict[str, Any]:
    """Publish the plan (see the module docstring); 422 with the problems if it fails its
    checks, 409 if the boundaries in force changed since it was made. Nothing is committed
    here: the caller's transaction makes it atomic."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    check = check_plan(conn, plan_id)
    if not check["ok"]:
        errors = [p for p in check["problems"] if p["severity"] == "error"]
        raise InvalidInput(
            f"the plan fails {check['summary']['errors']} check(s) (first: {errors[0]['message']}"
            "); fix them before publishing: nothing was published", field="plan",
            extra={"problem": "checks_failed", "problems": errors,
                   "geometry": errors[0]["geometry"]})
    areas = store.load(conn, plan_id)
    live = _live(conn, plan)
    _stale(conn, plan, areas, live)
    same = _unchanged(areas, live)
    t: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    levels = {lv.rank: lv for lv in plan.levels}
    by_key = {a.key: a for a in areas}
    sources = {a.source_area_id for a in areas if a.source_area_id is not None}
    closing = sorted({a.source_area_id for a in areas if a.source_area_id is not None
                      and not same[a.key]}  # type: ignore[index]
                     | {i for i in live if i not in sources})
    if closing:
        conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = ANY(:ids)"),
                     {"t": t, "ids": closing})
    code_of: dict[int, str] = {a.key: a.code for a in areas if a.code}  # type: ignore[misc]
    new_codes: list[str] = []
    inserted = 0
    for level in sorted({a.level for a in areas}):
        todo = [a for a in areas if a.level == level and not same[a.key]]  # type: ignore[index]
        if not todo:
            continue
        need: dict[int | None, list[PArea]] = defaultdict(list)
        for a in todo:
            if not a.code:
                need[a.parent_key].append(a)
        for parent_key, group in need.items():
            parent_code = code_of.get(parent_key) if parent_key is not None else None  # type: ignore[arg-type]
            if parent_code is None:
                raise InvalidInput("a new area has no parent to number it under",
                                   field="code")
            assigned = _new_codes(conn, plan, parent_code, levels[level].code_digits, group)
            code_of.update(assigned)
            new_codes.extend(assigned.values())
        rows = []
        for a in todo:
            code = code_of[a.key]  # type: ignore[index]
            parent = by_key.get(a.parent_key) if a.parent_key is not None else None
            name = a.name or (f"{parent.name} grid {code[-levels[level].code_digits:]}"
                              if parent else code)
            rows.append(AreaRow(code=code, name=name, level=level, geom=a.geom,
                                parent_code=code_of.get(parent.key) if parent else None,  # type: ignore[arg-type]
                                grid_type=a.grid_type, households=a.households,
                                population=a.population))
        insert_areas(conn, plan.jurisdiction_id, rows, valid_from=t)
        inserted += len(rows)
    _refresh_counts(conn, plan)
    moved = _regrid_cases(conn, plan, closing, t, actor_id)
    conn.execute(text("UPDATE plans SET status = 'published', published_at = :t,"
                      " published_by = :u, updated_at = :t WHERE id = :p"),
                 {"t": t, "u": actor_id, "p": plan_id})
    return {"plan": plan_id, "status": "published", "published_at": t.isoformat(),
            "closed": len(closing), "inserted": inserted,
            "unchanged": sum(1 for v in same.values() if v), "new_codes": sorted(new_codes),
            "cases_moved": moved, "check": check["summary"]}


def _refresh_counts(conn: Connection, plan: PlanInfo) -> None:
    """Counts of the areas in force in the plan's scope, from the buildings (bottom level by
    location, smallest code on shared edges; parents sum their children)."""
    live = _live(conn, plan)
    ids = sorted(i for i, r in live.items() if r["valid_to"] is None)
    bottom = plan.bottom
    conn.execute(text("""
        WITH scope AS (SELECT id FROM areas WHERE id = ANY(:ids) AND level = :bottom),
        assigned AS (
            SELECT DISTINCT ON (b.id) b.id, a.id AS area_id, b.households, b.residents
              FROM buildings b
              JOIN area_parts p ON ST_Covers(p.geom, b.pt) AND p.valid_to IS NULL
                               AND p.level = :bottom
              JOIN areas a ON a.id = p.area_id AND a.jurisdiction_id = :j
             WHERE b.jurisdiction_id = :j
               AND b.pt && ST_SetSRID(CAST((SELECT ST_Extent(geom) FROM areas
                                                 WHERE id = ANY(:ids)) AS geometry), 4326)
             ORDER BY b.id, a.code
        ), sums AS (SELECT area_id, sum(households) AS hh, sum(residents) AS pop
                      FROM assigned GROUP BY area_id)
        UPDATE areas a SET households = COALESCE(s.hh, 0), population = COALESCE(s.pop, 0)
          FROM scope LEFT JOIN sums s ON s.area_id = scope.id
         WHERE a.id = scope.id
    """), {"ids": ids, "bottom": bottom, "j": plan.jurisdiction_id})
    for level in range(bottom - 1, -1, -1):
        conn.execute(text("""
            UPDATE areas p SET households = s.hh, population = s.pop
              FROM (SELECT parent_id, sum(households) AS hh, sum(population) AS pop
                      FROM areas WHERE id = ANY(:ids) AND level = :child
                     GROUP BY parent_id) s
             WHERE p.id = s.parent_id AND p.id = ANY(:ids)
        """), {"ids": ids, "child": level + 1})


def _regrid_cases(conn: Connection, plan: PlanInfo, closed: list[int], t: datetime,
                  actor_id: int | None) -> int:
    if not closed:
        return 0
    rows = conn.execute(text(f"""
        WITH moved AS (
            SELECT c.id, c.status, c.area_id AS old_id, old.code AS old_code,
                   (SELECT a.id FROM area_parts p JOIN areas a ON a.id = p.area_id
                     WHERE ST_Covers(p.geom, c.geom) AND p.valid_to IS NULL
                       AND p.level = :bottom AND a.jurisdiction_id = :j
                     ORDER BY a.code LIMIT 1) AS new_id
              FROM cases c JOIN areas old ON old.id = c.area_id
             WHERE c.area_id = ANY(:closed) AND {OPEN_CASE_SQL}
               AND c.jurisdiction_id = :j
        ), upd AS (
            UPDATE cases c SET area_id = COALESCE(m.new_id,
                   (SELECT a.id FROM areas a WHERE a.jurisdiction_id = :j
                     AND a.code = m.old_code AND a.valid_to IS NULL))
              FROM moved m WHERE c.id = m.id
               AND COALESCE(m.new_id, (SELECT a.id FROM areas a WHERE a.jurisdiction_id = :j
                     AND a.code = m.old_code AND a.valid_to IS NULL)) IS NOT NULL
            RETURNING c.id, c.status, m.old_code, c.area_id
        )
        INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data, at)
        SELECT upd.id, :actor, 'regrid', upd.status, upd.status,
               'grid boundaries redrawn: ' || upd.old_code || ' -> ' || a.code,
               jsonb_build_object('plan', :p, 'from_area_code', upd.old_code,
                                  'to_area_code', a.code, 'to_area_id', a.id,
                                  'actor', CAST(:actor_json AS jsonb)),
               :t
          FROM upd JOIN areas a ON a.id = upd.area_id
        RETURNING case_id
    """), {"closed": closed, "bottom": plan.bottom, "j": plan.jurisdiction_id, "p": plan.id,
           "actor": actor_id, "t": t,
           "actor_json": json.dumps({"role": "planner", "plan": plan.id})}).all()
    return len(rows)

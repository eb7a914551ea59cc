"""Plans and their operations: copy a subtree into a draft, then reshape, split, merge, carve,
move buildings or road blocks, snap to roads, lock, rename; undo and redo (``store``).

Every operation locks the plan row (one writer at a time per plan), checks the versions the
caller saw (409 with the current state when stale: nothing is changed, nothing lost) and is
logged for undo. The plan's root area is its frame and cannot be edited; everything below it
can, one level at a time, always keeping each parent covered exactly by its children.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.auth import Forbidden, Principal, area_in_scope
from gis.errors import InvalidInput, NotFound
from gis.planning import geometry as pg
from gis.planning import store
from gis.planning.store import Applied, PArea, PlanInfo, deg2_to_m2

SNAP_M = 1.0
"""Vertices of a drawn shape within this distance of a neighbour's vertex land on it."""


# --- plans -----------------------------------------------------------------------------------

def create_plan(conn: Connection, *, root: str | None, name: str | None = None,
                jurisdiction: str | None = None, actor_id: int | None = None) -> PlanInfo:
    """A draft copying the current area ``root`` (a code) and everything below it; ``root``
    None copies the whole jurisdiction (given by code, default the first one)."""
    if jurisdiction:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": jurisdiction}).scalar()
        if jid is None:
            raise NotFound(f"no jurisdiction {jurisdiction!r}", field="jurisdiction")
    else:
        jid = None
    root_id = None
    if root:
        row = conn.execute(text(
            "SELECT id, jurisdiction_id, name FROM areas WHERE code = :c AND valid_to IS NULL"
            " AND (CAST(:j AS integer) IS NULL OR jurisdiction_id = :j)"
            " ORDER BY jurisdiction_id LIMIT 1"), {"c": root, "j": jid}).first()
        if row is None:
            raise NotFound(f"no current area with code {root!r}", field="root")
        root_id, jid, root_name = int(row[0]), int(row[1]), str(row[2])
    else:
        if jid is None:
            jid = conn.execute(text("SELECT min(id) FROM jurisdictions")).scalar()
            if jid is None:
                raise NotFound("no jurisdiction loaded", field="jurisdiction")
        root_name = "whole jurisdiction"
    name = (name or "").strip() or f"Plan for {root or ''} {root_name}".replace("  ", " ")
    if len(name) > 200:
        raise InvalidInput("plan name must be at most 200 characters", field="name")
    plan_id = int(conn.execute(text(
        "INSERT INTO plans (jurisdiction_id, name, root_area_id, created_by, created_at)"
        " VALUES (:j, :n, :r, :u, clock_timestamp()) RETURNING id"),
        {"j": jid, "n": name, "r": root_id, "u": actor_id}).scalar_one())
    subtree = (
        "WITH RECURSIVE sub AS (SELECT id FROM areas WHERE id = :r UNION ALL"
        " SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id WHERE a.valid_to IS NULL)"
        " SELECT id FROM sub" if root_id is not None else
        "SELECT id FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL")
    # One statement: keys drawn first, so each row's parent key comes from a hash join
    # rather than an UPDATE afterwards (which took a minute on a 20,000-grid city).
    conn.execute(text(
        f"""WITH keyed AS MATERIALIZED (
                SELECT a.id, a.parent_id, a.level, a.code, a.name, a.grid_type, a.households,
                       a.population, a.area_m2, a.geom,
                       nextval(pg_get_serial_sequence('plan_areas', 'id')) AS key
                  FROM areas a WHERE a.id IN ({subtree}))
            INSERT INTO plan_areas (id, plan_id, source_area_id, parent_key, level, code, name,
                                    grid_type, households, population, area_m2, geom)
            SELECT k.key, :p, k.id, pk.key, k.level, k.code, k.name, k.grid_type, k.households,
                   k.population, k.area_m2, k.geom
              FROM keyed k LEFT JOIN keyed pk ON pk.id = k.parent_id"""),
        {"p": plan_id, "r": root_id, "j": jid})
    return store.get_plan(conn, plan_id)


def list_plans(conn: Connection, *, status: str | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT p.id, p.name, p.status, p.version, a.code AS root, p.created_at, p.updated_at,"
        " p.published_at, (SELECT count(*) FROM plan_areas pa WHERE pa.plan_id = p.id)"
        " AS areas FROM plans p LEFT JOIN areas a ON a.id = p.root_area_id"
        " WHERE (CAST(:s AS text) IS NULL OR p.status = :s) ORDER BY p.id DESC"),
        {"s": status}).mappings()
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in rows]


def check_scope(conn: Connection, principal: Principal, plan_id: int) -> None:
    """Refuse (403) a principal whose area scope does not hold the plan's root area: an
    account edits only plans it could have created. Unknown plan: 404.

    A plan of the whole jurisdiction (no root) is inside no area scope. Scope is checked
    with ``gis.auth.area_in_scope``, so any boundary version of the scope's codes counts.
    """
    row = conn.execute(text(
        "SELECT p.root_area_id, a.code FROM plans p LEFT JOIN areas a ON a.id = p.root_area_id"
        " WHERE p.id = :p"), {"p": plan_id}).first()
    if row is None:
        raise NotFound(f"no plan {plan_id}", field="plan")
    if not principal.scope_area_ids or area_in_scope(conn, principal, row[0]):
        return
    root = row[1] or "the whole jurisdiction"
    raise Forbidden(f"plan {plan_id} covers {root}, outside your scope"
                    f" ({principal.describe_scope()})", field="plan")


def discard(conn: Connection, plan_id: int) -> dict[str, Any]:
    store.get_plan(conn, plan_id, lock=True, draft=True)
    conn.execute(text("UPDATE plans SET status = 'discarded', updated_at = now() WHERE id = :p"),
                 {"p": plan_id})
    return {"id": plan_id, "status": "discarded"}


def features(conn: Connection, plan_id: int, *, level: int | None = None,
             parent: int | None = None) -> dict[str, Any]:
    """The plan's areas as a FeatureCollection (id = key), with the deviation from the level's
    household and population targets."""
    plan = store.get_plan(conn, plan_id)
    areas = store.load(conn, plan_id, level=level,
                       parents=[parent] if parent is not None else None)
    levels = {lv.rank: lv for lv in plan.levels}
    out = []
    for a in areas:
        lv = levels.get(a.level)
        extra: dict[str, Any] = {"level_name": lv.name if lv else str(a.level)}
        if lv is not None:
            for measure, target in lv.targets().items():
                value = getattr(a, measure)
                extra[f"deviation_{measure}"] = round((value - target) / target, 4)
            extra["tolerance"] = lv.tolerance
        out.append(store.feature(a, **extra))
    return {"type": "FeatureCollection", "plan": plan.as_dict(), "features": out}


# --- helpers ---------------------------------------------------------------------------------

def _scale(areas: Sequence[PArea]) -> float:
    ys = [a.geom.centroid.y for a in areas if not a.geom.is_empty]
    return deg2_to_m2(sum(ys) / len(ys) if ys else 0.0)


def _editable(plan: PlanInfo, area: PArea) -> None:
    if area.parent_key is None and plan.root_area_id is not None:
        raise InvalidInput(f"{area.label()} is the plan's root: its outline is the frame of the"
                           " plan and cannot be edited here", field="key",
                           extra={"problem": "root"})


def _family(conn: Connection, plan: PlanInfo, area: PArea) -> tuple[list[PArea], PArea | None]:
    """The area's siblings (itself included) and its parent (None at the top)."""
    if area.parent_key is None:
        siblings = [a for a in store.load(conn, plan.id, level=area.level)
                    if a.parent_key is None]
        return siblings, None
    siblings = store.load(conn, plan.id, parents=[area.parent_key])
    siblings = [s for s in siblings if s.level == area.level]
    parent = store.load_one(conn, plan.id, area.parent_key)
    return siblings, parent


def _seen(versions: Mapping[Any, Any] | None) -> dict[int, int]:
    out: dict[int, int] = {}
    for k, v in (versions or {}).items():
        try:
            out[int(k)] = int(v)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"versions must map area keys to integers, got {k!r}: {v!r}",
                               field="versions") from exc
    return out


def _descendants_follow(conn: Connection, plan: PlanInfo, edit: pg.Edit) -> None:
    """Refuse edits of areas that have children: their children would no longer nest."""
    keys = [a.key for a in (*edit.areas, *edit.removed) if a.key is not None]
    if not keys:
        return
    n = conn.execute(text("SELECT count(*) FROM plan_areas WHERE plan_id = :p"
                          " AND parent_key = ANY(:k)"), {"p": plan.id, "k": keys}).scalar_one()
    if n and any(a.level < plan.bottom for a in edit.areas):
        raise InvalidInput(
            "this edit changes areas that have children of their own; edit their children"
            " (the bottom level) instead, or re-partition them", field="key",
            extra={"problem": "has_children"})


# --- operations ------------------------------------------------------------------------------

def reshape(conn: Connection, plan_id: int, key: int, shape: BaseGeometry, *,
            version: int | None = None, snap_m: float = SNAP_M,
            actor_id: int | None = None, kind: str = "reshape",
            params: Mapping[str, Any] | None = None) -> Applied:
    """Give area ``key`` the new outline ``shape``; neighbours give or take the difference."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    area = store.load_one(conn, plan_id, key)
    _editable(plan, area)
    shape = pg.check_polygon(shape)
    siblings, parent = _family(conn, plan, area)
    scale = _scale(siblings)
    seen = {key: version} if version is not None else {}
    store.check_versions(siblings, seen)
    shape = pg.snap_to(shape, [s.geom for s in siblings if s.key != key]
                       + ([parent.geom] if parent else []), snap_m / scale ** 0.5)
    edit = pg.reshape(area, shape, siblings, parent.geom if parent else None, scale=scale)
    _descendants_follow(conn, plan, edit)
    before = [s for s in siblings if s.key in {a.key for a in (*edit.areas, *edit.removed)}]
    return store.apply(conn, plan, kind, before, edit.areas,
                       params=params or {"key": key}, summary=edit.notes, actor_id=actor_id)


def carve(conn: Connection, plan_id: int, parent_key: int, shape: BaseGeometry, *,
          name: str = "", grid_type: str | None = None, versions: Mapping[Any, Any] | None = None,
          snap_m: float = SNAP_M, actor_id: int | None = None) -> Applied:
    """A new area of the bottom level inside ``parent_key``, drawn as ``shape``; it takes its
    ground from the children there now."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    parent = store.load_one(conn, plan_id, parent_key)
    level = parent.level + 1
    if level > plan.bottom:
        raise InvalidInput(f"{parent.label()} is at the bottom level; draw inside its parent",
                           field="parent")
    shape = pg.check_polygon(shape)
    siblings = [s for s in store.load(conn, plan_id, parents=[parent_key]) if s.level == level]
    scale = _scale([parent])
    store.check_versions(siblings, _seen(versions))
    shape = pg.snap_to(shape, [s.geom for s in siblings] + [parent.geom], snap_m / scale ** 0.5)
    new = PArea(key=None, parent_key=parent_key, level=level, code=None, name=name,
                geom=shape, grid_type=grid_type)
    edit = pg.reshape(None, shape, siblings, parent.geom, scale=scale, new_area=new)
    before = [s for s in siblings if s.key in {a.key for a in (*edit.areas, *edit.removed)}]
    return store.apply(conn, plan, "carve", before, edit.areas,
                       params={"parent": parent_key}, summary=edit.notes, actor_id=actor_id)


def split(conn: Connection, plan_id: int, key: int, line: BaseGeometry, *,
          version: int | None = None, actor_id: int | None = None) -> Applied:
    """Cut area ``key`` along ``line``: the largest piece keeps the key and code, the others
    become new areas (new codes when published)."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    area = store.load_one(conn, plan_id, key)
    _editable(plan, area)
    if area.locked:
        raise InvalidInput(f"{area.label()} is locked; unlock it before splitting", field="key",
                           extra={"problem": "locked", "geometry": pg.problem(area.geom)})
    if area.level < plan.bottom:
        raise InvalidInput(f"{area.label()} has children; split one of its children instead",
                           field="key", extra={"problem": "has_children"})
    store.check_versions([area], {key: version} if version is not None else None)
    scale = _scale([area])
    pieces = pg.split(area, line, scale=scale)
    after = [replace(area, geom=pieces[0])]
    after += [PArea(key=None, parent_key=area.parent_key, level=area.level, code=None, name="",
                    geom=p, grid_type=area.grid_type) for p in pieces[1:]]
    return store.apply(conn, plan, "split", [area], after, params={"key": key},
                       summary={"pieces": len(pieces),
                                "piece_m2": [round(p.area * scale, 1) for p in pieces]},
                       actor_id=actor_id)


def merge(conn: Connection, plan_id: int, keys: Sequence[int], *,
          versions: Mapping[Any, Any] | None = None, actor_id: int | None = None) -> Applied:
    """Merge adjacent sibling areas into one, which keeps the smallest code."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    keys = sorted({int(k) for k in keys})
    areas = store.load(conn, plan_id, keys=keys)
    missing = sorted(set(keys) - {a.key for a in areas})  # type: ignore[misc]
    if missing:
        raise NotFound(f"plan {plan_id} has no areas {missing}", field="keys")
    for a in areas:
        _editable(plan, a)
        if a.level < plan.bottom:
            raise InvalidInput(f"{a.label()} has children; merge areas of the bottom level",
                               field="keys", extra={"problem": "has_children"})
    store.check_versions(areas, _seen(versions))
    geom = pg.merge(areas, scale=_scale(areas))
    keep = pg.keeper(areas)
    return store.apply(conn, plan, "merge", areas, [replace(keep, geom=geom)],
                       params={"keys": keys}, summary={"kept": keep.key}, actor_id=actor_id)


def set_attributes(conn: Connection, plan_id: int, key: int, *, version: int | None = None,
                   locked: bool | None = None, name: str | None = None,
                   grid_type: str | None = None, actor_id: int | None = None) -> Applied:
    """Lock or unlock an area, rename it or change its grid type (an undoable operation)."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    area = store.load_one(conn, plan_id, key)
    store.check_versions([area], {key: version} if version is not None else None)
    changes: dict[str, Any] = {}
    if locked is not None:
        changes["locked"] = bool(locked)
    if name is not None:
        if len(name) > 200:
            raise InvalidInput("name must be at most 200 characters", field="name")
        changes["name"] = name
    if grid_type is not None:
        changes["grid_type"] = grid_type or None
    if not changes:
        raise InvalidInput("nothing to change: give locked, name or grid_type", field="locked")
    kind = "lock" if set(changes) == {"locked"} else "edit"
    return store.apply(conn, plan, kind, [area], [replace(area, **changes)],
                       params={"key": key, **changes}, actor_id=actor_id)


def move_buildings(conn: Connection, plan_id: int, to: int, building_ids: Sequence[int], *,
                   version: int | None = None, versions: Mapping[Any, Any] | None = None,
                   actor_id: int | None = None) -> Applied:
    """Move buildings (whole, with the ground around them) into sibling area ``to``."""
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    target = store.load_one(conn, plan_id, to)
    _editable(plan, target)
    ids = sorted({int(b) for b in building_ids})
    if not ids:
        raise InvalidInput("give at least one building id", field="buildings")
    siblings, parent = _family(conn, plan, target)
    rows = conn.execute(text(
        "SELECT id, ST_AsBinary(geom) AS g, ST_AsBinary(pt) AS p FROM buildings"
        " WHERE jurisdiction_id = :j AND id = ANY(:ids) ORDER BY id"),
        {"j": plan.jurisdiction_id, "ids": ids}).all()
    found = {int(r.id) for r in rows}
    if set(ids) - found:
        raise NotFound(f"no buildings {sorted(set(ids) - found)[:10]} in this jurisdiction",
                       field="buildings")
    points = shapely.from_wkb([bytes(r.p) for r in rows])
    metric = plan.metric()
    region_parts: list[BaseGeometry] = []
    for sibling in siblings:
        mine = [i for i, p in enumerate(points) if sibling.geom.covers(p)]
        if not mine or sibling.key == to:
            continue
        if sibling.locked:
            raise InvalidInput(f"building {rows[mine[0]].id} lies in {sibling.label()}, which is"
                               " locked", field="buildings", extra={"problem": "locked"})
        region_parts.append(_cells_of(conn, plan, metric, sibling, {rows[i].id for i in mine}))
    outside = [int(rows[i].id) for i, p in enumerate(points)
               if not any(s.geom.covers(p) for s in siblings)]
    if outside:
        where = parent.label() if parent else "this level"
        raise InvalidInput(f"buildings {outside[:10]} are not inside {where}: only buildings"
                           " of sibling areas can be moved", field="buildings",
                           extra={"problem": "outside_parent"})
    if not region_parts:
        raise InvalidInput(f"the buildings already lie in {target.label()}", field="buildings")
    region = pg.polygonal(shapely.union_all(region_parts))
    return _grow(conn, plan, target, region, siblings, parent, version, versions, actor_id,
                 kind="move_buildings", params={"to": to, "buildings": ids})


MAX_BUILDINGS = 20_000
"""The most buildings ``buildings_in`` returns at once (a street of a dense city)."""


def buildings_in(conn: Connection, plan_id: int, key: int) -> dict[str, Any]:
    """The buildings whose point lies in area ``key`` of the plan (what "move buildings"
    moves), as GeoJSON: feature id = building id; properties carry the counts and ``grid``,
    the key of the plan's bottom-level area holding the building now.

    Counts only (households, residents), never who lives there.
    """
    plan = store.get_plan(conn, plan_id)
    area = store.load_one(conn, plan_id, key)
    rows = conn.execute(text(
        """SELECT b.id, b.households, b.residents, b.use, ST_AsGeoJSON(b.geom, 7) AS g,
                  (SELECT pa.id FROM plan_areas pa WHERE pa.plan_id = :p AND pa.level = :bottom
                      AND pa.geom && b.pt AND ST_Covers(pa.geom, b.pt)
                    ORDER BY pa.code NULLS LAST, pa.id LIMIT 1) AS grid
             FROM buildings b
            WHERE b.jurisdiction_id = :j AND b.pt && ST_GeomFromWKB(:a, 4326)
              AND ST_Covers(ST_GeomFromWKB(:a, 4326), b.pt)
            ORDER BY b.id LIMIT :n"""),
        {"p": plan_id, "bottom": plan.bottom, "j": plan.jurisdiction_id,
         "a": shapely.to_wkb(area.geom), "n": MAX_BUILDINGS + 1}).mappings().all()
    if len(rows) > MAX_BUILDINGS:
        raise InvalidInput(f"{area.label()} holds more than {MAX_BUILDINGS:,} buildings; ask for"
                           " the buildings of one of its children", field="parent")
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": int(r["id"]), "geometry": json.loads(r["g"]),
         "properties": {"id": int(r["id"]), "households": int(r["households"]),
                        "residents": int(r["residents"]), "use": r["use"],
                        "grid": int(r["grid"]) if r["grid"] is not None else None}}
        for r in rows]}


def _cells_of(conn: Connection, plan: PlanInfo, metric: store.Metric, grid: PArea,
              chosen: set[int]) -> BaseGeometry:
    rows = conn.execute(text(
        "SELECT id, ST_AsBinary(geom) AS g FROM buildings WHERE jurisdiction_id = :j"
        " AND ST_Covers(ST_GeomFromWKB(:grid, 4326), pt) ORDER BY id"),
        {"j": plan.jurisdiction_id, "grid": shapely.to_wkb(grid.geom)}).all()
    footprints = metric.to_m(shapely.from_wkb([bytes(r.g) for r in rows]))
    cells = pg.building_cells(metric.to_m(grid.geom), list(footprints))
    wanted = [c for r, c in zip(rows, cells, strict=True) if int(r.id) in chosen]
    region = metric.to_wgs(shapely.union_all(wanted))
    return pg.polygonal(shapely.intersection(region, grid.geom))


def _grow(conn: Connection, plan: PlanInfo, target: PArea, region: BaseGeometry,
          siblings: Sequence[PArea], parent: PArea | None, version: int | None,
          versions: Mapping[Any, Any] | None, actor_id: int | None, *, kind: str,
          params: Mapping[str, Any]) -> Applied:
    scale = _scale([target])
    if pg.shared_length(region, target.geom) * scale ** 0.5 < pg.MIN_SHARED_M:
        raise InvalidInput(
            f"what you move does not touch {target.label()}: it would be cut off from the rest"
            " of the area; move ground that borders it", field="to",
            extra={"problem": "not_adjacent",
                   "geometry": pg.problem(shapely.GeometryCollection(
                       [region, shapely.shortest_line(region, target.geom)]))})
    seen = _seen(versions)
    if version is not None:
        seen[target.key] = version  # type: ignore[index]
    store.check_versions(siblings, seen)
    shape = pg.polygonal(shapely.union(target.geom, region))
    edit = pg.reshape(target, shape, siblings, parent.geom if parent else None, scale=scale)
    before = [s for s in siblings if s.key in {a.key for a in (*edit.areas, *edit.removed)}]
    return store.apply(conn, plan, kind, before, edit.areas, params=params, summary=edit.notes,
                       actor_id=actor_id)


def move_blocks(conn: Connection, plan_id: int, to: int, points: Sequence[Sequence[float]], *,
                version: int | None = None, versions: Mapping[Any, Any] | None = None,
                actor_id: int | None = None) -> Applied:
    """Move the road blocks containing ``points`` (lon/lat) into sibling area ``to``."""
    from gis.planning.blocks import road_faces

    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    target = store.load_one(conn, plan_id, to)
    _editable(plan, target)
    if not points:
        raise InvalidInput("give at least one point inside a block", field="points")
    siblings, parent = _family(conn, plan, target)
    frame = parent.geom if parent else shapely.union_all([s.geom for s in siblings])
    faces = road_faces(conn, plan, frame)
    chosen = []
    for xy in points:
        if len(xy) != 2:
            raise InvalidInput(f"points are [lon, lat] pairs, got {xy!r}", field="points")
        p = shapely.Point(float(xy[0]), float(xy[1]))
        hit = [f for f in faces if f.covers(p)]
        if not hit:
            where = parent.label() if parent else "the plan"
            raise InvalidInput(f"({p.x}, {p.y}) is not inside {where}", field="points",
                               extra={"geometry": pg.problem(p)})
        chosen.append(hit[0])
    locked = [s for s in siblings if s.locked and s.key != to]
    region = pg.polygonal(shapely.difference(shapely.union_all(chosen),
                                             shapely.union_all([s.geom for s in locked]))
                          if locked else shapely.union_all(chosen))
    region = pg.polygonal(shapely.difference(region, target.geom))
    if region.is_empty:
        raise InvalidInput(f"those blocks already lie in {target.label()}", field="points")
    return _grow(conn, plan, target, region, siblings, parent, version, versions, actor_id,
                 kind="move_blocks", params={"to": to, "points": [list(p) for p in points]})


def snap_to_roads(conn: Connection, plan_id: int, key: int, *, tolerance_m: float = 15.0,
                  version: int | None = None, actor_id: int | None = None) -> Applied:
    """Move the edges of area ``key`` that run within ``tolerance_m`` of a road onto the road
    (centre line); neighbours follow. Edges on the parent's outline stay where they are."""
    if not 0 < tolerance_m <= 200:
        raise InvalidInput(f"tolerance_m must be in (0, 200], got {tolerance_m}",
                           field="tolerance_m")
    plan = store.get_plan(conn, plan_id)
    area = store.load_one(conn, plan_id, key)
    metric = plan.metric()
    roads = _roads_near(conn, plan, area.geom, tolerance_m)
    if not roads:
        raise InvalidInput(f"no road within {tolerance_m:g} m of {area.label()}",
                           field="tolerance_m", extra={"geometry": pg.problem(area.geom)})
    grid_m = metric.to_m(area.geom)
    roads_m = shapely.segmentize(shapely.union_all(metric.to_m(roads)), 2.0)
    dense = shapely.segmentize(grid_m, max(2.0, tolerance_m / 3))
    snapped = shapely.snap(dense, roads_m, tolerance_m)
    snapped = pg.polygonal(shapely.make_valid(snapped)) if not snapped.is_valid else snapped
    snapped = shapely.simplify(snapped, 0.25, preserve_topology=True)
    shape = metric.to_wgs(snapped)
    return reshape(conn, plan_id, key, shape, version=version, snap_m=0.0, actor_id=actor_id,
                   kind="snap", params={"key": key, "tolerance_m": tolerance_m})


def _roads_near(conn: Connection, plan: PlanInfo, geom: BaseGeometry, distance_m: float
                ) -> list[BaseGeometry]:
    rows = conn.execute(text(
        "SELECT ST_AsBinary(geom) FROM road_edges WHERE jurisdiction_id = :j"
        " AND geom && ST_Expand(ST_GeomFromWKB(:g, 4326), :d)"
        " AND ST_DWithin(geom::geography, ST_GeomFromWKB(:g, 4326)::geography, :m)"),
        {"j": plan.jurisdiction_id, "g": shapely.to_wkb(geom), "d": distance_m / 30_000.0,
         "m": distance_m}).scalars().all()
    return list(shapely.from_wkb([bytes(r) for r in rows])) if rows else []

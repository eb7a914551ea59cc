"""Checks of a plan: coverage, nesting, contiguity, holes, slivers, balance, compactness and how
much of each boundary follows roads. Each problem carries GeoJSON to show on the map.

Errors (a plan with any cannot be published): ``invalid`` geometry, ``overlap`` of areas of one
level, ``gap`` (part of a parent no child covers), ``outside_parent`` (a child reaching out of
its parent), ``multipart`` (a non-contiguous area), ``empty``. Warnings: ``hole``, ``sliver``,
``deviation`` beyond the level's tolerance, ``not_compact``.

Everything is vectorised with shapely over the whole plan (one STRtree per level, areas and
perimeters in the jurisdiction's metric CRS), so a 20,000-grid city is checked in seconds.

Measures per area: households, population (cached from the buildings), land area, open cases
(live), their deviation from the level's target (``area_levels``; the mean of the level where
there is no target), Polsby-Popper (4πA/P²) and Reock (A / area of the smallest enclosing
circle) compactness, and the share of the boundary within ``road_tolerance_m`` of a road.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gis.planning import store
from gis.planning.geometry import drop_noise
from gis.planning.store import OPEN_CASE_SQL, PlanInfo, deg2_to_m2, geojson

TOLERANCE_M2 = 1.0
"""Gaps and overlaps smaller than this (m²) are rounding, not problems."""
SLIVER_WIDTH_M = 3.0
SLIVER_AREA_M2 = 20.0
NOT_COMPACT_PP = 0.05
ROAD_TOLERANCE_M = 12.0
ROAD_SAMPLE_M = 40.0
MAX_LISTED = 1000
ERRORS = ("invalid", "empty", "overlap", "gap", "outside_parent", "multipart")


@dataclass
class _Areas:
    keys: np.ndarray
    parents: np.ndarray  # -1 for none
    levels: np.ndarray
    codes: list[str | None]
    names: list[str]
    locked: np.ndarray
    households: np.ndarray
    population: np.ndarray
    geoms: np.ndarray  # WGS84
    metric: np.ndarray


def _load(conn: Connection, plan: PlanInfo, keys: Sequence[int] | None = None) -> _Areas:
    where = "plan_id = :p" + (" AND id = ANY(:keys)" if keys is not None else "")
    rows = conn.execute(text(
        "SELECT id, COALESCE(parent_key, -1) AS parent, level, code, name, locked, households,"
        f" population, ST_AsBinary(geom) AS wkb FROM plan_areas WHERE {where} ORDER BY id"),
        {"p": plan.id, "keys": list(keys or [])}).all()
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else np.array([], object)
    return _Areas(
        keys=np.array([r.id for r in rows], dtype=np.int64),
        parents=np.array([r.parent for r in rows], dtype=np.int64),
        levels=np.array([r.level for r in rows], dtype=np.int64),
        codes=[r.code for r in rows], names=[r.name for r in rows],
        locked=np.array([r.locked for r in rows], dtype=bool),
        households=np.array([r.households for r in rows], dtype=np.float64),
        population=np.array([r.population for r in rows], dtype=np.float64),
        geoms=geoms, metric=_valid(plan.metric().to_m(geoms)) if rows else geoms)


def _valid(metric: np.ndarray) -> np.ndarray:
    """Reprojection can make a hair-thin spike cross itself; measure the repaired shape."""
    bad = ~shapely.is_valid(metric)
    if bad.any():
        metric = metric.copy()
        metric[bad] = [drop_noise(g, 1.0) for g in shapely.make_valid(metric[bad])]
    return metric


def _open_cases(conn: Connection, plan: PlanInfo, keys: Sequence[int] | None = None
                ) -> dict[int, int]:
    """Open cases per plan area: by ``area_id`` for areas copied unchanged, by location for
    areas whose outline changed (a case on a shared edge counts in both)."""
    params = {"p": plan.id, "keys": list(keys or []), "j": plan.jurisdiction_id}
    only = " AND pa.id = ANY(:keys)" if keys is not None else ""
    rows = conn.execute(text(f"""
        WITH pa AS (
            SELECT pa.id, pa.geom, pa.source_area_id,
                   (a.id IS NOT NULL AND pa.geom = a.geom) AS same
              FROM plan_areas pa LEFT JOIN areas a ON a.id = pa.source_area_id
             WHERE pa.plan_id = :p{only}
        )
        SELECT pa.id, count(c.id) FROM pa JOIN cases c ON c.area_id = pa.source_area_id
         WHERE pa.same AND {OPEN_CASE_SQL} GROUP BY pa.id
        UNION ALL
        SELECT pa.id, count(c.id) FROM pa JOIN cases c
               ON c.jurisdiction_id = :j AND ST_Covers(pa.geom, c.geom)
         WHERE NOT pa.same AND {OPEN_CASE_SQL} GROUP BY pa.id
    """), params).all()
    return {int(k): int(n) for k, n in rows}


_ROAD_TREES: dict[tuple[str, int, int], shapely.STRtree | None] = {}
_BIG_PLAN = 2000


def _road_tree(conn: Connection, plan: PlanInfo, geoms: np.ndarray) -> shapely.STRtree | None:
    """An STRtree of the road centre lines (metric CRS) around ``geoms``. For big plans the
    whole jurisdiction's tree is kept in memory until ``data_versions`` says the roads changed
    (a planner checks after every edit)."""
    big = len(geoms) >= _BIG_PLAN
    key = None
    if big:
        version = conn.execute(text(
            "SELECT version FROM data_versions WHERE name = 'road_edges'")).scalar()
        key = (str(conn.engine.url), plan.jurisdiction_id, int(version or 0))
        if key in _ROAD_TREES:
            return _ROAD_TREES[key]
        where = ""
        params: dict[str, float] = {"j": plan.jurisdiction_id}
    else:
        x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(geoms))
        where = " AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        params = {"j": plan.jurisdiction_id, "x0": x0 - 0.001, "y0": y0 - 0.001,
                  "x1": x1 + 0.001, "y1": y1 + 0.001}
    rows = conn.execute(text("SELECT ST_AsBinary(geom) FROM road_edges WHERE jurisdiction_id"
                             f" = :j{where}"), params).scalars().all()
    tree = (shapely.STRtree(plan.metric().to_m(shapely.from_wkb([bytes(r) for r in rows])))
            if rows else None)
    if key is not None:
        _ROAD_TREES.clear()  # one big city at a time is plenty
        _ROAD_TREES[key] = tree
    return tree


def _road_share(conn: Connection, plan: PlanInfo, a: _Areas, idx: np.ndarray,
                tolerance_m: float) -> np.ndarray:
    """Share of each area's boundary within ``tolerance_m`` of a road centre line.

    Boundaries are cut into pieces of at most ``ROAD_SAMPLE_M``; a piece runs along a road
    when its midpoint is that near one. An edge two grids share is tested once.
    """
    share = np.zeros(len(idx))
    if not len(idx):
        return share
    tree = _road_tree(conn, plan, a.geoms[idx])
    if tree is None:
        return share
    rings, owner = shapely.get_parts(shapely.boundary(a.metric[idx]), return_index=True)
    rings, ring_owner = shapely.get_parts(rings, return_index=True)
    owner = owner[ring_owner]
    dense = shapely.segmentize(rings, ROAD_SAMPLE_M)
    coords, which = shapely.get_coordinates(dense, return_index=True)
    same = which[1:] == which[:-1]
    start, end = coords[:-1][same], coords[1:][same]
    seg_owner = owner[which[:-1][same]]
    lengths = np.hypot(*(end - start).T)
    mids = (start + end) / 2
    # Shared edges appear twice (once per side): test each distinct midpoint once.
    keys = np.round(mids, 2)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    hit, _ = tree.query(shapely.points(unique), predicate="dwithin", distance=tolerance_m)
    near_unique = np.zeros(len(unique), dtype=bool)
    near_unique[hit] = True
    near = near_unique[inverse.ravel()]
    total = np.bincount(seg_owner, weights=lengths, minlength=len(idx))
    along = np.bincount(seg_owner, weights=lengths * near, minlength=len(idx))
    return np.divide(along, total, out=np.zeros(len(idx)), where=total > 0)


def _pairwise(fn: Any, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``fn(left, right)`` element-wise; pairs GEOS cannot handle (coordinates that nearly
    coincide after reprojection) are retried with ``make_valid`` inputs."""
    try:
        return fn(left, right)  # type: ignore[no-any-return]
    except shapely.errors.GEOSException:
        out = np.empty(len(left), dtype=object)
        for n, (x, y) in enumerate(zip(left, right, strict=True)):
            try:
                out[n] = fn(x, y)
            except shapely.errors.GEOSException:
                out[n] = fn(shapely.make_valid(x), shapely.make_valid(y))
        return out


def _measures(a: _Areas) -> dict[str, np.ndarray]:
    area = shapely.area(a.metric)
    perimeter = shapely.length(a.metric)
    radius = shapely.minimum_bounding_radius(a.metric)
    pp = np.divide(4 * math.pi * area, perimeter ** 2, out=np.zeros(len(area)),
                   where=perimeter > 0)
    reock = np.divide(area, math.pi * radius ** 2, out=np.zeros(len(area)), where=radius > 0)
    parts_, owner = shapely.get_parts(a.metric, return_index=True)
    n_parts = np.bincount(owner, minlength=len(area))
    rings = shapely.get_num_interior_rings(parts_)
    real = np.zeros(len(parts_))
    for p in np.flatnonzero(rings > 0).tolist():  # holes under 1 m² are rounding
        real[p] = sum(1 for r in parts_[p].interiors
                      if shapely.Polygon(r).area >= TOLERANCE_M2)
    holes = np.bincount(owner, weights=real, minlength=len(area))
    return {"area": area, "perimeter": perimeter, "pp": pp, "reock": reock, "parts": n_parts,
            "holes": holes, "part_geoms": parts_, "part_owner": owner}


def _label(a: _Areas, i: int) -> str:
    return a.codes[i] or f"new area #{a.keys[i]}"


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, message: str, geom: Any, *, keys: Sequence[int],
            codes: Sequence[str | None], **extra: Any) -> None:
        self.counts[kind] += 1
        if len(self.items) >= MAX_LISTED:
            return
        self.items.append({"kind": kind, "severity": "error" if kind in ERRORS else "warning",
                           "message": message, "keys": [int(k) for k in keys],
                           "codes": list(codes), "geometry": geojson(geom), **extra})


def check_plan(conn: Connection, plan_id: int, *, road_tolerance_m: float = ROAD_TOLERANCE_M,
               store_result: bool = True) -> dict[str, Any]:
    """Every check over the whole plan; see the module docstring."""
    started = time.perf_counter()
    plan = store.get_plan(conn, plan_id)
    a = _load(conn, plan)
    n = len(a.keys)
    out = _Problems()
    if n == 0:
        return {"plan": plan_id, "ok": False, "problems": [], "areas": []}
    m = _measures(a)
    valid = shapely.is_valid(a.geoms)
    for i in np.flatnonzero(~valid).tolist():
        out.add("invalid", f"{_label(a, i)} is not a valid polygon:"
                f" {shapely.is_valid_reason(a.geoms[i])}", a.geoms[i], keys=[a.keys[i]],
                codes=[a.codes[i]])
    for i in np.flatnonzero(m["area"] < TOLERANCE_M2).tolist():
        out.add("empty", f"{_label(a, i)} has no area", a.geoms[i], keys=[a.keys[i]],
                codes=[a.codes[i]])
    index = {int(k): i for i, k in enumerate(a.keys.tolist())}
    parent_idx = np.array([index.get(int(p), -1) for p in a.parents], dtype=np.int64)
    root_level = int(a.levels.min())

    # Overlaps among areas of one level (siblings or not: either is wrong).
    overlap_by_area = np.zeros(n)
    for level in np.unique(a.levels).tolist():
        idx = np.flatnonzero((a.levels == level) & valid)
        if len(idx) < 2:
            continue
        tree = shapely.STRtree(a.metric[idx])
        left, right = tree.query(a.metric[idx], predicate="intersects")
        keep = left < right
        left, right = idx[left[keep]], idx[right[keep]]
        if not len(left):
            continue
        inner = ~shapely.touches(a.metric[left], a.metric[right])  # interiors meet
        left, right = left[inner], right[inner]
        if not len(left):
            continue
        inter = _pairwise(shapely.intersection, a.metric[left], a.metric[right])
        areas = shapely.area(inter)
        for i, j, s in zip(left.tolist(), right.tolist(), areas.tolist(), strict=True):
            if s <= TOLERANCE_M2:
                continue
            overlap_by_area[i] += s
            overlap_by_area[j] += s
            where = "within " + _label(a, int(parent_idx[i])) if (
                parent_idx[i] >= 0 and parent_idx[i] == parent_idx[j]) else "of one level"
            geom = shapely.intersection(a.geoms[i], a.geoms[j])
            out.add("overlap", f"{_label(a, i)} and {_label(a, j)} overlap by {s:,.1f} m²"
                    f" ({where})", geom, keys=[a.keys[i], a.keys[j]],
                    codes=[a.codes[i], a.codes[j]], area_m2=round(s, 1))

    # Children inside their parent.
    outside = np.zeros(n)
    child = np.flatnonzero((parent_idx >= 0) & valid)
    child = child[valid[parent_idx[child]]]
    if len(child):
        covered = shapely.covers(a.metric[parent_idx[child]], a.metric[child])
        suspects = child[~covered]
        if len(suspects):
            diff = _pairwise(shapely.difference, a.metric[suspects],
                             a.metric[parent_idx[suspects]])
            for i, s in zip(suspects.tolist(), shapely.area(diff).tolist(), strict=True):
                outside[i] = s
                if s > TOLERANCE_M2:
                    out.add("outside_parent", f"{_label(a, i)} reaches {s:,.1f} m² outside its"
                            f" parent {_label(a, int(parent_idx[i]))}",
                            shapely.difference(a.geoms[i], a.geoms[parent_idx[i]]),
                            keys=[a.keys[i]], codes=[a.codes[i]], area_m2=round(s, 1))

    # Gaps: parent area not covered by its children (estimated from areas, then measured).
    children_of: dict[int, list[int]] = {}
    for i in child.tolist():
        children_of.setdefault(int(parent_idx[i]), []).append(i)
    bottom = int(a.levels.max())
    for p in np.flatnonzero((a.levels < bottom) & valid).tolist():
        kids = children_of.get(p, [])
        if not kids:
            out.add("gap", f"{_label(a, p)} has no children: all of it is uncovered",
                    a.geoms[p], keys=[a.keys[p]], codes=[a.codes[p]],
                    area_m2=round(float(m["area"][p]), 1))
            continue
        estimate = (m["area"][p] - m["area"][kids].sum() + overlap_by_area[kids].sum() / 2
                    + outside[kids].sum())
        if estimate <= TOLERANCE_M2:
            continue
        gaps = _pairwise(shapely.difference, np.array([a.metric[p]]),
                         np.array([shapely.union_all(a.metric[kids])]))[0]
        gaps_wgs = _pairwise(shapely.difference, np.array([a.geoms[p]]),
                             np.array([shapely.union_all(a.geoms[kids])]))[0]
        for piece, piece_wgs in zip(shapely.get_parts(gaps), _parts_like(gaps_wgs, gaps),
                                    strict=False):
            if piece.area > TOLERANCE_M2:
                out.add("gap", f"{piece.area:,.1f} m² of {_label(a, p)} is in none of its"
                        " children", piece_wgs, keys=[a.keys[p]], codes=[a.codes[p]],
                        area_m2=round(float(piece.area), 1))

    # Contiguity, holes, slivers, compactness.
    for i in np.flatnonzero(m["parts"] > 1).tolist():
        if a.levels[i] == root_level and a.parents[i] < 0:
            continue
        out.add("multipart", f"{_label(a, i)} is in {int(m['parts'][i])} separate pieces",
                a.geoms[i], keys=[a.keys[i]], codes=[a.codes[i]], parts=int(m["parts"][i]))
    for i in np.flatnonzero(m["holes"] > 0).tolist():
        holes = [h for part in shapely.get_parts(a.geoms[i])
                 for h in (shapely.Polygon(r) for r in part.interiors)
                 if h.area * deg2_to_m2(h.centroid.y) >= TOLERANCE_M2]
        out.add("hole", f"{_label(a, i)} has {int(m['holes'][i])} hole(s)",
                shapely.MultiPolygon(holes) if holes else a.geoms[i], keys=[a.keys[i]],
                codes=[a.codes[i]])
    parts, owner = m["part_geoms"], m["part_owner"]
    part_area = shapely.area(parts)
    width = np.divide(2 * part_area, shapely.length(parts), out=np.zeros(len(parts)),
                      where=part_area > 0)
    thin = np.flatnonzero((part_area < SLIVER_AREA_M2) | (width < SLIVER_WIDTH_M))
    wgs_parts = shapely.get_parts(a.geoms)
    for p in thin.tolist():
        i = int(owner[p])
        out.add("sliver", f"{_label(a, i)} has a sliver of {part_area[p]:,.1f} m²"
                f" ({width[p]:.1f} m wide on average)",
                wgs_parts[p] if p < len(wgs_parts) else a.geoms[i], keys=[a.keys[i]],
                codes=[a.codes[i]], area_m2=round(float(part_area[p]), 1))

    # Balance per level, compactness and roads (for the bottom level: the grids).
    open_cases = _open_cases(conn, plan)
    cases = np.array([open_cases.get(int(k), 0) for k in a.keys], dtype=np.float64)
    grids = np.flatnonzero(a.levels == bottom)
    roads = _road_share(conn, plan, a, grids, road_tolerance_m)
    road_share = np.full(n, np.nan)
    road_share[grids] = roads
    rows: list[dict[str, Any]] = []
    levels = {lv.rank: lv for lv in plan.levels}
    values = {"households": a.households, "population": a.population, "area_m2": m["area"],
              "open_cases": cases}
    references: dict[tuple[int, str], tuple[float, str]] = {}
    for level in np.unique(a.levels).tolist():
        lv = levels.get(level)
        same = np.flatnonzero(a.levels == level)
        targets = lv.targets() if lv else {}
        for measure, vals in values.items():
            if measure in targets:
                references[(level, measure)] = (targets[measure], "target")
            elif level > root_level:
                references[(level, measure)] = (float(vals[same].mean()), "mean")
    # Deviations, vectorised per level and measure; warnings where a target is missed.
    tol = np.array([levels[int(lv)].tolerance if int(lv) in levels else 0.1
                    for lv in a.levels.tolist()])
    devs: dict[str, np.ndarray] = {}
    for measure, vals in values.items():
        ref = np.full(n, np.nan)
        is_target = np.zeros(n, dtype=bool)
        for (level, name), (value, kind) in references.items():
            if name == measure and value > 0:
                same = a.levels == level
                ref[same] = value
                is_target[same] = kind == "target"
        dev = (vals - ref) / ref
        devs[measure] = np.round(dev, 4)
        for i in np.flatnonzero(is_target & (np.abs(dev) > tol + 1e-9)).tolist():
            out.add("deviation", f"{_label(a, i)} has {vals[i]:,.0f}"
                    f" {measure.replace('_m2', ' m²')}: {dev[i]:+.0%} from the target"
                    f" {ref[i]:,.0f} (tolerance ±{tol[i]:.0%})", None, keys=[a.keys[i]],
                    codes=[a.codes[i]], measure=measure, deviation=round(float(dev[i]), 4))
    loose = np.flatnonzero((a.levels == bottom) & (m["pp"] > 0) & (m["pp"] < NOT_COMPACT_PP))
    for i in loose.tolist():
        out.add("not_compact", f"{_label(a, i)} is not compact (Polsby-Popper"
                f" {m['pp'][i]:.3f})", a.geoms[i], keys=[a.keys[i]], codes=[a.codes[i]])
    dev_lists = {k: v.tolist() for k, v in devs.items()}
    area_r = np.round(m["area"], 1).tolist()
    pp_r = np.round(m["pp"], 4).tolist()
    reock_r = np.round(m["reock"], 4).tolist()
    road_r = [None if math.isnan(x) else round(x, 4) for x in road_share.tolist()]
    keys_l, parents_l, levels_l = a.keys.tolist(), a.parents.tolist(), a.levels.tolist()
    hh_l, pop_l = a.households.astype(int).tolist(), a.population.astype(int).tolist()
    cases_l, parts_l = cases.astype(int).tolist(), m["parts"].tolist()
    holes_l, locked_l = m["holes"].astype(int).tolist(), a.locked.tolist()
    for i in range(n):
        rows.append({
            "key": keys_l[i], "code": a.codes[i], "name": a.names[i], "level": levels_l[i],
            "parent_key": parents_l[i] if parents_l[i] >= 0 else None,
            "locked": locked_l[i], "households": hh_l[i], "population": pop_l[i],
            "area_m2": area_r[i], "open_cases": cases_l[i],
            "deviation": {k: d[i] for k, d in dev_lists.items() if d[i] == d[i]},
            "polsby_popper": pp_r[i], "reock": reock_r[i], "parts": parts_l[i],
            "holes": holes_l[i], "road_share": road_r[i],
        })
    errors = sum(v for k, v in out.counts.items() if k in ERRORS)
    grid_rows = [rows[i] for i in grids.tolist()]
    summary = {
        "errors": errors, "warnings": sum(out.counts.values()) - errors,
        "by_kind": dict(out.counts), "areas": n, "grids": len(grids),
        "max_abs_deviation": {k: max((abs(float(r["deviation"].get(k, 0))) for r in grid_rows),
                                     default=0.0) for k in values},
        "mean_polsby_popper": round(float(m["pp"][grids].mean()), 4) if len(grids) else None,
        "mean_reock": round(float(m["reock"][grids].mean()), 4) if len(grids) else None,
        "road_share": round(float(np.average(roads, weights=m["perimeter"][grids])), 4)
        if len(grids) and m["perimeter"][grids].sum() > 0 else None,
        "listed": len(out.items), "seconds": round(time.perf_counter() - started, 3),
    }
    result = {"plan": plan_id, "version": plan.version, "ok": errors == 0, "summary": summary,
              "references": {f"{lv}:{k}": {"value": round(v, 2), "kind": kind}
                             for (lv, k), (v, kind) in references.items()},
              "problems": out.items, "areas": rows}
    if store_result:
        conn.execute(text("UPDATE plans SET check_result = CAST(:r AS jsonb) WHERE id = :p"),
                     {"p": plan_id, "r": store._json({"ok": result["ok"], "summary": summary,
                                                      "version": plan.version})})
    return result


def _parts_like(wgs: Any, metric: Any) -> list[Any]:
    """WGS84 pieces matched to the metric pieces (same order when the counts agree)."""
    a, b = shapely.get_parts(wgs), shapely.get_parts(metric)
    return list(a) if len(a) == len(b) else [wgs] * len(b)


def grid_metrics(conn: Connection, plan: PlanInfo, *, keys: Sequence[int], weight: str,
                 target: float | None, tolerance: float) -> dict[str, Any]:
    """Balance, compactness, contiguity and road share of some grids (a partition's result)."""
    a = _load(conn, plan, keys)
    if not len(a.keys):
        return {"grids": []}
    m = _measures(a)
    roads = _road_share(conn, plan, a, np.arange(len(a.keys)), ROAD_TOLERANCE_M)
    cases = _open_cases(conn, plan, keys)
    vals = {"households": a.households, "population": a.population, "area_m2": m["area"]}[weight]
    ref = target if target else float(vals.mean())
    dev = (vals - ref) / ref if ref else np.zeros(len(vals))
    grids = [{"key": int(k), "code": a.codes[i], weight: round(float(vals[i]), 1),
              "households": int(a.households[i]), "population": int(a.population[i]),
              "area_m2": round(float(m["area"][i]), 1), "open_cases": cases.get(int(k), 0),
              "deviation": round(float(dev[i]), 4),
              "polsby_popper": round(float(m["pp"][i]), 4), "reock": round(float(m["reock"][i]), 4),
              "parts": int(m["parts"][i]), "road_share": round(float(roads[i]), 4)}
             for i, k in enumerate(a.keys.tolist())]
    return {
        "grids": grids, "count": len(grids), "reference": ref,
        "max_abs_deviation": round(float(np.abs(dev).max()), 4),
        "mean_abs_deviation": round(float(np.abs(dev).mean()), 4),
        "within_tolerance": bool(np.all(np.abs(dev) <= tolerance + 1e-9)) if target else None,
        "contiguous": bool(np.all(m["parts"] == 1)),
        "mean_polsby_popper": round(float(m["pp"].mean()), 4),
        "mean_reock": round(float(m["reock"].mean()), 4),
        "road_share": round(float(np.average(roads, weights=m["perimeter"])), 4)
        if m["perimeter"].sum() > 0 else None,
    }

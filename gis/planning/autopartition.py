"""Automatic partition: cut a community (or every community of a street or district) of a
plan into grids near a target size, or into N grids.

Method (regionalisation on the block adjacency graph):

1. The ground to cut is the community minus its locked grids (they are never touched).
2. It is cut into road blocks along the road centre lines (``gis.planning.blocks``); blocks
   holding more households than ``dense_share`` × the target are split between their
   buildings, so buildings stay whole and every grid boundary runs along a road or between
   buildings.
3. Each connected piece of ground is cut with ``gis.partition.partition``: seeded region
   growing and a connectivity-preserving local search on the unit adjacency graph, minimising
   squared deviation from the target + a compactness term (spread around the region's centre)
   + a penalty for cutting between two units of one road block (so boundaries prefer roads)
   + a steep penalty for weight outside target ± tolerance (so the tolerance is kept whenever
   a local move can keep it, whatever compactness would prefer).
   Every whole number of grids that can meet the tolerance is tried; the most balanced, then
   most compact, result wins. Deterministic for a seed.
4. Targets no contiguous solution can meet are refused before anything is cut (422), with the
   reason: a building larger than the upper bound, a piece of ground cut off by locked grids
   too small for a grid, or no whole number of grids that fits the total.
5. The regions are unioned, taken back to WGS84 and fitted to the ground exactly (overlaps
   removed, slivers of rounding given to the neighbour sharing most edge), so the community
   stays covered with no gap and no overlap. A new grid that mostly covers an old one keeps
   its code; the others get new codes when the plan is published.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection

from gis.errors import InvalidInput
from gis.partition import Partition, connected_pieces, partition
from gis.planning import blocks as pb
from gis.planning import geometry as pg
from gis.planning import store
from gis.planning.store import PArea, PlanInfo, deg2_to_m2

WEIGHTS = ("households", "population", "area_m2")
COMPACTNESS = 0.5
BLOCK_CUT_COST = 0.02
DENSE_SHARE = 0.5


@dataclass
class Target:
    """What each grid should hold: ``value`` ± ``tolerance`` of ``weight``, or ``n`` grids."""

    weight: str = "households"
    value: float | None = None
    tolerance: float = 0.1
    n: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.weight not in WEIGHTS:
            raise InvalidInput(f"weight must be one of {', '.join(WEIGHTS)}, not {self.weight!r}",
                               field="weight")
        if self.n is None and (self.value is None or not self.value > 0):
            raise InvalidInput("give a positive target (e.g. 200 households) or a number of"
                               " grids n", field="target")
        if self.n is not None and self.n < 1:
            raise InvalidInput(f"n must be at least 1, not {self.n}", field="n")
        if not 0 <= self.tolerance < 1:
            raise InvalidInput(f"tolerance is a share in [0, 1), e.g. 0.1 for ±10 %, not"
                               f" {self.tolerance}", field="tolerance")


@dataclass
class Cut:
    """The grids cut from one community."""

    community: PArea
    regions: list[BaseGeometry]  # WGS84
    weights: list[float]
    target: float
    k: int
    units: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def _weights(units: pb.UnitSet, weight: str) -> list[float]:
    if weight == "households":
        return [float(x) for x in units.households]
    if weight == "population":
        return [float(x) for x in units.residents]
    return list(units.area_m2)


def _fmt(weight: str, value: float) -> str:
    unit = {"households": "households", "population": "residents", "area_m2": "m²"}[weight]
    return f"{value:,.0f} {unit}"


def _feasible_counts(total: float, target: Target) -> list[int]:
    assert target.value is not None
    lo, hi = target.value * (1 - target.tolerance), target.value * (1 + target.tolerance)
    return [k for k in range(max(1, math.floor(total / hi)), math.ceil(total / lo) + 1)
            if lo - 1e-9 <= total / k <= hi + 1e-9]


def _infeasible(message: str, geometry: BaseGeometry | None, **extra: Any) -> InvalidInput:
    return InvalidInput(message, field="target",
                        extra={"problem": "infeasible_target",
                               "geometry": pg.problem(geometry), **extra})


def cut_community(conn: Connection, plan: PlanInfo, community: PArea, locked: list[PArea],
                  target: Target) -> Cut:
    """Regions for one community (not yet written)."""
    started = time.perf_counter()
    metric = plan.metric()
    ground = community.geom
    if locked:
        ground = pg.polygonal(shapely.difference(ground, shapely.union_all([g.geom for g in
                                                                            locked])))
    scale = deg2_to_m2(community.geom.centroid.y)
    ground = pg.drop_noise(ground, scale, 1.0)
    if ground.is_empty:
        return Cut(community, [], [], 0.0, 0, 0, 0.0, ["every grid is locked"])
    per_grid = target.value if target.n is None else None
    units = pb.units_for(conn, plan, ground,
                         dense_households=_dense_households(community, target, scale))
    if not len(units):
        raise _infeasible(f"{community.label()} has no ground left to cut", ground)
    w = _weights(units, target.weight)
    ids = list(range(len(units)))
    pieces = connected_pieces(ids, units.adjacency)
    to_wgs = metric.to_wgs
    if target.n is not None and len(pieces) > 1 and target.n < len(pieces):
        raise _infeasible(
            f"locked grids cut {community.label()} into {len(pieces)} separate pieces, so it"
            f" needs at least {len(pieces)} grids, not {target.n}",
            to_wgs(shapely.union_all([units.geoms[i] for i in pieces[1]])))
    if target.n is not None and target.n > len(units):
        raise _infeasible(
            f"{community.label()} has only {len(units)} blocks and buildings to cut; it cannot"
            f" become {target.n} grids with buildings kept whole", ground)
    if per_grid is not None:
        hi = per_grid * (1 + target.tolerance)
        heavy = int(np.argmax(w))
        if w[heavy] > hi:
            where = units.buildings[heavy]
            raise _infeasible(
                f"one indivisible unit holds {_fmt(target.weight, w[heavy])}"
                + (f" (building {where[0]})" if len(where) == 1 else
                   f" ({len(where)} buildings)" if where else "")
                + f", more than a grid may hold ({_fmt(target.weight, hi)} = target"
                f" {_fmt(target.weight, per_grid)} + {target.tolerance:.0%}); buildings are kept"
                " whole, so raise the target or the tolerance",
                to_wgs(units.geoms[heavy]), buildings=where)
    regions: list[list[int]] = []
    weights: list[float] = []
    notes: list[str] = []
    k_total = 0
    for piece in pieces:
        total = math.fsum(w[i] for i in piece)
        if per_grid is None:
            share = round(target.n * total / math.fsum(w)) if math.fsum(w) else 1  # type: ignore[operator]
            counts = [max(1, min(len(piece), share if len(pieces) > 1 else target.n or 1))]
        else:
            counts = _feasible_counts(total, target)
            if not counts:
                lower = max(1, math.floor(total / per_grid))
                options = "; ".join(
                    f"{k} grid{'s' if k > 1 else ''} of {_fmt(target.weight, total / k)}"
                    f" ({(total / k - per_grid) / per_grid:+.0%})"
                    for k in sorted({lower, lower + 1}) if k >= 1)
                where = to_wgs(shapely.union_all([units.geoms[i] for i in piece]))
                what = (community.label() if len(pieces) == 1 else
                        f"a piece of {community.label()} cut off by locked grids")
                raise _infeasible(
                    f"{what} holds {_fmt(target.weight, total)}: no whole number of contiguous"
                    f" grids gets within ±{target.tolerance:.0%} of"
                    f" {_fmt(target.weight, per_grid)} ({options}); change the target or the"
                    " tolerance, or lock/unlock grids", where, total=total)
            counts = [k for k in counts if k <= len(piece)] or [min(len(piece), counts[0])]
        best = _best_partition(piece, w, units, counts, per_grid, target)
        k_total += len(best.regions)
        regions.extend(best.regions)
        weights.extend(best.weights)
    geoms_m = [shapely.union_all([units.geoms[i] for i in r]) for r in regions]
    geoms = fit(list(to_wgs(np.array(geoms_m, dtype=object))), ground, scale)
    target_value = per_grid if per_grid is not None else math.fsum(w) / max(k_total, 1)
    return Cut(community, geoms, weights, float(target_value), k_total, len(units),
               time.perf_counter() - started, notes)


def _dense_households(community: PArea, target: Target, scale: float) -> int:
    """Blocks with more households than this are split between their buildings: half of
    what one grid should hold, so regions can be balanced finely."""
    hh = max(community.households, 1)
    if target.n is not None:
        per_grid = hh / target.n
    elif target.weight == "households":
        per_grid = float(target.value or hh)
    elif target.weight == "population":
        per_grid = float(target.value or 0) * hh / max(community.population, 1)
    else:
        area = community.geom.area * scale
        per_grid = hh * float(target.value or area) / max(area, 1.0)
    return max(1, int(DENSE_SHARE * per_grid))


def _best_partition(piece: list[int], w: list[float], units: pb.UnitSet, counts: list[int],
                    per_grid: float | None, target: Target) -> Partition[int]:
    adjacency = {i: [j for j in units.adjacency.get(i, ()) if j in set(piece)] for i in piece}
    positions = {i: units.positions[i] for i in piece}
    costs = {(i, j): BLOCK_CUT_COST for i in piece for j in adjacency[i]
             if i < j and units.block[i] == units.block[j]}
    # The tolerance is a band the search keeps regions inside (not only a score): without it
    # compactness and the road-block cut costs could buy a region out of the band (a district
    # re-partition once left one community's grid at +35 % against ±30 %).
    bounds = ((per_grid * (1 - target.tolerance), per_grid * (1 + target.tolerance))
              if per_grid is not None else None)
    best: tuple[tuple[float, float], Partition[int]] | None = None
    for k in counts[:4]:
        result = partition(piece, {i: w[i] for i in piece}, adjacency, n_regions=k,
                           positions=positions, seed=target.seed, compactness=COMPACTNESS,
                           cut_costs=costs, restarts=4 if len(piece) > 300 else 8,
                           bounds=bounds)
        reference = per_grid or result.target
        worst = max(abs(x - reference) for x in result.weights) / reference if reference else 0
        score = (round(worst, 3), -k)
        if best is None or score < best[0]:
            best = (score, result)
    assert best is not None
    return best[1]


def fit(regions: list[BaseGeometry], frame: BaseGeometry, scale: float) -> list[BaseGeometry]:
    """``regions`` adjusted to cover ``frame`` exactly: clipped to it, overlaps given to the
    earlier region, and uncovered slivers given to the region sharing the most edge with each."""
    out = [pg.polygonal(shapely.intersection(r, frame)) for r in regions]
    tree = shapely.STRtree(out)
    for i in range(len(out)):
        for j in tree.query(out[i], predicate="intersects").tolist():
            if j < i and shapely.intersection(out[i], out[j]).area * scale > pg.NOISE_M2:
                out[i] = pg.polygonal(shapely.difference(out[i], out[j]))
    gaps = pg.polygonal(shapely.difference(frame, shapely.union_all(out)))
    for piece in shapely.get_parts(gaps):
        if piece.area * scale < 1e-6:
            continue
        lengths = [pg.shared_length(piece, r) for r in out]
        best = int(np.argmax(lengths)) if lengths and max(lengths) > 0 else int(
            np.argmin([piece.distance(r) for r in out]))
        out[best] = pg.polygonal(shapely.union(out[best], piece))
    eps = 1e-4 / math.sqrt(scale)  # 0.1 mm
    out = [pg.drop_noise(_despike(r, eps), scale) for r in out]
    return _absorb_fragments(out, scale)


def _despike(geom: BaseGeometry, eps: float) -> BaseGeometry:
    """``geom`` without hair-thin spikes (thinner than 2 ``eps``) left where rounding slivers
    were joined on: harmless in lon/lat, they can cross themselves once reprojected."""
    cleaned = geom.buffer(-eps, join_style="mitre").buffer(eps, join_style="mitre")
    cleaned = pg.polygonal(cleaned)
    return cleaned if not cleaned.is_empty and cleaned.is_valid else geom


def _absorb_fragments(regions: list[BaseGeometry], scale: float) -> list[BaseGeometry]:
    """Stray pieces of a region (rounding slivers that ended up apart from its body) go to the
    neighbour sharing the most edge with them, so every region stays in one piece; pieces
    touching no neighbour and under 1 m² are rounding and are dropped."""
    out = list(regions)
    for i in range(len(regions)):
        parts = sorted(shapely.get_parts(out[i]), key=lambda g: -g.area)
        if len(parts) < 2:
            continue
        out[i] = parts[0]
        for piece in parts[1:]:
            lengths = [pg.shared_length(piece, r) if j != i else 0.0 for j, r in enumerate(out)]
            j = int(np.argmax(lengths))
            if lengths[j] > 0:
                out[j] = pg.polygonal(shapely.union(out[j], piece))
            elif piece.area * scale >= 1.0:
                out[i] = pg.polygonal(shapely.union(out[i], piece))
    return out


def _communities(conn: Connection, plan: PlanInfo, parent: PArea) -> list[PArea]:
    """The areas one level above the grids under (or equal to) ``parent``."""
    above = plan.bottom - 1
    if parent.level == above:
        return [parent]
    if parent.level > above:
        raise InvalidInput(f"{parent.label()} is a grid: partition its community instead",
                           field="parent")
    frontier = [parent]
    while frontier and frontier[0].level < above:
        frontier = store.load(conn, plan.id, parents=[a.key for a in frontier  # type: ignore[misc]
                                                      if a.key is not None])
    return [a for a in frontier if a.level == above]


def _match_codes(old: list[PArea], new: list[BaseGeometry], scale: float) -> list[PArea | None]:
    """For each new region, the old grid it takes over (≥ 50 % of both overlap), if any."""
    pairs = []
    for i, g in enumerate(new):
        for j, o in enumerate(old):
            if g.intersects(o.geom):
                inter = shapely.intersection(g, o.geom).area
                if inter >= 0.5 * max(g.area, o.geom.area):
                    pairs.append((-inter, i, j))
    pairs.sort()
    taken_new: set[int] = set()
    taken_old: set[int] = set()
    match: list[PArea | None] = [None] * len(new)
    for _, i, j in pairs:
        if i not in taken_new and j not in taken_old:
            match[i] = old[j]
            taken_new.add(i)
            taken_old.add(j)
    return match


def run(conn: Connection, plan_id: int, parent_key: int, target: Target, *,
        actor_id: int | None = None, versions: dict[int, int] | None = None) -> dict[str, Any]:
    """Partition ``parent_key`` (a community, or every community below a street/district) and
    apply it as one undoable operation; returns the metrics of the new grids."""
    from gis.planning.checks import grid_metrics

    target.check()
    started = time.perf_counter()
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    parent = store.load_one(conn, plan_id, parent_key)
    communities = _communities(conn, plan, parent)
    if target.n is not None and len(communities) > 1:
        raise InvalidInput(f"{parent.label()} has {len(communities)} communities: n (a number"
                           " of grids) applies to one community; give a target size instead",
                           field="n")
    children = store.load(conn, plan_id, parents=[c.key for c in communities  # type: ignore[misc]
                                                  if c.key is not None], level=plan.bottom)
    store.check_versions(children, versions)
    by_parent: dict[int | None, list[PArea]] = {}
    for g in children:
        by_parent.setdefault(g.parent_key, []).append(g)
    before: list[PArea] = []
    after: list[PArea] = []
    cuts: list[Cut] = []
    for community in communities:
        mine = by_parent.get(community.key, [])
        locked = [g for g in mine if g.locked]
        cut = cut_community(conn, plan, community, locked, target)
        cuts.append(cut)
        if not cut.regions:
            continue
        free = [g for g in mine if not g.locked]
        scale = deg2_to_m2(community.geom.centroid.y)
        matches = _match_codes(free, cut.regions, scale)
        before.extend(free)
        for geom, old in zip(cut.regions, matches, strict=True):
            if old is not None:
                after.append(replace(old, geom=geom))
            else:
                after.append(PArea(key=None, parent_key=community.key, level=plan.bottom,
                                   code=None, name="", geom=geom,
                                   grid_type=free[0].grid_type if free else None))
    seconds = round(time.perf_counter() - started, 3)
    summary = {"communities": len(cuts), "grids": sum(c.k for c in cuts),
               "units": sum(c.units for c in cuts), "seconds": seconds,
               "method": "region growing + local search on the road-block graph"
                         " (gis.partition)"}
    applied = store.apply(conn, plan, "partition", before, after,
                          params={"parent": parent_key, "weight": target.weight,
                                  "target": target.value, "tolerance": target.tolerance,
                                  "n": target.n, "seed": target.seed},
                          summary=summary, actor_id=actor_id)
    new_keys = [a for a in applied.created + applied.updated]
    metrics = grid_metrics(conn, plan, keys=new_keys, weight=target.weight,
                           target=None if target.n is not None else target.value,
                           tolerance=target.tolerance)
    return {**applied.as_dict(), "target": {"weight": target.weight, "value": target.value,
                                            "tolerance": target.tolerance, "n": target.n,
                                            "seed": target.seed},
            "metrics": metrics, "seconds": round(time.perf_counter() - started, 3)}

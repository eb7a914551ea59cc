"""Contiguous, balanced partition of a block graph, and the numbering rule for its regions.

Grids, communities and streets are unions of blocks (areas cut along roads). Cutting a parent
area into children is therefore a graph problem: the blocks are nodes with a weight (households,
workload...), edges join blocks that share a stretch of boundary, and we want ``k`` connected
regions of near-equal weight. ``partition`` solves it by seeded region growing followed by a
local search that moves boundary blocks between neighbouring regions while every region stays
connected. It is deterministic for a given ``seed``. The demo city uses it for every level, and
the planner's automatic partition uses it for "cut this community into grids of ~200 households".

>>> adjacency = {0: [1], 1: [0, 2], 2: [1, 3], 3: [2]}          # four blocks in a row
>>> result = partition([0, 1, 2, 3], [10, 10, 10, 10], adjacency, n_regions=2)
>>> result.regions
[[0, 1], [2, 3]]
>>> result.weights
[20.0, 20.0]

``reading_order`` numbers siblings the way the unit-grid standard asks: west→east, north→south.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Generic, TypeVar

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis.errors import InvalidInput

H = TypeVar("H", bound=Hashable)

__all__ = [
    "DisconnectedGraph",
    "Partition",
    "adjacency_from_polygons",
    "connected_pieces",
    "partition",
    "reading_order",
    "row_tolerance_for",
]


class DisconnectedGraph(InvalidInput):
    """The blocks to partition do not form one connected area, so no contiguous partition
    exists. ``pieces`` lists the ids of each connected piece, largest first."""

    def __init__(self, pieces: list[list[Hashable]]):
        sizes = ", ".join(str(len(p)) for p in pieces[:10])
        sample = [p[:5] for p in pieces[1:4]]
        super().__init__(
            f"the blocks are not connected: {len(pieces)} separate pieces (sizes {sizes});"
            f" ids in the smaller pieces include {sample}. Join them (adjacency) or"
            " partition each piece on its own.",
            field="adjacency",
            extra={"pieces": [len(p) for p in pieces]},
        )
        self.pieces = pieces


@dataclass(frozen=True)
class Partition(Generic[H]):
    """The result: ``regions[i]`` are the block ids of region ``i`` (in input order) and
    ``weights[i]`` their total weight; ``target`` is the ideal weight of one region."""

    regions: list[list[H]]
    weights: list[float]
    target: float

    @property
    def max_deviation(self) -> float:
        """Largest relative deviation of a region's weight from the target (0.1 = 10 %)."""
        if self.target <= 0:
            return 0.0
        return max(abs(w - self.target) for w in self.weights) / self.target


def connected_pieces(ids: Sequence[H], adjacency: Mapping[H, Iterable[H]]) -> list[list[H]]:
    """The connected pieces of the graph induced by ``ids``, largest first (ties: the one
    seen first). A region is contiguous when this returns one piece.

    >>> connected_pieces([1, 2, 4], {1: [2], 2: [3], 3: [4]})
    [[1, 2], [4]]
    """
    index = {b: i for i, b in enumerate(ids)}
    nbrs = _neighbour_lists(ids, index, adjacency)
    pieces = [[ids[i] for i in piece] for piece in _pieces(nbrs, range(len(ids)))]
    return sorted(pieces, key=lambda p: -len(p))


def partition(
    ids: Sequence[H],
    weights: Sequence[float] | Mapping[H, float],
    adjacency: Mapping[H, Iterable[H]],
    *,
    n_regions: int | None = None,
    target_weight: float | None = None,
    max_regions: int | None = None,
    positions: Sequence[tuple[float, float]] | Mapping[H, tuple[float, float]] | None = None,
    seed: int = 0,
    restarts: int = 8,
    compactness: float = 1.0,
    cut_costs: Mapping[tuple[H, H], float] | None = None,
    bounds: tuple[float, float] | None = None,
) -> Partition[H]:
    """Cut the blocks ``ids`` into connected regions of near-equal total weight.

    - ``weights``: one non-negative number per block (a sequence aligned with ``ids`` or a
      mapping by id), e.g. households. Zero-weight blocks (parks, water) are still assigned,
      so the regions cover every block.
    - ``adjacency``: block id → neighbouring block ids (made symmetric here; ids not in
      ``ids`` are ignored, so a city-wide adjacency serves any subset). Blocks that touch
      only at a corner should not be neighbours, or regions may be joined only by a point.
    - the number of regions: ``n_regions``, or ``round(total / target_weight)`` (at least 1),
      capped by ``max_regions`` and by the number of blocks.
    - ``positions``: optional block coordinates (any planar CRS); regions then grow around
      seeds by distance, which makes them more compact. Without them hop counts are used.
    - ``compactness`` (with ``positions``): how much compact regions matter next to balance.
      The search minimises the sum of squared relative deviations from the target plus
      ``compactness`` × the normalised spread of blocks around their region's centre; 0 means
      balance only (regions may then snake around each other).
    - ``cut_costs``: optional penalty, in the same units as the objective (a region 10 % off
      target costs 0.01), for every adjacent pair ``(a, b)`` that ends up in two different
      regions. Use it to prefer cutting along streets: a high cost on pairs inside one block.
    - ``bounds``: optional ``(low, high)`` weight every region should stay within (e.g. the
      target ± its tolerance). Weight outside the band costs ``BOUND_PENALTY`` times more than
      the same deviation inside it, so compactness and cut costs never buy a region out of
      the band while a move that brings it back exists.
    - ``seed``/``restarts``: the search tries ``restarts`` seedings derived from ``seed`` and
      keeps the most balanced; the same inputs and seed always give the same result.

    Raises ``DisconnectedGraph`` when the blocks are not one connected piece and
    ``InvalidInput`` for malformed input (duplicate ids, negative weights, too many regions).
    Regions are returned ordered by their first block in ``ids``; number them with
    ``reading_order``.
    """
    ids = list(ids)
    n = len(ids)
    if n == 0:
        raise InvalidInput("nothing to partition: no blocks given", field="ids")
    index = {b: i for i, b in enumerate(ids)}
    if len(index) != n:
        dupes = sorted({str(b) for b in ids if ids.count(b) > 1})[:5]
        raise InvalidInput(f"block ids must be unique; repeated: {dupes}", field="ids")
    w = _weights(ids, weights)
    nbrs = _neighbour_lists(ids, index, adjacency)
    pieces = _pieces(nbrs, range(n))
    if len(pieces) > 1:
        pieces.sort(key=lambda p: -len(p))
        raise DisconnectedGraph([[ids[i] for i in p] for p in pieces])
    total = math.fsum(w)
    k = _region_count(n, total, n_regions, target_weight, max_regions)
    target = total / k
    if k == 1:
        return Partition([list(ids)], [total], target)
    pos = _positions(ids, positions)

    if bounds is not None and not (0 <= bounds[0] <= bounds[1] and math.isfinite(bounds[1])):
        raise InvalidInput(f"bounds must be (low, high) with 0 <= low <= high, not {bounds!r}",
                           field="bounds")
    objective = _Objective(w, pos, k, target, compactness,
                           _cut_costs(index, nbrs, cut_costs), bounds)
    best: tuple[float, list[int]] | None = None
    for attempt in range(max(1, restarts)):
        rng = random.Random(f"{seed}:{attempt}")
        assign = _grow(nbrs, w, pos, k, rng)
        _, score = _refine(nbrs, w, assign, k, objective)
        if best is None or score < best[0] - 1e-12:
            best = (score, assign)
    assert best is not None
    assign = best[1]
    members: list[list[int]] = [[] for _ in range(k)]
    for i, r in enumerate(assign):
        members[r].append(i)
    members.sort(key=lambda m: m[0])
    return Partition(
        [[ids[i] for i in m] for m in members],
        [math.fsum(w[i] for i in m) for m in members],
        target,
    )


def adjacency_from_polygons(
    polygons: Sequence[BaseGeometry], *, min_shared_length: float = 0.0
) -> dict[int, set[int]]:
    """Neighbours by position in ``polygons``: pairs whose boundaries share a stretch longer
    than ``min_shared_length`` (in the polygons' units). Corner-only contact is not adjacency.

    >>> from shapely.geometry import box
    >>> adjacency_from_polygons([box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 1, 3, 2)])
    {0: {1}, 1: {0}, 2: set()}
    """
    geoms = list(polygons)
    result: dict[int, set[int]] = {i: set() for i in range(len(geoms))}
    if not geoms:
        return result
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if len(left) == 0:
        return result
    boundaries = shapely.boundary(geoms)
    shared = shapely.length(shapely.intersection(boundaries[left], boundaries[right]))
    for a, b, length in zip(left.tolist(), right.tolist(), shared.tolist(), strict=True):
        if length > min_shared_length:
            result[a].add(b)
            result[b].add(a)
    return result


def reading_order(
    points: Sequence[tuple[float, float]], *, row_tolerance: float | None = None
) -> list[int]:
    """Indices of ``points`` (x east, y north) in reading order: rows north→south, and
    west→east within a row.

    Rows are formed top-down: the northernmost point not yet placed opens a row, and every
    remaining point less than ``row_tolerance`` south of it joins that row. The default
    tolerance is 0 (pure north→south, west→east on ties). Every point of a later row is
    strictly south of every point of an earlier row.

    >>> reading_order([(0, 0), (1, 0.1), (0, 1), (1, 0.9)], row_tolerance=0.5)
    [2, 3, 0, 1]
    """
    tol = 0.0 if row_tolerance is None else float(row_tolerance)
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0], i))
    result: list[int] = []
    start = 0
    while start < len(order):
        top = points[order[start]][1]
        end = start
        while end < len(order) and (end == start or top - points[order[end]][1] < tol):
            end += 1
        row = sorted(order[start:end], key=lambda i: (points[i][0], -points[i][1], i))
        result.extend(row)
        start = end
    return result


def row_tolerance_for(heights: Iterable[float], fraction: float = 0.5) -> float:
    """A row tolerance from the siblings' north-south extents: ``fraction`` of the median."""
    values = [h for h in heights if h > 0]
    return fraction * median(values) if values else 0.0


# --- internals (indices 0..n-1) -------------------------------------------------------------


def _weights(ids: list[H], weights: Sequence[float] | Mapping[H, float]) -> list[float]:
    if isinstance(weights, Mapping):
        missing = [b for b in ids if b not in weights]
        if missing:
            raise InvalidInput(f"no weight for blocks {missing[:5]}", field="weights")
        values = [float(weights[b]) for b in ids]
    else:
        values = [float(x) for x in weights]
        if len(values) != len(ids):
            raise InvalidInput(
                f"{len(values)} weights for {len(ids)} blocks", field="weights")
    bad = [(b, x) for b, x in zip(ids, values, strict=True) if not math.isfinite(x) or x < 0]
    if bad:
        raise InvalidInput(f"weights must be finite and >= 0; got {bad[:5]}", field="weights")
    return values


def _neighbour_lists(ids: Sequence[H], index: Mapping[H, int],
                     adjacency: Mapping[H, Iterable[H]]) -> list[list[int]]:
    """Symmetric neighbour lists by index; blocks outside ``ids`` are ignored."""
    sets: list[set[int]] = [set() for _ in ids]
    for a, bs in adjacency.items():
        ia = index.get(a)
        if ia is None:
            continue
        for b in bs:
            ib = index.get(b)
            if ib is not None and ib != ia:
                sets[ia].add(ib)
                sets[ib].add(ia)
    return [sorted(s) for s in sets]


def _pieces(nbrs: list[list[int]], nodes: Iterable[int]) -> list[list[int]]:
    allowed = set(nodes)
    seen: set[int] = set()
    pieces = []
    for start in sorted(allowed):
        if start in seen:
            continue
        piece = []
        queue = deque([start])
        seen.add(start)
        while queue:
            i = queue.popleft()
            piece.append(i)
            for j in nbrs[i]:
                if j in allowed and j not in seen:
                    seen.add(j)
                    queue.append(j)
        pieces.append(sorted(piece))
    return pieces


def _region_count(n: int, total: float, n_regions: int | None, target: float | None,
                  max_regions: int | None) -> int:
    if n_regions is None:
        if target is None or not target > 0:
            raise InvalidInput("give n_regions or a positive target_weight",
                               field="target_weight")
        k = max(1, round(total / target))
        k = min(k, n)
    else:
        k = int(n_regions)
        if k < 1:
            raise InvalidInput(f"n_regions must be >= 1, not {n_regions}", field="n_regions")
        if k > n:
            raise InvalidInput(f"cannot cut {n} blocks into {k} regions", field="n_regions")
    if max_regions is not None:
        k = max(1, min(k, int(max_regions)))
    return k


def _positions(ids: list[H], positions: Sequence[tuple[float, float]]
               | Mapping[H, tuple[float, float]] | None) -> list[tuple[float, float]] | None:
    if positions is None:
        return None
    if isinstance(positions, Mapping):
        return [(float(positions[b][0]), float(positions[b][1])) for b in ids]
    pos = [(float(x), float(y)) for x, y in positions]
    if len(pos) != len(ids):
        raise InvalidInput(f"{len(pos)} positions for {len(ids)} blocks", field="positions")
    return pos


def _cut_costs(index: Mapping[H, int], nbrs: list[list[int]],
               costs: Mapping[tuple[H, H], float] | None) -> list[dict[int, float]]:
    rows: list[dict[int, float]] = [{} for _ in nbrs]
    for (a, b), cost in (costs or {}).items():
        if a not in index or b not in index:
            raise InvalidInput(f"cut_costs names unknown block pair {(a, b)!r}",
                               field="cut_costs")
        if not math.isfinite(cost) or cost < 0:
            raise InvalidInput(f"cut costs must be finite and >= 0; got {cost!r} for {(a, b)!r}",
                               field="cut_costs")
        ia, ib = index[a], index[b]
        if ia != ib and cost > 0:
            rows[ia][ib] = float(cost)
            rows[ib][ia] = float(cost)
    return rows


def _hops(nbrs: list[list[int]], start: int) -> np.ndarray:
    dist = [math.inf] * len(nbrs)
    dist[start] = 0.0
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in nbrs[i]:
            if dist[j] == math.inf:
                dist[j] = dist[i] + 1
                queue.append(j)
    return np.asarray(dist)


def _distances(nbrs: list[list[int]], xy: np.ndarray | None, start: int) -> np.ndarray:
    if xy is None:
        return _hops(nbrs, start)
    return np.hypot(xy[:, 0] - xy[start, 0], xy[:, 1] - xy[start, 1])


def _seeds(nbrs: list[list[int]], xy: np.ndarray | None, k: int,
           rng: random.Random) -> tuple[list[int], list[np.ndarray]]:
    """k seeds spread k-means++ style: each next seed drawn with probability proportional to
    its squared distance from the nearest seed so far."""
    n = len(nbrs)
    seeds = [rng.randrange(n)]
    dist = [_distances(nbrs, xy, seeds[0])]
    nearest = dist[0].copy()
    while len(seeds) < k:
        odds = np.where(np.isfinite(nearest), nearest, 0.0) ** 2
        odds[seeds] = 0.0
        total = float(odds.sum())
        if total > 0:
            nxt = int(np.searchsorted(np.cumsum(odds), rng.random() * total, side="right"))
            nxt = min(nxt, n - 1)
        if total <= 0 or nxt in seeds:
            taken = set(seeds)
            candidates = [i for i in range(n) if i not in taken]
            nxt = candidates[rng.randrange(len(candidates))]
        seeds.append(nxt)
        dist.append(_distances(nbrs, xy, nxt))
        nearest = np.minimum(nearest, dist[-1])
    return seeds, dist


def _grow(nbrs: list[list[int]], w: list[float], pos: list[tuple[float, float]] | None,
          k: int, rng: random.Random) -> list[int]:
    """Seed k regions and grow them, the lightest region first, each taking its frontier
    block nearest its seed."""
    n = len(nbrs)
    xy = np.asarray(pos, dtype=float) if pos is not None else None
    seeds, dist = _seeds(nbrs, xy, k, rng)

    # Zero-weight blocks still cost a little, so one region does not swallow all the parks.
    positive = [x for x in w if x > 0]
    floor = 0.1 * (sum(positive) / len(positive)) if positive else 1.0
    assign = [-1] * n
    loads = [0.0] * k
    frontiers: list[list[tuple[float, int]]] = [[] for _ in range(k)]
    for r, s in enumerate(seeds):
        assign[s] = r
        loads[r] = w[s] + floor
    for r, s in enumerate(seeds):
        for j in nbrs[s]:
            if assign[j] < 0:
                heapq.heappush(frontiers[r], (float(dist[r][j]), j))
    # A region whose frontier runs dry can never grow again, so it leaves the queue for good.
    queue = [(loads[r], r) for r in range(k)]
    heapq.heapify(queue)
    remaining = n - k
    while remaining and queue:
        load, r = heapq.heappop(queue)
        heap = frontiers[r]
        while heap and assign[heap[0][1]] >= 0:
            heapq.heappop(heap)
        if not heap:
            continue
        _, j = heapq.heappop(heap)
        assign[j] = r
        loads[r] += w[j] + floor
        remaining -= 1
        for m in nbrs[j]:
            if assign[m] < 0:
                heapq.heappush(heap, (float(dist[r][m]), m))
        heapq.heappush(queue, (loads[r], r))
    if remaining:  # pragma: no cover - impossible on a connected graph
        raise AssertionError("region growing stalled on a connected graph")
    return assign


def _still_connected(nbrs: list[list[int]], members: set[int], removed: int) -> bool:
    rest = members - {removed}
    if not rest:
        return False
    start = next(iter(rest))
    seen = {start}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in nbrs[i]:
            if j in rest and j not in seen:
                seen.add(j)
                queue.append(j)
    return len(seen) == len(rest)


BOUND_PENALTY = 100.0
"""How much more a unit of relative deviation outside ``bounds`` costs than one inside."""


class _Objective:
    """J = sum over regions of ((weight - target) / target)^2
         + BOUND_PENALTY * ((distance of the weight outside ``bounds``) / target)^2
         + compactness * (sum over blocks of squared distance to its region's centre) / scale
         + sum of the cut costs of adjacent pairs in different regions,
    where scale is the spread of all blocks around their common centre divided by k, so a
    compact partition has an inertia term near 1 whatever the units of the positions."""

    def __init__(self, w: list[float], pos: list[tuple[float, float]] | None, k: int,
                 target: float, compactness: float, cuts: list[dict[int, float]],
                 bounds: tuple[float, float] | None = None):
        self.w = w
        self.bounds = bounds
        self.cuts = cuts
        self.pos = pos
        self.target = target if target > 0 else 1.0
        self.balance_only = target <= 0
        self.lam = compactness if pos is not None else 0.0
        n = len(w)
        if pos is not None and self.lam > 0:
            mx = sum(x for x, _ in pos) / n
            my = sum(y for _, y in pos) / n
            spread = sum((x - mx) ** 2 + (y - my) ** 2 for x, y in pos) / k
            self.norm = self.lam / spread if spread > 0 else 0.0
        else:
            self.norm = 0.0

    def balance(self, load: float) -> float:
        if self.balance_only:
            return 0.0
        value = ((load - self.target) / self.target) ** 2
        if self.bounds is not None:
            outside = max(0.0, self.bounds[0] - load, load - self.bounds[1])
            value += BOUND_PENALTY * (outside / self.target) ** 2
        return value

    def d2(self, i: int, centre: tuple[float, float]) -> float:
        assert self.pos is not None
        x, y = self.pos[i]
        return (x - centre[0]) ** 2 + (y - centre[1]) ** 2

    def centres(self, members: list[set[int]]) -> list[tuple[float, float]]:
        assert self.pos is not None
        out = []
        for m in members:
            xs = [self.pos[i][0] for i in m]
            ys = [self.pos[i][1] for i in m]
            out.append((sum(xs) / len(xs), sum(ys) / len(ys)))
        return out

    def cut_delta(self, i: int, a: int, b: int, assign: list[int]) -> float:
        """Change in cut cost when block ``i`` moves from region ``a`` to ``b``."""
        delta = 0.0
        for j, cost in self.cuts[i].items():
            if assign[j] == a:
                delta += cost
            elif assign[j] == b:
                delta -= cost
        return delta

    def total(self, members: list[set[int]], loads: list[float], assign: list[int]) -> float:
        value = sum(self.balance(x) for x in loads)
        value += 0.5 * sum(cost for i, row in enumerate(self.cuts) for j, cost in row.items()
                           if assign[i] != assign[j])
        if self.norm:
            for m, c in zip(members, self.centres(members), strict=True):
                value += self.norm * sum(self.d2(i, c) for i in m)
        return value


def _refine(nbrs: list[list[int]], w: list[float], assign: list[int], k: int,
            objective: _Objective, max_passes: int = 60) -> tuple[list[float], float]:
    """Move single boundary blocks between neighbouring regions while that lowers the
    objective (balance, then compactness) and keeps both regions connected. Updates
    ``assign`` in place; returns the region loads and the final objective."""
    members: list[set[int]] = [set() for _ in range(k)]
    for i, r in enumerate(assign):
        members[r].add(i)
    loads = [math.fsum(w[i] for i in m) for m in members]
    for _ in range(max_passes):
        centres = objective.centres(members) if objective.norm else []
        moved = False
        for i in range(len(assign)):
            a = assign[i]
            if w[i] <= 0 and not objective.norm and not objective.cuts[i]:
                continue
            targets = sorted({assign[j] for j in nbrs[i] if assign[j] != a},
                             key=lambda r: (loads[r], r))
            for b in targets:
                delta = (objective.balance(loads[a] - w[i]) + objective.balance(loads[b] + w[i])
                         - objective.balance(loads[a]) - objective.balance(loads[b]))
                if objective.norm:
                    delta += objective.norm * (objective.d2(i, centres[b])
                                               - objective.d2(i, centres[a]))
                if objective.cuts[i]:
                    delta += objective.cut_delta(i, a, b, assign)
                if delta < -1e-12 and _still_connected(nbrs, members[a], i):
                    members[a].discard(i)
                    members[b].add(i)
                    assign[i] = b
                    loads[a] -= w[i]
                    loads[b] += w[i]
                    moved = True
                    break
        if not moved:
            break
    return loads, objective.total(members, loads, assign)

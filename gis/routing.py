"""Road routing in memory: a jurisdiction's network as CSR arrays, snapping, bounded Dijkstra.

The network of one jurisdiction (``road_edges``: costs in seconds, ``reverse_cost < 0`` for
one-way streets, pgRouting's convention) is loaded once into numpy arrays and two compressed
sparse row graphs, *forward* (travel direction) and *reverse* (every arc flipped). It is cached
per database and jurisdiction and rebuilt when ``data_versions['road_edges']`` changes (a
trigger stamps it on every write to ``road_edges``).

Points are snapped to the nearest edge of the main connected component (an STRtree over the
edges in the jurisdiction's metric CRS); the snap keeps the fraction along the edge so partial
edges cost their share of the edge's time, in the directions the edge allows.

One bounded single-source Dijkstra (scipy's C implementation, with ``limit``) from a case point
over the *reverse* graph gives every node's travel time *to* the case, so one run ranks all
responders by ETA. The case point enters the graph through a virtual node ``V`` whose two arcs
carry the partial costs of the case's edge; each query fills those two arcs in a private copy
of the CSR arrays, so concurrent queries never share mutable state.

>>> # graph = get_graph(conn, jurisdiction_id); case = snap_point(graph, 24.94, 60.17)
>>> # tree = search(graph, case, direction="to", limit=600)
>>> # eta = tree.costs(snap_points(graph, lons, lats)).time_s
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from shapely.geometry import LineString
from shapely.ops import substring
from sqlalchemy import Connection, text

from gis.crs import WGS84, transformer
from gis.errors import NotFound

Direction = Literal["to", "from"]

# A snapped point this close to an edge end (metres) stands on the node itself: it may leave or
# reach the node in any direction, even against a one-way edge it was snapped to.
NODE_TOLERANCE_M = 0.5

_CACHE_SIZE = 8


@dataclass(frozen=True)
class SnapArrays:
    """Points snapped to edges of the main component (all arrays have one entry per point).

    ``edge`` indexes the graph's edge arrays, ``fraction`` runs 0 (edge source) → 1 (target)
    along the edge, ``offroad_m`` is the straight distance from the point to the road.
    """

    edge: np.ndarray
    fraction: np.ndarray
    offroad_m: np.ndarray

    def __len__(self) -> int:
        return int(self.edge.shape[0])

    def take(self, index: np.ndarray | list[int]) -> SnapArrays:
        return SnapArrays(self.edge[index], self.fraction[index], self.offroad_m[index])

    @staticmethod
    def concat(parts: list[SnapArrays]) -> SnapArrays:
        if not parts:
            return SnapArrays(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        return SnapArrays(np.concatenate([p.edge for p in parts]),
                          np.concatenate([p.fraction for p in parts]),
                          np.concatenate([p.offroad_m for p in parts]))


@dataclass
class RoadGraph:
    """One jurisdiction's routable network. Node index ``n_nodes`` is the virtual query node."""

    jurisdiction_id: int
    version: int
    local_srid: int
    node_ids: np.ndarray          # int64[n_nodes], road_nodes.id of each node index
    edge_ids: np.ndarray          # int64[n_edges], road_edges.id
    edge_u: np.ndarray            # int32 node index of the edge's source
    edge_v: np.ndarray            # int32 node index of the edge's target
    cost: np.ndarray              # seconds source → target, < 0: not allowed
    reverse_cost: np.ndarray      # seconds target → source, < 0: not allowed
    length_m: np.ndarray
    main: np.ndarray              # bool: edge is in the main connected component
    geoms: np.ndarray             # LineStrings in lon/lat, source → target
    forward: csr_matrix           # (n+1)×(n+1); the last row holds the 2 virtual arcs
    reverse: csr_matrix
    arc_keys: np.ndarray          # sorted a*(n+1)+b of every forward arc a → b
    arc_edge: np.ndarray          # edge index of the cheapest edge giving that arc
    vmax_ms: float                # fastest speed on any arc (m/s), bounds straight-line search
    vtyp_ms: float                # median speed (m/s), a first guess of travel times
    main_edges: np.ndarray        # edge indices in the STRtree, in tree order
    tree: shapely.STRtree         # over main_geoms_local
    main_geoms_local: np.ndarray  # main-component edges in the local metric CRS
    _snap_cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _snap_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def n_nodes(self) -> int:
        return int(self.node_ids.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_ids.shape[0])

    def node_index(self, node_id: int) -> int:
        i = int(np.searchsorted(self.node_ids, node_id))
        if i >= self.n_nodes or self.node_ids[i] != node_id:
            raise NotFound(f"road node {node_id} is not in jurisdiction {self.jurisdiction_id}")
        return i


# ---------------------------------------------------------------------------------------------
# Building and caching


def _build_csr(n: int, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> csr_matrix:
    """CSR of n real nodes plus the virtual node n, whose row holds 2 placeholder arcs."""
    order = np.lexsort((cols, rows))
    rows, cols, weights = rows[order], cols[order], weights[order]
    indptr = np.zeros(n + 2, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:n + 1])
    indptr[n + 1] = indptr[n] + 2
    indices = np.concatenate([cols.astype(np.int32), np.zeros(2, np.int32)])
    data = np.concatenate([weights.astype(np.float64), np.full(2, np.inf)])
    return csr_matrix((data, indices, indptr), shape=(n + 1, n + 1))


def build_graph(
    conn: Connection, jurisdiction_id: int, *, version: int = 0
) -> RoadGraph:
    """Load ``road_edges`` of one jurisdiction into a :class:`RoadGraph` (no caching)."""
    srid = conn.execute(text("SELECT local_srid FROM jurisdictions WHERE id = :j"),
                        {"j": jurisdiction_id}).scalar()
    if srid is None:
        raise NotFound(f"no jurisdiction with id {jurisdiction_id}", field="jurisdiction")
    rows = conn.execute(
        text("SELECT id, source, target, cost, reverse_cost, length_m, component"
             " FROM road_edges WHERE jurisdiction_id = :j ORDER BY id"),
        {"j": jurisdiction_id},
    ).all()
    if not rows:
        raise NotFound(f"jurisdiction {jurisdiction_id} has no road network", field="lon")
    # All geometries as one WKB collection: one bytea instead of one per edge (3× faster).
    blob = conn.execute(
        text("SELECT ST_AsBinary(ST_Collect(geom ORDER BY id)) FROM road_edges"
             " WHERE jurisdiction_id = :j"), {"j": jurisdiction_id}).scalar_one()
    geoms = shapely.get_parts(shapely.from_wkb(bytes(blob)))
    cols = list(zip(*rows, strict=True))
    edge_ids = np.asarray(cols[0], dtype=np.int64)
    src = np.asarray(cols[1], dtype=np.int64)
    dst = np.asarray(cols[2], dtype=np.int64)
    cost = np.asarray(cols[3], dtype=np.float64)
    rcost = np.asarray(cols[4], dtype=np.float64)
    length = np.asarray(cols[5], dtype=np.float64)
    comp = np.asarray([-1 if c is None else c for c in cols[6]], dtype=np.int64)
    if len(geoms) != len(edge_ids):
        raise NotFound(f"jurisdiction {jurisdiction_id} changed while loading", field="lon")

    node_ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = int(node_ids.shape[0])
    u = inverse[: len(src)].astype(np.int32)
    v = inverse[len(src):].astype(np.int32)

    # Forward arcs: every allowed direction of every edge, self-loops dropped, and of parallel
    # arcs only the cheapest (it is the one Dijkstra would use, and the one a route draws).
    fw_ok = (cost >= 0) & (u != v)
    bw_ok = (rcost >= 0) & (u != v)
    a = np.concatenate([u[fw_ok], v[bw_ok]]).astype(np.int64)
    b = np.concatenate([v[fw_ok], u[bw_ok]]).astype(np.int64)
    w = np.concatenate([cost[fw_ok], rcost[bw_ok]])
    e = np.concatenate([np.nonzero(fw_ok)[0], np.nonzero(bw_ok)[0]])
    keys = a * (n + 1) + b
    order = np.lexsort((w, keys))
    keys, a, b, w, e = keys[order], a[order], b[order], w[order], e[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    keys, a, b, w, e = keys[first], a[first], b[first], w[first], e[first]

    if (comp >= 0).all():
        main = comp == 0
    else:
        # Unlabelled network: find the largest weakly connected component here.
        und = csr_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
        _, labels = connected_components(und, directed=True, connection="weak")
        biggest = np.bincount(labels).argmax()
        main = labels[u] == biggest

    with np.errstate(divide="ignore", invalid="ignore"):
        speeds = np.where(w > 0, length[e] / w, 0.0)
    speeds = speeds[np.isfinite(speeds) & (speeds > 0)]
    vmax = float(speeds.max()) if speeds.size else 30.0
    vtyp = float(np.median(speeds)) if speeds.size else 8.0

    main_edges = np.nonzero(main)[0]
    coords, owner = shapely.get_coordinates(geoms[main_edges], return_index=True)
    x, y = transformer(WGS84, int(srid)).transform(coords[:, 0], coords[:, 1])
    main_local = shapely.linestrings(np.column_stack([x, y]), indices=owner)
    return RoadGraph(
        jurisdiction_id=jurisdiction_id, version=version, local_srid=int(srid),
        node_ids=node_ids, edge_ids=edge_ids, edge_u=u, edge_v=v, cost=cost,
        reverse_cost=rcost, length_m=length, main=main, geoms=geoms,
        forward=_build_csr(n, a, b, w), reverse=_build_csr(n, b, a, w),
        arc_keys=keys, arc_edge=e.astype(np.int64), vmax_ms=vmax, vtyp_ms=vtyp,
        main_edges=main_edges, tree=shapely.STRtree(main_local), main_geoms_local=main_local,
    )


_cache: OrderedDict[tuple[str, int], RoadGraph] = OrderedDict()
_cache_lock = threading.Lock()
_build_locks: dict[tuple[str, int], threading.Lock] = {}


def network_version(conn: Connection) -> int:
    """The change marker of ``road_edges`` (bumped by a trigger on every write)."""
    value = conn.execute(
        text("SELECT version FROM data_versions WHERE name = 'road_edges'")).scalar()
    return int(value) if value is not None else 0


def get_graph(conn: Connection, jurisdiction_id: int) -> RoadGraph:
    """The cached graph of a jurisdiction, rebuilt when ``road_edges`` changed since."""
    version = network_version(conn)
    key = (conn.engine.url.render_as_string(hide_password=True), int(jurisdiction_id))
    with _cache_lock:
        graph = _cache.get(key)
        if graph is not None and graph.version == version:
            _cache.move_to_end(key)
            return graph
        build_lock = _build_locks.setdefault(key, threading.Lock())
    with build_lock:  # one build per key at a time; others wait and reuse it
        with _cache_lock:
            graph = _cache.get(key)
            if graph is not None and graph.version == version:
                return graph
        graph = build_graph(conn, jurisdiction_id, version=version)
        with _cache_lock:
            _cache[key] = graph
            _cache.move_to_end(key)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return graph


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def jurisdiction_at(conn: Connection, lon: float, lat: float) -> tuple[int, float] | None:
    """The jurisdiction whose main road network is nearest to a point, and that distance (m).

    KNN (``<->``) on the GiST index of ``road_edges`` gives candidates in degrees; the few
    nearest are re-ranked by geodesic distance (degrees of longitude shrink with latitude).
    """
    # The point is written out in the ORDER BY (not taken from a CTE) so that the planner
    # sees a constant and walks the GiST index in distance order.
    row = conn.execute(
        text(
            """
            WITH near AS (
                SELECT e.jurisdiction_id, e.geom FROM road_edges e
                 WHERE e.component = 0 OR e.component IS NULL
                 ORDER BY e.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 8
            )
            SELECT jurisdiction_id, ST_Distance(geom::geography,
                   ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS d
              FROM near ORDER BY d LIMIT 1
            """
        ),
        {"lon": lon, "lat": lat},
    ).first()
    if row is None:
        return None
    return int(row[0]), float(row[1])


# ---------------------------------------------------------------------------------------------
# Snapping


def snap_points(graph: RoadGraph, lon: np.ndarray, lat: np.ndarray) -> SnapArrays:
    """Snap WGS84 points to the nearest main-component edge (metric distance)."""
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    if lon.size == 0:
        return SnapArrays.concat([])
    x, y = transformer(WGS84, graph.local_srid).transform(lon, lat)
    pts = shapely.points(np.asarray(x), np.asarray(y))
    (qi, ti), dist = graph.tree.query_nearest(pts, return_distance=True, all_matches=False)
    edge = np.empty(lon.size, dtype=np.int64)
    offroad = np.empty(lon.size)
    local = np.empty(lon.size, dtype=object)
    edge[qi] = graph.main_edges[ti]
    offroad[qi] = dist
    local[qi] = graph.main_geoms_local[ti]
    fraction = shapely.line_locate_point(local, pts, normalized=True)
    return SnapArrays(edge, np.clip(np.nan_to_num(fraction), 0.0, 1.0), offroad)


def snap_cached(graph: RoadGraph, keys: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                *, max_entries: int = 200_000) -> SnapArrays:
    """:func:`snap_points` with a cache keyed by (key, lon, lat): responders and facilities that
    did not move since the last query are not snapped again."""
    n = len(keys)
    edge = np.empty(n, dtype=np.int64)
    frac = np.empty(n)
    off = np.empty(n)
    missing: list[int] = []
    cache = graph._snap_cache
    with graph._snap_lock:
        for i in range(n):
            hit = cache.get((int(keys[i]), float(lon[i]), float(lat[i])))
            if hit is None:
                missing.append(i)
            else:
                edge[i], frac[i], off[i] = hit
    if missing:
        idx = np.asarray(missing)
        fresh = snap_points(graph, lon[idx], lat[idx])
        edge[idx], frac[idx], off[idx] = fresh.edge, fresh.fraction, fresh.offroad_m
        with graph._snap_lock:
            for j, i in enumerate(missing):
                cache[(int(keys[i]), float(lon[i]), float(lat[i]))] = (
                    int(fresh.edge[j]), float(fresh.fraction[j]), float(fresh.offroad_m[j]))
            while len(cache) > max_entries:
                cache.popitem(last=False)
    return SnapArrays(edge, frac, off)


def _partials(graph: RoadGraph, snaps: SnapArrays, *, leaving: bool
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Costs between snap points and the two ends of their edge.

    ``leaving=True``: from the point to (source, target); ``False``: from (source, target) to
    the point. Returns (source node, cost via source, target node, cost via target), ``inf``
    where the edge's direction forbids it.
    """
    e, f = snaps.edge, snaps.fraction
    c, rc, length = graph.cost[e], graph.reverse_cost[e], graph.length_m[e]
    if leaving:   # point → source runs against the edge; point → target runs with it
        to_src = np.where(rc >= 0, f * rc, np.inf)
        to_tgt = np.where(c >= 0, (1 - f) * c, np.inf)
    else:         # source → point runs with the edge; target → point against it
        to_src = np.where(c >= 0, f * c, np.inf)
        to_tgt = np.where(rc >= 0, (1 - f) * rc, np.inf)
    to_src = np.where(f * length <= NODE_TOLERANCE_M, 0.0, to_src)
    to_tgt = np.where((1 - f) * length <= NODE_TOLERANCE_M, 0.0, to_tgt)
    return graph.edge_u[e], to_src, graph.edge_v[e], to_tgt


def _direct(graph: RoadGraph, start: SnapArrays, end: SnapArrays) -> np.ndarray:
    """Travel time along the shared edge from ``start`` to ``end`` (inf if not on one edge)."""
    e = start.edge
    same = e == end.edge
    fa, fb = start.fraction, end.fraction
    c, rc, length = graph.cost[e], graph.reverse_cost[e], graph.length_m[e]
    along = np.where((fb >= fa) & (c >= 0), (fb - fa) * c, np.inf)
    back = np.where((fa >= fb) & (rc >= 0), (fa - fb) * rc, np.inf)
    out = np.minimum(along, back)
    out = np.where(np.abs(fa - fb) * length <= NODE_TOLERANCE_M, 0.0, out)
    return np.where(same, out, np.inf)


# ---------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True)
class Costs:
    """Travel times between an origin and many snapped points (network part only).

    ``via`` is the node where the route leaves the far point's edge (``-1``: along the shared
    edge, no node in between), used to rebuild the route.
    """

    time_s: np.ndarray
    via: np.ndarray


@dataclass
class Search:
    """A bounded shortest-path tree around one snapped origin.

    ``direction="to"``: ``dist[x]`` is the travel time from node x *to* the origin (Dijkstra on
    the reverse graph); ``"from"``: from the origin to x (forward graph). Nodes farther than
    ``limit`` seconds are ``inf``.
    """

    graph: RoadGraph
    origin: SnapArrays
    direction: Direction
    limit: float
    dist: np.ndarray
    pred: np.ndarray

    @property
    def settled(self) -> int:
        return int(np.isfinite(self.dist[:-1]).sum())

    def costs(self, others: SnapArrays) -> Costs:
        """Network travel time between every point of ``others`` and the origin, in the
        search's direction (``to``: other → origin). ``inf`` beyond the limit or unreachable."""
        g = self.graph
        if len(others) == 0:
            return Costs(np.zeros(0), np.zeros(0, np.int64))
        origin = SnapArrays(np.repeat(self.origin.edge, len(others)),
                            np.repeat(self.origin.fraction, len(others)),
                            np.repeat(self.origin.offroad_m, len(others)))
        if self.direction == "to":   # others leave their edge, then follow dist to the origin
            su, cu, sv, cv = _partials(g, others, leaving=True)
            direct = _direct(g, others, origin)
        else:                        # from the origin, dist to a node, then onto their edge
            su, cu, sv, cv = _partials(g, others, leaving=False)
            direct = _direct(g, origin, others)
        via_u = cu + self.dist[su]
        via_v = cv + self.dist[sv]
        best = np.minimum(np.minimum(via_u, via_v), direct)
        via = np.where(via_u <= via_v, su, sv).astype(np.int64)
        via = np.where(direct <= np.minimum(via_u, via_v), -1, via)
        best = np.where(best <= self.limit + 1e-9, best, np.inf)
        return Costs(best, via)

    def route(self, other: SnapArrays, via: int, *, geometry: bool = True
              ) -> tuple[LineString | None, float]:
        """The route between one snapped point and the origin, in travel direction: a lon/lat
        LineString (None when ``geometry=False`` or empty) and its length in metres."""
        g = self.graph
        n = g.n_nodes
        oe, of = int(self.origin.edge[0]), float(self.origin.fraction[0])
        pe, pf = int(other.edge[0]), float(other.fraction[0])
        if via < 0:
            start, end = (pf, of) if self.direction == "to" else (of, pf)
            return _piece(g, pe, start, end, geometry=geometry)
        # Node chain from `via` back to the virtual node, through the search's predecessors.
        chain = [via]
        x = via
        while True:
            p = int(self.pred[x])
            if p < 0 or p == n:
                break
            chain.append(p)
            x = p
            if len(chain) > n:  # a broken tree; never expected
                return None, float("nan")
        if self.direction == "from":
            chain.reverse()     # origin side first
        nodes = np.asarray(chain, dtype=np.int64)
        if self.direction == "to":
            first_edge, first_from, last_edge, last_to = pe, pf, oe, of
        else:
            first_edge, first_from, last_edge, last_to = oe, of, pe, pf
        head_f = 0.0 if nodes[0] == g.edge_u[first_edge] else 1.0
        tail_f = 0.0 if nodes[-1] == g.edge_u[last_edge] else 1.0
        head, head_m = _piece(g, first_edge, first_from, head_f, geometry=geometry)
        tail, tail_m = _piece(g, last_edge, tail_f, last_to, geometry=geometry)
        edges = g.arc_edge[np.searchsorted(g.arc_keys, nodes[:-1] * (n + 1) + nodes[1:])]
        total = head_m + float(g.length_m[edges].sum()) + tail_m
        if not geometry:
            return None, total
        pieces = [np.asarray(head.coords)] if head is not None else []
        for a, e in zip(nodes[:-1].tolist(), edges.tolist(), strict=True):
            coords = shapely.get_coordinates(g.geoms[e])
            pieces.append(coords if g.edge_u[e] == a else coords[::-1])
        if tail is not None:
            pieces.append(np.asarray(tail.coords))
        return _join(pieces), total


def _piece(g: RoadGraph, edge: int, start: float, end: float, *, geometry: bool = True
           ) -> tuple[LineString | None, float]:
    """The part of an edge between two fractions, oriented start → end, and its length."""
    length = abs(end - start) * float(g.length_m[edge])
    if length <= 1e-6 or not geometry:
        return None, length
    lo, hi = sorted((start, end))
    part = substring(g.geoms[edge], lo, hi, normalized=True)
    if start > end:
        part = shapely.reverse(part)
    return part, length


def _join(pieces: list[np.ndarray]) -> LineString | None:
    if not pieces:
        return None
    coords = np.concatenate(pieces)
    keep = np.ones(len(coords), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(coords, axis=0)) > 1e-12, axis=1)
    coords = coords[keep]
    if len(coords) < 2:
        return None
    return LineString(coords)


def search(graph: RoadGraph, origin: SnapArrays, *, direction: Direction,
           limit: float = np.inf) -> Search:
    """Bounded Dijkstra from a snapped origin (one point) through the virtual node.

    >>> # s = search(graph, snap, direction="to", limit=900)  # every node's time *to* snap
    """
    n = graph.n_nodes
    base = graph.reverse if direction == "to" else graph.forward
    su, cu, sv, cv = _partials(graph, origin.take([0]), leaving=(direction == "from"))
    data = base.data.copy()
    indices = base.indices.copy()
    indices[-2:] = (su[0], sv[0])
    data[-2:] = (cu[0], cv[0])
    matrix = csr_matrix((data, indices, base.indptr), shape=base.shape)
    dist, pred = dijkstra(matrix, directed=True, indices=n, limit=limit,
                          return_predecessors=True)
    return Search(graph, origin.take([0]), direction, float(limit), dist, pred)


def node_times(graph: RoadGraph, node_id: int, *, direction: Direction,
               limit: float = np.inf) -> np.ndarray:
    """Travel times between a node and every node (``to``: every node → this one), seconds.

    Used by the correctness tests against pgRouting.
    """
    i = graph.node_index(node_id)
    base = graph.reverse if direction == "to" else graph.forward
    return np.asarray(dijkstra(base, directed=True, indices=i, limit=limit))[:-1]


__all__ = [
    "Costs", "RoadGraph", "Search", "SnapArrays", "build_graph", "clear_cache", "get_graph",
    "jurisdiction_at", "network_version", "node_times", "search", "snap_cached", "snap_points",
]

"""Facility coverage: who lives within reach of a facility type, per area, and where the gaps are.

Two modes (DOMAIN.md: "the 15-minute service circle", "full coverage, no blind spots"):

- **straight**: a building is covered when its point lies within ``radius_m`` of a facility
  (each facility's own ``service_radius_m`` by default), measured in the jurisdiction's metric
  CRS. One KD-tree query for all buildings.
- **road**: a building is covered when it can be reached within ``minutes`` (each facility's
  ``service_minutes`` by default) over the road network: ``travel="walk"`` (5 km/h, both
  directions of every street) or ``"drive"`` (the network's costs from the facility outwards,
  one-way streets respected). One multi-source bounded Dijkstra (scipy) over the cached
  ``gis.routing`` graph, every facility entering through its own virtual node at the partial
  cost of its snapped edge; every building snapped to its edge once (cached) and timed from
  the two ends of that edge, plus its walk to the road. Never a query per building.

Buildings (counts only) are held in memory per database and jurisdiction, with their grid
(``gis.index.AreaIndex``, the same answer as the SQL lookup) and their road snap; the cache is
reloaded when ``data_versions`` says buildings, areas or roads changed (triggers of migrations
0002_dispatch and 0002_analysis).

**Gaps** are geometry: the part of each area outside the covered region, where the covered
region is the union of the circles (straight) or of per-facility service-area polygons (road:
the concave hull of the network nodes each facility reaches first, widened by
``GAP_BUFFER_M``). Household counts are exact per building; the gap polygons are for the map.

``road_coverage`` answers the "sky net" question of the same kind: the share of main-road length
within range of a camera, per area.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.areas import default_jurisdiction, level_rank, levels
from gis.crs import WGS84, transformer
from gis.errors import InvalidInput, NotFound

MAX_RADIUS_M = 50_000.0
MAX_MINUTES = 180.0
WALK_MS = 5.0 / 3.6
GAP_BUFFER_M = 60.0
MAX_SNAP_M = 500.0
MAIN_ROADS = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link",
              "secondary", "secondary_link", "tertiary", "tertiary_link")
_SUBDIVIDE_VERTICES = 256
_CACHE_SIZE = 4


@dataclass(frozen=True)
class CoverageQuery:
    """One coverage question. Give ``radius_m`` (straight) or ``minutes`` (road), or neither
    to use each facility's own service radius / minutes."""

    facility_type: str
    mode: str = "straight"
    radius_m: float | None = None
    minutes: float | None = None
    travel: str = "walk"
    level: str | int | None = None
    gaps: bool = True
    jurisdiction_id: int | None = None
    extra_sites: tuple[tuple[float, float], ...] = ()


# --------------------------------------------------------------------------- population cache


@dataclass
class Population:
    """A jurisdiction's buildings in memory: local metric coordinates, counts, grid."""

    jurisdiction_id: int
    version: tuple[int, int]
    local_srid: int
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    households: np.ndarray
    residents: np.ndarray
    grid_id: np.ndarray  # areas.id of the current bottom-level area, -1 outside
    _snaps: dict[int, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snaps(self, graph: Any) -> Any:
        """The buildings snapped to ``graph`` (cached per network version)."""
        from gis.routing import snap_points

        with self._lock:
            hit = self._snaps.get(graph.version)
        if hit is None:
            hit = snap_points(graph, self.lon, self.lat)
            with self._lock:
                self._snaps = {graph.version: hit}
        return hit


_cache: OrderedDict[tuple[str, int], Population] = OrderedDict()
_cache_lock = threading.Lock()


def _versions(conn: Connection) -> tuple[int, int]:
    rows: dict[str, Any] = dict(conn.execute(text(
        "SELECT name, version FROM data_versions WHERE name IN ('buildings', 'areas')")).all())
    return int(rows.get("buildings", 0)), int(rows.get("areas", 0))


def population(conn: Connection, jurisdiction_id: int) -> Population:
    """The cached buildings of a jurisdiction, reloaded when buildings or areas changed."""
    version = _versions(conn)
    key = (conn.engine.url.render_as_string(hide_password=True), int(jurisdiction_id))
    with _cache_lock:
        pop = _cache.get(key)
        if pop is not None and pop.version == version:
            _cache.move_to_end(key)
            return pop
    pop = _load_population(conn, jurisdiction_id, version)
    with _cache_lock:
        _cache[key] = pop
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return pop


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _load_population(conn: Connection, jurisdiction_id: int, version: tuple[int, int]
                     ) -> Population:
    from gis.index import AreaIndex

    srid = _srid(conn, jurisdiction_id)
    blob, hh, res = conn.execute(text(
        "SELECT ST_AsBinary(ST_Collect(pt ORDER BY id)), array_agg(households ORDER BY id),"
        " array_agg(residents ORDER BY id) FROM buildings WHERE jurisdiction_id = :j"),
        {"j": jurisdiction_id}).one()
    if blob is None:
        pts = np.zeros((0, 2))
        hh, res = [], []
    else:
        pts = shapely.get_coordinates(shapely.from_wkb(bytes(blob)))
    lon, lat = pts[:, 0].copy(), pts[:, 1].copy()
    x, y = transformer(WGS84, srid).transform(lon, lat)
    index = AreaIndex.load(conn, jurisdiction_id=jurisdiction_id)
    grid = (index.assign_ids(lon, lat) if len(lon) and len(index)
            else np.full(len(lon), -1, dtype=np.int64))
    return Population(jurisdiction_id, version, srid, lon, lat, np.asarray(x), np.asarray(y),
                      np.asarray(hh, dtype=np.int64), np.asarray(res, dtype=np.int64),
                      np.asarray(grid, dtype=np.int64))


def _srid(conn: Connection, jurisdiction_id: int) -> int:
    srid = conn.execute(text("SELECT local_srid FROM jurisdictions WHERE id = :j"),
                        {"j": jurisdiction_id}).scalar()
    if srid is None:
        raise NotFound(f"no jurisdiction {jurisdiction_id}", field="jurisdiction")
    return int(srid)


# --------------------------------------------------------------------------- validation


def facility_types(conn: Connection, jurisdiction_id: int) -> list[str]:
    return [str(t) for t in conn.execute(text(
        "SELECT DISTINCT type FROM facilities WHERE jurisdiction_id = :j ORDER BY type"),
        {"j": jurisdiction_id}).scalars()]


def check_radius(radius_m: float | None, name: str = "radius_m") -> None:
    if radius_m is None:
        return
    if not np.isfinite(radius_m) or radius_m <= 0:
        raise InvalidInput(f"{name} must be a positive number of metres, not {radius_m}",
                           field=name)
    if radius_m > MAX_RADIUS_M:
        raise InvalidInput(f"{name}={radius_m:g} is absurd: at most {MAX_RADIUS_M:g} m",
                           field=name)


def check_minutes(minutes: float | None) -> None:
    if minutes is None:
        return
    if not np.isfinite(minutes) or minutes <= 0:
        raise InvalidInput(f"minutes must be a positive number, not {minutes}", field="minutes")
    if minutes > MAX_MINUTES:
        raise InvalidInput(f"minutes={minutes:g} is too long: at most {MAX_MINUTES:g}",
                           field="minutes")


def _resolve(conn: Connection, q: CoverageQuery) -> tuple[int, int]:
    """Validate; returns (jurisdiction id, level rank)."""
    if q.mode not in ("straight", "road"):
        raise InvalidInput(f"mode must be 'straight' or 'road', not {q.mode!r}", field="mode")
    if q.travel not in ("walk", "drive"):
        raise InvalidInput(f"travel must be 'walk' or 'drive', not {q.travel!r}",
                           field="travel")
    check_radius(q.radius_m)
    check_minutes(q.minutes)
    if q.mode == "straight" and q.minutes is not None:
        raise InvalidInput("minutes goes with mode=road; use radius_m for straight lines",
                           field="minutes")
    if q.mode == "road" and q.radius_m is not None:
        raise InvalidInput("radius_m goes with mode=straight; use minutes for mode=road",
                           field="radius_m")
    jid = q.jurisdiction_id if q.jurisdiction_id is not None else default_jurisdiction(conn)
    types = facility_types(conn, jid)
    if q.facility_type not in types:
        raise InvalidInput(f"unknown facility type {q.facility_type!r}; types are: "
                           f"{', '.join(types)}", field="facility_type",
                           extra={"valid": types})
    level = q.level if q.level is not None else levels(conn, jid)[-1]["rank"]
    return jid, level_rank(conn, level, jid)


@dataclass
class _Facilities:
    ids: np.ndarray
    names: list[str | None]
    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    reach: np.ndarray  # metres (straight) or seconds (road)


def _facilities(conn: Connection, jid: int, q: CoverageQuery, srid: int) -> _Facilities:
    rows = conn.execute(text(
        "SELECT id, name, ST_X(geom), ST_Y(geom), service_radius_m, service_minutes"
        " FROM facilities WHERE jurisdiction_id = :j AND type = :t ORDER BY id"),
        {"j": jid, "t": q.facility_type}).all()
    ids = [int(r[0]) for r in rows] + [-(k + 1) for k in range(len(q.extra_sites))]
    names = [r[1] for r in rows] + [f"new site {k + 1}" for k in range(len(q.extra_sites))]
    lon = np.array([r[2] for r in rows] + [s[0] for s in q.extra_sites], dtype=float)
    lat = np.array([r[3] for r in rows] + [s[1] for s in q.extra_sites], dtype=float)
    if q.mode == "straight":
        own = [r[4] for r in rows]
        fixed = q.radius_m
        if fixed is None and any(v is None for v in own):
            raise InvalidInput(f"some {q.facility_type} facilities have no service radius: "
                               "give radius_m", field="radius_m")
        extra_default = fixed or (max((v for v in own if v), default=None))
        reach = [fixed or v for v in own] + [extra_default] * len(q.extra_sites)
    else:
        own = [r[5] for r in rows]
        if q.minutes is None and any(v is None for v in own):
            raise InvalidInput(f"some {q.facility_type} facilities have no service minutes: "
                               "give minutes", field="minutes")
        extra_default = q.minutes or max((v for v in own if v), default=None)
        reach = [60.0 * float(q.minutes or v) for v in own] + \
            [60.0 * float(extra_default or 0)] * len(q.extra_sites)
    x, y = transformer(WGS84, srid).transform(lon, lat) if len(lon) else (lon, lat)
    return _Facilities(np.array(ids), names, lon, lat, np.asarray(x, dtype=float),
                       np.asarray(y, dtype=float), np.asarray(reach, dtype=float))


# --------------------------------------------------------------------------- who is covered


def covered_straight(pop: Population, fac: _Facilities) -> np.ndarray:
    """Boolean per building: within the radius of at least one facility."""
    covered = np.zeros(len(pop.x), dtype=bool)
    if not len(fac.x) or not len(pop.x):
        return covered
    pts = np.column_stack([pop.x, pop.y])
    for radius in np.unique(fac.reach):
        sel = fac.reach == radius
        tree = cKDTree(np.column_stack([fac.x[sel], fac.y[sel]]))
        dist, _ = tree.query(pts, k=1, distance_upper_bound=float(radius))
        covered |= np.isfinite(dist)
    return covered


@dataclass
class RoadReach:
    """Result of the multi-source search: node times, nearest facility per node, building
    times."""

    node_time: np.ndarray
    node_source: np.ndarray  # facility position (-1 unreached)
    building_time: np.ndarray
    graph: Any
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _arc_weights(graph: Any, travel: str) -> tuple[np.ndarray, np.ndarray]:
    """Per edge, the seconds source→target and target→source (inf where not allowed)."""
    if travel == "walk":
        t = graph.length_m / WALK_MS
        return t, t
    c = np.where(graph.cost >= 0, graph.cost, np.inf)
    rc = np.where(graph.reverse_cost >= 0, graph.reverse_cost, np.inf)
    return c, rc


_csr_cache: dict[tuple[int, int, str], csr_matrix] = {}
_csr_lock = threading.Lock()


def _network(graph: Any, travel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, weights) of the travel network's arcs, parallel arcs kept (Dijkstra uses
    the cheapest)."""
    fw, bw = _arc_weights(graph, travel)
    u, v = graph.edge_u.astype(np.int64), graph.edge_v.astype(np.int64)
    ok_f = np.isfinite(fw) & (u != v)
    ok_b = np.isfinite(bw) & (u != v)
    rows = np.concatenate([u[ok_f], v[ok_b]])
    cols = np.concatenate([v[ok_f], u[ok_b]])
    w = np.concatenate([fw[ok_f], bw[ok_b]])
    return rows, cols, np.maximum(w, 1e-6)


def covered_road(pop: Population, fac: _Facilities, graph: Any, travel: str) -> RoadReach:
    """Multi-source bounded Dijkstra from every facility (own limit each: the largest)."""
    from gis.routing import snap_points

    n = graph.n_nodes
    k = len(fac.x)
    limit = float(fac.reach.max()) if k else 0.0
    fw, bw = _arc_weights(graph, travel)
    rows, cols, w = _network(graph, travel)
    if not k:
        return RoadReach(np.full(n, np.inf), np.full(n, -1), np.full(len(pop.x), np.inf), graph,
                         np.zeros(len(pop.x), dtype=bool))
    fs = snap_points(graph, fac.lon, fac.lat)
    ok = fs.offroad_m <= MAX_SNAP_M
    e, f = fs.edge, fs.fraction
    walk_in = fs.offroad_m / WALK_MS
    # Leaving the facility's point: to the source end runs against the edge, to the target with.
    with np.errstate(invalid="ignore"):
        to_u = np.where(f > 0, f * bw[e], 0.0) + walk_in
        to_v = np.where(f < 1, (1 - f) * fw[e], 0.0) + walk_in
    # A facility with a smaller reach starts "late" so that one search serves all reaches.
    late = limit - fac.reach
    virt = n + np.arange(k)
    vr = np.concatenate([virt[ok], virt[ok]])
    vc = np.concatenate([graph.edge_u[e][ok], graph.edge_v[e][ok]]).astype(np.int64)
    vw = np.concatenate([to_u[ok] + late[ok], to_v[ok] + late[ok]])
    keep = np.isfinite(vw)
    matrix = csr_matrix((np.concatenate([w, np.maximum(vw[keep], 1e-6)]),
                         (np.concatenate([rows, vr[keep]]), np.concatenate([cols, vc[keep]]))),
                        shape=(n + k, n + k))
    dist, _pred, sources = dijkstra(matrix, directed=True, indices=virt, min_only=True,
                                    limit=limit + float(late.max()) + 1e-6,
                                    return_predecessors=True)
    node_source = np.where(sources[:n] >= n, sources[:n] - n, -1)
    # Back to each facility's own clock: subtract the head start it was given.
    node_time = np.where(node_source >= 0, dist[:n] - late[np.maximum(node_source, 0)], np.inf)
    node_time = np.where(node_time <= fac.reach[np.maximum(node_source, 0)] + 1e-6, node_time,
                         np.inf)
    if not len(pop.x):
        return RoadReach(node_time, node_source, np.zeros(0), graph, np.zeros(0, dtype=bool))
    bs = pop.snaps(graph)
    be, bf = bs.edge, bs.fraction
    # Reaching the building's point: from the source end with the edge, from the target against.
    walk_out = bs.offroad_m / WALK_MS
    su, sv = node_source[graph.edge_u[be]], node_source[graph.edge_v[be]]
    with np.errstate(invalid="ignore"):  # 0 × inf at an edge end: no partial edge at all
        part_u = np.where(bf > 0, bf * fw[be], 0.0)
        part_v = np.where(bf < 1, (1 - bf) * bw[be], 0.0)
    via_u = node_time[graph.edge_u[be]] + part_u + walk_out
    via_v = node_time[graph.edge_v[be]] + part_v + walk_out
    # Covered when the facility that reached an end of the edge first still reaches the point.
    ok_u = (su >= 0) & (via_u <= fac.reach[np.maximum(su, 0)] + 1e-6)
    ok_v = (sv >= 0) & (via_v <= fac.reach[np.maximum(sv, 0)] + 1e-6)
    covered = ok_u | ok_v
    best = np.minimum(np.where(ok_u, via_u, np.inf), np.where(ok_v, via_v, np.inf))
    # Facility and building on the same edge: straight along it.
    on_edge: dict[int, list[int]] = {}
    for i in np.nonzero(ok)[0]:
        on_edge.setdefault(int(e[i]), []).append(int(i))
    if on_edge:
        same = np.isin(be, np.fromiter(on_edge, dtype=np.int64))
        for bi in np.nonzero(same)[0].tolist():
            for fi in on_edge[int(be[bi])]:
                d = float(bf[bi] - f[fi])
                along = d * fw[be[bi]] if d >= 0 else -d * bw[be[bi]]
                t = walk_in[fi] + along + walk_out[bi]
                if t <= fac.reach[fi]:
                    best[bi] = min(best[bi], t)
                    covered[bi] = True
    near = bs.offroad_m <= MAX_SNAP_M
    return RoadReach(node_time, node_source, np.where(near, best, np.inf), graph,
                     covered & near)


# --------------------------------------------------------------------------- geometry helpers


def subdivide(geom: BaseGeometry, max_vertices: int = _SUBDIVIDE_VERTICES) -> list[BaseGeometry]:
    """Cut a polygon into disjoint pieces of at most ``max_vertices`` vertices (a quadtree of
    rectangle clips, like PostGIS ``ST_Subdivide``), so pieces can be indexed and intersected
    cheaply."""
    out: list[BaseGeometry] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if shapely.get_num_coordinates(g) <= max_vertices:
            out.extend(p for p in shapely.get_parts(g) if not p.is_empty and p.area > 0)
            continue
        x0, y0, x1, y1 = g.bounds
        if x1 - x0 < 1e-6 and y1 - y0 < 1e-6:
            out.append(g)
            continue
        if x1 - x0 >= y1 - y0:
            xm = (x0 + x1) / 2
            halves = [(x0, y0, xm, y1), (xm, y0, x1, y1)]
        else:
            ym = (y0 + y1) / 2
            halves = [(x0, y0, x1, ym), (x0, ym, x1, y1)]
        for bx in halves:
            part = shapely.clip_by_rect(g, *bx)
            part = shapely.make_valid(part) if not part.is_valid else part
            polys = [p for p in shapely.get_parts(part)
                     if p.geom_type == "Polygon" and p.area > 0]
            stack.extend(polys)
    return out


def split_by_areas(pieces: list[BaseGeometry], areas_local: np.ndarray) -> np.ndarray:
    """Per area, the union of the (disjoint) pieces inside it, as one geometry (may be empty)."""
    result = np.array([shapely.Polygon()] * len(areas_local), dtype=object)
    if not pieces or not len(areas_local):
        return result
    arr = np.array(pieces, dtype=object)
    tree = shapely.STRtree(arr)
    ai, pi = tree.query(areas_local, predicate="intersects")
    if not len(ai):
        return result
    inter = shapely.intersection(areas_local[ai], arr[pi])
    parts, owner = shapely.get_parts(inter, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 1e-6)
    parts, owner = parts[keep], ai[owner[keep]]
    if not len(parts):
        return result
    uniq, dense = np.unique(owner, return_inverse=True)
    order = np.argsort(dense, kind="stable")
    result[uniq] = shapely.multipolygons(parts[order], indices=dense[order])
    return result


def _area_rows(conn: Connection, jid: int, rank: int, srid: int) -> tuple[list[dict[str, Any]],
                                                                            dict[int, int]]:
    """Current areas of the level (with local geometry) and bottom grid id → row position."""
    rows = [dict(r) for r in conn.execute(text(
        "SELECT id, code, name, ST_AsBinary(ST_Transform(geom, :srid)) AS wkb FROM areas"
        " WHERE jurisdiction_id = :j AND level = :l AND valid_to IS NULL ORDER BY code"),
        {"j": jid, "l": rank, "srid": srid}).mappings()]
    position = {int(r["id"]): i for i, r in enumerate(rows)}
    chain = conn.execute(text(
        """
        WITH RECURSIVE chain AS (
            SELECT a.id AS start_id, a.id, a.parent_id, a.level FROM areas a
             WHERE a.jurisdiction_id = :j AND a.valid_to IS NULL AND a.level >= :l
            UNION ALL
            SELECT ch.start_id, p.id, p.parent_id, p.level FROM chain ch
              JOIN areas p ON p.id = ch.parent_id WHERE ch.level > :l
        )
        SELECT start_id, id FROM chain WHERE level = :l
        """), {"j": jid, "l": rank}).all()
    grid_to_row = {int(s): position[int(a)] for s, a in chain if int(a) in position}
    return rows, grid_to_row


def _per_area(pop: Population, covered: np.ndarray, rows: list[dict[str, Any]],
              grid_to_row: dict[int, int]) -> np.ndarray:
    """(n_rows, 4) sums: households, households covered, residents, residents covered."""
    m = len(rows)
    out = np.zeros((m, 4), dtype=np.int64)
    if not len(pop.grid_id):
        return out
    ids = np.fromiter(grid_to_row.keys(), dtype=np.int64)
    pos = np.fromiter(grid_to_row.values(), dtype=np.int64)
    order = np.argsort(ids)
    ids, pos = ids[order], pos[order]
    i = np.searchsorted(ids, pop.grid_id)
    i = np.clip(i, 0, max(len(ids) - 1, 0))
    found = (len(ids) > 0) & (ids[i] == pop.grid_id) if len(ids) else np.zeros(len(i), bool)
    row = np.where(found, pos[i], -1)
    inside = row >= 0
    r = row[inside]
    for col, weights in enumerate((pop.households, pop.households * covered, pop.residents,
                                   pop.residents * covered)):
        out[:, col] = np.bincount(r, weights=weights[inside], minlength=m)[:m]
    return out


def _covered_region(fac: _Facilities, reach: RoadReach | None, srid: int) -> BaseGeometry:
    if reach is None:
        circles = shapely.buffer(shapely.points(fac.x, fac.y), fac.reach, quad_segs=8)
        return shapely.union_all(circles)
    g = reach.graph
    reached = np.nonzero(reach.node_source >= 0)[0]
    if not len(reached):
        return shapely.Polygon()
    tf = transformer(WGS84, srid)
    node_lon, node_lat = _node_coordinates(g)
    nx, ny = tf.transform(node_lon[reached], node_lat[reached])
    labels = reach.node_source[reached]
    # Each facility's own point belongs to its polygon too.
    xs = np.concatenate([np.asarray(nx), fac.x])
    ys = np.concatenate([np.asarray(ny), fac.y])
    lab = np.concatenate([labels, np.arange(len(fac.x))])
    _, dense = np.unique(lab, return_inverse=True)
    order = np.argsort(dense, kind="stable")
    multi = shapely.multipoints(shapely.points(xs[order], ys[order]), indices=dense[order])
    hulls = shapely.concave_hull(multi, ratio=0.3)
    return shapely.union_all(shapely.buffer(hulls, GAP_BUFFER_M, quad_segs=4))


def _node_coordinates(graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of every node index, from the edge geometries' end points."""
    cached = getattr(graph, "_coverage_nodes", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    n = graph.n_nodes
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    first = shapely.get_point(graph.geoms, 0)
    last = shapely.get_point(graph.geoms, -1)
    lon[graph.edge_u] = shapely.get_x(first)
    lat[graph.edge_u] = shapely.get_y(first)
    lon[graph.edge_v] = shapely.get_x(last)
    lat[graph.edge_v] = shapely.get_y(last)
    graph._coverage_nodes = (lon, lat)
    return lon, lat


def _to_geojson(geoms_local: np.ndarray, srid: int) -> list[str | None]:
    back = transformer(srid, WGS84)
    out: list[str | None] = []
    simplified = shapely.simplify(geoms_local, 1.0)
    for g in simplified:
        if g is None or g.is_empty:
            out.append(None)
            continue
        coords = shapely.get_coordinates(g)
        lon, lat = back.transform(coords[:, 0], coords[:, 1])
        g4326 = shapely.set_coordinates(g, np.column_stack([lon, lat]))
        out.append(shapely.to_geojson(shapely.set_precision(g4326, 1e-7)))
    return out


# --------------------------------------------------------------------------- the query


def coverage(conn: Connection, q: CoverageQuery) -> dict[str, Any]:
    """Households and residents covered and not covered per area of the level, with gaps.

    Returns ``{"summary": {...}, "areas": [{code, name, households, households_covered,
    households_uncovered, share_households, residents..., gap (GeoJSON string or None)}]}``.
    """
    jid, rank = _resolve(conn, q)
    srid = _srid(conn, jid)
    pop = population(conn, jid)
    fac = _facilities(conn, jid, q, srid)
    reach: RoadReach | None = None
    if q.mode == "straight":
        covered = covered_straight(pop, fac)
    else:
        from gis.routing import get_graph

        reach = covered_road(pop, fac, get_graph(conn, jid), q.travel)
        covered = reach.covered
    rows, grid_to_row = _area_rows(conn, jid, rank, srid)
    sums = _per_area(pop, covered, rows, grid_to_row)
    gaps: list[str | None] = [None] * len(rows)
    if q.gaps and rows:
        areas_local = shapely.from_wkb([bytes(r["wkb"]) for r in rows])
        region = _covered_region(fac, reach, srid) if len(fac.x) else shapely.Polygon()
        x0, y0, x1, y1 = shapely.total_bounds(areas_local)
        outside = shapely.difference(shapely.box(x0 - 1, y0 - 1, x1 + 1, y1 + 1), region)
        gaps = _to_geojson(split_by_areas(subdivide(outside), areas_local), srid)
    out_rows = []
    for r, (hh, hh_cov, res, res_cov), gap in zip(rows, sums.tolist(), gaps, strict=True):
        out_rows.append({
            "code": r["code"], "name": r["name"],
            "households": hh, "households_covered": hh_cov,
            "households_uncovered": hh - hh_cov,
            "share_households": round(hh_cov / hh, 4) if hh else None,
            "residents": res, "residents_covered": res_cov,
            "residents_uncovered": res - res_cov,
            "share_residents": round(res_cov / res, 4) if res else None,
            "gap": gap,
        })
    tot = sums.sum(axis=0).tolist() if len(rows) else [0, 0, 0, 0]
    level_name = next(lv["name"] for lv in levels(conn, jid) if lv["rank"] == rank)
    summary = {
        "jurisdiction_id": jid, "facility_type": q.facility_type, "mode": q.mode,
        "travel": q.travel if q.mode == "road" else None, "level": level_name,
        "radius_m": q.radius_m, "minutes": q.minutes, "facilities": int(len(fac.x)),
        "households": tot[0], "households_covered": tot[1],
        "households_uncovered": tot[0] - tot[1],
        "share_households": round(tot[1] / tot[0], 4) if tot[0] else None,
        "residents": tot[2], "residents_covered": tot[3],
        "residents_uncovered": tot[2] - tot[3],
        "share_residents": round(tot[3] / tot[2], 4) if tot[2] else None,
    }
    return {"summary": summary, "areas": out_rows}


def uncovered_demand(conn: Connection, q: CoverageQuery) -> dict[str, Any]:
    """Uncovered buildings (lon, lat, households, residents, grid) for siting."""
    jid, _ = _resolve(conn, q)
    srid = _srid(conn, jid)
    pop = population(conn, jid)
    fac = _facilities(conn, jid, q, srid)
    if q.mode == "straight":
        covered = covered_straight(pop, fac)
    else:
        from gis.routing import get_graph

        reach = covered_road(pop, fac, get_graph(conn, jid), q.travel)
        covered = reach.covered
    sel = (~covered) & (pop.grid_id >= 0) & (pop.households > 0)
    return {"jurisdiction_id": jid, "srid": srid, "population": pop, "facilities": fac,
            "uncovered": np.nonzero(sel)[0], "covered": covered}


# --------------------------------------------------------------------------- road coverage


def road_coverage(conn: Connection, *, facility_type: str = "camera",
                  radius_m: float | None = None, highways: tuple[str, ...] = MAIN_ROADS,
                  level: str | int | None = None, gaps: bool = True,
                  jurisdiction_id: int | None = None) -> dict[str, Any]:
    """Share of road length (of the ``highways`` classes) within range of a facility type (the
    video "sky net" covering main roads), per area of the level, with the uncovered stretches."""
    q = CoverageQuery(facility_type=facility_type, radius_m=radius_m, level=level,
                      jurisdiction_id=jurisdiction_id)
    jid, rank = _resolve(conn, q)
    if not highways:
        raise InvalidInput("highway needs at least one road class", field="highway")
    srid = _srid(conn, jid)
    fac = _facilities(conn, jid, q, srid)
    rows, _ = _area_rows(conn, jid, rank, srid)
    blob = conn.execute(text(
        "SELECT ST_AsBinary(ST_Collect(ST_Transform(geom, :srid) ORDER BY id)) FROM road_edges"
        " WHERE jurisdiction_id = :j AND highway = ANY(:hw)"),
        {"j": jid, "srid": srid, "hw": list(highways)}).scalar()
    m = len(rows)
    total: np.ndarray = np.zeros(m)
    covered_len: np.ndarray = np.zeros(m)
    uncovered_geo: list[str | None] = [None] * m
    if blob is not None and m:
        roads = shapely.get_parts(shapely.from_wkb(bytes(blob)))
        areas_local = shapely.from_wkb([bytes(r["wkb"]) for r in rows])
        tree = shapely.STRtree(roads)
        ai, ri = tree.query(areas_local, predicate="intersects")
        pieces = shapely.intersection(roads[ri], areas_local[ai])
        lengths = shapely.length(pieces)
        total = np.bincount(ai, weights=lengths, minlength=m)
        region = (shapely.union_all(shapely.buffer(shapely.points(fac.x, fac.y), fac.reach,
                                                   quad_segs=8))
                  if len(fac.x) else shapely.Polygon())
        cells = np.array(subdivide(region), dtype=object)
        remaining = pieces.copy()
        if len(cells):
            ctree = shapely.STRtree(cells)
            pj, cj = ctree.query(pieces, predicate="intersects")
            # Cells are disjoint: the covered length is the sum over cells.
            cov = shapely.length(shapely.intersection(pieces[pj], cells[cj]))
            covered_len = np.bincount(ai[pj], weights=cov, minlength=m)
            if gaps:
                # Subtract the cells from each piece, one round per cell it touches.
                order = np.argsort(pj, kind="stable")
                pj, cj = pj[order], cj[order]
                rank_in = np.arange(len(pj)) - np.searchsorted(pj, pj)
                for r in range(int(rank_in.max()) + 1 if len(rank_in) else 0):
                    sel = rank_in == r
                    remaining[pj[sel]] = shapely.difference(remaining[pj[sel]], cells[cj[sel]])
        if gaps:
            keep = ~shapely.is_empty(remaining) & (shapely.length(remaining) > 0.5)
            merged = np.array([shapely.MultiLineString()] * m, dtype=object)
            if keep.any():
                parts, owner = shapely.get_parts(remaining[keep], return_index=True)
                lines = shapely.get_type_id(parts) == 1
                owner = ai[keep][owner][lines]
                uniq, dense = np.unique(owner, return_inverse=True)
                order = np.argsort(dense, kind="stable")
                merged[uniq] = shapely.multilinestrings(parts[lines][order],
                                                        indices=dense[order])
            uncovered_geo = _to_geojson(merged, srid)
    out: list[dict[str, Any]] = []
    for row, t, c, g in zip(rows, total.tolist(), covered_len.tolist(), uncovered_geo,
                            strict=True):
        out.append({"code": row["code"], "name": row["name"], "road_m": round(t, 1),
                    "covered_m": round(c, 1), "uncovered_m": round(t - c, 1),
                    "share": round(c / t, 4) if t > 0 else None, "gap": g})
    tot, cov_tot = float(total.sum()), float(covered_len.sum())
    level_name = next(lv["name"] for lv in levels(conn, jid) if lv["rank"] == rank)
    summary = {"jurisdiction_id": jid, "facility_type": facility_type, "radius_m": radius_m,
               "highways": list(highways), "level": level_name, "facilities": int(len(fac.x)),
               "road_m": round(tot, 1), "covered_m": round(cov_tot, 1),
               "share": round(cov_tot / tot, 4) if tot > 0 else None}
    return {"summary": summary, "areas": out}


__all__ = ["CoverageQuery", "MAIN_ROADS", "coverage", "population", "road_coverage",
           "subdivide", "uncovered_demand"]

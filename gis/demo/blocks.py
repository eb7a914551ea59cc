"""Blocks: the study area cut along streets into faces that tile it exactly.

1. The study area is the convex hull of everything loaded, buffered a little.
2. Street centre lines (and the coastline) are clipped to it and noded together with its
   boundary by a snap-rounding union on a 1 cm grid, so every crossing is a shared vertex.
3. Dead ends that stop short of another street or the boundary (clipped data, small gaps) are
   extended straight ahead by up to ``max_dangle_m`` when that reaches other linework.
4. ``polygonize`` turns the noded lines into faces: the road blocks. Faces share their edges
   vertex for vertex, so any union of faces meets its neighbours without gaps or overlaps.
   Blocks larger than ``large_block_m2`` (parks, squares, rail yards) are cut further along
   their footpaths, and those pieces become blocks of their own.
5. Blocks holding more households than a grid should (``dense_households``) are split between
   their residential buildings: a Voronoi diagram of points sampled along the footprints,
   dissolved per building, gives lines that run between buildings (grids below the street
   level may follow compound boundaries, DOMAIN.md). The split lines are noded in with the
   streets, so the result is still one clean tiling.
6. Faces with nobody in them that are tiny or thin (traffic islands, slivers between
   carriageways) are merged into the neighbour they share the longest edge with.

The result is a list of *units* (groups of faces) with their road block, households and
residents: the atoms that districts, streets, communities and grids are built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.geometry.base import BaseGeometry

GRID_SIZE_M = 0.01


@dataclass
class Units:
    """Faces (metric CRS) grouped into units; every list is indexed by unit except ``faces``."""

    faces: list[Polygon]
    members: list[list[int]]
    block: list[int]
    households: list[int]
    residents: list[int]
    adjacency: dict[int, set[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.members)

    def geometry(self, unit: int) -> BaseGeometry:
        return union_faces([self.faces[i] for i in self.members[unit]])


def union_faces(faces: Sequence[BaseGeometry]) -> BaseGeometry:
    """Union of faces that share edges exactly (a coverage); falls back to a plain union."""
    if len(faces) == 1:
        return faces[0]
    merged = shapely.coverage_union_all(list(faces))
    if not merged.is_valid:
        merged = shapely.union_all(list(faces))
    return merged


def study_area(geoms: Sequence[BaseGeometry], buffer_m: float = 25.0) -> Polygon:
    """Convex hull of all the geometries, buffered; simplified to a few vertices."""
    hull = shapely.GeometryCollection(list(geoms)).convex_hull.buffer(buffer_m, quad_segs=2)
    return shapely.set_precision(hull, GRID_SIZE_M)


def _endpoint_degrees(parts: np.ndarray) -> dict[tuple[float, float], int]:
    degree: dict[tuple[float, float], int] = {}
    for line in parts:
        coords = line.coords
        for c in (coords[0], coords[-1]):
            key = (round(c[0], 3), round(c[1], 3))
            degree[key] = degree.get(key, 0) + 1
    return degree


def extend_dangles(noded: BaseGeometry, max_length: float) -> list[LineString]:
    """Segments that extend each dead end straight ahead to the first linework it meets
    within ``max_length`` (none when nothing is met)."""
    parts = shapely.get_parts(noded)
    if len(parts) == 0:
        return []
    tree = shapely.STRtree(parts)
    degree = _endpoint_degrees(parts)
    extensions: list[LineString] = []
    for line in parts:
        coords = list(line.coords)
        if len(coords) < 2:
            continue
        for end, before in ((coords[-1], coords[-2]), (coords[0], coords[1])):
            if degree.get((round(end[0], 3), round(end[1], 3))) != 1:
                continue
            dx, dy = end[0] - before[0], end[1] - before[1]
            norm = (dx * dx + dy * dy) ** 0.5
            if norm == 0:
                continue
            ray = LineString([end, (end[0] + dx / norm * max_length,
                                    end[1] + dy / norm * max_length)])
            start = Point(end)
            best: float | None = None
            for k in tree.query(ray, predicate="intersects"):
                hit = shapely.intersection(ray, parts[k])
                for p in shapely.get_parts(hit):
                    d = start.distance(p)
                    if d > 0.05 and (best is None or d < best):
                        best = d
            if best is not None:
                extensions.append(LineString([end, ray.interpolate(best + GRID_SIZE_M)]))
    return extensions


def node_lines(lines: Sequence[BaseGeometry]) -> BaseGeometry:
    """Snap-rounding union on the 1 cm grid: all crossings become shared vertices."""
    return shapely.union_all([g for g in lines if g is not None and not g.is_empty],
                             grid_size=GRID_SIZE_M)


def polygonize(noded: BaseGeometry) -> list[Polygon]:
    faces = list(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    return [f for f in faces if f.area > 0]


def point_faces(faces: Sequence[Polygon], points: Sequence[Point]) -> np.ndarray:
    """Index of the face containing each point (-1 if none; lowest index on shared edges)."""
    result = np.full(len(points), -1, dtype=np.int64)
    if not len(points) or not len(faces):
        return result
    tree = shapely.STRtree(list(faces))
    pts, hit = tree.query(list(points), predicate="intersects")
    for p, f in sorted(zip(pts.tolist(), hit.tolist(), strict=True), reverse=True):
        result[p] = f
    return result


def building_split_lines(face: Polygon, footprints: Sequence[BaseGeometry],
                         spacing_m: float = 4.0) -> list[BaseGeometry]:
    """Lines inside ``face`` that separate its buildings (footprint Voronoi, per building)."""
    samples: list[tuple[float, float]] = []
    owner: list[int] = []
    for b, footprint in enumerate(footprints):
        inside = shapely.intersection(footprint, face)
        if inside.is_empty:
            continue
        ring = shapely.segmentize(shapely.boundary(inside), spacing_m)
        for x, y in shapely.get_coordinates(ring):
            samples.append((float(x), float(y)))
            owner.append(b)
    if len(set(owner)) < 2:
        return []
    unique: dict[tuple[float, float], int] = {}
    for xy, b in zip(samples, owner, strict=True):
        unique.setdefault((round(xy[0], 2), round(xy[1], 2)), b)
    points = list(unique.keys())
    labels = np.array(list(unique.values()))
    cells = shapely.get_parts(shapely.voronoi_polygons(
        MultiPoint(points), extend_to=face, ordered=True))
    if len(cells) != len(points):  # ordering not available: match cells to their points
        tree = shapely.STRtree(cells)
        pi, ci = tree.query([Point(p) for p in points], predicate="intersects")
        order = np.full(len(points), -1)
        order[pi] = ci
        cells = cells[order]
    lines: list[BaseGeometry] = []
    for b in sorted(set(labels.tolist())):
        region = shapely.union_all(cells[labels == b])
        lines.append(shapely.intersection(shapely.boundary(region), face))
    return lines


@dataclass
class FaceStats:
    households: np.ndarray
    residents: np.ndarray


def face_stats(faces: Sequence[Polygon], points: Sequence[Point], households: np.ndarray,
               residents: np.ndarray) -> tuple[FaceStats, np.ndarray]:
    where = point_faces(faces, points)
    hh = np.zeros(len(faces), dtype=np.int64)
    res = np.zeros(len(faces), dtype=np.int64)
    ok = where >= 0
    np.add.at(hh, where[ok], households[ok])
    np.add.at(res, where[ok], residents[ok])
    return FaceStats(hh, res), where


def _shared_lengths(faces: Sequence[Polygon]) -> dict[tuple[int, int], float]:
    tree = shapely.STRtree(list(faces))
    left, right = tree.query(list(faces), predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    bounds = shapely.boundary(np.array(list(faces), dtype=object))
    lengths = shapely.length(shapely.intersection(bounds[left], bounds[right]))
    return {(int(a), int(b)): float(x)
            for a, b, x in zip(left, right, lengths, strict=True) if x > GRID_SIZE_M}


def build_units(
    area: Polygon,
    cut_lines: Sequence[BaseGeometry],
    footprints: Sequence[BaseGeometry],
    points: Sequence[Point],
    households: np.ndarray,
    residents: np.ndarray,
    *,
    dense_households: int,
    path_lines: Sequence[BaseGeometry] = (),
    large_block_m2: float = 20_000.0,
    max_dangle_m: float = 60.0,
    sliver_m2: float = 250.0,
    sliver_width_m: float = 8.0,
) -> Units:
    """Cut ``area`` (metric CRS) along ``cut_lines`` into units; see the module docstring.

    ``footprints``/``points`` are the buildings (a point inside each footprint) with their
    ``households`` and ``residents``. ``path_lines`` (footpaths) cut only blocks larger than
    ``large_block_m2``; the pieces count as blocks of their own.
    """
    noded = _noded_with_extensions(
        [*[shapely.intersection(g, area) for g in cut_lines], area.exterior], max_dangle_m)
    blocks = polygonize(noded)

    # Large blocks (parks, squares, yards) are cut along their paths into blocks of their own.
    large = [f for f in blocks if f.area > large_block_m2]
    if large and path_lines:
        tree = shapely.STRtree(list(path_lines))
        inside: list[BaseGeometry] = []
        for face in large:
            for k in tree.query(face, predicate="intersects").tolist():
                inside.append(shapely.intersection(path_lines[k], face))
        if inside:
            noded = _noded_with_extensions([noded, *inside], max_dangle_m, area)
            blocks = polygonize(noded)

    # Blocks holding more households than one grid should are split between their buildings.
    stats, where = face_stats(blocks, points, households, residents)
    split: list[BaseGeometry] = []
    for f in np.flatnonzero(stats.households > dense_households).tolist():
        mine = [footprints[int(i)] for i in np.flatnonzero((where == f) & (households > 0))]
        split.extend(building_split_lines(blocks[f], mine))
    if split:
        faces = polygonize(node_lines([noded, *split]))
        parent = point_faces(blocks, [shapely.point_on_surface(f) for f in faces])
        parent[parent < 0] = 0
    else:
        faces = blocks
        parent = np.arange(len(blocks))
    stats, _ = face_stats(faces, points, households, residents)
    return _merge_slivers(faces, parent, stats, sliver_m2, sliver_width_m)


def _noded_with_extensions(lines: Sequence[BaseGeometry], max_dangle_m: float,
                           area: Polygon | None = None) -> BaseGeometry:
    noded = node_lines(lines)
    extensions = extend_dangles(noded, max_dangle_m)
    if area is not None:
        extensions = [shapely.intersection(e, area) for e in extensions]
    if extensions:
        noded = node_lines([noded, *extensions])
    return noded


def _merge_slivers(faces: list[Polygon], parent: np.ndarray, stats: FaceStats,
                   sliver_m2: float, sliver_width_m: float) -> Units:
    """Merge empty slivers (small, or thinner than ``sliver_width_m`` on average) into the
    neighbour they share the longest edge with, preferring one in the same block."""
    shared = _shared_lengths(faces)
    neighbours: dict[int, dict[int, float]] = {i: {} for i in range(len(faces))}
    for (a, b), length in shared.items():
        neighbours[a][b] = length
        neighbours[b][a] = length
    group = list(range(len(faces)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    geoms = np.array(faces, dtype=object)
    areas = shapely.area(geoms)
    widths = 2 * areas / np.maximum(shapely.length(geoms), 1e-9)
    for f in sorted(range(len(faces)), key=lambda i: (areas[i], i)):
        small = areas[f] < sliver_m2 or widths[f] < sliver_width_m
        if not small or stats.households[f] > 0 or root(f) != f:
            continue
        options = sorted(neighbours[f].items(),
                         key=lambda kv: (parent[kv[0]] != parent[f], -kv[1], kv[0]))
        if options:
            group[f] = root(options[0][0])
    members_by_root: dict[int, list[int]] = {}
    for f in range(len(faces)):
        members_by_root.setdefault(root(f), []).append(f)
    roots = sorted(members_by_root)
    unit_of = {r: u for u, r in enumerate(roots)}
    members = [members_by_root[r] for r in roots]
    adjacency: dict[int, set[int]] = {u: set() for u in range(len(members))}
    for a, b in shared:
        ua, ub = unit_of[root(a)], unit_of[root(b)]
        if ua != ub:
            adjacency[ua].add(ub)
            adjacency[ub].add(ua)
    return Units(
        faces=list(faces),
        members=members,
        block=[int(parent[r]) for r in roots],
        households=[int(stats.households[m].sum()) for m in members],
        residents=[int(stats.residents[m].sum()) for m in members],
        adjacency=adjacency,
    )

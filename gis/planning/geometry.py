"""The geometry of plan edits, as pure functions over ``PArea`` rows (no database).

Edits are computed in WGS84, where the stored coordinates live, so that neighbours an edit does
not touch keep their coordinates bit for bit and shared edges stay shared; areas and lengths are
measured with a local scale (square metres per square degree) or in the jurisdiction's metric
CRS. Every edit keeps the parent covered exactly: whatever one child gives up goes to a
neighbour, whatever it takes comes from one.

>>> from shapely.geometry import box
>>> from gis.planning.store import PArea
>>> a = PArea(1, 9, 3, "A", "A", box(0, 0, 1, 1))
>>> b = PArea(2, 9, 3, "B", "B", box(1, 0, 2, 1))
>>> out = reshape(a, box(0, 0, 1.5, 1), [a, b], box(0, 0, 2, 1), scale=1.0)
>>> sorted((x.code, x.geom.area) for x in out.areas)
[('A', 1.5), ('B', 0.5)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as split_polygon

from gis.errors import InvalidInput
from gis.io.checks import invalid_reason
from gis.planning.store import PArea, geojson

NOISE_M2 = 0.01
"""Pieces smaller than this are numerical noise of an overlay, not area anyone drew."""
MIN_SHARED_M = 0.5
"""Two areas are adjacent when their boundaries share at least this much length."""


def polygonal(geom: BaseGeometry | None) -> BaseGeometry:
    """The polygons in ``geom`` (lines and points of a collection dropped), as one geometry."""
    if geom is None or geom.is_empty:
        return Polygon()
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return Polygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


def drop_noise(geom: BaseGeometry, scale: float, min_m2: float = NOISE_M2) -> BaseGeometry:
    """``geom`` without polygon parts smaller than ``min_m2`` (``scale``: m² per unit²)."""
    geom = polygonal(geom)
    if geom.is_empty:
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.area * scale >= min_m2]
    if not parts:
        return Polygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def problem(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """The GeoJSON that goes with an error, so the map can show where the problem is."""
    return geojson(geom)


def check_polygon(geom: BaseGeometry | None, *, field: str = "geometry") -> BaseGeometry:
    """A valid, non-empty polygon or multipolygon; 422 naming the problem and where it is."""
    if geom is None or geom.is_empty:
        raise InvalidInput("the shape is empty", field=field)
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(f"a {geom.geom_type} is not an area: send a Polygon or MultiPolygon",
                           field=field)
    geom = shapely.force_2d(geom)
    found = invalid_reason(geom)
    if found is not None:
        kind, reason, where = found
        at = f" at ({where[0]:.7f}, {where[1]:.7f})" if where else ""
        raise InvalidInput(
            f"the shape is not a valid polygon: {reason}{at}; redraw it so its edges do not"
            " cross", field=field,
            extra={"problem": kind, "geometry": problem(Point(where) if where else geom)})
    return geom


def check_line(geom: BaseGeometry | None, *, field: str = "line") -> BaseGeometry:
    """A non-empty line with finite coordinates and some length; 422 naming the problem.

    >>> from shapely.geometry import LineString
    >>> check_line(LineString([(0, 0), (float("inf"), 1)]))
    Traceback (most recent call last):
    ...
    gis.errors.InvalidInput: the line has a coordinate that is not a finite number: (inf, 1)
    """
    if geom is None or geom.is_empty:
        raise InvalidInput("the line is empty", field=field)
    if geom.geom_type not in ("LineString", "MultiLineString"):
        raise InvalidInput(f"a {geom.geom_type} is not a line: send a LineString", field=field)
    geom = shapely.force_2d(geom)
    # GEOS fails on NaN and infinities (GEOSException) in every predicate the edit runs.
    coords = shapely.get_coordinates(geom)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        x, y = coords[int(np.argmax(bad))]
        raise InvalidInput(f"the line has a coordinate that is not a finite number: ({x:g}, {y:g})",
                           field=field)
    if geom.length == 0:
        raise InvalidInput("the line has no length", field=field)
    return geom


def shared_length(a: BaseGeometry, b: BaseGeometry) -> float:
    """Length of boundary ``a`` and ``b`` share (units of the geometries)."""
    if not a.intersects(b):
        return 0.0
    return float(shapely.intersection(a.boundary, b.boundary).length)


@dataclass
class Edit:
    """The result of an edit: the rows after it, rows it removed, notes for the caller."""

    areas: list[PArea]
    removed: list[PArea] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def snap_to(shape: BaseGeometry, others: Sequence[BaseGeometry], tolerance: float
            ) -> BaseGeometry:
    """``shape`` with its vertices snapped to the vertices of ``others`` within ``tolerance``
    (so a hand-drawn edge lands exactly on the neighbour's edge instead of beside it)."""
    if tolerance <= 0 or not others:
        return shape
    near = [o for o in others if o.distance(shape) <= tolerance]
    if not near:
        return shape
    reference = shapely.union_all([o.boundary for o in near])
    snapped = shapely.snap(shape, reference, tolerance)
    if not snapped.is_valid:
        snapped = polygonal(shapely.make_valid(snapped))
    return snapped if not snapped.is_empty else shape


def reshape(target: PArea | None, shape: BaseGeometry, siblings: Sequence[PArea],
            parent: BaseGeometry | None, *, scale: float, new_area: PArea | None = None) -> Edit:
    """``target`` becomes ``shape`` (clipped to ``parent``); siblings lose what it takes, and
    what it gives up goes to the neighbour sharing the longest edge with each piece (pieces no
    unlocked sibling touches stay with ``target``). ``target`` None carves a new area
    (``new_area`` gives its attributes). Locked siblings are never changed: taking area from
    one is refused with the overlap as the problem geometry.
    """
    g = shape
    notes: dict[str, Any] = {}
    if parent is not None:
        clipped = drop_noise(shapely.intersection(g, parent), scale)
        outside = (g.area - clipped.area) * scale
        if outside > 1.0:
            notes["clipped_outside_parent_m2"] = round(outside, 1)
        g = clipped
    if g.is_empty:
        raise InvalidInput("the new shape lies outside the parent area", field="geometry",
                           extra={"geometry": problem(shape)})
    me = target.key if target is not None else None
    current = {s.key: s for s in siblings if s.key != me}
    removed: list[PArea] = []
    taken = 0.0
    for key, s in list(current.items()):
        if not s.geom.intersects(g):
            continue
        overlap = polygonal(shapely.intersection(s.geom, g))
        if overlap.area * scale <= NOISE_M2:
            continue
        if s.locked:
            raise InvalidInput(
                f"the new shape takes {overlap.area * scale:,.0f} m² from {s.label()}, which is"
                " locked; unlock it or keep the shape off it", field="geometry",
                extra={"problem": "locked", "key": s.key, "geometry": problem(overlap)})
        taken += overlap.area * scale
        rest = drop_noise(shapely.difference(s.geom, g), scale)
        if rest.is_empty:
            removed.append(s)
            del current[key]
        else:
            current[key] = replace(s, geom=rest)
    released = drop_noise(shapely.difference(target.geom, g), scale) if target else Polygon()
    kept: list[BaseGeometry] = []
    given: dict[int | None, float] = {}
    for piece in shapely.get_parts(released):
        best: PArea | None = None
        best_len = 0.0
        for s in current.values():
            if s.locked:
                continue
            length = shared_length(piece, s.geom)
            if length > best_len:
                best, best_len = s, length
        if best is not None and best_len * math.sqrt(scale) >= MIN_SHARED_M:
            current[best.key] = replace(best, geom=polygonal(shapely.union(best.geom, piece)))
            given[best.key] = given.get(best.key, 0.0) + piece.area * scale
        else:
            kept.append(piece)
    if kept:
        g = polygonal(shapely.union_all([g, *kept]))
        notes["kept_m2"] = round(sum(p.area for p in kept) * scale, 1)
    notes["taken_m2"] = round(taken, 1)
    notes["given_m2"] = round(sum(given.values()), 1)
    if target is not None:
        mine = replace(target, geom=g)
    else:
        assert new_area is not None
        mine = replace(new_area, geom=g)
    changed = [mine] + [current[s.key] for s in siblings
                        if s.key in current and current[s.key] is not s]
    return Edit(changed, removed, notes)


def split(target: PArea, line: BaseGeometry, *, scale: float) -> list[BaseGeometry]:
    """The pieces ``line`` cuts ``target`` into, largest first; 422 when it does not cut it
    (with the problem geometry: the line, or the ends of it that stop inside the area)."""
    line = check_line(line)
    if not line.intersects(target.geom):
        raise InvalidInput(
            f"the line does not cross {target.label()}: it is"
            f" {target.geom.distance(line) * math.sqrt(scale):,.0f} m away", field="line",
            extra={"problem": "no_crossing", "geometry": problem(line)})
    pieces: list[BaseGeometry] = []
    for part in shapely.get_parts(target.geom):
        pieces.extend(shapely.get_parts(split_polygon(part, line)))
    pieces = [p for p in pieces if p.area * scale >= NOISE_M2]
    if len(pieces) <= len(shapely.get_parts(target.geom)):
        ends = [Point(c) for c in _line_ends(line) if target.geom.contains(Point(c))]
        where = shapely.MultiPoint(ends) if ends else line
        raise InvalidInput(
            f"the line does not cut {target.label()} in two: it must run across it from one"
            " edge to another" + (" (it stops inside the area)" if ends else ""),
            field="line", extra={"problem": "no_crossing", "geometry": problem(where)})
    pieces.sort(key=lambda p: (-p.area, p.centroid.x, p.centroid.y))
    return pieces


def _line_ends(line: BaseGeometry) -> list[tuple[float, float]]:
    ends: list[tuple[float, float]] = []
    for part in shapely.get_parts(line):
        coords = list(part.coords)
        ends.extend([coords[0], coords[-1]])
    return ends


def merge(areas: Sequence[PArea], *, scale: float) -> BaseGeometry:
    """The union of ``areas``, which must be siblings, unlocked and connected through shared
    edges; 422 otherwise (non-adjacent: with the gap between them as the problem geometry)."""
    if len(areas) < 2:
        raise InvalidInput("merging needs at least two areas", field="keys")
    parents = {a.parent_key for a in areas}
    levels = {a.level for a in areas}
    if len(parents) > 1 or len(levels) > 1:
        raise InvalidInput("only areas of one level under one parent can be merged: "
                           + ", ".join(a.label() for a in areas), field="keys",
                           extra={"problem": "different_parents"})
    for a in areas:
        if a.locked:
            raise InvalidInput(f"{a.label()} is locked; unlock it before merging", field="keys",
                               extra={"problem": "locked", "key": a.key,
                                      "geometry": problem(a.geom)})
    n = len(areas)
    root = list(range(n))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    unit = math.sqrt(scale)
    for i in range(n):
        for j in range(i + 1, n):
            if shared_length(areas[i].geom, areas[j].geom) * unit >= MIN_SHARED_M:
                root[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    if len(groups) > 1:
        first, second = list(groups.values())[:2]
        ga = shapely.union_all([areas[i].geom for i in first])
        gb = shapely.union_all([areas[i].geom for i in second])
        gap = shapely.shortest_line(ga, gb)
        distance = ga.distance(gb) * unit
        names = " and ".join(", ".join(areas[i].label() for i in g) for g in (first, second))
        how = (f"{distance:,.0f} m apart" if distance > 0.01
               else "touching only at a corner")
        raise InvalidInput(
            f"{names} are not adjacent ({how}): only areas sharing an edge can be merged",
            field="keys",
            extra={"problem": "not_adjacent", "keys": [areas[i].key for i in first + second],
                   "geometry": problem(shapely.GeometryCollection([ga, gb, gap]))})
    merged = polygonal(shapely.union_all([a.geom for a in areas]))
    return merged


def keeper(areas: Sequence[PArea]) -> PArea:
    """Which of several areas keeps its identity (key and code): the smallest code, else the
    smallest key."""
    return min(areas, key=lambda a: (a.code is None, a.code or "", a.key or 0))


def building_cells(grid_m: BaseGeometry, footprints_m: Sequence[BaseGeometry],
                   spacing_m: float = 3.0) -> list[BaseGeometry]:
    """One cell per building: the part of ``grid_m`` nearer to that building's footprint than
    to any other's (a Voronoi diagram of points sampled along the footprints, dissolved per
    building), so moving a building moves its whole footprint and the ground around it."""
    samples: list[tuple[float, float]] = []
    owner: list[int] = []
    for b, footprint in enumerate(footprints_m):
        ring = shapely.segmentize(shapely.boundary(polygonal(footprint) if footprint.geom_type
                                                   != "Point" else footprint.buffer(1.0)),
                                  spacing_m)
        for x, y in shapely.get_coordinates(ring):
            samples.append((round(float(x), 2), round(float(y), 2)))
            owner.append(b)
    cells: list[BaseGeometry] = [Polygon() for _ in footprints_m]
    if not samples:
        return cells
    unique: dict[tuple[float, float], int] = {}
    for xy, b in zip(samples, owner, strict=True):
        unique.setdefault(xy, b)
    if len(set(unique.values())) == 1:
        only = next(iter(unique.values()))
        cells[only] = grid_m
        return cells
    points = shapely.points(np.array(list(unique.keys())))
    labels = np.array(list(unique.values()))
    voronoi = shapely.get_parts(shapely.voronoi_polygons(
        shapely.MultiPoint(points), extend_to=grid_m.envelope.buffer(10.0)))
    tree = shapely.STRtree(voronoi)
    pi, ci = tree.query(points, predicate="intersects")
    cell_of = np.full(len(points), -1)
    for p, c in zip(pi.tolist(), ci.tolist(), strict=True):
        if cell_of[p] < 0 and voronoi[c].contains(points[p]):
            cell_of[p] = c
    for b in sorted(set(labels.tolist())):
        mine = [voronoi[c] for c in cell_of[labels == b] if c >= 0]
        if mine:
            cells[b] = polygonal(shapely.intersection(shapely.union_all(mine), grid_m))
    return cells

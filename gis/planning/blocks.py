"""Road blocks of a plan area: the atoms the automatic partition and "move block" work with.

The area is cut along the road centre lines inside it exactly as the demo city was
(``gis.demo.blocks``: snap-rounded noding, dead ends extended, ``polygonize``); blocks holding
more households than a grid may are split between their buildings, and empty slivers are
merged away. The result is a set of *units* in the jurisdiction's metric CRS with households,
residents, land area, a representative point, and which road block each came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.demo import blocks as demo_blocks
from gis.partition import adjacency_from_polygons
from gis.planning.geometry import polygonal
from gis.planning.store import PlanInfo


@dataclass
class Buildings:
    """Buildings of an area (metric CRS): ids, footprints, points, counts."""

    ids: list[int]
    footprints: list[BaseGeometry]
    points: list[BaseGeometry]
    households: np.ndarray
    residents: np.ndarray


@dataclass
class UnitSet:
    """Units of one area, metric CRS; every list is indexed by unit."""

    geoms: list[BaseGeometry]
    block: list[int]
    households: list[int]
    residents: list[int]
    area_m2: list[float]
    positions: list[tuple[float, float]]
    adjacency: dict[int, set[int]] = field(default_factory=dict)
    buildings: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.geoms)


def load_buildings(conn: Connection, plan: PlanInfo, area_wgs: BaseGeometry) -> Buildings:
    rows = conn.execute(text(
        "SELECT id, ST_AsBinary(geom) AS g, ST_AsBinary(pt) AS p, households, residents"
        " FROM buildings WHERE jurisdiction_id = :j AND pt && ST_GeomFromWKB(:a, 4326)"
        " AND ST_Covers(ST_GeomFromWKB(:a, 4326), pt) ORDER BY id"),
        {"j": plan.jurisdiction_id, "a": shapely.to_wkb(area_wgs)}).all()
    metric = plan.metric()
    if not rows:
        return Buildings([], [], [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    footprints = metric.to_m(shapely.from_wkb([bytes(r.g) for r in rows]))
    points = metric.to_m(shapely.from_wkb([bytes(r.p) for r in rows]))
    return Buildings([int(r.id) for r in rows], list(footprints), list(points),
                     np.array([int(r.households) for r in rows], dtype=np.int64),
                     np.array([int(r.residents) for r in rows], dtype=np.int64))


def load_roads(conn: Connection, plan: PlanInfo, area_wgs: BaseGeometry) -> list[BaseGeometry]:
    """Road centre lines crossing the area, clipped to it, metric CRS."""
    rows = conn.execute(text(
        "SELECT ST_AsBinary(geom) FROM road_edges WHERE jurisdiction_id = :j"
        " AND geom && ST_GeomFromWKB(:a, 4326) ORDER BY id"),
        {"j": plan.jurisdiction_id, "a": shapely.to_wkb(area_wgs)}).scalars().all()
    if not rows:
        return []
    lines = plan.metric().to_m(shapely.from_wkb([bytes(r) for r in rows]))
    area_m = plan.metric().to_m(area_wgs)
    clipped = shapely.intersection(lines, area_m)
    return [g for g in clipped if not g.is_empty]


def road_faces(conn: Connection, plan: PlanInfo, area_wgs: BaseGeometry) -> list[BaseGeometry]:
    """The area cut along its roads (WGS84 polygons covering it)."""
    metric = plan.metric()
    area_m = metric.to_m(area_wgs)
    roads = load_roads(conn, plan, area_wgs)
    faces: list[BaseGeometry] = []
    for part in shapely.get_parts(area_m):
        noded = demo_blocks.node_lines([*roads, *_rings(part)])
        extensions = demo_blocks.extend_dangles(noded, 60.0)
        if extensions:
            noded = demo_blocks.node_lines([noded, *[shapely.intersection(e, part)
                                                     for e in extensions]])
        for face in demo_blocks.polygonize(noded):
            if part.covers(shapely.point_on_surface(face)):
                faces.append(face)
    return [polygonal(shapely.intersection(g, area_wgs)) for g in metric.to_wgs(faces)]


def _rings(polygon: BaseGeometry) -> list[BaseGeometry]:
    return [shapely.LineString(polygon.exterior.coords),
            *[shapely.LineString(r.coords) for r in polygon.interiors]]


def units_for(conn: Connection, plan: PlanInfo, area_wgs: BaseGeometry, *,
              dense_households: int) -> UnitSet:
    """The area's units (see the module docstring), ready for ``gis.partition.partition``."""
    metric = plan.metric()
    area_m = metric.to_m(area_wgs)
    roads = load_roads(conn, plan, area_wgs)
    b = load_buildings(conn, plan, area_wgs)
    out = UnitSet([], [], [], [], [], [])
    block_offset = 0
    for part in shapely.get_parts(area_m):
        units = demo_blocks.build_units(
            Polygon(part.exterior), [*roads, *_rings(part)[1:]], b.footprints, b.points,
            b.households, b.residents, dense_households=max(1, dense_households),
            large_block_m2=float("inf"))
        inside = [part.covers(shapely.point_on_surface(f)) for f in units.faces]
        trimmed = False
        start = len(out.geoms)
        for u in range(len(units)):
            faces = [f for f in units.members[u] if inside[f]]
            trimmed = trimmed or len(faces) != len(units.members[u])
            if not faces:
                continue
            geom = demo_blocks.union_faces([units.faces[f] for f in faces])
            out.geoms.append(geom)
            out.block.append(block_offset + units.block[u])
            out.households.append(units.households[u])
            out.residents.append(units.residents[u])
        block_offset += max(units.block, default=0) + 1
        if trimmed or start:
            continue
        out.adjacency = {u: set(v) for u, v in units.adjacency.items()}
    n = len(out.geoms)
    if len(out.adjacency) != n or any(v >= n for vs in out.adjacency.values() for v in vs):
        out.adjacency = adjacency_from_polygons(out.geoms, min_shared_length=0.5)
    geoms = np.array(out.geoms, dtype=object)
    out.area_m2 = [float(a) for a in shapely.area(geoms)]
    reps = shapely.point_on_surface(geoms)
    out.positions = [(float(p.x), float(p.y)) for p in reps]
    # Which buildings each unit holds (by point), so infeasible targets can name them.
    out.buildings = [[] for _ in range(n)]
    if b.ids and n:
        tree = shapely.STRtree(geoms)
        pi, ui = tree.query(np.array(b.points, dtype=object), predicate="intersects")
        seen: set[int] = set()
        for p, u in zip(pi.tolist(), ui.tolist(), strict=True):
            if p not in seen:
                seen.add(p)
                out.buildings[u].append(b.ids[p])
    return out

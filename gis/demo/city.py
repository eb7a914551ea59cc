"""The demo city as plain Python objects, before anything touches the database.

``build_city`` reads the extract and computes buildings with household estimates, the road
network, the block units, the area hierarchy and the classified points of interest. It is
deterministic: the same extract and settings always give the same city.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from gis.crs import WGS84
from gis.demo import blocks as blocks_mod
from gis.demo.assets import Feature, component_kind, facility_type, features
from gis.demo.hierarchy import Names, Region, build_hierarchy, transform_all, walk
from gis.demo.network import Network, build_network
from gis.demo.osm import Extract, clean, read_extract, source_id, tags_of
from gis.demo.population import estimate_households
from gis.settings import CitySettings

SEED = 0
STUDY_AREA_BUFFER_M = 25.0
SHORE_BUFFER_M = 30.0


@dataclass
class BuildingRow:
    source_id: str
    use: str | None
    levels: int
    households: int
    residents: int
    geom: BaseGeometry  # WGS84 footprint
    pt: Point  # WGS84, inside the footprint


@dataclass
class DemoCity:
    epsg: int
    buildings: list[BuildingRow]
    network: Network
    units: blocks_mod.Units
    districts: list[Region]
    facilities: list[Feature]
    components: list[Feature]
    parks: list[tuple[str, BaseGeometry]] = field(default_factory=list)  # WGS84
    shores: list[BaseGeometry] = field(default_factory=list)  # WGS84

    @property
    def regions(self) -> list[Region]:
        return walk(self.districts)


class _Projector:
    def __init__(self, epsg: int):
        self.forward = Transformer.from_crs(WGS84, epsg, always_xy=True)
        self.back = Transformer.from_crs(epsg, WGS84, always_xy=True)

    def _fn(self, transformer: Transformer):
        def apply(xy: np.ndarray) -> np.ndarray:
            x, y = transformer.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])
        return apply

    def to_metric(self, geoms: list[BaseGeometry]) -> list[BaseGeometry]:
        return transform_all(geoms, self._fn(self.forward))

    def to_wgs84(self, geoms: list[BaseGeometry]) -> list[BaseGeometry]:
        return transform_all(geoms, self._fn(self.back))


def _landuse_at(points_m: list[Point], landuse_m: list[BaseGeometry],
                values: list[str]) -> list[str | None]:
    """The land use of the smallest land-use polygon containing each point."""
    result: list[str | None] = [None] * len(points_m)
    if not landuse_m:
        return result
    tree = shapely.STRtree(landuse_m)
    pi, li = tree.query(points_m, predicate="within")
    areas = shapely.area(np.array(landuse_m, dtype=object))
    best: dict[int, float] = {}
    for p, poly in zip(pi.tolist(), li.tolist(), strict=True):
        if p not in best or areas[poly] < best[p]:
            best[p] = float(areas[poly])
            result[p] = values[poly]
    return result


def _buildings(extract: Extract, proj: _Projector) -> tuple[list[BuildingRow], list[BaseGeometry]]:
    frame = extract.buildings
    if frame.empty:
        return [], []
    footprints = [shapely.make_valid(g) for g in frame.geometry]
    keep = [i for i, g in enumerate(footprints) if g.area > 0]
    frame = frame.iloc[keep]
    footprints = [footprints[i] for i in keep]
    metric = proj.to_metric(footprints)
    points = [shapely.point_on_surface(g) for g in footprints]
    points_m = proj.to_metric(points)
    lu = extract.landuse
    lu_polys = [shapely.make_valid(g) for g in lu.geometry] if not lu.empty else []
    lu_values = [str(v) for v in lu["landuse"]] if not lu.empty else []
    landuse = _landuse_at(points_m, proj.to_metric(lu_polys) if lu_polys else [], lu_values)
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        extra = tags_of(record.get("tags"))
        use = clean(record.get("building")) or "yes"
        estimate = estimate_households(
            float(metric[i].area), use,
            levels=clean(record.get("building:levels")) or extra.get("building:levels"),
            min_level=clean(record.get("building:min_level")) or extra.get("building:min_level"),
            landuse=landuse[i],
        )
        rows.append(BuildingRow(
            source_id=source_id(record.get("osm_type"), record.get("id")), use=use,
            levels=estimate.levels, households=estimate.households,
            residents=estimate.residents, geom=footprints[i], pt=points[i],
        ))
    return rows, metric


def _names(extract: Extract, proj: _Projector) -> Names:
    names = Names()
    for record in extract.places.to_dict("records"):
        place = clean(record.get("place"))
        name = tags_of(record.get("tags")).get("name") or clean(record.get("name"))
        geom = record.get("geometry")
        if not name or geom is None:
            continue
        if place in ("suburb", "neighbourhood", "quarter") and geom.geom_type == "Point":
            names.places.append((str(name), proj.to_metric([geom])[0]))
        elif place == "city_block" and geom.geom_type in ("Polygon", "MultiPolygon"):
            names.blocks.append((str(name), proj.to_metric([shapely.make_valid(geom)])[0]))
    names.places.sort(key=lambda p: p[0])
    return names


def _parks(extract: Extract, area: BaseGeometry) -> list[tuple[str, BaseGeometry]]:
    parks: list[tuple[str, BaseGeometry]] = []
    frame = extract.pois
    if frame.empty or "leisure" not in frame:
        return parks
    for record in frame[frame["leisure"] == "park"].to_dict("records"):
        geom = record.get("geometry")
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        clipped = shapely.intersection(shapely.make_valid(geom), area)
        clipped = _polygonal(clipped)
        if clipped is None:
            continue
        name = clean(record.get("name")) or tags_of(record.get("tags")).get("name") or "Park"
        parks.append((str(name), clipped))
    parks.sort(key=lambda p: (p[0], p[1].centroid.x))
    return parks


def _polygonal(geom: BaseGeometry) -> BaseGeometry | None:
    parts = [g for g in shapely.get_parts(geom) if g.geom_type == "Polygon" and g.area > 0]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def build_city(city: CitySettings, *, path: Path | None = None) -> DemoCity:
    """Everything the demo writes, computed in memory from the bundled extract."""
    extract = read_extract(path)
    proj = _Projector(city.local_epsg)
    buildings, footprints_m = _buildings(extract, proj)
    network = build_network(extract.road_nodes, extract.road_edges)

    poi_frames = [extract.pois, extract.natural]
    facilities = features(poi_frames, facility_type)
    node_frame = extract.road_nodes
    components = features([*poi_frames, node_frame], component_kind)

    # Study area: everything loaded, so every building, facility and component is inside.
    streets_m = proj.to_metric(list(extract.streets.geometry))
    edges_m = proj.to_metric([e.geom for e in network.edges])
    points_m = proj.to_metric([f.point for f in facilities + components])
    area_m = blocks_mod.study_area([*edges_m, *streets_m, *footprints_m, *points_m],
                                   STUDY_AREA_BUFFER_M)
    natural = extract.natural
    coast = natural[natural["natural"] == "coastline"] if not natural.empty else natural
    coast_m = proj.to_metric(list(coast.geometry))
    paths_m = proj.to_metric(list(extract.paths.geometry))
    units = blocks_mod.build_units(
        area_m, [*streets_m, *coast_m], footprints_m,
        [shapely.point_on_surface(g) for g in footprints_m],
        np.array([b.households for b in buildings], dtype=np.int64),
        np.array([b.residents for b in buildings], dtype=np.int64),
        dense_households=city.household_target, path_lines=paths_m,
    )
    faces_wgs84 = proj.to_wgs84(units.faces)
    districts = build_hierarchy(units, faces_wgs84, city=city, names=_names(extract, proj),
                                seed=SEED)
    area_wgs84 = blocks_mod.union_faces(faces_wgs84)

    shores: list[BaseGeometry] = []
    if coast_m:
        zone = shapely.intersection(shapely.union_all(
            [g.buffer(SHORE_BUFFER_M) for g in coast_m]), blocks_mod.union_faces(units.faces))
        for part in sorted(shapely.get_parts(zone), key=lambda g: (-g.area, g.centroid.x)):
            if part.geom_type == "Polygon" and part.area > 100:
                shores.append(proj.to_wgs84([part])[0])
    return DemoCity(
        epsg=city.local_epsg, buildings=buildings, network=network, units=units,
        districts=districts, facilities=facilities, components=components,
        parks=_parks(extract, area_wgs84), shores=shores,
    )


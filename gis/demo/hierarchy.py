"""District → street → community → grid, cut top-down from the units of ``gis.demo.blocks``.

Districts and streets are unions of whole blocks, so their boundaries run along streets (or,
in parks, along footpaths). Communities and grids are unions of units: a block crowded with
more households than one grid holds is split between its buildings into several units, and
cutting between two units of one block carries a penalty, so community and grid boundaries
follow streets wherever the balance allows. Every level is cut with
``gis.partition.partition`` on the adjacency graph of its parent's blocks or units, so each
parent is exactly the union of its children: no gaps, no overlaps.

Balance: districts and streets balance a mix of households and land (``LAND_SHARE``), so that
a district of parks and a district of flats both stay compact; communities and grids balance
households. A community gets ``round(households / CitySettings.household_target)`` grids (at
least 1, at most 99).

Names: districts are numbered ("District 1"); a street takes the name of the Helsinki
neighbourhood whose place point lies inside it (``place=suburb|neighbourhood``), else "Street
1-003"; communities and grids add their number, and a grid mostly covering a named Helsinki
city block (``place=city_block``, the kortteli) carries that name too.

Codes follow the unit-grid standard: district = 6-digit county code, street = district + 3
digits, community = street + 3 digits, grid = community + 2 digits (14 digits). Siblings are
numbered in reading order (``gis.partition.reading_order``): rows north to south, west to
east within a row, where a row gathers the siblings whose representative points lie less
than half the median sibling height south of the row's northernmost one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from gis.areas import AreaRow
from gis.demo.blocks import Units, union_faces
from gis.partition import partition, reading_order, row_tolerance_for
from gis.settings import CitySettings

LEVELS = ("district", "street", "community", "grid")
MAX_GRIDS_PER_COMMUNITY = 99  # the grid number has two digits
# Weight of land area next to households when districts and streets are balanced (a block's
# weight is its share of all households plus LAND_SHARE times its share of all land).
LAND_SHARE = 0.5
# Objective weights for gis.partition (a region 10 % off target costs 0.01): how much compact
# shapes matter (districts and streets are cut from coarse blocks, where a balanced but
# snaking region is worse than a somewhat unbalanced compact one), and the penalty for cutting
# between two units of one block.
BLOCK_COMPACTNESS = 1.0
UNIT_COMPACTNESS = 0.5
COMMUNITY_CUT_COST = 0.2
GRID_CUT_COST = 0.02


@dataclass
class Region:
    level: int
    code: str
    name: str
    parent_code: str | None
    units: list[int]
    households: int
    residents: int
    geom: BaseGeometry  # WGS84
    geom_m: BaseGeometry  # local metric CRS
    children: list[Region] = field(default_factory=list)

    def as_row(self) -> AreaRow:
        return AreaRow(code=self.code, name=self.name, level=self.level, geom=self.geom,
                       parent_code=self.parent_code,
                       grid_type="residential" if self.level == 3 else None,
                       households=self.households, population=self.residents)


@dataclass
class Names:
    """Place names from the extract: suburb points and named city blocks (kortteli)."""

    places: list[tuple[str, Point]] = field(default_factory=list)  # metric CRS
    blocks: list[tuple[str, Polygon]] = field(default_factory=list)  # metric CRS


def grids_for(households: int, target: int, units: int) -> int:
    """How many grids a community gets: households / target, at least 1, at most 99 and at
    most one per unit.

    >>> grids_for(430, 200, 12), grids_for(0, 200, 3), grids_for(50_000, 200, 500)
    (2, 1, 99)
    """
    wanted = max(1, round(households / target)) if target > 0 else 1
    return max(1, min(wanted, MAX_GRIDS_PER_COMMUNITY, units))


class _Builder:
    def __init__(self, units: Units, faces_wgs84: Sequence[BaseGeometry], city: CitySettings,
                 names: Names, seed: int):
        self.units = units
        self.faces_wgs84 = list(faces_wgs84)
        self.city = city
        self.names = names
        self.seed = seed
        self.blocks: dict[int, list[int]] = {}
        for u, b in enumerate(units.block):
            self.blocks.setdefault(b, []).append(u)
        block_of_unit = units.block
        self.block_adj: dict[int, set[int]] = {b: set() for b in self.blocks}
        for u, nbrs in units.adjacency.items():
            for v in nbrs:
                if block_of_unit[u] != block_of_unit[v]:
                    self.block_adj[block_of_unit[u]].add(block_of_unit[v])
        self.unit_geom_m = [units.geometry(u) for u in range(len(units))]
        self.unit_pos = [_xy(shapely.point_on_surface(g)) for g in self.unit_geom_m]
        self.unit_area = [float(g.area) for g in self.unit_geom_m]
        self.used_places: set[str] = set()

    # geometry helpers
    def geom_m(self, units: Sequence[int]) -> BaseGeometry:
        return union_faces([self.units.faces[f] for u in units for f in self.units.members[u]])

    def geom_wgs84(self, units: Sequence[int]) -> BaseGeometry:
        return union_faces([self.faces_wgs84[f] for u in units for f in self.units.members[u]])

    def block_units(self, blocks: Sequence[int]) -> list[int]:
        return sorted(u for b in blocks for u in self.blocks[b])

    def split_blocks(self, blocks: Sequence[int], k: int) -> list[list[int]]:
        blocks = sorted(blocks)
        k = max(1, min(k, len(blocks)))
        households = [sum(self.units.households[u] for u in self.blocks[b]) for b in blocks]
        areas = [sum(self.unit_area[u] for u in self.blocks[b]) for b in blocks]
        total_hh = sum(households) or 1
        total_area = sum(areas) or 1.0
        # Districts and streets balance a mix of households and land, so that a district of
        # parks and a district of flats both stay compact.
        weights = [h / total_hh + LAND_SHARE * a / total_area
                   for h, a in zip(households, areas, strict=True)]
        adjacency = {b: [c for c in self.block_adj[b] if c in set(blocks)] for b in blocks}
        positions = [self._block_pos(b) for b in blocks]
        result = partition(blocks, weights, adjacency, n_regions=k, positions=positions,
                           seed=self.seed, compactness=BLOCK_COMPACTNESS)
        return result.regions

    def _block_pos(self, block: int) -> tuple[float, float]:
        members = self.blocks[block]
        xs = [self.unit_pos[u][0] for u in members]
        ys = [self.unit_pos[u][1] for u in members]
        return (float(np.mean(xs)), float(np.mean(ys)))

    def split_units(self, units: Sequence[int], k: int, cut_cost: float) -> list[list[int]]:
        units = sorted(units)
        members = set(units)
        adjacency = {u: [v for v in self.units.adjacency[u] if v in members] for u in units}
        weights = [self.units.households[u] for u in units]
        positions = [self.unit_pos[u] for u in units]
        block = self.units.block
        costs = {(u, v): cut_cost for u in units for v in adjacency[u]
                 if u < v and block[u] == block[v]}
        return partition(units, weights, adjacency, n_regions=k, positions=positions,
                         seed=self.seed, compactness=UNIT_COMPACTNESS,
                         cut_costs=costs).regions

    def ordered(self, groups: list[list[int]]) -> list[tuple[list[int], BaseGeometry]]:
        """Groups of units with their WGS84 geometry, in reading order."""
        geoms = [self.geom_wgs84(g) for g in groups]
        points = [_xy(shapely.point_on_surface(g)) for g in geoms]
        heights = [g.bounds[3] - g.bounds[1] for g in geoms]
        order = reading_order(points, row_tolerance=row_tolerance_for(heights))
        return [(groups[i], geoms[i]) for i in order]

    def region(self, level: int, code: str, name: str, parent: str | None,
               units: list[int], geom: BaseGeometry) -> Region:
        return Region(
            level=level, code=code, name=name, parent_code=parent, units=sorted(units),
            households=sum(self.units.households[u] for u in units),
            residents=sum(self.units.residents[u] for u in units),
            geom=geom, geom_m=self.geom_m(units),
        )

    def place_name(self, geom_m: BaseGeometry) -> str | None:
        inside = [(n, p) for n, p in self.names.places
                  if n not in self.used_places and geom_m.covers(p)]
        if not inside:
            return None
        centre = shapely.point_on_surface(geom_m)
        name = min(inside, key=lambda np_: (np_[1].distance(centre), np_[0]))[0]
        self.used_places.add(name)
        return name

    def block_name(self, geom_m: BaseGeometry) -> str | None:
        best: tuple[float, str] | None = None
        area = geom_m.area
        for name, poly in self.names.blocks:
            if not poly.intersects(geom_m):
                continue
            share = shapely.intersection(poly, geom_m).area / area if area else 0.0
            if share >= 0.3 and (best is None or share > best[0]):
                best = (share, name)
        return best[1] if best else None

    def build(self) -> list[Region]:
        city = self.city
        districts: list[Region] = []
        all_blocks = sorted(self.blocks)
        groups = self.split_blocks(all_blocks, len(city.county_codes))
        as_units = [self.block_units(g) for g in groups]
        for d, (units, geom) in enumerate(self.ordered(as_units)):
            dcode = city.county_codes[d]
            district = self.region(0, dcode, f"District {d + 1}", None, units, geom)
            districts.append(district)
            blocks = sorted({self.units.block[u] for u in units})
            streets = [self.block_units(g)
                       for g in self.split_blocks(blocks, city.streets_per_district)]
            for s, (s_units, s_geom) in enumerate(self.ordered(streets), start=1):
                scode = f"{dcode}{s:03d}"
                street = self.region(1, scode, "", dcode, s_units, s_geom)
                place = self.place_name(street.geom_m)
                street.name = place or f"Street {d + 1}-{s:03d}"
                district.children.append(street)
                k = max(1, min(city.communities_per_street, len(s_units)))
                comms = self.split_units(s_units, k, COMMUNITY_CUT_COST)
                for c, (c_units, c_geom) in enumerate(self.ordered(comms), start=1):
                    ccode = f"{scode}{c:03d}"
                    community = self.region(2, ccode, f"{street.name} community {c:03d}",
                                            scode, c_units, c_geom)
                    street.children.append(community)
                    hh = community.households
                    k = grids_for(hh, city.household_target, len(c_units))
                    grids = self.split_units(c_units, k, GRID_CUT_COST)
                    for g, (g_units, g_geom) in enumerate(self.ordered(grids), start=1):
                        gcode = f"{ccode}{g:02d}"
                        grid = self.region(3, gcode, "", ccode, g_units, g_geom)
                        kortteli = self.block_name(grid.geom_m)
                        grid.name = f"{community.name} grid {g:02d}" + (
                            f" ({kortteli})" if kortteli else "")
                        community.children.append(grid)
        return districts


def _xy(point: BaseGeometry) -> tuple[float, float]:
    x, y = shapely.get_coordinates(point)[0]
    return float(x), float(y)


def build_hierarchy(units: Units, faces_wgs84: Sequence[BaseGeometry], *, city: CitySettings,
                    names: Names | None = None, seed: int = 0) -> list[Region]:
    """The district regions, each with its streets → communities → grids as ``children``."""
    if not city.county_codes:
        raise ValueError("CitySettings.county_codes is empty: one code per district is needed")
    return _Builder(units, faces_wgs84, city, names or Names(), seed).build()


def walk(regions: Sequence[Region]) -> list[Region]:
    """All regions, parents before children."""
    out: list[Region] = []
    stack = list(reversed(regions))
    while stack:
        r = stack.pop()
        out.append(r)
        stack.extend(reversed(r.children))
    return out


def transform_all(faces: Sequence[BaseGeometry],
                  fn: Callable[[np.ndarray], np.ndarray]) -> list[BaseGeometry]:
    """Apply a coordinate transform to every face (vectorised)."""
    return list(shapely.transform(np.array(list(faces), dtype=object), fn))

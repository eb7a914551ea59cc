"""The synthetic city's geometry, computed in memory from a seed: a street lattice, its blocks,
a population density field and the district → street → community → grid hierarchy.

The street nodes form a jittered, gently warped lattice in the local metric CRS (CGCS2000
Gauss-Krüger, EPSG:4548); each lattice cell is a block (an irregular quadrilateral between four
streets). Every area of every level is a rectangle of blocks in lattice index space, found by
recursive guillotine cuts that give each child about the same population mass, so central grids
are small and suburban grids large. An area's polygon walks the lattice nodes around its
rectangle, so neighbours share exactly the same vertices: the levels tile their parents with no
gap and no overlap, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Geod, Transformer

CENTER_LON = 116.45
CENTER_LAT = 39.90
LOCAL_SRID = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E (fits 115.5-118.5 E)
TIMEZONE = "Asia/Shanghai"
# Fictitious county prefix: "99" is no province, so synthetic codes never collide with real ones.
COUNTY_PREFIX = "9901"
LEVEL_NAMES = ("district", "street", "community", "grid")
MAX_GRIDS_PER_COMMUNITY = 99

# Independent random streams, so changing one generator leaves the others' output unchanged.
STREAM_LATTICE, STREAM_DENSITY, STREAM_PARTITION, STREAM_BUILDINGS = 1, 2, 3, 4
STREAM_FACILITIES, STREAM_RESPONDERS, STREAM_HOTSPOTS, STREAM_CASES = 5, 6, 7, 8

# Road classes by lattice line: (every n-th line, highway, speed km/h, name suffix).
ROAD_CLASSES = ((12, "primary", 60.0, "大街"), (6, "secondary", 50.0, "大街"),
                (3, "tertiary", 40.0, "街"))
RESIDENTIAL = ("residential", 30.0, "胡同")

_GEOD = Geod(ellps="WGS84")


def rng_for(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *extra])


@dataclass(frozen=True)
class CitySpec:
    """What to build. Sizes are averages; the number of grids is exact."""

    grids: int
    seed: int
    blocks_per_grid: float = 4.0
    grid_area_m2: float = 28_000.0
    aspect: float = 1.15  # east-west / north-south extent
    grids_per_community: float = 12.0
    communities_per_street: float = 10.0
    streets_per_district: float = 12.0

    def __post_init__(self) -> None:
        if self.grids < 1:
            raise ValueError(f"grids must be at least 1, not {self.grids}")


@dataclass
class Level:
    """The areas of one level: block rectangles [r0, r1) × [c0, c1) (row 0 is the north),
    codes, names and the position of each area's parent in the level above."""

    name: str
    rects: NDArray[np.int64]
    codes: list[str]
    names: list[str]
    parent: NDArray[np.int64]
    grid_types: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.codes)


@dataclass
class City:
    spec: CitySpec
    nx: int
    ny: int
    node_lon: NDArray[np.float64]  # (ny + 1, nx + 1)
    node_lat: NDArray[np.float64]
    block_area_m2: NDArray[np.float64]  # (ny, nx)
    density: NDArray[np.float64]  # (ny, nx), relative population density
    levels: list[Level]
    block_grid: NDArray[np.int64]  # (ny, nx) → position in levels[-1]

    @property
    def grids(self) -> Level:
        return self.levels[-1]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (float(self.node_lon.min()), float(self.node_lat.min()),
                float(self.node_lon.max()), float(self.node_lat.max()))

    def polygons(self, level: int) -> NDArray[np.object_]:
        """Polygons (lon/lat, counter-clockwise) of one level, in code order."""
        return _rect_polygons(self.levels[level].rects, self.node_lon, self.node_lat)

    @cached_property
    def grid_polygons(self) -> NDArray[np.object_]:
        return self.polygons(len(self.levels) - 1)


def plan_city(spec: CitySpec) -> City:
    """Compute the whole geometry of a synthetic city (no database involved)."""
    nx, ny, node_x, node_y = _lattice(spec)
    to_wgs = Transformer.from_crs(LOCAL_SRID, 4326, always_xy=True)
    to_local = Transformer.from_crs(4326, LOCAL_SRID, always_xy=True)
    east0, north0 = to_local.transform(CENTER_LON, CENTER_LAT)
    lon, lat = to_wgs.transform(node_x + east0, node_y + north0)
    node_lon = np.asarray(lon, dtype=np.float64)
    node_lat = np.asarray(lat, dtype=np.float64)
    area = _quad_areas(node_x, node_y)
    density = _density(spec, node_x, node_y)
    levels, block_grid = _hierarchy(spec, density * area)
    _set_grid_types(levels[-1], density, block_grid)
    return City(spec, nx, ny, node_lon, node_lat, area, density, levels, block_grid)


# ---------------------------------------------------------------------- lattice and density


def _lattice(spec: CitySpec) -> tuple[int, int, NDArray[np.float64], NDArray[np.float64]]:
    rng = rng_for(spec.seed, STREAM_LATTICE)
    blocks = spec.grids * spec.blocks_per_grid
    nx = max(2, round(math.sqrt(blocks * spec.aspect)))
    ny = max(2, math.ceil(blocks / nx))
    base = math.sqrt(spec.grid_area_m2 / spec.blocks_per_grid)
    xs = np.r_[0.0, np.cumsum(base * rng.uniform(0.8, 1.2, nx))]
    ys = np.r_[0.0, np.cumsum(base * rng.uniform(0.8, 1.2, ny))]
    xs -= xs[-1] / 2
    ys = ys[-1] / 2 - ys  # row 0 is the northern edge
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + rng.uniform(-0.12, 0.12, gx.shape) * base
    gy = gy + rng.uniform(-0.12, 0.12, gy.shape) * base
    # A gentle warp so that streets curve; its slope stays below 0.2, blocks stay convex.
    wave = 25.0 * base
    phase = rng.uniform(0, 2 * math.pi, 2)
    x = gx + 0.6 * base * np.sin(2 * math.pi * gy / wave + phase[0])
    y = gy + 0.6 * base * np.sin(2 * math.pi * gx / wave + phase[1])
    return nx, ny, x, y


def _quad_areas(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Shoelace area of every lattice cell (NW, NE, SE, SW corners)."""
    xa, ya = x[:-1, :-1], y[:-1, :-1]
    xb, yb = x[:-1, 1:], y[:-1, 1:]
    xc, yc = x[1:, 1:], y[1:, 1:]
    xd, yd = x[1:, :-1], y[1:, :-1]
    twice = (xa * yb - xb * ya) + (xb * yc - xc * yb) + (xc * yd - xd * yc) + (xd * ya - xa * yd)
    result: NDArray[np.float64] = np.abs(twice) / 2
    return result


def _density(spec: CitySpec, x: NDArray[np.float64], y: NDArray[np.float64]
             ) -> NDArray[np.float64]:
    """A dense centre, a few sub-centres and a low suburban floor (relative units)."""
    rng = rng_for(spec.seed, STREAM_DENSITY)
    cx = (x[:-1, :-1] + x[1:, 1:]) / 2
    cy = (y[:-1, :-1] + y[1:, 1:]) / 2
    radius = math.hypot(float(np.ptp(x)), float(np.ptp(y))) / 2
    rho = 0.25 + np.exp(-(cx**2 + cy**2) / (2 * (0.3 * radius) ** 2))
    for _ in range(int(rng.integers(2, 6))):
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.3, 0.7) * radius
        sx, sy = dist * math.cos(angle), dist * math.sin(angle)
        sigma = rng.uniform(0.08, 0.18) * radius
        rho += rng.uniform(0.3, 0.8) * np.exp(-((cx - sx) ** 2 + (cy - sy) ** 2) / (2 * sigma**2))
    return rho


# ---------------------------------------------------------------------- hierarchy


def _level_sizes(spec: CitySpec) -> tuple[int, int, int]:
    districts = max(1, round(spec.grids / (spec.grids_per_community * spec.communities_per_street
                                           * spec.streets_per_district)))
    streets = max(1, round(spec.grids / districts / (spec.grids_per_community
                                                     * spec.communities_per_street)))
    communities = max(1, round(spec.grids / (districts * streets) / spec.grids_per_community),
                      math.ceil(spec.grids / (districts * streets * 0.8
                                              * MAX_GRIDS_PER_COMMUNITY)))
    return districts, streets, communities


def _hierarchy(spec: CitySpec, mass: NDArray[np.float64]
               ) -> tuple[list[Level], NDArray[np.int64]]:
    rng = rng_for(spec.seed, STREAM_PARTITION)
    ny, nx = mass.shape
    districts, streets, communities = _level_sizes(spec)
    fanout = (districts, streets, communities)
    cum = _Prefix(mass)
    # Each node: (rect, grids it must hold, parent position).
    current: list[tuple[tuple[int, int, int, int], int, int]] = [((0, ny, 0, nx), spec.grids, -1)]
    levels: list[Level] = []
    parent_codes: list[str] = [COUNTY_PREFIX]
    for depth, name in enumerate(LEVEL_NAMES):
        children: list[tuple[tuple[int, int, int, int], int, int]] = []
        for pos, (rect, grids, _) in enumerate(current):
            k = grids if depth == 3 else min(fanout[depth], grids)
            for child_rect, child_grids in _split(rect, k, grids, cum, rng):
                children.append((child_rect, child_grids, pos))
        # Codes in reading order within each parent: north → south, then west → east.
        children.sort(key=lambda c: (c[2], c[0][0], c[0][2]))
        codes: list[str] = []
        names: list[str] = []
        seq = 0
        for i, (_, _, parent) in enumerate(children):
            seq = 1 if i == 0 or children[i - 1][2] != parent else seq + 1
            codes.append(parent_codes[max(parent, 0)] + _code_part(depth, seq))
            names.append(_name(depth, seq, codes[-1]))
        if depth == 3 and max(_siblings(children)) > MAX_GRIDS_PER_COMMUNITY:
            raise ValueError("a community got more than 99 grids")  # guarded by _level_sizes
        levels.append(Level(name, np.array([c[0] for c in children], dtype=np.int64), codes,
                            names, np.array([c[2] for c in children], dtype=np.int64)))
        parent_codes = codes
        current = children
    block_grid = np.full((ny, nx), -1, dtype=np.int64)
    for pos, (r0, r1, c0, c1) in enumerate(levels[-1].rects):
        block_grid[r0:r1, c0:c1] = pos
    assert (block_grid >= 0).all(), "grids must tile the city"
    return levels, block_grid


def _siblings(children: list[tuple[tuple[int, int, int, int], int, int]]) -> list[int]:
    counts: dict[int, int] = {}
    for _, _, parent in children:
        counts[parent] = counts.get(parent, 0) + 1
    return list(counts.values())


def _code_part(depth: int, seq: int) -> str:
    return (f"{seq:02d}", f"{seq:03d}", f"{seq:03d}", f"{seq:02d}")[depth]


def _name(depth: int, seq: int, code: str) -> str:
    if depth == 0:
        return f"合成{seq}区"
    if depth == 1:
        return f"第{seq}街道"
    if depth == 2:
        return f"第{seq}社区"
    return f"网格{code[6:9]}-{code[9:12]}-{code[12:]}"


class _Prefix:
    """2-D prefix sums of the mass, for O(1) rectangle sums."""

    def __init__(self, mass: NDArray[np.float64]) -> None:
        self.mass = mass
        self.table = np.zeros((mass.shape[0] + 1, mass.shape[1] + 1))
        self.table[1:, 1:] = mass.cumsum(0).cumsum(1)

    def total(self, r0: int, r1: int, c0: int, c1: int) -> float:
        t = self.table
        return float(t[r1, c1] - t[r0, c1] - t[r1, c0] + t[r0, c0])


def _split(rect: tuple[int, int, int, int], k: int, grids: int, cum: _Prefix,
           rng: np.random.Generator) -> list[tuple[tuple[int, int, int, int], int]]:
    """Cut ``rect`` into ``k`` rectangles holding ``grids`` grids in all, each with about the same
    mass; every rectangle keeps at least one block per grid it must hold."""
    if k == 1:
        return [(rect, grids)]
    r0, r1, c0, c1 = rect
    height, width = r1 - r0, c1 - c0
    axes = ["cols", "rows"] if width > height or (width == height and rng.random() < 0.5) \
        else ["rows", "cols"]
    jitter = rng.uniform(0.92, 1.08)
    # Halves first; a 3×3 rectangle holding 9 grids needs a 3 + 6 split instead.
    for k1 in sorted(range(1, k), key=lambda a: (abs(2 * a - k), a)):
        k2 = k - k1
        target = min(max(k1 / k * jitter, 0.02), 0.98)
        for axis in axes:
            length, other = (width, height) if axis == "cols" else (height, width)
            lo = max(1, math.ceil(k1 / other))
            hi = min(length - 1, length - math.ceil(k2 / other))
            if lo > hi:
                continue
            if axis == "cols":
                profile = cum.mass[r0:r1, c0:c1].sum(axis=0)
            else:
                profile = cum.mass[r0:r1, c0:c1].sum(axis=1)
            share = np.cumsum(profile) / profile.sum()
            cut = int(np.clip(np.argmin(np.abs(share[:-1] - target)) + 1, lo, hi))
            cap1, cap2 = cut * other, (length - cut) * other
            g1 = round(grids * float(share[cut - 1]))
            g1 = min(max(g1, k1, grids - cap2), grids - k2, cap1)
            if axis == "cols":
                first, second = (r0, r1, c0, c0 + cut), (r0, r1, c0 + cut, c1)
            else:
                first, second = (r0, r0 + cut, c0, c1), (r0 + cut, r1, c0, c1)
            return _split(first, k1, g1, cum, rng) + _split(second, k2, grids - g1, cum, rng)
    raise ValueError(f"cannot cut {rect} into {k} areas for {grids} grids")


def _set_grid_types(grids: Level, density: NDArray[np.float64],
                    block_grid: NDArray[np.int64]) -> None:
    mean = (np.bincount(block_grid.ravel(), weights=density.ravel(), minlength=len(grids))
            / np.maximum(np.bincount(block_grid.ravel(), minlength=len(grids)), 1))
    hi, lo = np.quantile(mean, [0.9, 0.1]) if len(mean) > 1 else (np.inf, -np.inf)
    types: list[str | None] = []
    for i, value in enumerate(mean):
        if value >= hi:
            types.append("commercial")
        elif value <= lo:
            types.append("industrial")
        else:
            types.append("mixed" if int(grids.codes[i][-2:]) % 3 == 0 else "residential")
    grids.grid_types = types


# ---------------------------------------------------------------------- polygons


def rect_ring(r0: int, r1: int, c0: int, c1: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Lattice (row, col) indices around a block rectangle, counter-clockwise on the map
    (row grows southward), closed."""
    rows = np.r_[np.full(c1 - c0, r0), np.arange(r0, r1), np.full(c1 - c0, r1),
                 np.arange(r1, r0, -1), r0]
    cols = np.r_[np.arange(c0, c1), np.full(r1 - r0, c1), np.arange(c1, c0, -1),
                 np.full(r1 - r0, c0), c0]
    return rows[::-1].copy(), cols[::-1].copy()


def _rect_polygons(rects: NDArray[np.int64], lon: NDArray[np.float64],
                   lat: NDArray[np.float64]) -> NDArray[np.object_]:
    rows_all: list[NDArray[np.int64]] = []
    cols_all: list[NDArray[np.int64]] = []
    sizes = np.empty(len(rects), dtype=np.int64)
    for i, (r0, r1, c0, c1) in enumerate(rects):
        rows, cols = rect_ring(int(r0), int(r1), int(c0), int(c1))
        rows_all.append(rows)
        cols_all.append(cols)
        sizes[i] = len(rows)
    rows_cat = np.concatenate(rows_all)
    cols_cat = np.concatenate(cols_all)
    coords = np.column_stack([lon[rows_cat, cols_cat], lat[rows_cat, cols_cat]])
    rings = shapely.linearrings(coords, indices=np.repeat(np.arange(len(rects)), sizes))
    polys: NDArray[np.object_] = shapely.polygons(rings)
    return polys


# ---------------------------------------------------------------------- street network


@dataclass
class Network:
    """Directed-as-drawn lattice edges; one-way edges may only be driven source → target."""

    node_lon: NDArray[np.float64]  # node i is lattice (i // (nx + 1), i % (nx + 1))
    node_lat: NDArray[np.float64]
    source: NDArray[np.int64]
    target: NDArray[np.int64]
    highway: NDArray[np.object_]
    speed_kmh: NDArray[np.float64]
    oneway: NDArray[np.bool_]
    name: NDArray[np.object_]
    length_m: NDArray[np.float64]


def street_network(city: City) -> Network:
    """Every lattice edge is a street: arterials every 12th line (and the ring road), then
    secondary, tertiary and residential lanes; a quarter of the lanes are one-way, alternating
    direction from one lane to the next."""
    nx, ny = city.nx, city.ny
    width = nx + 1
    node = np.arange((ny + 1) * width).reshape(ny + 1, width)
    # Horizontal edges along row r (west → east as drawn), vertical along column c (north → south).
    h_src, h_dst = node[:, :-1].ravel(), node[:, 1:].ravel()
    h_line = np.repeat(np.arange(ny + 1), nx)
    v_src, v_dst = node[:-1, :].ravel(), node[1:, :].ravel()
    v_line = np.tile(np.arange(nx + 1), ny)
    parts = []
    for src, dst, line, last, kind in ((h_src, h_dst, h_line, ny, "横"),
                                       (v_src, v_dst, v_line, nx, "纵")):
        highway = np.full(len(src), RESIDENTIAL[0], dtype=object)
        speed = np.full(len(src), RESIDENTIAL[1])
        suffix = np.full(len(src), RESIDENTIAL[2], dtype=object)
        classified = np.zeros(len(src), dtype=bool)
        for every, hw, kmh, sfx in ROAD_CLASSES:
            hit = ~classified & ((line % every == 0) | (line == last))
            highway[hit], speed[hit], suffix[hit] = hw, kmh, sfx
            classified |= hit
        lane = ~classified
        oneway = lane & (line % 4 == 1)
        flip = oneway & ((line // 4) % 2 == 1)
        src, dst = np.where(flip, dst, src), np.where(flip, src, dst)
        names = np.array([f"{kind}{n}{s}" for n, s in zip(line.tolist(), suffix.tolist(),
                                                              strict=True)], dtype=object)
        parts.append((src, dst, highway, speed, oneway, names))
    src = np.concatenate([p[0] for p in parts])
    dst = np.concatenate([p[1] for p in parts])
    lon = city.node_lon.ravel()
    lat = city.node_lat.ravel()
    _, _, length = _GEOD.inv(lon[src], lat[src], lon[dst], lat[dst])
    return Network(lon, lat, src, dst, np.concatenate([p[2] for p in parts]),
                   np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts]),
                   np.concatenate([p[5] for p in parts]), np.asarray(length, dtype=np.float64))

"""Buildings (households and residents as counts only), facilities and responders of the
synthetic city, as numpy columns ready for COPY."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from gis.synth.city import (
    STREAM_BUILDINGS,
    STREAM_FACILITIES,
    STREAM_RESPONDERS,
    City,
    rng_for,
)

BUILDING_USES = ("residential", "commercial", "office", "public", "industrial")
_USE_SHARE = (0.85, 0.07, 0.03, 0.03, 0.02)
_INSET = 0.08  # share of a block's side left to the street on each side

# type: (per grid, service radius m, service minutes, hours, capacity range, Chinese name)
FACILITY_TYPES: dict[str, tuple[float, float, float, str, tuple[int, int], str]] = {
    "community_service_centre": (0.030, 1000, 15, "08:30-17:30", (50, 200), "社区服务中心"),
    "clinic": (0.020, 1000, 15, "08:00-20:00", (20, 120), "社区卫生服务站"),
    "school": (0.015, 1000, 15, "07:30-17:30", (400, 2000), "学校"),
    "elderly_care": (0.012, 500, 10, "24h", (30, 300), "养老驿站"),
    "police_room": (0.010, 800, 5, "24h", (5, 30), "警务室"),
    "shelter": (0.005, 1500, 20, "24h", (200, 3000), "应急避难场所"),
    "library": (0.003, 1500, 20, "09:00-21:00", (50, 500), "图书馆"),
    "fire_station": (0.002, 3000, 5, "24h", (20, 60), "消防站"),
}

# Skills by department code (gis.categories.DEPARTMENTS); grid workers always patrol.
DEPARTMENT_SKILLS: dict[str, tuple[str, ...]] = {
    "CITYMGMT": ("inspection", "mediation"), "ENFORCE": ("enforcement", "inspection"),
    "PARKS": ("greening",), "ROADS": ("road_repair", "lighting"), "WATER": ("drainage", "water"),
    "SANITATION": ("sanitation", "cleaning"), "POLICE": ("security", "mediation"),
    "FIRE": ("fire_safety", "first_aid"), "SOCIAL": ("elderly_care", "mediation"),
    "HOUSING": ("inspection", "building_safety"), "ENVIRON": ("inspection", "pollution"),
    "POWER": ("electric", "lighting"), "TRAFFIC": ("traffic",), "MARKET": ("inspection",),
    "TELECOM": ("telecom",), "GAS": ("gas",),
}
# Who works the streets: most staff are city-management grid workers; vehicles are mostly
# sanitation, road and utility crews.
_STAFF_DEPTS = {"CITYMGMT": 40, "ENFORCE": 15, "SANITATION": 15, "SOCIAL": 8, "POLICE": 6}
_VEHICLE_DEPTS = {"SANITATION": 35, "ROADS": 20, "ENFORCE": 15, "WATER": 10, "POWER": 10}
_STATUS = ("available", "busy", "off")
_STATUS_SHARE = (0.55, 0.25, 0.20)


@dataclass
class Buildings:
    """One row per building; footprints are built lazily, chunk by chunk (see ``footprints``)."""

    block: NDArray[np.int64]  # flat block index r * nx + c
    grid: NDArray[np.int64]  # position of the grid (code order)
    u0: NDArray[np.float64]  # footprint in block coordinates (u east, v south, 0..1)
    u1: NDArray[np.float64]
    v0: NDArray[np.float64]
    v1: NDArray[np.float64]
    use: NDArray[np.object_]
    levels: NDArray[np.int64]
    households: NDArray[np.int64]
    residents: NDArray[np.int64]
    lon: NDArray[np.float64]  # a point inside the footprint
    lat: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.block)


def bilinear(city: City, block: NDArray[np.int64], u: NDArray[np.float64],
             v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Map block coordinates to lon/lat: the unit square onto the block's quadrilateral, so
    0 < u, v < 1 always lands strictly inside the block (blocks are convex)."""
    r, c = np.divmod(block, city.nx)
    out = []
    for grid in (city.node_lon, city.node_lat):
        nw, ne = grid[r, c], grid[r, c + 1]
        sw, se = grid[r + 1, c], grid[r + 1, c + 1]
        out.append((1 - u) * (1 - v) * nw + u * (1 - v) * ne + u * v * se + (1 - u) * v * sw)
    return out[0], out[1]


def make_buildings(city: City, total: int) -> Buildings:
    """``total`` buildings spread over the blocks in proportion to population mass, laid out in
    rows of slots so that footprints never overlap."""
    rng = rng_for(city.spec.seed, STREAM_BUILDINGS)
    mass = (city.density * city.block_area_m2).ravel()
    per_block = _apportion(mass, total)
    block = np.repeat(np.arange(len(mass)), per_block)
    slot = np.arange(total) - np.repeat(np.cumsum(per_block) - per_block, per_block)
    cols = np.ceil(np.sqrt(per_block[block])).astype(np.int64)
    rows = np.ceil(per_block[block] / cols).astype(np.int64)
    su, sv = slot % cols, slot // cols
    fill = rng.uniform(0.45, 0.75, (2, total))
    inner = 1 - 2 * _INSET
    half_u = fill[0] / 2
    half_v = fill[1] / 2
    u0 = _INSET + inner * (su + 0.5 - half_u) / cols
    u1 = _INSET + inner * (su + 0.5 + half_u) / cols
    v0 = _INSET + inner * (sv + 0.5 - half_v) / rows
    v1 = _INSET + inner * (sv + 0.5 + half_v) / rows
    use = np.asarray(BUILDING_USES, dtype=object)[
        rng.choice(len(BUILDING_USES), size=total, p=_USE_SHARE)]
    residential = use == "residential"
    households = np.where(residential, np.maximum(
        1, np.rint(rng.lognormal(np.log(3.0), 0.9, total))).astype(np.int64), 0)
    households = np.minimum(households, 400)
    residents = np.rint(households * rng.uniform(2.2, 3.0, total)).astype(np.int64)
    floors = np.where(households <= 4, rng.integers(1, 3, total),
                      np.where(households <= 20, rng.integers(3, 7, total),
                               np.clip(households // 4, 6, 30)))
    floors = np.where(residential, floors, rng.integers(1, 8, total))
    lon, lat = bilinear(city, block, (u0 + u1) / 2, (v0 + v1) / 2)
    grid = city.block_grid.ravel()[block]
    return Buildings(block, grid, u0, u1, v0, v1, use, floors.astype(np.int64), households,
                     residents, lon, lat)


def footprints(city: City, b: Buildings, sl: slice) -> NDArray[np.float64]:
    """(n, 5, 2) closed counter-clockwise rings of the footprints of buildings ``sl``."""
    block = b.block[sl]
    corners = [(b.u0[sl], b.v1[sl]), (b.u1[sl], b.v1[sl]), (b.u1[sl], b.v0[sl]),
               (b.u0[sl], b.v0[sl])]
    ring = np.empty((len(block), 5, 2))
    for k, (u, v) in enumerate(corners):
        ring[:, k, 0], ring[:, k, 1] = bilinear(city, block, u, v)
    ring[:, 4] = ring[:, 0]
    return ring


def _apportion(weights: NDArray[np.float64], total: int) -> NDArray[np.int64]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder)."""
    share = weights / weights.sum() * total
    base = np.floor(share).astype(np.int64)
    rest = total - int(base.sum())
    if rest:
        order = np.argsort(-(share - base), kind="stable")[:rest]
        base[order] += 1
    return base


# ---------------------------------------------------------------------- facilities


@dataclass
class Facilities:
    type: NDArray[np.object_]
    name: NDArray[np.object_]
    capacity: NDArray[np.int64]
    hours: NDArray[np.object_]
    radius_m: NDArray[np.float64]
    minutes: NDArray[np.float64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.type)


def make_facilities(city: City, b: Buildings) -> Facilities:
    """Facilities of every type in ``FACILITY_TYPES``, at least one each, in buildings chosen
    in proportion to the residents around (fire stations spread out instead)."""
    rng = rng_for(city.spec.seed, STREAM_FACILITIES)
    weight = (b.residents + 1).astype(np.float64)
    weight /= weight.sum()
    cols: dict[str, list] = {k: [] for k in ("type", "name", "capacity", "hours", "radius",
                                             "minutes", "lon", "lat")}
    for kind, (rate, radius, minutes, hours, (lo, hi), zh) in FACILITY_TYPES.items():
        n = max(1, round(rate * city.spec.grids))
        if kind == "fire_station":
            where = _spread(b, n, rng)
        else:
            where = rng.choice(len(b), size=n, replace=False, p=weight)
        cols["type"] += [kind] * n
        cols["name"] += [f"{zh}{i + 1:03d}" for i in range(n)]
        cols["capacity"] += rng.integers(lo, hi + 1, n).tolist()
        cols["hours"] += [hours] * n
        cols["radius"] += [float(radius)] * n
        cols["minutes"] += [float(minutes)] * n
        cols["lon"] += b.lon[where].tolist()
        cols["lat"] += b.lat[where].tolist()
    return Facilities(np.array(cols["type"], dtype=object), np.array(cols["name"], dtype=object),
                      np.array(cols["capacity"], dtype=np.int64),
                      np.array(cols["hours"], dtype=object), np.array(cols["radius"]),
                      np.array(cols["minutes"]), np.array(cols["lon"]), np.array(cols["lat"]))


def _spread(b: Buildings, n: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """n buildings far apart: the building nearest to each cell centre of a coarse grid."""
    x0, x1, y0, y1 = b.lon.min(), b.lon.max(), b.lat.min(), b.lat.max()
    side = int(np.ceil(np.sqrt(n)))
    gx = x0 + (np.arange(n) % side + 0.5) / side * (x1 - x0)
    gy = y0 + (np.arange(n) // side + 0.5) / int(np.ceil(n / side)) * (y1 - y0)
    sample = rng.choice(len(b), size=min(len(b), 20000), replace=False)
    dist = (b.lon[sample][None, :] - gx[:, None]) ** 2 + (b.lat[sample][None, :] - gy[:, None]) ** 2
    picked: NDArray[np.int64] = sample[np.argmin(dist, axis=1)]
    return picked


# ---------------------------------------------------------------------- responders


@dataclass
class Responders:
    name: NDArray[np.object_]
    kind: NDArray[np.object_]
    department: NDArray[np.int64]  # position in the department list, -1 none
    skills: NDArray[np.object_]  # PostgreSQL array literals
    status: NDArray[np.object_]
    home_grid: NDArray[np.int64]
    lon: NDArray[np.float64]  # NaN when off duty (no position is kept)
    lat: NDArray[np.float64]
    position_at: NDArray[np.int64]  # epoch seconds, -1 when off duty

    def __len__(self) -> int:
        return len(self.name)


def _department_weights(codes: list[str], table: dict[str, int]) -> NDArray[np.float64]:
    w = np.array([table.get(c, 2) for c in codes], dtype=np.float64)
    result: NDArray[np.float64] = w / w.sum()
    return result


def make_responders(city: City, b: Buildings, count: int, departments: list[str],
                    as_of: datetime) -> Responders:
    """Grid workers (staff) and vehicles of the given departments (codes), homed in grids in
    proportion to households; on-duty ones stand near a building of their grid, last seen in
    the quarter hour before ``as_of``; off-duty ones have no position at all."""
    rng = rng_for(city.spec.seed, STREAM_RESPONDERS)
    n_grids = len(city.grids)
    hh = np.bincount(b.grid, weights=b.households, minlength=n_grids) + 1.0
    home = rng.choice(n_grids, size=count, p=hh / hh.sum())
    vehicle = rng.random(count) < 0.12
    kind = np.where(vehicle, "vehicle", "staff").astype(object)
    seq_staff = np.cumsum(~vehicle)
    seq_vehicle = np.cumsum(vehicle)
    name = np.array([f"巡查车{v:04d}" if is_v else f"网格员{s:05d}" for is_v, s, v in
                     zip(vehicle.tolist(), seq_staff.tolist(), seq_vehicle.tolist(),
                         strict=True)], dtype=object)
    if departments:
        department = np.where(
            vehicle,
            rng.choice(len(departments), size=count,
                       p=_department_weights(departments, _VEHICLE_DEPTS)),
            rng.choice(len(departments), size=count,
                       p=_department_weights(departments, _STAFF_DEPTS)))
    else:
        department = np.full(count, -1, dtype=np.int64)
    extra = rng.random((count, 2))
    skills = np.empty(count, dtype=object)
    for i in range(count):
        own = DEPARTMENT_SKILLS.get(departments[department[i]], ()) if department[i] >= 0 else ()
        chosen = [] if vehicle[i] else ["patrol"]
        chosen += [sk for j, sk in enumerate(own[:2]) if j == 0 or extra[i, j] < 0.5]
        if not vehicle[i] and extra[i, 0] < 0.15:
            chosen.append("first_aid")
        skills[i] = "{" + ",".join(dict.fromkeys(chosen)) + "}"
    status = np.asarray(_STATUS, dtype=object)[rng.choice(3, size=count, p=_STATUS_SHARE)]
    # A building of the home grid, then up to ~50 m away (responders cross grid lines).
    order = np.argsort(b.grid, kind="stable")
    first = np.searchsorted(b.grid[order], home)
    n_in = np.searchsorted(b.grid[order], home, side="right") - first
    anywhere = rng.integers(0, len(b), count)
    pick = np.where(n_in > 0, order[np.minimum(first + (rng.random(count) * n_in).astype(np.int64),
                                               len(b) - 1)], anywhere)
    lon = b.lon[pick] + rng.normal(0, 0.0004, count)
    lat = b.lat[pick] + rng.normal(0, 0.0003, count)
    on_duty = status != "off"
    lon[~on_duty] = np.nan
    lat[~on_duty] = np.nan
    seen = int(as_of.timestamp()) - rng.integers(0, 900, count)
    return Responders(name, kind, department.astype(np.int64), skills, status, home, lon, lat,
                      np.where(on_duty, seen, -1))

"""The map layers: one ``LayerSpec`` per layer, and ``REGISTRY``, the only allow-list of table
and column names that reach SQL (tiles, TileJSON, OGC API Features, styles, folium).

Private fields (reporter contact, description, media, idempotency keys, tracking tokens,
staff names) are simply absent: a property not listed here cannot reach a tile or a feature.

>>> get_layer("grids").source.table
'areas'
>>> sorted(REGISTRY)[:3]
['cases', 'communities', 'components']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gis import tiles
from gis.caseconfig import TERMINAL
from gis.errors import NotFound
from gis.models import CASE_STATUSES
from gis.tilecache import CachePolicy
from gis.tiles import CellGrid, PixelGeom, Prop, TableSource
from layers.filters import FilterSpec

# Terminal case states (gis.caseconfig; SQL's gridgov_case_open, migration 0004_case_open,
# says the same). A redirected case is open: it waits to be dispatched to another department.
CLOSED_STATUSES = TERMINAL
OPEN_STATUSES = tuple(s for s in CASE_STATUSES if s not in CLOSED_STATUSES)
RESPONDER_STALE_S = 15 * 60  # positions older than this are not shown


@dataclass(frozen=True)
class Aggregation:
    """Below ``maxzoom`` a point layer is drawn as counts per tile-pyramid cell, in an MVT layer
    of its own (``name``): cells of ``2**cell_offset`` per tile side."""

    name: str
    maxzoom: int
    cell_offset: int = 4
    open_sql: str = "TRUE"
    rollup: bool = False  # counts come from tile_case_cells when the filters allow

    def grid(self, z: int, x: int, y: int) -> CellGrid:
        return CellGrid(z, x, y, z + self.cell_offset)


@dataclass(frozen=True)
class LayerSpec:
    """A map layer. ``simplify`` maps a starting zoom to a tolerance in tile units (1/4096 of
    the tile side); ``max_age`` is the HTTP freshness; ``ttl_s`` bounds server-side caching
    for layers whose content also changes with the clock."""

    name: str
    title: str
    source: TableSource
    geometry: str  # fill | line | circle: how styles draw it
    minzoom: int
    maxzoom: int
    depends_on: tuple[str, ...]
    description: str = ""
    simplify: tuple[tuple[int, float], ...] = ((0, 0.0),)
    limit: int = 10_000
    buffer: int = 64
    filters: Mapping[str, FilterSpec] = field(default_factory=dict)
    aggregate: Aggregation | None = None
    max_age: int = 300
    live: bool = False
    ttl_s: float | None = None
    public: bool = True
    ogc: bool = True
    tile_source: TableSource | None = None  # a narrower copy for tiles; else ``source``

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def tiles_from(self) -> TableSource:
        """What tiles are drawn from (OGC API Features and TileJSON bounds read ``source``)."""
        return self.tile_source or self.source

    def tolerance_m(self, z: int) -> float:
        units = 0.0
        for start, value in self.simplify:
            if z >= start:
                units = value
        return units * tiles.tile_width_m(z) / tiles.MVT_EXTENT

    @property
    def cache_control(self) -> str:
        scope = "public" if self.public else "private"
        if self.live:
            return f"{scope}, max-age={self.max_age}, must-revalidate"
        return f"{scope}, max-age={self.max_age}"

    def mvt_layer(self, z: int) -> str:
        if self.aggregate is not None and z <= self.aggregate.maxzoom:
            return self.aggregate.name
        return self.name

    def features_minzoom(self) -> int:
        return self.aggregate.maxzoom + 1 if self.aggregate else self.minzoom


AREA_SIMPLIFY = ((0, 2.0), (12, 1.0), (14, 0.5))
# Stored pixel copies of area geometry (migration 0009_tile_speed) at the zooms of the densest
# area tiles, with the simplification AREA_SIMPLIFY gives there: a z12 tile holds ~2,900 grids.
AREA_PIXELS = {12: PixelGeom("geom_px12", 1.0), 13: PixelGeom("geom_px13", 1.0),
               14: PixelGeom("geom_px14", 0.5)}


def _area_layer(name: str, title: str, level: int, minzoom: int, limit: int) -> LayerSpec:
    props = (
        Prop("code", description="structured area code"),
        Prop("name"),
        Prop("level", type="integer", description="rank in the hierarchy, 0 = top"),
        Prop("grid_type"),
        Prop("households", type="integer"),
        Prop("population", type="integer"),
        Prop("area_m2", "CAST(round(t.area_m2) AS bigint)", type="integer"),
    )
    return LayerSpec(
        name=name, title=title, geometry="fill", minzoom=minzoom, maxzoom=16,
        description=f"{title} in force now (areas of rank {level})",
        source=TableSource("areas", props, geometry="polygon", geom_3857="geom_3857",
                           pixel_geoms=AREA_PIXELS,
                           where=f"t.valid_to IS NULL AND t.level = {level}"),
        depends_on=("areas",), simplify=AREA_SIMPLIFY, limit=limit,
    )


_CASE_SOURCE = TableSource(
    "cases",
    (
        Prop("status"),
        Prop("open", "gridgov_case_open(t.status)", type="boolean"),
        Prop("overdue", "(t.due_at < now() AND gridgov_case_open(t.status))", type="boolean",
             description="open and past its deadline"),
        Prop("category", "cat.code", description="category code (C… component, E… event)"),
        Prop("category_name", "cat.name", in_tiles=False),
        Prop("urgency", type="integer"),
        Prop("channel", in_tiles=False),
        Prop("reported_at", type="datetime"),
        Prop("due_at", type="datetime", in_tiles=False),
        Prop("closed_at", type="datetime", in_tiles=False),
    ),
    joins="LEFT JOIN categories cat ON cat.id = t.category_id",
    filters={
        "status": "t.status = ANY(CAST(:f_status AS text[]))",
        "category": "cat.code LIKE ANY(CAST(:f_category AS text[]))",
        "since": "t.reported_at >= :f_since",
        "until": "t.reported_at < :f_until",
    },
    time_sql="t.reported_at",
)

# Tiles read the tile columns of cases from ``case_tiles`` (migration 0009_tile_speed): the
# same rows and values, kept exact by triggers, but stored in spatial order, so a dense z14
# tile reads ~150 pages instead of ~8,500 pages of ``cases`` scattered by arrival time.
# The category code is stored there too (kept by a trigger on categories), so no join.
_CASE_TILE_SOURCE = replace(
    _CASE_SOURCE, table="case_tiles", joins="",
    props=tuple(replace(p, sql="t.category") if p.name == "category" else p
                for p in _CASE_SOURCE.props if p.in_tiles),
    filters={**_CASE_SOURCE.filters,
             "category": "t.category LIKE ANY(CAST(:f_category AS text[]))"},
)

_CASE_FILTERS = {
    "status": FilterSpec("status", CASE_STATUSES,
                         {"open": OPEN_STATUSES, "closed": CLOSED_STATUSES}),
    "category": FilterSpec("code_prefix"),
    "since": FilterSpec("time_from"),
    "until": FilterSpec("time_to"),
}

_LAYERS = (
    _area_layer("districts", "Districts", 0, 6, 2_000),
    _area_layer("streets", "Streets", 1, 9, 5_000),
    _area_layer("communities", "Communities", 2, 11, 10_000),
    _area_layer("grids", "Grids", 3, 12, 20_000),
    LayerSpec(
        name="cases", title="Cases", geometry="circle", minzoom=0, maxzoom=18,
        description="Reported problems; counts per cell up to z12, single cases above",
        source=_CASE_SOURCE, tile_source=_CASE_TILE_SOURCE, depends_on=("cases", "categories"),
        filters=_CASE_FILTERS,
        aggregate=Aggregation("cases_agg", maxzoom=12, open_sql="gridgov_case_open(t.status)",
                              rollup=True),
        limit=10_000, max_age=5, live=True, ttl_s=30,
    ),
    LayerSpec(
        name="facilities", title="Facilities", geometry="circle", minzoom=11, maxzoom=18,
        description="Public facilities by type (police, fire, clinic, school…)",
        source=TableSource(
            "facilities",
            (Prop("type"), Prop("name"), Prop("capacity", type="integer"), Prop("hours"),
             Prop("service_radius_m", type="number"), Prop("service_minutes", type="number")),
            geometry="point", filters={"category": "t.type = ANY(CAST(:f_category AS text[]))"}),
        depends_on=("facilities",), filters={"category": FilterSpec("choice")},
    ),
    LayerSpec(
        name="components", title="Components", geometry="circle", minzoom=15, maxzoom=18,
        description="City assets (部件): manhole covers, street lights, bins…",
        source=TableSource(
            "components",
            (Prop("code"), Prop("kind"), Prop("state"), Prop("category", "cat.code")),
            joins="LEFT JOIN categories cat ON cat.id = t.category_id",
            filters={"category": "t.kind = ANY(CAST(:f_category AS text[]))",
                     "status": "t.state = ANY(CAST(:f_status AS text[]))"}),
        depends_on=("components", "categories"),
        filters={"category": FilterSpec("choice"), "status": FilterSpec("choice")},
    ),
    LayerSpec(
        name="responders", title="Responders on duty", geometry="circle", minzoom=10,
        maxzoom=18, description="On-duty staff and vehicles with a recent position",
        source=TableSource(
            "responders",
            (Prop("kind"), Prop("status"), Prop("department", "dep.code"),
             Prop("position_at", type="datetime")),
            geometry="point",
            joins="LEFT JOIN departments dep ON dep.id = t.department_id",
            where=("t.status <> 'off' AND t.geom IS NOT NULL"
                   " AND t.position_at > now() - make_interval(secs => :stale_s)"),
            where_params={"stale_s": RESPONDER_STALE_S},
            filters={"status": "t.status = ANY(CAST(:f_status AS text[]))"},
            time_sql="t.position_at"),
        depends_on=("responders",),
        filters={"status": FilterSpec("choice", ("available", "busy"))},
        max_age=2, live=True, ttl_s=10, public=False, ogc=False,
    ),
    LayerSpec(
        name="responsibility_zones", title="Responsibility zones", geometry="fill",
        minzoom=10, maxzoom=16,
        description="Duty areas, river reaches, street chiefs, contractor areas",
        source=TableSource(
            "responsibility_zones",
            (Prop("kind"), Prop("code"), Prop("name"), Prop("organisation"),
             Prop("department", "dep.code")),
            joins="LEFT JOIN departments dep ON dep.id = t.department_id",
            where="t.valid_to IS NULL",
            filters={"category": "t.kind = ANY(CAST(:f_category AS text[]))"}),
        depends_on=("responsibility_zones",), filters={"category": FilterSpec("choice")},
        simplify=((0, 2.0), (12, 1.0), (14, 0.5)),
    ),
    LayerSpec(
        name="road_edges", title="Roads", geometry="line", minzoom=12, maxzoom=16,
        description="The routable road network (basemap)",
        source=TableSource(
            "road_edges",
            (Prop("highway"), Prop("name"), Prop("oneway", type="boolean"),
             Prop("maxspeed_kmh", type="number")),
            geometry="line"),
        depends_on=("road_edges",), simplify=((0, 1.0), (15, 0.5)), limit=30_000,
        max_age=3600,
    ),
)

REGISTRY: dict[str, LayerSpec] = {layer.name: layer for layer in _LAYERS}


def get_layer(name: str) -> LayerSpec:
    """The layer called ``name``; ``NotFound`` naming the known layers otherwise."""
    layer = REGISTRY.get(name)
    if layer is None:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise NotFound(f"unknown layer {shown!r}; layers: {', '.join(sorted(REGISTRY))}",
                       field="layer")
    return layer


def cache_policies() -> dict[str, CachePolicy]:
    """What the tile cache needs per cached MVT layer (aggregates have their own margin)."""
    policies: dict[str, CachePolicy] = {}
    for layer in REGISTRY.values():
        policies[layer.name] = CachePolicy(layer.depends_on, margin_units=layer.buffer,
                                           ttl_s=layer.ttl_s)
        if layer.aggregate is not None:
            # A change moves a count in its cell; the cell's point is within half a cell of
            # it and tiles draw a ring of one cell around themselves.
            cell_units = tiles.MVT_EXTENT >> layer.aggregate.cell_offset
            policies[layer.aggregate.name] = CachePolicy(layer.depends_on,
                                                         margin_units=2 * cell_units)
    return policies

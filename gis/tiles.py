"""Vector tiles built in one SQL statement (``ST_AsMVT``/``ST_AsMVTGeom``/``ST_TileEnvelope``).

``gis`` knows nothing of map layers: callers (``layers/registry.py``) describe a table with a
``TableSource`` — table and geometry names, the properties allow-list as SQL expressions, fixed
conditions and the SQL of each supported filter — and pass bound values only. The names in a
``TableSource`` are code, checked against a strict identifier pattern when it is built; request
input never reaches the SQL text.

Tiles filter in the table's own SRID (``geom && ST_Transform(envelope, srid)``) so the GiST
index is used, with the envelope widened by the tile buffer: a feature in the buffer is drawn
in both tiles, and the tile cache (``gis/tilecache.py``) evicts with the same margin. Tables
with a stored Web Mercator copy (``TableSource.geom_3857``, migration 0006_tile_geoms) are
drawn from it, without a transform per row; tables with a stored pixel copy at the tile's zoom
(``TableSource.pixel_geoms``, migration 0009_tile_speed) draw the rows that lie inside the
tile by moving those pixels to the tile's origin, and clip only the rows crossing its edge.

>>> tile_bounds_lonlat(0, 0, 0)[0]
-180.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import Connection, TextClause, text

from gis.crs import WEB_MERCATOR, WGS84
from gis.errors import InvalidInput

MVT_EXTENT = 4096
EARTH_HALF = 20037508.342789244  # half the Web Mercator world width, metres
MAX_ZOOM = 24
CELL_LEVELS = (12, 14, 16)  # levels stored in tile_case_cells (migration 0002_tiles)

PropType = Literal["string", "integer", "number", "boolean", "datetime"]
GeometryKind = Literal["point", "line", "polygon", "any"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

# Tile queries are short and many run at once: parallel workers only add start-up cost and
# contend for the same cores (measured: a dense z14 case tile takes 75 ms with two workers,
# 34 ms without, on a 2-core machine). SET LOCAL ends with the statement's (implicit)
# transaction, or the request's.
# Tiles also find their rows through the spatial index (bitmap scans) only: when the planner
# expects many rows in a tile it prefers walking the primary key in ``ORDER BY id`` order and
# filtering on the geometry, which reads rows all over the table: 730 ms instead of 60 ms for
# a z14 tile with 50,000 cases in ``case_tiles`` (stored in spatial order, not by id).
SERIAL_SETTINGS = {"max_parallel_workers_per_gather": "0", "enable_indexscan": "off"}
SERIAL = " ".join(f"SET LOCAL {name} = {value};" for name, value in SERIAL_SETTINGS.items())


@dataclass(frozen=True)
class Read:
    """One read-only statement (a tile, a page of features) and its bound values.

    ``run`` executes it on a SQLAlchemy connection, as it is (``SERIAL`` in front where the
    statement needs it); ``gis.readpool`` sends the same statement to the asyncpg read pool
    as a prepared statement, whose sessions hold the ``SERIAL_SETTINGS`` instead.
    """

    clause: TextClause
    params: Mapping[str, Any]

    def run(self, conn: Connection) -> Any:
        """The first column of the first row (None when there is no row)."""
        return conn.execute(self.clause, self.params).scalar()


def tile_bytes(data: Any) -> bytes:
    """A tile statement's value as bytes (b"" for an empty tile)."""
    return bytes(data) if data else b""


@contextmanager
def read_only(conn: Connection) -> Iterator[Connection]:
    """``conn`` in autocommit mode while the block runs, unless a transaction is already open on
    it (tests run in one): a read that needs no transaction then sends no BEGIN, and its
    connection goes back to the pool without a ROLLBACK round trip. Each tile is one
    statement, so it reads from one snapshot either way, and ``SET LOCAL`` in front of it still
    applies: a multi-statement query string is one implicit transaction block.

    The driver's own ``autocommit`` flag is switched, not SQLAlchemy's isolation level:
    resetting that level when the connection is returned costs a round trip of its own
    (psycopg2 sends ``SET default_transaction_isolation``), which is what this avoids."""
    dbapi = conn.connection.dbapi_connection
    if conn.in_transaction() or dbapi is None:
        yield conn
        return
    dbapi.autocommit = True
    try:
        yield conn
    finally:
        if not getattr(dbapi, "closed", 0):
            dbapi.autocommit = False


def _check_ident(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"{what} {value!r} is not a plain SQL identifier")
    return value


@dataclass(frozen=True)
class Prop:
    """One published property: its name and the SQL expression over alias ``t`` that gives it."""

    name: str
    sql: str = ""
    type: PropType = "string"
    description: str = ""
    in_tiles: bool = True  # False: GeoJSON only (keeps dense tiles small)

    def __post_init__(self) -> None:
        _check_ident(self.name, "property name")
        if not self.sql:
            object.__setattr__(self, "sql", f"t.{self.name}")

    def mvt_sql(self) -> str:
        # MVT has no timestamp type; seconds since the epoch keep MapLibre filters numeric.
        if self.type == "datetime":
            return f"CAST(extract(epoch FROM {self.sql}) AS bigint)"
        return self.sql


@dataclass(frozen=True)
class PixelGeom:
    """A stored copy of ``geom`` as ``ST_AsMVTGeom`` draws it at one zoom, in the pixels of the
    whole world (4096 per tile; ``gridgov_tile_pixels``, migration 0009_tile_speed), simplified
    by ``tolerance_units`` tile units. Only tiles asking for exactly that simplification use it.
    """

    column: str
    tolerance_units: float

    def tolerance_m(self, z: int) -> float:
        # The same operations as LayerSpec.tolerance_m and the SQL function: equal floats.
        return self.tolerance_units * tile_width_m(z) / MVT_EXTENT


@dataclass(frozen=True)
class TableSource:
    """What SQL needs to know about a table to tile it or page through its features.

    ``where`` holds fixed conditions (with optional named parameters whose values are in
    ``where_params``); ``filters`` maps a filter name to an SQL condition using the bound
    parameter ``:f_<name>``; ``time_sql`` is the temporal property for OGC ``datetime``.
    """

    table: str
    props: tuple[Prop, ...]
    geom: str = "geom"
    srid: int = WGS84
    id_sql: str = "t.id"
    geometry: GeometryKind = "any"
    joins: str = ""
    where: str = "TRUE"
    where_params: Mapping[str, Any] = field(default_factory=dict)
    filters: Mapping[str, str] = field(default_factory=dict)
    time_sql: str | None = None
    geom_3857: str | None = None  # a stored Web Mercator copy of ``geom`` (migration 0006)
    pixel_geoms: Mapping[int, PixelGeom] = field(default_factory=dict)  # by zoom (0009)

    def __post_init__(self) -> None:
        _check_ident(self.table, "table")
        _check_ident(self.geom, "geometry column")
        if self.geom_3857 is not None:
            _check_ident(self.geom_3857, "Web Mercator geometry column")
        for pixel in self.pixel_geoms.values():
            _check_ident(pixel.column, "pixel geometry column")
        for name in self.filters:
            _check_ident(name, "filter name")

    def __hash__(self) -> int:  # Mappings are not hashable; identity is enough for caching
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def bind_value(value: Any) -> Any:
    """Sequences bind as SQL arrays (psycopg2 turns tuples into records)."""
    return list(value) if isinstance(value, tuple | list | frozenset | set) else value


# --- tile arithmetic (the same as mercantile, without the dependency in hot paths) ----------

def check_tile(z: int, x: int, y: int) -> None:
    """422 naming ``z``, ``x`` or ``y`` when the tile does not exist."""
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInput(f"z={z} is outside 0..{MAX_ZOOM}", field="z")
    n = 1 << z
    if not 0 <= x < n:
        raise InvalidInput(f"x={x} is outside 0..{n - 1} at z={z}", field="x")
    if not 0 <= y < n:
        raise InvalidInput(f"y={y} is outside 0..{n - 1} at z={z}", field="y")


def tile_width_m(z: int) -> float:
    return 2 * EARTH_HALF / (1 << z)


def lonlat_to_tile_fraction(lon: float, lat: float, z: int) -> tuple[float, float]:
    """Fractional tile column/row of a point at zoom ``z`` (rows grow southwards)."""
    lat = max(min(lat, 85.0511287798), -85.0511287798)
    n = 1 << z
    fx = (lon + 180.0) / 360.0 * n
    fy = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return fx, fy


def tile_bounds_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 1 << z
    lon0 = x / n * 360.0 - 180.0
    lon1 = (x + 1) / n * 360.0 - 180.0
    lat1 = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
    lat0 = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
    return lon0, lat0, lon1, lat1


def tiles_touching(bbox: Sequence[float], z: int, margin_units: float,
                   extent: int = MVT_EXTENT) -> tuple[int, int, int, int]:
    """Inclusive tile range ``(x0, y0, x1, y1)`` whose envelope, widened by ``margin_units``
    (in tile extent units), intersects or touches the lon/lat ``bbox``."""
    lon0, lat0, lon1, lat1 = bbox
    fx0, fy1 = lonlat_to_tile_fraction(lon0, lat0, z)
    fx1, fy0 = lonlat_to_tile_fraction(lon1, lat1, z)
    m = margin_units / extent
    last = (1 << z) - 1
    return (max(0, math.floor(fx0 - m)), max(0, math.floor(fy0 - m)),
            min(last, math.floor(fx1 + m)), min(last, math.floor(fy1 + m)))


# --- feature tiles ------------------------------------------------------------------------

def pixel_margin(z: int) -> int:
    """Pixels by which a stored pixel geometry must stay inside a tile's clip box to be drawn
    without clipping: bounding-box operators compare float4 boxes, rounded outwards by up to
    one float4 step at the size of the world's pixel coordinates (``4096 << z``), on both
    sides of the comparison."""
    step = 2.0 ** max(0, z + 12 - 23)
    return int(2 * step) + 1


def _mvt_geom_sql(source: TableSource, simplify: bool, pixel: PixelGeom | None) -> str:
    """The SQL of a row's tile geometry. Without a stored pixel copy: ``ST_AsMVTGeom`` of the
    stored Web Mercator copy (no transform per row per request: a z12 grid tile went from 23
    to 17 ms) or of the transformed geometry. With one: rows whose pixels lie well inside the
    clip box are just moved by the tile's origin — the affine, the snap and wagyu's pass gave
    those pixels already, when the row was written — and only rows crossing it are clipped."""
    geom = f"ST_Transform(t.{source.geom}, {WEB_MERCATOR})"
    if source.geom_3857 is not None:
        geom = f"t.{source.geom_3857}"
    if simplify and source.geometry != "point":
        geom = f"ST_Simplify({geom}, :tolerance, true)"
    mvt = f"ST_AsMVTGeom({geom}, ST_TileEnvelope(:z, :x, :y), :extent, :buffer, true)"
    if pixel is None:
        return mvt
    px = f"t.{pixel.column}"
    inside = f"{px} @ ST_MakeEnvelope(:px0, :py0, :px1, :py1, {WEB_MERCATOR})"
    return f"CASE WHEN {inside} THEN ST_Translate({px}, :pdx, :pdy) ELSE {mvt} END"


def _pixel_params(z: int, x: int, y: int, buffer: int) -> dict[str, int]:
    inset = buffer - pixel_margin(z)
    return {"px0": x * MVT_EXTENT - inset, "py0": y * MVT_EXTENT - inset,
            "px1": (x + 1) * MVT_EXTENT + inset, "py1": (y + 1) * MVT_EXTENT + inset,
            "pdx": -x * MVT_EXTENT, "pdy": -y * MVT_EXTENT}


def pixel_geom_for(source: TableSource, z: int, tolerance_m: float, extent: int
                   ) -> PixelGeom | None:
    """The stored pixel copy a tile at ``z`` can be drawn from, if any."""
    pixel = source.pixel_geoms.get(z)
    if pixel is None or extent != MVT_EXTENT or pixel.tolerance_m(z) != tolerance_m:
        return None
    return pixel


@lru_cache(maxsize=512)
def _feature_tile_sql(source: TableSource, filters: frozenset[str], simplify: bool,
                      pixel: PixelGeom | None = None) -> TextClause:
    # Rows are chosen on ``geom`` in the table's own SRID, as always: the candidates (and so
    # which rows fill a tile that reaches its limit) stay exactly those of the GiST index on
    # ``geom``.
    geom = _mvt_geom_sql(source, simplify, pixel)
    props = ",\n               ".join(f"{p.mvt_sql()} AS {p.name}" for p in source.props
                                     if p.in_tiles)
    search = "ST_Expand(ST_TileEnvelope(:z, :x, :y), :margin)"
    if source.srid != WEB_MERCATOR:
        search = f"ST_Transform({search}, {source.srid})"
    conditions = [f"t.{source.geom} && {search}", f"({source.where})"]
    conditions += [f"({source.filters[name]})" for name in sorted(filters)]
    return text(f"""{SERIAL}
        SELECT ST_AsMVT(q.*, :layer, :extent, 'mvtgeom', 'fid') FROM (
            SELECT {geom} AS mvtgeom,
                   {source.id_sql} AS fid,
                   {props}
              FROM {source.table} t {source.joins}
             WHERE {' AND '.join(conditions)}
             ORDER BY {source.id_sql}
             LIMIT :limit
        ) q WHERE q.mvtgeom IS NOT NULL
    """)


def feature_tile_read(
    source: TableSource,
    *,
    layer: str,
    z: int,
    x: int,
    y: int,
    filters: Mapping[str, Any] | None = None,
    tolerance_m: float = 0.0,
    limit: int = 10_000,
    buffer: int = 64,
    extent: int = MVT_EXTENT,
) -> Read:
    """The statement of ``feature_tile`` (which see), to run on either kind of connection."""
    check_tile(z, x, y)
    filters = dict(filters or {})
    unknown = set(filters) - set(source.filters)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{source.table} cannot be filtered by {name!r}", field=name)
    pixel = pixel_geom_for(source, z, tolerance_m, extent)
    sql = _feature_tile_sql(source, frozenset(filters), tolerance_m > 0, pixel)
    params: dict[str, Any] = {
        "layer": layer, "z": z, "x": x, "y": y, "extent": extent, "buffer": buffer,
        "margin": tile_width_m(z) * buffer / extent, "limit": limit, "tolerance": tolerance_m,
        **source.where_params,
    }
    if pixel is not None:
        params.update(_pixel_params(z, x, y, buffer))
    params.update({f"f_{name}": bind_value(value) for name, value in filters.items()})
    return Read(sql, params)


def feature_tile(conn: Connection, source: TableSource, **kwargs: Any) -> bytes:
    """One MVT layer ``layer`` with the features of ``source`` in tile z/x/y (b"" when empty).

    Keyword arguments: ``layer``, ``z``, ``x``, ``y``; ``filters`` maps filter names of
    ``source.filters`` to their (already validated) values; ``tolerance_m`` simplifies lines
    and polygons in Web Mercator metres; ``limit``, ``buffer``, ``extent``.
    """
    return tile_bytes(feature_tile_read(source, **kwargs).run(conn))


# --- aggregated point tiles (counts per tile-pyramid cell) --------------------------------

@dataclass(frozen=True)
class CellGrid:
    """Cells of a tile at zoom ``z`` drawn at level ``level`` (``2**(level-z)`` per side), plus
    a ring of one cell around it so circles near an edge are drawn whole in both tiles."""

    z: int
    x: int
    y: int
    level: int

    @property
    def per_side(self) -> int:
        return 1 << (self.level - self.z)

    def cell_range(self) -> tuple[int, int, int, int]:
        k = self.per_side
        last = (1 << self.level) - 1
        return (max(0, self.x * k - 1), max(0, self.y * k - 1),
                min(last, (self.x + 1) * k), min(last, (self.y + 1) * k))

    @property
    def cell_m(self) -> float:
        return tile_width_m(self.level)

    def buffer_units(self, extent: int = MVT_EXTENT) -> int:
        return extent // self.per_side


_CELL_TILE = SERIAL + """
    SELECT ST_AsMVT(q.*, :layer, :extent, 'mvtgeom') FROM (
        SELECT ST_AsMVTGeom(ST_Point(:west + (c.x + 0.5) * :cell, :north - (c.y + 0.5) * :cell,
                                     3857),
                            ST_TileEnvelope(:z, :x, :y), :extent, :buffer, false) AS mvtgeom,
               c.count, c.open
          FROM ({cells}) c
         ORDER BY c.x, c.y
    ) q WHERE q.mvtgeom IS NOT NULL
"""


def _cell_params(grid: CellGrid, layer: str, extent: int) -> dict[str, Any]:
    dx0, dy0, dx1, dy1 = grid.cell_range()
    return {"layer": layer, "extent": extent, "buffer": grid.buffer_units(extent),
            "west": -EARTH_HALF, "north": EARTH_HALF, "cell": grid.cell_m,
            "z": grid.z, "x": grid.x, "y": grid.y, "level": grid.level,
            "dx0": dx0, "dy0": dy0, "dx1": dx1, "dy1": dy1}


@lru_cache(maxsize=8)
def _rollup_sql(by_category: bool, by_open: bool) -> TextClause:
    conditions = ["cz = :src", "cx BETWEEN :sx0 AND :sx1", "cy BETWEEN :sy0 AND :sy1"]
    if by_category:
        conditions.append("category_id = ANY(ARRAY(SELECT id FROM categories"
                          " WHERE code LIKE ANY(CAST(:patterns AS text[]))))")
    else:
        conditions.append("category_id = 0")
    if by_open:
        conditions.append("open = :open")
    cells = f"""
        SELECT cx >> :shift AS x, cy >> :shift AS y, CAST(sum(n) AS integer) AS count,
               CAST(coalesce(sum(n) FILTER (WHERE open), 0) AS integer) AS open
          FROM tile_case_cells
         WHERE {' AND '.join(conditions)}
         GROUP BY 1, 2 HAVING sum(n) > 0
    """
    return text(_CELL_TILE.format(cells=cells))


def case_cells_read(
    *,
    layer: str,
    grid: CellGrid,
    category_patterns: Sequence[str] | None = None,
    open_only: bool | None = None,
    extent: int = MVT_EXTENT,
) -> Read:
    """Case counts per cell from the ``tile_case_cells`` rollup (kept exact by triggers).

    ``category_patterns`` are SQL LIKE patterns on category codes (``"E01%"``); ``open_only``
    True/False keeps open/closed cases only.
    """
    source_level = next((lv for lv in CELL_LEVELS if lv >= grid.level), None)
    if source_level is None:
        raise ValueError(f"no rollup level at or above {grid.level}")
    shift = source_level - grid.level
    params = _cell_params(grid, layer, extent)
    params.update({"src": source_level, "shift": shift,
                   "sx0": params["dx0"] << shift, "sy0": params["dy0"] << shift,
                   "sx1": ((params["dx1"] + 1) << shift) - 1,
                   "sy1": ((params["dy1"] + 1) << shift) - 1,
                   "patterns": list(category_patterns or []), "open": open_only})
    return Read(_rollup_sql(category_patterns is not None, open_only is not None), params)


def case_cells_tile(conn: Connection, **kwargs: Any) -> bytes:
    """``case_cells_read`` run on ``conn``: the tile's bytes (b"" when empty)."""
    return tile_bytes(case_cells_read(**kwargs).run(conn))


@lru_cache(maxsize=64)
def _raw_cells_sql(source: TableSource, filters: frozenset[str], open_sql: str) -> TextClause:
    search = "ST_Expand(ST_TileEnvelope(:z, :x, :y), :margin)"
    if source.srid != WEB_MERCATOR:
        search = f"ST_Transform({search}, {source.srid})"
    conditions = [f"t.{source.geom} && {search}", f"({source.where})"]
    conditions += [f"({source.filters[name]})" for name in sorted(filters)]
    anchor = f"gridgov_case_anchor(t.{source.geom})"
    if source.srid != WGS84:
        anchor = f"ST_Transform({anchor}, {WGS84})"
    cells = f"""
        SELECT x, y, CAST(count(*) AS integer) AS count,
               CAST(count(*) FILTER (WHERE open) AS integer) AS open
          FROM (SELECT gridgov_tile_x(ST_X(p), :level) AS x, gridgov_tile_y(ST_Y(p), :level) AS y,
                       open
                  FROM (SELECT {anchor} AS p, {open_sql} AS open
                          FROM {source.table} t {source.joins}
                         WHERE {' AND '.join(conditions)}) a
                 WHERE p IS NOT NULL AND NOT ST_IsEmpty(p)) s
         WHERE x BETWEEN :dx0 AND :dx1 AND y BETWEEN :dy0 AND :dy1
         GROUP BY x, y
    """
    return text(_CELL_TILE.format(cells=cells))


def point_cells_read(
    source: TableSource,
    *,
    layer: str,
    grid: CellGrid,
    open_sql: str,
    filters: Mapping[str, Any] | None = None,
    extent: int = MVT_EXTENT,
) -> Read:
    """Counts per cell computed from the rows themselves (any filter combination); gives the
    same tile as ``case_cells_tile`` where both apply."""
    filters = dict(filters or {})
    params = _cell_params(grid, layer, extent)
    params["margin"] = 1.5 * grid.cell_m
    params.update(source.where_params)
    params.update({f"f_{name}": bind_value(value) for name, value in filters.items()})
    return Read(_raw_cells_sql(source, frozenset(filters), open_sql), params)


def point_cells_tile(conn: Connection, source: TableSource, **kwargs: Any) -> bytes:
    """``point_cells_read`` run on ``conn``: the tile's bytes (b"" when empty)."""
    return tile_bytes(point_cells_read(source, **kwargs).run(conn))


def source_extent(conn: Connection, source: TableSource) -> tuple[float, ...] | None:
    """Lon/lat bounds of the rows of ``source`` (None when it has none)."""
    geom = f"t.{source.geom}"
    if source.srid != WGS84:
        geom = f"ST_Transform({geom}, {WGS84})"
    row = conn.execute(
        text(f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
             f" (SELECT ST_Extent({geom}) AS e FROM {source.table} t {source.joins}"
             f" WHERE ({source.where})) s"),
        dict(source.where_params),
    ).one()
    if row[0] is None:
        return None
    return tuple(float(v) for v in row)

"""Rendering a registry layer as a tile, and its TileJSON 3.0 description.

Chooses between the feature tile and, below a layer's aggregation zoom, the count-per-cell
tile — from the trigger-maintained rollup when the filters allow (none, ``status`` exactly
open or closed, ``category``), else computed from the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import Connection

from gis import readpool, tiles
from gis.errors import InvalidInput
from layers.registry import CLOSED_STATUSES, OPEN_STATUSES, LayerSpec

_FIELD_TYPES = {"string": "String", "integer": "Number", "number": "Number",
                "boolean": "Boolean", "datetime": "Number"}


def check_zoom(layer: LayerSpec, z: int, x: int, y: int) -> None:
    """422 for tiles that do not exist or lie above the layer's maxzoom."""
    tiles.check_tile(z, x, y)
    if z > layer.maxzoom:
        raise InvalidInput(f"z={z} is above the maxzoom {layer.maxzoom} of layer {layer.name!r}"
                           " (clients overzoom from the maxzoom tile)", field="z")


def tile_read(layer: LayerSpec, z: int, x: int, y: int, filters: Mapping[str, Any]
              ) -> tiles.Read | None:
    """The statement that draws one tile (None: z is below the minzoom, the tile is empty)."""
    check_zoom(layer, z, x, y)
    if z < layer.minzoom:
        return None
    agg = layer.aggregate
    if agg is not None and z <= agg.maxzoom:
        grid = agg.grid(z, x, y)
        status = filters.get("status")
        open_only: bool | None = None
        if status is not None:
            open_only = True if tuple(status) == tuple(sorted(OPEN_STATUSES)) else (
                False if tuple(status) == tuple(sorted(CLOSED_STATUSES)) else None)
        rollup_ok = agg.rollup and set(filters) <= {"status", "category"} and (
            status is None or open_only is not None)
        if rollup_ok:
            return tiles.case_cells_read(layer=agg.name, grid=grid,
                                         category_patterns=filters.get("category"),
                                         open_only=open_only)
        return tiles.point_cells_read(layer.tiles_from, layer=agg.name, grid=grid,
                                      open_sql=agg.open_sql, filters=filters)
    return tiles.feature_tile_read(layer.tiles_from, layer=layer.name, z=z, x=x, y=y,
                                   filters=filters, tolerance_m=layer.tolerance_m(z),
                                   limit=layer.limit, buffer=layer.buffer)


def render_tile(conn: Connection, layer: LayerSpec, z: int, x: int, y: int,
                filters: Mapping[str, Any]) -> bytes:
    """The MVT bytes of one tile (b"" when nothing is in it or z is below the minzoom)."""
    read = tile_read(layer, z, x, y, filters)
    return b"" if read is None else tiles.tile_bytes(read.run(conn))


async def render_tile_async(con: asyncpg.Connection, layer: LayerSpec, z: int, x: int, y: int,
                            filters: Mapping[str, Any]) -> bytes:
    """``render_tile`` on a connection of the read pool (``gis.readpool``): the same
    statement, the same bytes."""
    read = tile_read(layer, z, x, y, filters)
    return b"" if read is None else tiles.tile_bytes(await readpool.fetchval(con, read))


def vector_layers(layer: LayerSpec) -> list[dict[str, Any]]:
    """TileJSON ``vector_layers``: the MVT layers of this source and their fields."""
    fields = {p.name: _FIELD_TYPES[p.type] for p in layer.source.props if p.in_tiles}
    entries = [{"id": layer.name, "description": layer.description,
                "minzoom": layer.features_minzoom(), "maxzoom": layer.maxzoom,
                "fields": fields}]
    if layer.aggregate is not None:
        entries.insert(0, {
            "id": layer.aggregate.name,
            "description": f"{layer.title}: counts per cell "
                          f"({1 << layer.aggregate.cell_offset} cells per tile side)",
            "minzoom": layer.minzoom, "maxzoom": layer.aggregate.maxzoom,
            "fields": {"count": "Number", "open": "Number"},
        })
    return entries


def tilejson(layer: LayerSpec, *, tiles_url: str, bounds: tuple[float, ...] | None
             ) -> dict[str, Any]:
    """TileJSON 3.0.0 for ``layer``; ``tiles_url`` has ``{z}/{x}/{y}`` placeholders."""
    west, south, east, north = bounds or (-180.0, -85.0511, 180.0, 85.0511)
    center_zoom = max(layer.minzoom, min(layer.maxzoom, 12))
    return {
        "tilejson": "3.0.0",
        "name": layer.name,
        "description": layer.description,
        "version": "1.0.0",
        "attribution": "gridgov",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, center_zoom],
        "vector_layers": vector_layers(layer),
    }


def padded_bounds(extent: tuple[float, ...] | None, pad: float = 0.001
                  ) -> tuple[float, ...] | None:
    """Data bounds widened a little (clients skip tiles outside TileJSON bounds)."""
    if extent is None:
        return None
    x0, y0, x1, y1 = extent
    return (max(-180.0, x0 - pad), max(-85.0511, y0 - pad), min(180.0, x1 + pad),
            min(85.0511, y1 + pad))

"""MapLibre styles: ``/styles/{name}.json`` (default, public, command)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep
from gis import tiles as gis_tiles
from gis.tilecache import TileCache
from layers.registry import get_layer
from layers.styles import build_style

router = APIRouter(tags=["tiles"])


@router.get("/styles/{name}.json")
def style(request: Request, conn: ConnDep, name: str) -> JSONResponse:
    """A MapLibre style (spec v8) whose sources are this server's TileJSON documents, centred
    on the data."""
    body = build_style(name, str(request.base_url))
    cache: TileCache = request.app.state.tile_cache
    cache.sync(conn)
    districts = get_layer("districts")
    bounds = cache.get_meta(districts.name, "extent")
    if bounds is None:
        generation = cache.generation(districts.name)
        bounds = gis_tiles.source_extent(conn, districts.source) or ()
        cache.put_meta(districts.name, "extent", bounds, generation=generation)
    if bounds:
        west, south, east, north = bounds
        body["center"] = [round((west + east) / 2, 6), round((south + north) / 2, 6)]
        body["zoom"] = 11
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})

"""Vector tiles: ``/tiles/{layer}/{z}/{x}/{y}.mvt`` and TileJSON ``/tiles/{layer}.json``.

Every tile response carries a strong ETag (content hash) and the layer's Cache-Control;
``If-None-Match`` answers 304. Rendered tiles are kept in the app's ``TileCache``, which is
brought up to date with the database's change log before each lookup (``gis/tilecache.py``).

A tile is answered on the event loop and takes a database connection only when it needs one
(a cache miss, or a change-log poll at most every ``poll_interval_s``): a cache hit costs no
database round trip and no thread hop. A GET of a public layer is answered by ``TileFastPath``
below FastAPI's routing, and a miss is rendered on the asyncpg read pool (``gis.readpool``):
no thread hop either. The route itself answers everything else (errors, HEAD, responders),
rendering a miss in one thread hop in which the connection is checked out, used and given back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, Engine
from starlette.types import Scope

from api.deps import ConnDep, RequestConnection, get_conn
from api.middleware import FastPath
from api.security import get_principal
from gis import tiles as gis_tiles
from gis.auth import STAFF_ROLES, require_role
from gis.errors import InvalidInput
from gis.tilecache import Entry, TileCache, TileCacheSettings, TileKey
from layers import tiles as layer_tiles
from layers.filters import filter_key, parse_filters
from layers.registry import REGISTRY, LayerSpec, cache_policies, get_layer

router = APIRouter(tags=["tiles"])
log = logging.getLogger("gridgov.tiles")

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
TILE_PATH = "/tiles/{layer}/{z}/{x}/{y}.mvt"
FILTER_PARAMS = ("status", "category", "since", "until")
T = TypeVar("T")

StatusQ = Annotated[str | None, Query(description="comma list: open, closed or statuses")]
CategoryQ = Annotated[str | None, Query(description="comma list of category codes/types")]
SinceQ = Annotated[str | None, Query(description="ISO 8601 date or date-time (inclusive)")]
UntilQ = Annotated[str | None, Query(description="ISO 8601 date or date-time (exclusive)")]


def install(app: FastAPI, settings: TileCacheSettings | None = None) -> None:
    """Create the app's tile cache and mount the tile routes."""
    settings = settings or TileCacheSettings()
    app.state.tile_cache = TileCache(cache_policies(), max_bytes=settings.cache_mb << 20,
                                     poll_interval_s=settings.poll_interval_s)
    app.include_router(router)


def query_filters(request: Request, allowed: tuple[str, ...] = FILTER_PARAMS
                  ) -> dict[str, str]:
    """The filter parameters of the request; 422 for unknown or repeated parameters."""
    raw: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            shown = name if len(name) <= 40 else name[:37] + "..."
            raise InvalidInput(f"unknown query parameter {shown!r}; allowed: "
                               f"{', '.join(allowed)}", field=shown)
        if name in raw:
            raise InvalidInput(f"give {name} once (comma-separated values)", field=name)
        raw[name] = value
    return raw


async def in_one_hop(request: Request, work: Callable[[Connection], T]) -> T:
    """Read-only ``work(conn)`` on the request's connection (``get_conn`` or its test
    override), in one thread hop that also checks the connection out and gives it back,
    instead of a hop to check out, one to work and one after the response to give it back (a
    sync handler with ``ConnDep``); in autocommit (``RequestConnection.get(read_only=True)``),
    which saves the ``BEGIN`` and ``ROLLBACK`` round trips as well."""

    def call() -> T:
        lazy = RequestConnection(request)
        conn = lazy.get(read_only=True)
        try:
            result = work(conn)
        except BaseException as exc:
            lazy.close(exc)
            raise
        lazy.close()
        return result

    return await run_in_threadpool(call)


def uses_read_pool(app: Any) -> bool:
    """True when reads may go to the app's asyncpg read pool (``gis.readpool``): not when a
    test shares its own connection and transaction through ``get_conn``."""
    return get_conn not in app.dependency_overrides and hasattr(app.state, "read_pool")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def tile_key(spec: LayerSpec, z: int, x: int, y: int, values: Mapping[str, Any]) -> TileKey:
    return (spec.mvt_layer(z), z, x, y, filter_key(values))


def tile_response(spec: LayerSpec, entry: Entry, if_none_match: str | None) -> Response:
    """200 with the tile, 204 when it is empty, 304 when the client has it: ETag and the
    layer's Cache-Control on all three."""
    headers = {"ETag": entry.etag, "Cache-Control": spec.cache_control}
    if _etag_matches(if_none_match, entry.etag):
        return Response(status_code=304, headers=headers)
    if not entry.data:
        return Response(status_code=204, headers=headers)
    return Response(entry.data, media_type=MVT_MEDIA_TYPE, headers=headers)


async def sync_entry(request: Request, spec: LayerSpec, z: int, x: int, y: int,
                     values: Mapping[str, Any]) -> Entry:
    """The tile from the cache or rendered on the request's connection (SQLAlchemy), with the
    change-log poll when due, in one thread hop."""
    cache: TileCache = request.app.state.tile_cache
    key = tile_key(spec, z, x, y, values)

    def fetch(conn: Connection) -> Entry:
        cache.sync(conn)
        found = cache.get(key)
        if found is not None:
            return found
        generation = cache.generation(key[0])
        data = layer_tiles.render_tile(conn, spec, z, x, y, values)
        return cache.put(key, data, generation=generation)

    entry = None if cache.poll_due() else cache.get(key)
    return entry if entry is not None else await in_one_hop(request, fetch)


def poll_changes(engine: Engine, cache: TileCache) -> None:
    """Bring the cache (tiles and feature pages) up to date with the change log, on a
    connection of the engine (run it in a thread: it blocks)."""
    with engine.connect() as conn, gis_tiles.read_only(conn) as reading:
        cache.sync(reading)


async def pooled_entry(app: Any, spec: LayerSpec, z: int, x: int, y: int,
                       values: Mapping[str, Any]) -> Entry:
    """``sync_entry`` with the render on the read pool, on the event loop: no thread hop
    (the change-log poll, at most every ``poll_interval_s``, still takes one)."""
    cache: TileCache = app.state.tile_cache
    key = tile_key(spec, z, x, y, values)
    if cache.poll_due():
        await run_in_threadpool(poll_changes, app.state.engine, cache)
    entry = cache.get(key)
    if entry is None:
        generation = cache.generation(key[0])
        async with app.state.read_pool.connection() as con:
            data = await layer_tiles.render_tile_async(con, spec, z, x, y, values)
        entry = cache.put(key, data, generation=generation)
    return entry


@router.get(TILE_PATH, response_class=Response,
            responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "empty"},
                       304: {"description": "not modified"}})
async def tile(
    request: Request,
    layer: Annotated[str, Path(description="a layer of the registry (see /tiles)")],
    z: Annotated[int, Path(ge=0, le=gis_tiles.MAX_ZOOM)],
    x: Annotated[int, Path(ge=0)],
    y: Annotated[int, Path(ge=0)],
    status: StatusQ = None,
    category: CategoryQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> Response:
    """One Mapbox Vector Tile; 204 when it holds nothing. Non-public layers (responders) need
    a staff token.

    A GET of a public layer with valid parameters is answered by ``TileFastPath`` before the
    routing, with the same response; this handler answers the rest (errors, HEAD, responders)
    and whatever the read pool could not."""
    spec = get_layer(layer)
    if not spec.public:
        await run_in_threadpool(_require_staff, request)
    layer_tiles.check_zoom(spec, z, x, y)
    values = parse_filters(spec.filters, query_filters(request), layer=spec.name)
    entry = await sync_entry(request, spec, z, x, y, values)
    return tile_response(spec, entry, request.headers.get("if-none-match"))


def _require_staff(request: Request) -> None:
    """401 for the public, 403 for non-staff: on-duty positions are not for everyone."""
    lazy = RequestConnection(request)
    conn = lazy.get(read_only=True)
    try:
        principal = get_principal(request, conn)
        require_role(principal, tuple(sorted(STAFF_ROLES)), "see responder positions")
    except BaseException as exc:
        lazy.close(exc)
        raise
    lazy.close()


_FAST_PATH = re.compile(r"/tiles/([a-z0-9_]{1,40})/([0-9]{1,2})/([0-9]{1,8})/([0-9]{1,8})\.mvt")


class TileFastPath(FastPath):
    """``GET /tiles/{layer}/{z}/{x}/{y}.mvt`` of a public layer, answered below FastAPI's
    routing and dependency solving (about a third of a cold tile's Python): ASGI middleware
    inside the app's own (request id, metrics, security headers, CORS), so those apply as to
    every route.

    It answers only what it can answer exactly as the ``tile`` route would — a known public
    layer, a tile that exists, known filters given once with valid values — with the same
    cache, the same ``tile_response`` and the route's template in the metrics; anything else
    (every 4xx, HEAD, responders, a read-pool failure before anything was sent) goes on to
    the route, which answers it as always. The tile is rendered on the read pool
    (``pooled_entry``), or on the test's shared connection (``sync_entry``) when a test
    overrides ``get_conn``.
    """

    pattern = _FAST_PATH
    router = router
    route_path = TILE_PATH

    async def answer(self, scope: Scope, *groups: str) -> Response | None:
        layer, zs, xs, ys = groups
        spec = REGISTRY.get(layer)
        if spec is None or not spec.public:
            return None
        z, x, y = int(zs), int(xs), int(ys)
        raw: dict[str, str] = {}
        if scope["query_string"]:
            for name, value in parse_qsl(scope["query_string"].decode("latin-1"),
                                         keep_blank_values=True):
                if name not in FILTER_PARAMS or name in raw:
                    return None
                raw[name] = value
        try:
            layer_tiles.check_zoom(spec, z, x, y)
            values = parse_filters(spec.filters, raw, layer=spec.name)
        except InvalidInput:
            return None
        try:
            if uses_read_pool(self.root):
                entry = await pooled_entry(self.root, spec, z, x, y, values)
            else:
                entry = await sync_entry(Request(scope), spec, z, x, y, values)
        except Exception as exc:  # noqa: BLE001 - the route answers it (503, 500...)
            log.warning("tile %s/%s/%s/%s: %s; answered by the route", layer, z, x, y,
                        type(exc).__name__)
            return None
        return tile_response(spec, entry, _header(scope, b"if-none-match"))


def _header(scope: Scope, name: bytes) -> str | None:
    """The first ``name`` header of the request, as ``Request.headers.get`` gives it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def tiles_url(request: Request, layer: str, raw_filters: Mapping[str, str]) -> str:
    base = str(request.base_url)
    url = f"{base}tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt"
    return url + ("?" + urlencode(sorted(raw_filters.items())) if raw_filters else "")


@router.get("/tiles/{layer}.json")
def tilejson(
    request: Request,
    conn: ConnDep,
    layer: str,
    status: StatusQ = None,
    category: CategoryQ = None,
    since: SinceQ = None,
    until: UntilQ = None,
) -> JSONResponse:
    """TileJSON 3.0.0: tile URL (with the same filters), zooms, bounds, vector_layers.
    Non-public layers need a staff token, as their tiles do: the bounds alone would show
    where on-duty staff are."""
    spec = get_layer(layer)
    if not spec.public:
        require_role(get_principal(request, conn), tuple(sorted(STAFF_ROLES)),
                     "see responder positions")
    raw = query_filters(request)
    parse_filters(spec.filters, raw, layer=spec.name)
    cache: TileCache = request.app.state.tile_cache
    cache.sync(conn)
    bounds = cache.get_meta(spec.name, "bounds")
    if bounds is None:
        generation = cache.generation(spec.name)
        extent = gis_tiles.source_extent(conn, spec.source)
        bounds = layer_tiles.padded_bounds(extent) or ()
        cache.put_meta(spec.name, "bounds", bounds, generation=generation)
    body = layer_tiles.tilejson(spec, tiles_url=tiles_url(request, spec.name, raw),
                                bounds=bounds or None)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})


@router.get("/tiles")
def list_layers(request: Request) -> dict:
    """The layers of the registry with their TileJSON URLs."""
    base = str(request.base_url)
    return {"layers": [
        {"name": s.name, "title": s.title, "description": s.description,
         "minzoom": s.minzoom, "maxzoom": s.maxzoom, "filters": sorted(s.filters),
         "tilejson": f"{base}tiles/{s.name}.json"}
        for s in REGISTRY.values()]}

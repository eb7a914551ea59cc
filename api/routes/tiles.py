"""Vector tiles: ``/tiles/{layer}/{z}/{x}/{y}.mvt`` and TileJSON ``/tiles/{layer}.json``.

Every tile response carries a strong ETag (content hash) and the layer's Cache-Control;
``If-None-Match`` answers 304. Rendered tiles are kept in the app's ``TileCache``, which is
brought up to date with the database's change log before each lookup (``gis/tilecache.py``).

The tile handler runs on the event loop and takes a database connection only when it needs
one (a cache miss, or a change-log poll at most every ``poll_interval_s``): a cache hit costs
no database round trip and no thread hop, and a miss costs one hop, in which the connection is
checked out, used and given back.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from api.deps import ConnDep, get_conn
from api.security import get_principal
from gis import tiles as gis_tiles
from gis.auth import STAFF_ROLES, require_role
from gis.errors import InvalidInput
from gis.tilecache import Entry, TileCache, TileCacheSettings
from layers import tiles as layer_tiles
from layers.filters import filter_key, parse_filters
from layers.registry import REGISTRY, cache_policies, get_layer

router = APIRouter(tags=["tiles"])

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
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


class LazyConnection:
    """The request's connection from ``get_conn`` (or its test override), opened on first use.

    Call ``get()`` and ``close()`` from worker threads: they may block on the pool.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self._gen: Generator[Connection, None, None] | None = None
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None:
            provider: Any = self._request.app.dependency_overrides.get(get_conn, get_conn)
            wants_request = bool(inspect.signature(provider).parameters)
            self._gen = provider(self._request) if wants_request else provider()
            self._conn = next(self._gen)  # type: ignore[arg-type]
        return self._conn

    @property
    def opened(self) -> bool:
        return self._gen is not None

    def close(self, failed: bool = False) -> None:
        gen, self._gen, self._conn = self._gen, None, None
        if gen is None:
            return
        if failed:
            gen.close()
        else:
            next(gen, None)


async def lazy_conn(request: Request) -> AsyncIterator[LazyConnection]:
    lazy = LazyConnection(request)
    try:
        yield lazy
    except Exception:
        if lazy.opened:
            await run_in_threadpool(lazy.close, True)
        raise
    else:
        if lazy.opened:
            await run_in_threadpool(lazy.close)


LazyConnDep = Annotated[LazyConnection, Depends(lazy_conn)]


async def in_one_hop(lazy: LazyConnection, work: Callable[[Connection], T]) -> T:
    """Read-only ``work(conn)`` in one thread hop that also checks the connection out and gives
    it back, instead of a hop to check out, one to work and one after the response to give it
    back (a sync handler with ``ConnDep``); see ``gis.tiles.read_only`` for the round trip
    it saves as well."""

    def call() -> T:
        try:
            with gis_tiles.read_only(lazy.get()) as conn:
                result = work(conn)
        except BaseException:
            lazy.close(failed=True)
            raise
        lazy.close()
        return result

    return await run_in_threadpool(call)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


@router.get("/tiles/{layer}/{z}/{x}/{y}.mvt", response_class=Response,
            responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "empty"},
                       304: {"description": "not modified"}})
async def tile(
    request: Request,
    lazy: LazyConnDep,
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
    a staff token."""
    spec = get_layer(layer)
    if not spec.public:
        await run_in_threadpool(_require_staff, request, lazy)
    layer_tiles.check_zoom(spec, z, x, y)
    values = parse_filters(spec.filters, query_filters(request), layer=spec.name)
    cache: TileCache = request.app.state.tile_cache
    key = (spec.mvt_layer(z), z, x, y, filter_key(values))

    def fetch(conn: Connection) -> Entry:
        # The poll (when due) and the render (on a miss), in one hop.
        cache.sync(conn)
        found = cache.get(key)
        if found is not None:
            return found
        generation = cache.generation(key[0])
        data = layer_tiles.render_tile(conn, spec, z, x, y, values)
        return cache.put(key, data, generation=generation)

    entry = None if cache.poll_due() else cache.get(key)
    if entry is None:
        entry = await in_one_hop(lazy, fetch)
    headers = {"ETag": entry.etag, "Cache-Control": spec.cache_control}
    if _etag_matches(request.headers.get("if-none-match"), entry.etag):
        return Response(status_code=304, headers=headers)
    if not entry.data:
        return Response(status_code=204, headers=headers)
    return Response(entry.data, media_type=MVT_MEDIA_TYPE, headers=headers)


def _require_staff(request: Request, lazy: LazyConnection) -> None:
    """401 for the public, 403 for non-staff: on-duty positions are not for everyone."""
    principal = get_principal(request, lazy.get())
    require_role(principal, tuple(sorted(STAFF_ROLES)), "see responder positions")


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

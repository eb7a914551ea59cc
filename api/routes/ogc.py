"""OGC API — Features (Part 1: Core, GeoJSON, OpenAPI 3.0) at ``/ogc``.

Collections are the public layers of the registry (``layers/registry.py``), with the same
properties allow-list as the tiles. Items page with ``limit``/``offset`` and ``next``/``prev``
links; ``bbox``, ``datetime`` and the layer's filters (``status``, ``category``…) narrow them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.types import Scope

from api.deps import ConnDep
from api.middleware import FastPath
from api.routes.tiles import in_one_hop, poll_changes, uses_read_pool
from gis import ogc
from gis import tiles as gis_tiles
from gis.errors import InvalidInput, NotFound
from gis.tilecache import Page, PageKey, TileCache
from layers.filters import filter_key, parse_filters
from layers.registry import REGISTRY, LayerSpec, get_layer

router = APIRouter(prefix="/ogc", tags=["ogc"])
log = logging.getLogger("gridgov.ogc")

GEOJSON = "application/geo+json"
JSON = "application/json"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_OFFSET = 1_000_000_000  # OFFSET is a bigint in PostgreSQL; nobody pages past this
ITEMS_PARAMS = ("bbox", "bbox-crs", "datetime", "limit", "offset", "f")
FORMATS = ("json", "geojson", JSON, GEOJSON)


def _base(request: Request) -> str:
    """``request.base_url`` without its last slash, as starlette builds it from the scheme, the
    ``Host`` header (or the server address) and the root path: those are the key of a small
    cache, since building a ``URL`` costs a feature page noticeable time."""
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    key = (scope.get("scheme"), host, tuple(server) if server else None,
           scope.get("app_root_path", scope.get("root_path")))
    base = _BASES.get(key)
    if base is None:
        base = str(request.base_url).rstrip("/")
        if len(_BASES) < 256:  # the Host header is the caller's: keep the cache bounded
            _BASES[key] = base
    return base


_BASES: dict[tuple[Any, ...], str] = {}


def _check_format(request: Request) -> None:
    f = request.query_params.get("f")
    if f is not None and f not in FORMATS:
        raise InvalidInput(f"f={f[:30]!r} is not offered; use f=json", field="f")


def _collections() -> list[LayerSpec]:
    return [layer for layer in REGISTRY.values() if layer.ogc and layer.public]


def _collection(cid: str) -> LayerSpec:
    layer = REGISTRY.get(cid)
    if layer is None or not (layer.ogc and layer.public):
        known = ", ".join(layer.name for layer in _collections())
        raise NotFound(f"unknown collection {cid[:40]!r}; collections: {known}",
                       field="collectionId")
    return get_layer(cid)


def _json(body: dict[str, Any], media_type: str = JSON, max_age: int = 60) -> JSONResponse:
    return JSONResponse(body, media_type=media_type,
                        headers={"Cache-Control": f"public, max-age={max_age}"})


@router.get("", summary="OGC API Features landing page")
def landing(request: Request) -> JSONResponse:
    _check_format(request)
    base = _base(request)
    return _json({
        "title": "gridgov OGC API — Features",
        "description": "Areas, cases, facilities, components and zones of gridgov as GeoJSON.",
        "links": [
            {"href": f"{base}/ogc", "rel": "self", "type": JSON, "title": "this document"},
            {"href": f"{base}/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.0", "title": "API definition"},
            {"href": f"{base}/docs", "rel": "service-doc", "type": "text/html",
             "title": "API documentation"},
            {"href": f"{base}/ogc/conformance", "rel": "conformance", "type": JSON,
             "title": "conformance classes"},
            {"href": f"{base}/ogc/collections", "rel": "data", "type": JSON,
             "title": "collections"},
        ],
    })


@router.get("/conformance")
def conformance(request: Request) -> JSONResponse:
    _check_format(request)
    return _json({"conformsTo": CONFORMANCE})


def _collection_doc(request: Request, conn: ConnDep, layer: LayerSpec) -> dict[str, Any]:
    base = _base(request)
    cache: TileCache = request.app.state.tile_cache
    extent = cache.get_meta(layer.name, "ogc-extent")
    if extent is None:
        generation = cache.generation(layer.name)
        bbox = gis_tiles.source_extent(conn, layer.source)
        temporal = ogc.temporal_extent(conn, layer.source)
        extent = {"spatial": {"bbox": [list(bbox) if bbox else [-180, -90, 180, 90]],
                              "crs": CRS84}}
        if temporal is not None:
            extent["temporal"] = {
                "interval": [[t.astimezone(UTC).isoformat() if t else None for t in temporal]],
                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
        cache.put_meta(layer.name, "ogc-extent", extent, generation=generation)
    href = f"{base}/ogc/collections/{layer.name}"
    return {
        "id": layer.name,
        "title": layer.title,
        "description": layer.description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": extent,
        "links": [
            {"href": href, "rel": "self", "type": JSON, "title": layer.title},
            {"href": f"{href}/items", "rel": "items", "type": GEOJSON,
             "title": f"{layer.title} as GeoJSON"},
            {"href": f"{base}/tiles/{layer.name}.json", "rel": "related",
             "type": "application/vnd.mapbox.tile+json", "title": "vector tiles (TileJSON)"},
        ],
    }


@router.get("/collections")
def collections(request: Request, conn: ConnDep) -> JSONResponse:
    _check_format(request)
    request.app.state.tile_cache.sync(conn)
    base = _base(request)
    return _json({
        "links": [{"href": f"{base}/ogc/collections", "rel": "self", "type": JSON}],
        "collections": [_collection_doc(request, conn, layer) for layer in _collections()],
    })


@router.get("/collections/{collectionId}")
def collection(request: Request, conn: ConnDep,
               collection_id: Annotated[str, Path(alias="collectionId")]) -> JSONResponse:
    _check_format(request)
    layer = _collection(collection_id)
    request.app.state.tile_cache.sync(conn)
    return _json(_collection_doc(request, conn, layer))


def _split_params(request: Request, layer: LayerSpec) -> dict[str, str]:
    """Filter parameters of the layer; 422 for unknown or repeated parameters."""
    raw: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        shown = name if len(name) <= 40 else name[:37] + "..."
        if name in seen:
            raise InvalidInput(f"give {shown} once", field=shown)
        seen.add(name)
        if name in ITEMS_PARAMS:
            continue
        if name not in layer.filters:
            allowed = ", ".join([*ITEMS_PARAMS, *sorted(layer.filters)])
            raise InvalidInput(f"unknown query parameter {shown!r}; allowed: {allowed}",
                               field=shown)
        raw[name] = value
    return raw


ITEMS_PATH = "/ogc/collections/{collectionId}/items"


@router.get("/collections/{collectionId}/items")
async def items(
    request: Request,
    collection_id: Annotated[str, Path(alias="collectionId")],
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs")] = None,
    datetime_: Annotated[str | None, Query(alias="datetime",
                                           description="instant or start/end (.. open)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    f: Annotated[str | None, Query(description="json (the only format)")] = None,
) -> Response:
    """Features of the collection as a GeoJSON FeatureCollection, ``limit`` per page.

    A GET with valid parameters is answered by ``ItemsFastPath`` before the routing, with the
    same response; this handler answers the rest (every 4xx) and whatever the read pool could
    not."""
    layer, query = _items_query(request, collection_id, bbox, bbox_crs, datetime_)
    page = await _page(request, layer, query, limit, offset)
    return _items_response(request, layer, limit, offset, page)


def _items_query(request: Request, collection_id: str, bbox: str | None,
                 bbox_crs: str | None, datetime_: str | None
                 ) -> tuple[LayerSpec, ogc.FeatureQuery]:
    _check_format(request)
    layer = _collection(collection_id)
    if bbox_crs not in (None, CRS84):
        raise InvalidInput(f"bbox-crs {bbox_crs[:60]!r} is not supported; use {CRS84}",
                           field="bbox-crs")
    raw = _split_params(request, layer)
    query = ogc.FeatureQuery(
        bbox=ogc.parse_bbox(bbox),
        filters=parse_filters(layer.filters, raw, layer=layer.name),
    )
    start, end = ogc.parse_interval(datetime_)
    return layer, ogc.FeatureQuery(query.bbox, start, end, query.filters)


def _items_response(request: Request, layer: LayerSpec, limit: int, offset: int,
                    page: tuple[str, int, int | None]) -> Response:
    features, returned, matched = page
    collection = f"{_base(request)}/ogc/collections/{layer.name}"
    kept = urlencode([(k, v) for k, v in request.query_params.multi_items()
                      if k not in ("limit", "offset", "f")])
    prefix = f"{collection}/items?{kept}&" if kept else f"{collection}/items?"

    def link(rel: str, at: int) -> dict[str, str]:
        return {"href": f"{prefix}limit={limit}&offset={at}", "rel": rel, "type": GEOJSON}

    links = [link("self", offset)]
    if matched is not None and offset + returned < matched:
        links.append(link("next", offset + limit))
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    links.append({"href": collection, "rel": "collection", "type": JSON})
    head = (f'{{"type":"FeatureCollection","numberMatched":{matched},'
            f'"numberReturned":{returned},'
            f'"timeStamp":"{datetime.now(UTC).isoformat(timespec="seconds")}",'
            f'"links":{_dumps(links)},"features":[')
    return Response(head + features + "]}", media_type=GEOJSON,
                    headers={"Cache-Control": layer.cache_control})


_FAST_PATH = re.compile(r"/ogc/collections/([a-z0-9_]{1,40})/items")
_DIGITS = re.compile(r"[0-9]{1,10}")


def _bounded(params: Any, name: str, default: int, low: int, high: int) -> int | None:
    """An integer parameter as FastAPI's ``Query(ge=low, le=high)`` takes it, or None when
    FastAPI would refuse it (or might read it otherwise than plain digits)."""
    value = params.get(name)
    if value is None:
        return default
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        return None
    return int(value)


class ItemsFastPath(FastPath):
    """``GET /ogc/collections/{collectionId}/items`` answered below FastAPI's routing and
    dependency solving, as ``api.routes.tiles.TileFastPath`` answers tiles: only requests the
    ``items`` route would answer with a page — same parsing, same ``_page``, same
    ``_items_response`` — with the route's template in the metrics; anything else (every 4xx,
    a database failure) goes on to the route."""

    pattern = _FAST_PATH
    router = router
    route_path = ITEMS_PATH

    async def answer(self, scope: Scope, *groups: str) -> Response | None:
        (collection_id,) = groups
        layer = REGISTRY.get(collection_id)
        if layer is None or not (layer.ogc and layer.public):
            return None
        request = Request(scope)
        params = request.query_params
        limit = _bounded(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _bounded(params, "offset", 0, 0, MAX_OFFSET)
        if limit is None or offset is None:
            return None
        try:
            _, query = _items_query(request, collection_id, params.get("bbox"),
                                    params.get("bbox-crs"), params.get("datetime"))
        except InvalidInput:
            return None
        try:
            page = await _page(request, layer, query, limit, offset)
        except Exception:  # noqa: BLE001 - the route answers it (503 when the database is down)
            return None
        return _items_response(request, layer, limit, offset, page)


def page_key(layer: LayerSpec, query: ogc.FeatureQuery, limit: int, offset: int) -> PageKey:
    """What a feature page depends on besides the data: its query, normalised."""
    times = ",".join(t.astimezone(UTC).isoformat() if t else "" for t in (query.start,
                                                                          query.end))
    return (layer.name, query.bbox, f"{times};{filter_key(query.filters)}", limit, offset)


async def _page(request: Request, layer: LayerSpec, query: ogc.FeatureQuery, limit: int,
                offset: int) -> Page:
    """The page from the server-side cache (``gis.tilecache.PageStore``: evicted where the
    data changed, as tiles are), else read on the read pool, on the event loop
    (``gis.readpool``); on the request's connection in one thread hop when a test shares its
    connection, or when the read pool failed (the route then answers as it always has: 503
    when the database is down)."""
    cache: TileCache = request.app.state.tile_cache
    key = page_key(layer, query, limit, offset) if cache.enabled else None
    if uses_read_pool(request.app):
        if key is not None:
            if cache.poll_due():
                await run_in_threadpool(poll_changes, request.app.state.engine, cache)
            found = cache.get_page(key)
            if found is not None:
                return found
        generation = cache.generation(layer.name)
        try:
            async with request.app.state.read_pool.connection() as con:
                page = await ogc.features_page_async(con, layer.source, query, limit=limit,
                                                     offset=offset)
        except Exception as exc:  # noqa: BLE001 - retried on the sync path below
            log.warning("features page of %s: read pool failed (%s); retried on the engine",
                        layer.name, type(exc).__name__)
        else:
            if key is not None:
                cache.put_page(key, page, generation=generation)
            return page

    def fetch(conn: Connection) -> Page:
        if key is not None:
            cache.sync(conn)
            found = cache.get_page(key)
            if found is not None:
                return found
        generation = cache.generation(layer.name)
        page = ogc.features_page(conn, layer.source, query, limit=limit, offset=offset)
        if key is not None:
            cache.put_page(key, page, generation=generation)
        return page

    return await in_one_hop(request, fetch)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@router.get("/collections/{collectionId}/items/{featureId}")
def item(
    request: Request,
    conn: ConnDep,
    collection_id: Annotated[str, Path(alias="collectionId")],
    feature_id: Annotated[int, Path(alias="featureId")],
    f: Annotated[str | None, Query()] = None,
) -> Response:
    """One feature as GeoJSON; 404 when the collection has no such feature."""
    _check_format(request)
    layer = _collection(collection_id)
    found = ogc.feature(conn, layer.source, feature_id)
    if found is None:
        raise NotFound(f"collection {layer.name!r} has no feature {feature_id}",
                       field="featureId")
    base = f"{_base(request)}/ogc/collections/{layer.name}"
    links = [{"href": f"{base}/items/{feature_id}", "rel": "self", "type": GEOJSON},
             {"href": base, "rel": "collection", "type": JSON}]
    body = json.loads(found)
    body["links"] = links
    return Response(_dumps(body), media_type=GEOJSON,
                    headers={"Cache-Control": layer.cache_control})

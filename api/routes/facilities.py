"""Facilities: ``GET /api/facilities`` (GeoJSON) and the nearest ones by line or by road."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import ConnDep
from api.routes.responders import AuthDep, JSONBody, SettingsDep, point_param
from api.schemas import feature_collection, parse_bbox
from api.security import Access, authorised
from gis import dispatch, nearest
from gis.nearest import NearestQuery

router = APIRouter(prefix="/api", tags=["facilities"])


@router.get("/facilities")
def list_facilities(
    conn: ConnDep,
    principal: AuthDep,
    type: Annotated[str | None, Query(description="facility type, e.g. clinic")] = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100000)] = None,
) -> dict:
    """Facilities as a GeoJSON FeatureCollection."""
    rows = dispatch.list_facilities(conn, type=type, bbox=parse_bbox(bbox), limit=limit)
    return feature_collection(rows, id_key="id", drop=())


@router.get("/facilities/types")
def facility_types(conn: ConnDep, principal: AuthDep) -> dict:
    return {"types": dispatch.facility_types(conn)}


AnyoneAccess = Annotated[Access, Depends(authorised(what="find facilities", read_only=True))]


# As nearest responders: one threadpool hop in all (``api.security.Access``).
@router.get("/facilities/nearest", response_model=None, response_class=JSONBody)
def nearest_facilities(
    access: AnyoneAccess,
    settings: SettingsDep,
    lon: Annotated[float, Query(description="longitude (or x in `crs`)")],
    lat: Annotated[float, Query(description="latitude (or y in `crs`)")],
    k: Annotated[int, Query(description="how many (1 … max_k, default 50)")] = 5,
    mode: Annotated[str, Query(description="straight or road")] = "straight",
    type: Annotated[str | None, Query(description="facility type, e.g. fire_station")] = None,
    route: Annotated[bool, Query(description="road mode: include the route geometry")] = False,
    direction: Annotated[Literal["to_point", "from_point"], Query(
        description="road mode: to_point = from the facility to the point (responding), "
                    "from_point = from the point to the facility (going to a shelter)")
    ] = "to_point",
    crs_: Annotated[str | None, Query(alias="crs")] = None,
    jurisdiction: Annotated[str | None, Query(
        description="jurisdiction code; default: the one whose roads are nearest")] = None,
) -> Response:
    """Nearest facilities, ranked by geodesic distance (straight) or by ETA (road)."""
    with access.connect(prepare=settings.prepared_statements) as (conn, _):
        x, y = point_param(lon, lat, crs_)
        jid = dispatch.jurisdiction_id(conn, jurisdiction)
        q = NearestQuery(lon=x, lat=y, k=k, mode=mode, type=type, route=route,  # type: ignore[arg-type]
                         direction=direction, jurisdiction_id=jid)
        body = nearest.nearest(conn, q, settings=settings, kind="facilities")
    return JSONBody(body)

"""Areas and point lookup: ``/api/areas``, ``/api/areas/{code}``, ``/api/locate``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ConnDep
from api.schemas import feature_collection, parse_bbox, utc
from gis import areas, crs

router = APIRouter(prefix="/api", tags=["areas"])


@router.get("/areas")
def list_areas(
    conn: ConnDep,
    level: Annotated[str | None, Query(description="level name (grid) or rank (3)")] = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    at: Annotated[datetime | None, Query(description="boundaries in force at this time")] = None,
    parent: Annotated[str | None, Query(description="only children of this area code")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100000)] = None,
) -> dict:
    """Areas in force now (or at ``at``) as a GeoJSON FeatureCollection."""
    rows = areas.list_areas(conn, level=level, bbox=parse_bbox(bbox), at=utc(at, "at"),
                            parent_code=parent, limit=limit)
    return feature_collection(rows)


@router.get("/areas/{code}")
def get_area(
    conn: ConnDep,
    code: str,
    at: Annotated[datetime | None, Query()] = None,
) -> dict:
    """One area as a GeoJSON Feature, with its parent and children codes."""
    row = areas.get_area(conn, code, at=utc(at, "at"))
    return feature_collection([row])["features"][0]


@router.get("/locate")
def locate(
    conn: ConnDep,
    lon: Annotated[float, Query(description="longitude (or easting/x in `crs`)")],
    lat: Annotated[float, Query(description="latitude (or northing/y in `crs`)")],
    crs_: Annotated[str | None, Query(alias="crs",
                                      description="EPSG code, GCJ-02 or BD-09")] = None,
    at: Annotated[datetime | None, Query()] = None,
) -> dict:
    """The chain of areas containing the point, top level → grid, plus responsibility zones."""
    code = crs.parse_crs(crs_)
    if code == crs.WGS84:
        areas.check_lonlat(lon, lat)
    x, y = crs.to_wgs84(lon, lat, code)
    return areas.locate(conn, x, y, at=utc(at, "at"))

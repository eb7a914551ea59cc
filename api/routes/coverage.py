"""Facility coverage: ``GET /api/coverage`` (per area, with gaps) and
``GET /api/coverage/roads`` (share of main roads within camera range)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ConnDep
from api.routes.kpis import FormatQ, csv_response
from gis import coverage as cov
from gis.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["analysis"])

AREA_COLUMNS = ("code", "name", "households", "households_covered", "households_uncovered",
                "share_households", "residents", "residents_covered", "residents_uncovered",
                "share_residents")
ROAD_COLUMNS = ("code", "name", "road_m", "covered_m", "uncovered_m", "share")


def _features(result: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """Areas as a FeatureCollection: geometry = the uncovered part (null when none)."""
    features = [{"type": "Feature", "id": a["code"],
                 "geometry": json.loads(a["gap"]) if a["gap"] else None,
                 "properties": {c: a[c] for c in columns}} for a in result["areas"]]
    return {"type": "FeatureCollection", "summary": result["summary"], "features": features}


@router.get("/coverage")
def get_coverage(
    conn: ConnDep,
    facility_type: Annotated[str, Query(description="facility type, e.g. clinic")],
    radius_m: Annotated[float | None, Query(description="straight mode: metres (0 < r <= 50 km);"
                                            " default each facility's service radius")] = None,
    minutes: Annotated[float | None, Query(description="road mode: minutes (0 < m <= 180);"
                                           " default each facility's service minutes")] = None,
    mode: Annotated[str, Query(description="straight or road")] = "straight",
    travel: Annotated[str, Query(description="road mode: walk (5 km/h) or drive")] = "walk",
    level: Annotated[str | None, Query(description="level name or rank; default the grids")]
    = None,
    gaps: Annotated[bool, Query(description="include the uncovered parts as geometry")] = True,
    format: FormatQ = "json",
) -> Any:
    """Households and residents covered / not covered per area, and the gaps (GeoJSON)."""
    result = cov.coverage(conn, cov.CoverageQuery(
        facility_type=facility_type, mode=mode, radius_m=radius_m, minutes=minutes,
        travel=travel, level=level, gaps=gaps and format == "json"))
    if format == "csv":
        return csv_response(result["areas"], AREA_COLUMNS, f"coverage-{facility_type}.csv")
    return _features(result, AREA_COLUMNS)


@router.get("/coverage/roads")
def get_road_coverage(
    conn: ConnDep,
    facility_type: Annotated[str, Query(description="facility type")] = "camera",
    radius_m: Annotated[float | None, Query(description="metres; default each facility's")]
    = None,
    highway: Annotated[str | None, Query(description="comma list of road classes; default"
                                         " motorway … tertiary")] = None,
    level: Annotated[str | None, Query()] = None,
    gaps: Annotated[bool, Query()] = True,
    format: FormatQ = "json",
) -> Any:
    """Share of road length within range of a facility type (cameras on main roads)."""
    highways: tuple[str, ...] = cov.MAIN_ROADS
    if highway is not None:
        highways = tuple(h.strip() for h in highway.split(",") if h.strip())
        if not highways:
            raise InvalidInput("highway must list at least one road class", field="highway")
    result = cov.road_coverage(conn, facility_type=facility_type, radius_m=radius_m,
                               highways=highways, level=level,
                               gaps=gaps and format == "json")
    if format == "csv":
        return csv_response(result["areas"], ROAD_COLUMNS, f"road-coverage-{facility_type}.csv")
    return _features(result, ROAD_COLUMNS)

"""Hot spots, space-time hot spots, recurrence and siting: ``/api/analysis/...`` and
``GET /api/cases/{id}/recurrence``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import ConnDep
from api.routes.kpis import FormatQ, csv_response
from api.security import require
from gis import coverage as cov
from gis import hotspots as hs
from gis import siting
from gis.auth import Principal
from gis.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["analysis"])

SitingDep = Annotated[Principal, Depends(require(
    "planner", "analyst", "supervisor", "admin", what="run siting"))]
HOT_COLUMNS = ("code", "name", "n", "value", "z", "p", "p_sim", "class")
ST_COLUMNS = ("code", "name", "n", "class", "hot_steps", "last_z", "trend_z", "trend_p")
REC_COLUMNS = ("code", "n", "recurring", "recurrence_rate")


def _hq(category: str | None, period: str | None, since: date | None, until: date | None,
        level: str | None, permutations: int = 999, per_1000: bool = False) -> hs.HotspotQuery:
    return hs.HotspotQuery(category=category, period=period, since=since, until=until,
                           level=level, permutations=permutations, per_1000=per_1000)


@router.get("/analysis/hotspots")
def get_hotspots(
    conn: ConnDep,
    category: Annotated[str | None, Query(description="category code (its subtree)")] = None,
    period: Annotated[str | None, Query()] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    level: Annotated[str | None, Query(description="default the grids")] = None,
    permutations: Annotated[int, Query(ge=0, le=9999)] = 999,
    per_1000: Annotated[bool, Query(description="cases per 1,000 residents instead of"
                                    " counts")] = False,
    format: FormatQ = "json",
) -> Any:
    """Getis-Ord Gi* of case counts per area: z, p and hot/cold spot class."""
    result = hs.hotspots(conn, _hq(category, period, since, until, level, permutations,
                                   per_1000))
    if format == "csv":
        return csv_response(result["areas"], HOT_COLUMNS, "hotspots.csv")
    return result


@router.get("/analysis/hotspots/space-time")
def get_space_time(
    conn: ConnDep,
    category: Annotated[str | None, Query()] = None,
    period: Annotated[str | None, Query()] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    level: Annotated[str | None, Query()] = None,
    interval: Annotated[str, Query(description="week or month")] = "week",
    format: FormatQ = "json",
) -> Any:
    """Gi* per week or month and an emerging-hot-spot class per area."""
    result = hs.space_time(conn, _hq(category, period, since, until, level), interval=interval)
    if format == "csv":
        return csv_response(result["areas"], ST_COLUMNS, "space-time-hotspots.csv")
    return result


@router.get("/cases/{case_id}/recurrence")
def get_case_recurrence(
    conn: ConnDep,
    case_id: int,
    radius_m: Annotated[float, Query(description="metres")] = 50.0,
    window_days: Annotated[int, Query(description="days before the report")] = 180,
) -> dict:
    """Earlier closed cases of the same category nearby: the problem came back."""
    return hs.recurrence(conn, case_id, radius_m=radius_m, window_days=window_days)


@router.get("/analysis/recurrence")
def get_recurrence(
    conn: ConnDep,
    case: Annotated[int | None, Query(description="one case id")] = None,
    level: Annotated[str | None, Query()] = None,
    period: Annotated[str | None, Query()] = None,
    since: Annotated[date | None, Query()] = None,
    until: Annotated[date | None, Query()] = None,
    category: Annotated[str | None, Query()] = None,
    radius_m: Annotated[float, Query()] = 50.0,
    window_days: Annotated[int, Query()] = 180,
    format: FormatQ = "json",
) -> Any:
    """Links of one case (``case=``), or the recurrence rate per area of a period."""
    if case is not None:
        return hs.recurrence(conn, case, radius_m=radius_m, window_days=window_days)
    result = hs.recurrence_by_area(conn, level=level, period=period, since=since, until=until,
                                   category=category, radius_m=radius_m,
                                   window_days=window_days)
    if format == "csv":
        return csv_response(result["areas"], REC_COLUMNS, "recurrence.csv")
    return result


@router.get("/analysis/siting")
def get_siting(
    conn: ConnDep,
    principal: SitingDep,
    facility_type: Annotated[str, Query()],
    k: Annotated[int, Query(description="how many new sites (1 … 50)")] = 3,
    radius_m: Annotated[float | None, Query()] = None,
    minutes: Annotated[float | None, Query()] = None,
    mode: Annotated[str, Query()] = "straight",
    travel: Annotated[str, Query()] = "walk",
    candidates: Annotated[str, Query(description="grids or nodes")] = "grids",
    max_candidates: Annotated[int, Query()] = 300,
    format: FormatQ = "json",
) -> Any:
    """The best K new sites for a facility type (maximal covering, CBC), with each site's gain
    in households."""
    if k < 1 or k > siting.MAX_K:
        raise InvalidInput(f"k must be 1 … {siting.MAX_K}", field="k")
    result = siting.best_sites(conn, siting.SitingQuery(
        cov.CoverageQuery(facility_type=facility_type, mode=mode, radius_m=radius_m,
                          minutes=minutes, travel=travel, gaps=False),
        k=k, candidates=candidates, max_candidates=max_candidates))
    if format == "csv":
        return csv_response(result["sites"], ("rank", "label", "lon", "lat", "households_gained",
                                              "residents_gained", "buildings_gained"),
                            f"siting-{facility_type}.csv")
    return result

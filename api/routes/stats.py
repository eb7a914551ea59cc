"""Aggregated, read-only figures for the map pages: ``/api/stats/areas`` (live case counts per
area, the command screen) and ``/api/stats/levels`` (levels and household classes, the map
viewer). Counts only: no case field beyond the public ones ever leaves here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import ConnDep
from gis import stats

router = APIRouter(prefix="/api/stats", tags=["stats"])


@router.get("/areas")
def area_counts(
    conn: ConnDep,
    level: Annotated[str | None, Query(max_length=40,
                                       description="level name (street) or rank (1)")] = None,
    parent: Annotated[str | None, Query(max_length=64,
                                        description="list the children of this area code")] = None,
    jurisdiction: Annotated[str | None, Query(max_length=64)] = None,
    overdue_limit: Annotated[int, Query(ge=0, le=stats.OVERDUE_LIST_MAX,
                                        description="how many overdue cases to list")] = 20,
) -> JSONResponse:
    """Areas in force with open, overdue and closed-today case counts (whole subtree, every
    boundary version), the parent's own counts and ancestors, and the most overdue cases."""
    body = stats.area_counts(conn, level=level, parent=parent, jurisdiction=jurisdiction,
                             overdue_limit=overdue_limit)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/levels")
def levels(
    conn: ConnDep,
    jurisdiction: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """The levels in force (rank, name, area count, households, residents, household classes)
    and the extent of all areas."""
    body = stats.level_summary(conn, jurisdiction=jurisdiction)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})

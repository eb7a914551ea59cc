"""``GET /api/search``: areas in force by code or name (the map viewer's search box)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ConnDep
from gis import search as gis_search

router = APIRouter(prefix="/api", tags=["areas"])


@router.get("/search")
def search(
    conn: ConnDep,
    q: Annotated[str, Query(max_length=gis_search.MAX_QUERY,
                            description="code prefix or part of a name")],
    limit: Annotated[int, Query(ge=1, le=gis_search.MAX_RESULTS)] = 10,
) -> dict:
    """Areas whose code starts with ``q`` or whose name contains it, best match first."""
    return {"areas": gis_search.search_areas(conn, q, limit=limit)}

"""``GET /health``: is the database reachable, and which PostGIS does it run."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ConnDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(conn: ConnDep) -> dict:
    row = conn.execute(
        text("SELECT current_setting('server_version'), postgis_lib_version(),"
             " (SELECT extversion FROM pg_extension WHERE extname = 'pgrouting'),"
             " (SELECT count(*) FROM areas WHERE valid_to IS NULL)")
    ).one()
    return {"status": "ok", "database": {"postgresql": row[0], "postgis": row[1],
                                         "pgrouting": row[2]}, "areas": row[3]}

"""``GET /api/audit``: the audit log of administrative actions (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import ConnDep
from api.schemas import utc
from api.security import require
from gis import audit
from gis.auth import Principal

router = APIRouter(prefix="/api", tags=["audit"])
AdminDep = Annotated[Principal, Depends(require("admin", what="read the audit log"))]


@router.get("/audit")
def list_audit(
    conn: ConnDep,
    admin: AdminDep,
    actor: Annotated[str | None, Query(max_length=200, description="account name")] = None,
    action: Annotated[str | None, Query(max_length=64,
                                        description="exact, or a prefix like `user.*`")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.PAGE_MAX)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict:
    """Administrative actions, newest first: account changes, case configuration, KPI
    targets, plan publication (docs/operations.md)."""
    return audit.list_entries(conn, actor=actor, action=action, since=utc(since, "since"),
                              until=utc(until, "until"), limit=limit, offset=offset)

"""Case configuration: categories (public to read, admin to edit), category × area routing
rules and the working calendar's holidays (admin)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, commit
from api.security import require
from gis import audit, calendar, category_admin, routing_rules
from gis.areas import default_jurisdiction
from gis.auth import Principal
from gis.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["categories"])
AdminDep = Annotated[Principal, Depends(require("admin", what="change case configuration"))]

Unit = Literal["working_hours", "working_days", "hours", "days"]


class CategoryPatch(BaseModel):
    """Fields to change; fields left out stay as they are (``null`` clears)."""

    model_config = ConfigDict(extra="forbid")
    department: str | None = None
    deadline: float | None = Field(default=None, gt=0)
    unit: Unit | None = None
    urgency: int = Field(default=2, ge=1, le=4)
    name: str = Field(default="", min_length=1, max_length=200)
    name_zh: str | None = Field(default=None, max_length=200)
    active: bool = True


class CategoryNew(CategoryPatch):
    code: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$")
    parent: str = Field(min_length=1, max_length=16)


@router.get("/categories")
def list_categories(
    conn: ConnDep,
    kind: Annotated[Literal["component", "event"] | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
    leaves: Annotated[bool, Query(description="only reportable (minor) categories")] = False,
) -> dict:
    """The category trees (components 部件 and events 事件), parents before children."""
    return {"categories": category_admin.list_categories(conn, kind=kind, active=active,
                                                         leaves_only=leaves)}


@router.get("/categories/{code}")
def get_category(conn: ConnDep, code: str) -> dict:
    return category_admin.get_category(conn, code)


@router.patch("/categories/{code}")
def patch_category(conn: ConnDep, admin: AdminDep, code: str, body: CategoryPatch) -> dict:
    """Change a category's department, deadline (+unit), urgency, names or active flag."""
    row = category_admin.set_category(conn, code, **_given(body))
    audit.record(conn, admin, "category.update", target=code, details=_given(body))
    commit(conn)
    return row


@router.post("/categories", status_code=201)
def create_category(conn: ConnDep, admin: AdminDep, body: CategoryNew) -> dict:
    """Add a category under an existing parent."""
    if _exists(conn, body.code):
        raise InvalidInput(f"category {body.code!r} exists; PATCH it instead", field="code")
    fields = _given(body)
    fields.pop("code", None)
    row = category_admin.set_category(conn, body.code, **fields)
    audit.record(conn, admin, "category.create", target=body.code, details=fields)
    commit(conn)
    return row


def _given(body: BaseModel) -> dict[str, Any]:
    return {name: getattr(body, name) for name in body.model_fields_set}


def _exists(conn: ConnDep, code: str) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM categories WHERE code = %(c)s",
                                {"c": code}).first() is not None


# --- routing rules ------------------------------------------------------------------------

class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    area: str = Field(min_length=1, max_length=32, description="area code (its subtree)")
    category: str = Field(min_length=1, max_length=16, description="category code (subtree)")
    department: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=500)
    jurisdiction: str | None = None


def _jurisdiction(conn: ConnDep, code: str | None) -> int:
    if code is None:
        return default_jurisdiction(conn)
    jid = conn.exec_driver_sql("SELECT id FROM jurisdictions WHERE code = %(c)s",
                               {"c": code}).scalar()
    if jid is None:
        raise InvalidInput(f"unknown jurisdiction {code!r}", field="jurisdiction")
    return int(jid)


@router.get("/routing-rules")
def list_rules(conn: ConnDep, admin: AdminDep) -> dict:
    """Category × area routing rules (zones override them; see docs/cases.md)."""
    return {"rules": routing_rules.list_rules(conn)}


@router.post("/routing-rules", status_code=201)
def set_rule(conn: ConnDep, admin: AdminDep, body: RuleIn) -> dict:
    rid = routing_rules.set_rule(conn, jurisdiction_id=_jurisdiction(conn, body.jurisdiction),
                                 area_code=body.area, category_code=body.category,
                                 department=body.department, note=body.note)
    audit.record(conn, admin, "routing_rule.set", target=rid, details=body.model_dump())
    commit(conn)
    return {"id": rid}


@router.delete("/routing-rules/{rule_id}", status_code=204)
def delete_rule(conn: ConnDep, admin: AdminDep, rule_id: int) -> None:
    routing_rules.delete_rule(conn, rule_id)
    audit.record(conn, admin, "routing_rule.delete", target=rule_id)
    commit(conn)


# --- working calendar ---------------------------------------------------------------------

class DayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    working: bool = Field(description="false: holiday; true: make-up working day (调休)")
    name: str | None = Field(default=None, max_length=200)
    jurisdiction: str | None = None


@router.get("/calendar/days")
def list_days(conn: ConnDep, jurisdiction: Annotated[str | None, Query()] = None) -> dict:
    """Holidays and make-up working days of a jurisdiction (public)."""
    return {"days": calendar.list_days(conn, _jurisdiction(conn, jurisdiction))}


@router.put("/calendar/days/{day}")
def set_day(conn: ConnDep, admin: AdminDep, day: date, body: DayIn) -> dict:
    calendar.set_days(conn, _jurisdiction(conn, body.jurisdiction), [day],
                      working=body.working, name=body.name)
    audit.record(conn, admin, "calendar.set", target=day.isoformat(), details=body.model_dump())
    commit(conn)
    return {"day": day.isoformat(), "working": body.working, "name": body.name}


@router.delete("/calendar/days/{day}", status_code=204)
def clear_day(conn: ConnDep, admin: AdminDep, day: date,
              jurisdiction: Annotated[str | None, Query()] = None) -> None:
    calendar.clear_days(conn, _jurisdiction(conn, jurisdiction), [day])
    audit.record(conn, admin, "calendar.clear", target=day.isoformat())
    commit(conn)

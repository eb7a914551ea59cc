"""Accounts (admin): create accounts and tokens, revoke tokens, disable accounts; ``/api/me``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, commit
from api.security import PrincipalDep, require
from gis import audit, auth
from gis.auth import Principal

router = APIRouter(prefix="/api", tags=["users"])
AdminDep = Annotated[Principal, Depends(require("admin", what="manage accounts"))]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: str = Field(description=", ".join(auth.ROLES))
    areas: list[str] = Field(default_factory=list, description="area codes (their subtrees)")
    department: str | None = None
    expires_days: float | None = Field(default=365, gt=0, description="null: never expires")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_days: float | None = Field(default=365, gt=0)
    label: str | None = Field(default=None, max_length=200)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: bool


def _expiry(days: float | None) -> timedelta | None:
    return timedelta(days=days) if days is not None else None


@router.get("/me")
def me(principal: PrincipalDep) -> dict:
    """Who the token belongs to, its role and scope."""
    return {"name": principal.name, "role": principal.role,
            "department": principal.department_code, "areas": list(principal.scope_codes),
            "scope": principal.describe_scope()}


@router.get("/users")
def list_users(conn: ConnDep, admin: AdminDep) -> dict:
    return {"users": auth.list_users(conn)}


@router.post("/users", status_code=201)
def create_user(conn: ConnDep, admin: AdminDep, body: UserIn) -> dict:
    """Create an account; the response carries its first token (shown once)."""
    uid = auth.create_user(conn, body.name, body.role, area_codes=body.areas,
                           department=body.department)
    token = auth.issue_token(conn, uid, expires_in=_expiry(body.expires_days), label="api")
    audit.record(conn, admin, "user.create", target=body.name, details=body.model_dump())
    commit(conn)
    return {"user": auth.get_user(conn, uid), "token": token}


@router.post("/users/{name}/tokens", status_code=201)
def new_token(conn: ConnDep, admin: AdminDep, name: str, body: TokenIn) -> dict:
    uid = auth.user_id_by_name(conn, name)
    token = auth.issue_token(conn, uid, expires_in=_expiry(body.expires_days), label=body.label)
    audit.record(conn, admin, "user.token", target=name, details=body.model_dump())
    commit(conn)
    return {"name": name, "token": token}


@router.delete("/users/{name}/tokens")
def revoke_tokens(conn: ConnDep, admin: AdminDep, name: str) -> dict:
    count = auth.revoke_tokens(conn, auth.user_id_by_name(conn, name))
    audit.record(conn, admin, "user.revoke", target=name, details={"revoked": count})
    commit(conn)
    return {"name": name, "revoked": count}


@router.patch("/users/{name}")
def patch_user(conn: ConnDep, admin: AdminDep, name: str, body: UserPatch) -> dict:
    uid = auth.user_id_by_name(conn, name)
    auth.set_active(conn, uid, body.active)
    audit.record(conn, admin, "user.enable" if body.active else "user.disable", target=name)
    commit(conn)
    return auth.get_user(conn, uid)

"""Accounts, roles, bearer tokens and scope.

Every account has one role and may be scoped to area subtrees (``users.scope_area_ids``: the
roots) and/or one department. It sees private fields of, and changes, only the cases inside its
scope: located in one of its area subtrees (any boundary version of those area codes, so scope
survives a redraw) and, for a department-scoped account, routed to its department or summoned to
it. Callers without a token are the ``public`` role.

Tokens are random strings shown once; only their SHA-256 is stored (``api_tokens``), with an
optional expiry and revocation time.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from gis import prepared
from gis.errors import Conflict, GridgovError, InvalidInput, NotFound
from gis.models import ROLES

PUBLIC_ROLE = "public"
ALL_ROLES = (PUBLIC_ROLE, *ROLES)
# Roles that may read reporters' contact details, within their scope (need to know: call-backs,
# access to the site). Planners and analysts work on aggregates and never see them.
CONTACT_ROLES = frozenset({"call_taker", "dispatcher", "handler", "supervisor", "admin"})
STAFF_ROLES = frozenset(ROLES) - {"reporter"}
TOKEN_PREFIX = "ggt_"


class Unauthorized(GridgovError):
    """No valid credentials: unknown, expired or revoked token (HTTP 401)."""


class Forbidden(GridgovError):
    """Valid credentials, but the role or scope does not allow this (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account (role, department, area scope) or the public."""

    role: str = PUBLIC_ROLE
    user_id: int | None = None
    name: str = "public"
    department_id: int | None = None
    department_code: str | None = None
    scope_area_ids: tuple[int, ...] = ()
    scope_codes: tuple[str, ...] = field(default=())

    @property
    def is_public(self) -> bool:
        return self.role == PUBLIC_ROLE

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def unrestricted(self) -> bool:
        """Staff with neither an area nor a department restriction."""
        return self.is_staff and not self.scope_area_ids and self.department_id is None

    def describe_scope(self) -> str:
        parts = []
        if self.scope_codes:
            parts.append("areas " + ", ".join(self.scope_codes))
        if self.department_code:
            parts.append("department " + self.department_code)
        if self.role == "reporter":
            parts.append("own reports")
        return " and ".join(parts) or "everything"

    def as_actor(self) -> dict[str, Any]:
        """How the principal is recorded in event data."""
        return {"role": self.role, "name": self.name}


PUBLIC = Principal()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# --- scope --------------------------------------------------------------------------------

# Every version (any boundary generation) of the scope roots' codes, and all their descendants.
_SUBTREE = """ARRAY(
    WITH RECURSIVE sub AS (
        SELECT b.id FROM areas a
          JOIN areas b ON b.jurisdiction_id = a.jurisdiction_id AND b.code = a.code
         WHERE a.id = ANY(CAST(:_scope_roots AS bigint[]))
        UNION
        SELECT ch.id FROM areas ch JOIN sub ON ch.parent_id = sub.id
    ) SELECT id FROM sub)"""


def scope_sql(principal: Principal, alias: str = "c") -> tuple[str, dict[str, Any]]:
    """A boolean SQL expression: the case row ``alias`` lies inside the principal's scope."""
    if principal.is_public:
        return "false", {}
    if principal.role == "reporter":
        return f"({alias}.reporter_id = :_scope_user)", {"_scope_user": principal.user_id}
    parts: list[str] = []
    params: dict[str, Any] = {}
    if principal.scope_area_ids:
        parts.append(f"{alias}.area_id = ANY({_SUBTREE})")
        params["_scope_roots"] = list(principal.scope_area_ids)
    if principal.department_id is not None:
        parts.append(
            f"({alias}.department_id = :_scope_dept OR EXISTS (SELECT 1 FROM case_summons s"
            f" WHERE s.case_id = {alias}.id AND s.department_id = :_scope_dept))")
        params["_scope_dept"] = principal.department_id
    return ("(" + " AND ".join(parts) + ")") if parts else "true", params


def area_in_scope(conn: Connection, principal: Principal, area_id: int | None) -> bool:
    """Whether an area (e.g. a new case's grid) lies inside the principal's area scope."""
    if not principal.scope_area_ids:
        return principal.is_staff
    if area_id is None:
        return False
    return bool(conn.execute(text(f"SELECT CAST(:area AS bigint) = ANY({_SUBTREE})"),
                             {"area": area_id,
                              "_scope_roots": list(principal.scope_area_ids)}).scalar())


# --- accounts -----------------------------------------------------------------------------

def _resolve_areas(conn: Connection, codes: Sequence[str],
                   jurisdiction_id: int | None) -> list[int]:
    ids: list[int] = []
    for code in codes:
        rows = conn.execute(
            text("SELECT id, jurisdiction_id FROM areas WHERE code = :code AND valid_to IS NULL"
                 " AND (CAST(:j AS integer) IS NULL OR jurisdiction_id = :j)"),
            {"code": code, "j": jurisdiction_id},
        ).all()
        if not rows:
            raise InvalidInput(f"no area in force with code {code!r}", field="area")
        if len(rows) > 1:
            raise InvalidInput(f"area code {code!r} exists in {len(rows)} jurisdictions;"
                               " name the jurisdiction", field="area")
        ids.append(int(rows[0].id))
    return ids


def _department_id(conn: Connection, code: str | None) -> int | None:
    if code is None:
        return None
    dep = conn.execute(text("SELECT id FROM departments WHERE code = :c OR name = :c"
                            " ORDER BY code = :c DESC LIMIT 1"), {"c": code}).scalar()
    if dep is None:
        known = conn.execute(text("SELECT string_agg(code, ', ' ORDER BY code)"
                                  " FROM departments")).scalar()
        raise InvalidInput(f"unknown department {code!r}; known: {known}", field="department")
    return int(dep)


def create_user(
    conn: Connection,
    name: str,
    role: str,
    *,
    area_codes: Sequence[str] = (),
    department: str | None = None,
    jurisdiction_id: int | None = None,
) -> int:
    """Create an account and return its id. Handlers must belong to a department.

    Raises ``InvalidInput`` naming the field for an unknown role, area or department and
    ``Conflict`` when the name is taken.
    """
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("account name must be 1–100 characters", field="name")
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles are: {', '.join(ROLES)}"
                           " (public needs no account)", field="role")
    if role == "reporter" and (area_codes or department):
        raise InvalidInput("reporter accounts see their own reports; they take no area or"
                           " department scope", field="role")
    if role == "handler" and not department:
        raise InvalidInput("a handler account must belong to a department (--department)",
                           field="department")
    area_ids = _resolve_areas(conn, area_codes, jurisdiction_id)
    dep_id = _department_id(conn, department)
    uid = conn.execute(
        text("INSERT INTO users (name, role, department_id, scope_area_ids)"
             " VALUES (:name, :role, :dep, CAST(:areas AS bigint[]))"
             " ON CONFLICT (name) DO NOTHING RETURNING id"),
        {"name": name, "role": role, "dep": dep_id, "areas": area_ids or None},
    ).scalar()
    if uid is None:
        raise Conflict(f"an account named {name!r} already exists", field="name")
    return int(uid)


def issue_token(conn: Connection, user_id: int, *, expires_in: timedelta | None = None,
                label: str | None = None, now: datetime | None = None) -> str:
    """A new bearer token for the account; only its SHA-256 is stored. Shown once."""
    token = new_token()
    expires = (now or datetime.now(UTC)) + expires_in if expires_in is not None else None
    conn.execute(
        text("INSERT INTO api_tokens (user_id, token_sha256, label, expires_at)"
             " VALUES (:u, :h, :label, :exp)"),
        {"u": user_id, "h": hash_token(token), "label": label, "exp": expires},
    )
    return token


def user_id_by_name(conn: Connection, name: str) -> int:
    uid = conn.execute(text("SELECT id FROM users WHERE name = :n"), {"n": name}).scalar()
    if uid is None:
        raise NotFound(f"no account named {name!r}", field="name")
    return int(uid)


def revoke_tokens(conn: Connection, user_id: int) -> int:
    result = conn.execute(
        text("UPDATE api_tokens SET revoked_at = now() WHERE user_id = :u"
             " AND revoked_at IS NULL"), {"u": user_id})
    return int(result.rowcount or 0)


def set_active(conn: Connection, user_id: int, active: bool) -> None:
    conn.execute(text("UPDATE users SET active = :a WHERE id = :u"), {"a": active, "u": user_id})


def list_users(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        """
        SELECT u.id, u.name, u.role, d.code AS department, u.active, u.created_at,
               ARRAY(SELECT a.code FROM areas a WHERE a.id = ANY(u.scope_area_ids)
                     ORDER BY a.code) AS areas,
               (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id
                  AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))
                 AS live_tokens
          FROM users u LEFT JOIN departments d ON d.id = u.department_id
         ORDER BY u.name
        """)).mappings()
    return [dict(r) for r in rows]


def get_user(conn: Connection, user_id: int) -> dict[str, Any]:
    for row in list_users(conn):
        if row["id"] == user_id:
            return row
    raise NotFound(f"no account with id {user_id}", field="id")


_AUTH_SQL = text("""
SELECT u.id, u.name, u.role, u.active, u.department_id, d.code AS department_code,
       COALESCE(u.scope_area_ids, '{}') AS scope_area_ids,
       ARRAY(SELECT a.code FROM areas a WHERE a.id = ANY(u.scope_area_ids) ORDER BY a.code)
         AS scope_codes,
       t.expires_at, t.revoked_at
  FROM api_tokens t
  JOIN users u ON u.id = t.user_id
  LEFT JOIN departments d ON d.id = u.department_id
 WHERE t.token_sha256 = :h
""")  # parsed once: every authenticated request runs it


def authenticate(conn: Connection, token: str | None, *, now: datetime | None = None,
                 prepare: bool = False) -> Principal:
    """The principal for a bearer token (``None`` → the public). 401 with the reason otherwise.

    ``prepare``: look the token up with a server-side prepared statement (``gis.prepared``),
    not planned again on every call; not behind a transaction-pooling proxy.
    """
    if token is None:
        return PUBLIC
    params = {"h": hash_token(token.strip())}
    result = (prepared.execute(conn, _AUTH_SQL.text, params, types=(("h", "text"),)) if prepare
              else conn.execute(_AUTH_SQL, params))
    row = result.mappings().first()
    if row is None:
        raise Unauthorized("unknown token: send `Authorization: Bearer <token>` with a token"
                           " from `gridgov users add`", field="Authorization")
    when = now or datetime.now(UTC)
    if row["revoked_at"] is not None:
        raise Unauthorized(f"token was revoked at {row['revoked_at'].isoformat()}",
                           field="Authorization")
    if row["expires_at"] is not None and row["expires_at"] <= when:
        raise Unauthorized(f"token expired at {row['expires_at'].isoformat()}",
                           field="Authorization")
    if not row["active"]:
        raise Unauthorized(f"account {row['name']!r} is disabled", field="Authorization")
    return Principal(
        role=row["role"], user_id=int(row["id"]), name=row["name"],
        department_id=row["department_id"], department_code=row["department_code"],
        scope_area_ids=tuple(int(i) for i in row["scope_area_ids"]),
        scope_codes=tuple(row["scope_codes"]),
    )


def require_role(principal: Principal, roles: Sequence[str], what: str) -> None:
    """403 (or 401 for the public) unless the principal has one of ``roles``."""
    if principal.role in roles:
        return
    allowed = ", ".join(roles)
    if principal.is_public:
        raise Unauthorized(f"{what} needs an account token (roles: {allowed})",
                           field="Authorization")
    raise Forbidden(f"role {principal.role} may not {what}; allowed roles: {allowed}",
                    field="role")


# --- demo ---------------------------------------------------------------------------------

def _first_area(conn: Connection, jurisdiction_id: int, rank: int) -> str | None:
    return conn.execute(
        text("SELECT code FROM areas WHERE jurisdiction_id = :j AND level = :r"
             " AND valid_to IS NULL ORDER BY code LIMIT 1"),
        {"j": jurisdiction_id, "r": rank},
    ).scalar()


def create_demo_accounts(conn: Connection, out_path: str | Path, *,
                         jurisdiction_id: int | None = None,
                         expires_in: timedelta | None = timedelta(days=30),
                         prefix: str = "demo-") -> dict[str, Any]:
    """One account per role on the demo jurisdiction, tokens written to ``out_path`` (0600).

    A grid worker and a supervisor are scoped to the first street (the supervisor can summon
    departments: 吹哨), a handler to the Sanitation department, a reporter to its own reports;
    call taker, dispatcher, planner, analyst and admin see the whole jurisdiction. Re-running
    revokes the previous demo tokens and issues new ones. Returns the file path and the
    accounts (without tokens).
    """
    from gis.areas import default_jurisdiction, level_rank

    jid = jurisdiction_id if jurisdiction_id is not None else default_jurisdiction(conn)
    try:
        street_rank = level_rank(conn, "street", jid)
    except InvalidInput:
        street_rank = 1
    street = _first_area(conn, jid, street_rank) or _first_area(conn, jid, 0)
    handler_dep = conn.execute(text("SELECT code FROM departments ORDER BY code = 'SANITATION'"
                                    " DESC, code LIMIT 1")).scalar()
    if handler_dep is None:
        from gis.categories import seed_departments

        seed_departments(conn)
        handler_dep = "SANITATION"
    scopes: dict[str, tuple[list[str], str | None]] = {
        "reporter": ([], None),
        "grid_worker": ([street] if street else [], None),
        "call_taker": ([], None),
        "dispatcher": ([], None),
        "handler": ([], handler_dep),
        "supervisor": ([street] if street else [], None),
        "planner": ([], None),
        "analyst": ([], None),
        "admin": ([], None),
    }
    accounts: dict[str, dict[str, Any]] = {}
    for role, (areas_, dep) in scopes.items():
        name = f"{prefix}{role}"
        existing = conn.execute(text("SELECT id FROM users WHERE name = :n"),
                                {"n": name}).scalar()
        if existing is not None:
            uid = int(existing)
            conn.execute(
                text("UPDATE users SET role = :role, department_id = (SELECT id FROM departments"
                     " WHERE code = :dep), scope_area_ids = CAST(:areas AS bigint[]),"
                     " active = true WHERE id = :u"),
                {"role": role, "dep": dep, "u": uid,
                 "areas": _resolve_areas(conn, areas_, jid) or None})
            revoke_tokens(conn, uid)
        else:
            uid = create_user(conn, name, role, area_codes=areas_, department=dep,
                              jurisdiction_id=jid)
        token = issue_token(conn, uid, expires_in=expires_in, label="demo")
        accounts[role] = {"name": name, "role": role, "areas": areas_, "department": dep,
                          "token": token}
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"note": "gridgov demo accounts: send `Authorization: Bearer <token>`",
                   "accounts": accounts}, fh, indent=2, ensure_ascii=False)
    os.chmod(path, 0o600)
    return {"path": str(path),
            "accounts": [{k: v for k, v in a.items() if k != "token"}
                         for a in accounts.values()]}

"""The audit log of administrative actions: who changed accounts, case configuration, KPI
targets or published boundaries, when, from which request.

Call sites add one line, in the same transaction as the change (so a rolled-back change leaves
no record and a committed one always has its record)::

    audit.record(conn, principal, "category.update", target=code, details=fields)

``principal=None`` means the command line (``gridgov users add`` …): the actor is recorded as
``cli:<operating-system user>``. The HTTP request id (``X-Request-ID``) is taken from
``REQUEST_ID``, a context variable the API's middleware sets per request. Secrets never enter
the log: detail keys that look like tokens, passwords or contacts are replaced by ``"[redacted]"``.
The table is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE).
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import InvalidInput

REQUEST_ID: ContextVar[str | None] = ContextVar("gridgov_request_id", default=None)

# The actions recorded today (docs/operations.md lists them); others are allowed, named
# ``<object>.<verb>``.
ACTIONS = (
    "user.create", "user.token", "user.revoke", "user.disable", "user.enable",
    "category.create", "category.update", "routing_rule.set", "routing_rule.delete",
    "calendar.set", "calendar.clear", "kpi_target.update", "plan.publish",
)
_ACTION = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_SECRET_KEY = re.compile(r"token|password|secret|contact|api_key", re.IGNORECASE)
PAGE_MAX = 500


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): "[redacted]" if _SECRET_KEY.search(str(k)) else _clean(v)
                for k, v in value.items() if not callable(v)}  # argparse's func
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return "cli"


def record(conn: Connection, actor: Principal | None, action: str, *,
           target: str | int | None = None, details: Mapping[str, Any] | None = None) -> int:
    """Append one entry in the caller's transaction; returns its id.

    >>> record(conn, admin, "user.revoke", target="alice", details={"revoked": 2})  # doctest: +SKIP
    """
    if not _ACTION.match(action):
        raise ValueError(f"audit action must look like 'object.verb', not {action!r}")
    if actor is None:
        actor_id, name, role = None, _cli_actor(), "cli"
    else:
        actor_id, name, role = actor.user_id, actor.name, actor.role
    return int(conn.execute(
        text("INSERT INTO audit_log (actor_id, actor_name, actor_role, action, target, details,"
             " request_id) VALUES (:aid, :name, :role, :action, :target,"
             " CAST(:details AS jsonb), :rid) RETURNING id"),
        {"aid": actor_id, "name": name, "role": role, "action": action,
         "target": None if target is None else str(target),
         "details": json.dumps(_clean(dict(details))) if details is not None else None,
         "rid": REQUEST_ID.get()},
    ).scalar_one())


def list_entries(conn: Connection, *, actor: str | None = None, action: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Newest first. ``action`` is exact (``user.create``) or a prefix ending in ``.*``
    (``user.*``); ``actor`` is the account name as recorded."""
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidInput(f"limit must be 1–{PAGE_MAX}, got {limit}", field="limit")
    if offset < 0:
        raise InvalidInput(f"offset must be ≥ 0, got {offset}", field="offset")
    where = ["true"]
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if actor:
        where.append("actor_name = :actor")
        params["actor"] = actor
    if action:
        if action.endswith(".*"):
            where.append("starts_with(action, :action)")
            params["action"] = action[:-1]
        else:
            where.append("action = :action")
            params["action"] = action
    if since is not None:
        where.append("at >= :since")
        params["since"] = since
    if until is not None:
        where.append("at < :until")
        params["until"] = until
    clause = " AND ".join(where)
    total = conn.execute(text(f"SELECT count(*) FROM audit_log WHERE {clause}"), params).scalar()
    rows = conn.execute(text(
        f"SELECT id, at, actor_id, actor_name, actor_role, action, target, details, request_id"
        f" FROM audit_log WHERE {clause} ORDER BY at DESC, id DESC LIMIT :limit OFFSET :offset"),
        params).mappings()
    return {"total": int(total or 0), "limit": limit, "offset": offset,
            "entries": [dict(r) for r in rows]}

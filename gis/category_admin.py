"""Editing case categories (admin API and ``gridgov categories``), validated.

The default trees come from ``gis.categories.seed_defaults``; here an administrator changes a
category's department, deadline, unit, urgency, names or active flag, or adds a category under
an existing parent. Codes are never renamed (cases refer to them).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, text

from gis.calendar import UNITS
from gis.errors import InvalidInput, NotFound

_CODE = re.compile(r"^[A-Z0-9]{1,16}$")
_UNSET: Any = object()

_SELECT = """
SELECT c.code, c.kind, p.code AS parent, c.depth, c.name, c.name_zh, d.code AS department,
       c.deadline_value, c.deadline_unit, c.urgency, c.active,
       NOT EXISTS (SELECT 1 FROM categories ch WHERE ch.parent_id = c.id) AS leaf
  FROM categories c
  LEFT JOIN categories p ON p.id = c.parent_id
  LEFT JOIN departments d ON d.id = c.department_id
"""


def list_categories(conn: Connection, *, kind: str | None = None,
                    active: bool | None = None, leaves_only: bool = False
                    ) -> list[dict[str, Any]]:
    """All categories, parents before children (ordered by code)."""
    if kind is not None and kind not in ("component", "event"):
        raise InvalidInput(f"kind must be component or event, not {kind!r}", field="kind")
    where = ["(CAST(:kind AS text) IS NULL OR c.kind = :kind)",
             "(CAST(:active AS boolean) IS NULL OR c.active = :active)"]
    if leaves_only:
        where.append("NOT EXISTS (SELECT 1 FROM categories ch WHERE ch.parent_id = c.id)")
    rows = conn.execute(text(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY c.code"),
                        {"kind": kind, "active": active}).mappings()
    return [dict(r) for r in rows]


def get_category(conn: Connection, code: str) -> dict[str, Any]:
    row = conn.execute(text(f"{_SELECT} WHERE c.code = :code"), {"code": code}).mappings().first()
    if row is None:
        raise NotFound(f"unknown category {code!r}", field="code")
    return dict(row)


def set_category(
    conn: Connection,
    code: str,
    *,
    department: str | None = _UNSET,
    deadline: float | None = _UNSET,
    unit: str | None = _UNSET,
    urgency: int = _UNSET,
    name: str = _UNSET,
    name_zh: str | None = _UNSET,
    active: bool = _UNSET,
    parent: str | None = None,
) -> dict[str, Any]:
    """Update a category (only the arguments given), or create it under ``parent``.

    >>> set_category(conn, "E010101", deadline=3, unit="working_hours")  # doctest: +SKIP
    """
    values: dict[str, Any] = {}
    if department is not _UNSET:
        if department is None:
            values["department_id"] = None
        else:
            dep = conn.execute(text("SELECT id FROM departments WHERE code = :d"),
                               {"d": department}).scalar()
            if dep is None:
                known = conn.execute(text("SELECT string_agg(code, ', ' ORDER BY code)"
                                          " FROM departments")).scalar()
                raise InvalidInput(f"unknown department {department!r}; known: {known}",
                                   field="department")
            values["department_id"] = dep
    if deadline is not _UNSET:
        if deadline is not None and not (0 < float(deadline) <= 365 * 24):
            raise InvalidInput(f"deadline must be a positive number (got {deadline})",
                               field="deadline")
        values["deadline_value"] = deadline
    if unit is not _UNSET:
        if unit is not None and unit not in UNITS:
            raise InvalidInput(f"unit must be one of {', '.join(UNITS)}, not {unit!r}",
                               field="unit")
        values["deadline_unit"] = unit
    if urgency is not _UNSET:
        if not isinstance(urgency, int) or not 1 <= urgency <= 4:
            raise InvalidInput(f"urgency must be 1 (low) … 4 (critical), not {urgency!r}",
                               field="urgency")
        values["urgency"] = urgency
    if name is not _UNSET:
        if not name or not name.strip() or len(name) > 200:
            raise InvalidInput("name must be 1–200 characters", field="name")
        values["name"] = name.strip()
    if name_zh is not _UNSET:
        values["name_zh"] = name_zh
    if active is not _UNSET:
        values["active"] = bool(active)

    existing = conn.execute(text("SELECT id, deadline_value, deadline_unit FROM categories"
                                 " WHERE code = :c"), {"c": code}).first()
    if existing is None:
        return _create(conn, code, parent, values)
    if parent is not None:
        raise InvalidInput("a category's parent cannot be changed (cases refer to its code)",
                           field="parent")
    final_value = values.get("deadline_value", existing.deadline_value)
    final_unit = values.get("deadline_unit", existing.deadline_unit)
    if (final_value is None) != (final_unit is None):
        raise InvalidInput("deadline and unit go together: give both (or clear both)",
                           field="unit" if final_unit is None else "deadline")
    if values:
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(text(f"UPDATE categories SET {assignments} WHERE code = :code"),
                     {**values, "code": code})
    return get_category(conn, code)


def _create(conn: Connection, code: str, parent: str | None,
            values: dict[str, Any]) -> dict[str, Any]:
    if not _CODE.match(code):
        raise InvalidInput(f"category code {code!r} must be 1–16 capital letters or digits",
                           field="code")
    if parent is None:
        raise InvalidInput(f"unknown category {code!r}; to add it give its parent and name",
                           field="parent")
    prow = conn.execute(text("SELECT id, kind, depth FROM categories WHERE code = :c"),
                        {"c": parent}).first()
    if prow is None:
        raise InvalidInput(f"unknown parent category {parent!r}", field="parent")
    if "name" not in values:
        raise InvalidInput("a new category needs a name", field="name")
    if (values.get("deadline_value") is None) != (values.get("deadline_unit") is None):
        raise InvalidInput("deadline and unit go together: give both", field="unit")
    conn.execute(text(
        "INSERT INTO categories (code, kind, parent_id, depth, name, name_zh, department_id,"
        " deadline_value, deadline_unit, urgency, active) VALUES (:code, :kind, :parent,"
        " :depth, :name, :name_zh, :department_id, :deadline_value, :deadline_unit,"
        " COALESCE(:urgency, 2), COALESCE(:active, true))"),
        {"code": code, "kind": prow.kind, "parent": prow.id, "depth": prow.depth + 1,
         "name_zh": None, "department_id": None, "deadline_value": None, "deadline_unit": None,
         "urgency": None, "active": None, **values})
    return get_category(conn, code)

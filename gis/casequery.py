"""Reading cases: one case, filtered pages of cases, likely duplicates nearby, the history.

Every read goes through ``shape``: the public sees public fields only; staff see private fields
(reporter contact, photos, responder) only for cases inside their scope and only when their
role needs them (``gis.auth.CONTACT_ROLES``); idempotency keys and token hashes never leave the
database.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from gis.areas import check_bbox, check_lonlat
from gis.auth import CONTACT_ROLES, Principal, scope_sql
from gis.caseconfig import CaseSettings
from gis.errors import InvalidInput, NotFound
from gis.models import CASE_STATUSES
from gis.routing_rules import tolerance_degrees

PUBLIC_FIELDS = (
    "id", "status", "category", "category_name", "channel", "urgency", "description",
    "area_code", "area_name", "department", "reported_at", "due_at", "closed_at", "overdue",
    "escalation_level", "duplicate_of", "satisfaction", "component_id", "media_count", "lon",
    "lat",
)
STAFF_FIELDS = ("routed_by", "responder_id", "in_scope")
PRIVATE_FIELDS = ("reporter_contact", "media")

_CASE_COLUMNS = """
    c.id, c.status, k.code AS category, k.name AS category_name, c.channel, c.urgency,
    c.description, a.code AS area_code, a.name AS area_name, d.code AS department,
    c.reported_at, c.due_at, c.closed_at,
    (c.due_at < CAST(:now AS timestamptz) AND c.status NOT IN ('closed', 'rejected'))
      AS overdue,
    c.escalation_level, c.duplicate_of, c.satisfaction, c.component_id,
    COALESCE(jsonb_array_length(c.media), 0) AS media_count,
    ST_X(ST_PointOnSurface(c.geom)) AS lon, ST_Y(ST_PointOnSurface(c.geom)) AS lat,
    c.routed_by, c.responder_id, c.reporter_contact, c.media,
    ST_AsGeoJSON(c.geom, 7) AS geometry, {scope} AS in_scope
"""
_CASE_FROM = """
  FROM cases c
  JOIN categories k ON k.id = c.category_id
  LEFT JOIN areas a ON a.id = c.area_id
  LEFT JOIN departments d ON d.id = c.department_id
"""


def shape(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """A case row as the principal may see it (``geometry`` kept as a GeoJSON string)."""
    out = {k: row[k] for k in PUBLIC_FIELDS if k in row}
    for key in ("reported_at", "due_at", "closed_at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    if out.get("lon") is not None:
        out["lon"], out["lat"] = round(out["lon"], 7), round(out["lat"], 7)
    in_scope = bool(row.get("in_scope"))
    if principal.is_staff:
        out.update({k: row.get(k) for k in STAFF_FIELDS})
        out["in_scope"] = in_scope
    if in_scope and (principal.role in CONTACT_ROLES or principal.role == "reporter"):
        out.update({k: row.get(k) for k in PRIVATE_FIELDS})
    if "geometry" in row:
        out["geometry"] = row["geometry"]
    return out


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def fetch_case(conn: Connection, case_id: int, principal: Principal, *,
               now: datetime | None = None) -> dict[str, Any]:
    """The raw row (with ``in_scope``) of one case; 404 when there is none."""
    scope, params = scope_sql(principal)
    row = conn.execute(
        text(f"SELECT {_CASE_COLUMNS.format(scope=scope)} {_CASE_FROM} WHERE c.id = :id"),
        {**params, "id": case_id, "now": _now(now)},
    ).mappings().first()
    if row is None:
        raise NotFound(f"no case {case_id}", field="id")
    return dict(row)


def get_case(conn: Connection, case_id: int, principal: Principal, *,
             now: datetime | None = None) -> dict[str, Any]:
    """One case as the principal may see it."""
    return shape(fetch_case(conn, case_id, principal, now=now), principal)


@dataclass
class CaseFilter:
    """Filters of ``GET /api/cases`` (all optional, combined with AND)."""

    bbox: tuple[float, float, float, float] | None = None
    status: Sequence[str] = ()
    area: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    overdue: bool | None = None
    mine: bool = False
    department: str | None = None


def encode_cursor(reported_at: datetime, case_id: int) -> str:
    raw = json.dumps([reported_at.isoformat(), case_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = json.loads(raw)
        return datetime.fromisoformat(at), int(cid)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not one this server issued; start without it",
                           field="cursor") from exc


def _where(conn: Connection, f: CaseFilter, principal: Principal,
           params: dict[str, Any]) -> list[str]:
    where: list[str] = []
    if f.bbox is not None:
        check_bbox(f.bbox)
        params.update(dict(zip(("x0", "y0", "x1", "y1"), f.bbox, strict=True)))
        where.append("c.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
    if f.status:
        bad = [s for s in f.status if s not in CASE_STATUSES]
        if bad:
            raise InvalidInput(f"unknown status {bad[0]!r}; statuses are:"
                               f" {', '.join(CASE_STATUSES)}", field="status")
        params["statuses"] = list(f.status)
        where.append("c.status = ANY(:statuses)")
    if f.area:
        if conn.execute(text("SELECT 1 FROM areas WHERE code = :c LIMIT 1"),
                        {"c": f.area}).first() is None:
            raise InvalidInput(f"unknown area {f.area!r}", field="area")
        params["area"] = f.area
        where.append("""c.area_id = ANY(ARRAY(
            WITH RECURSIVE sub AS (
                SELECT id FROM areas WHERE code = :area
                UNION SELECT ch.id FROM areas ch JOIN sub ON ch.parent_id = sub.id
            ) SELECT id FROM sub))""")
    if f.category:
        if conn.execute(text("SELECT 1 FROM categories WHERE code = :c"),
                        {"c": f.category}).first() is None:
            raise InvalidInput(f"unknown category {f.category!r}", field="category")
        params["category"] = f.category
        where.append("""c.category_id = ANY(ARRAY(
            WITH RECURSIVE sub AS (
                SELECT id FROM categories WHERE code = :category
                UNION SELECT ch.id FROM categories ch JOIN sub ON ch.parent_id = sub.id
            ) SELECT id FROM sub))""")
    if f.department:
        params["department"] = f.department
        where.append("d.code = :department")
    if f.since is not None:
        params["since"] = f.since
        where.append("c.reported_at >= :since")
    if f.until is not None:
        params["until"] = f.until
        where.append("c.reported_at < :until")
    if f.overdue is not None:
        cond = ("c.due_at < CAST(:now AS timestamptz)"
                " AND c.status NOT IN ('closed', 'rejected')")
        where.append(f"({cond})" if f.overdue else f"NOT COALESCE({cond}, false)")
    if f.mine:
        if not (principal.is_staff or principal.role == "reporter"):
            raise InvalidInput("mine=true needs an account token", field="mine")
        where.append("{scope}")
    return where


def list_cases(
    conn: Connection,
    principal: Principal,
    filters: CaseFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    cursor: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A page of cases, newest first. Returns ``{"cases": [...], "next_cursor": str|None}``.

    Paging is by keyset (``cursor``, stable under inserts) or by ``offset``; not both.
    """
    f = filters or CaseFilter()
    if cursor and offset:
        raise InvalidInput("give cursor or offset, not both", field="cursor")
    scope, params = scope_sql(principal)
    params.update({"now": _now(now), "limit": limit + 1, "offset": offset})
    where = [w.format(scope=scope) for w in _where(conn, f, principal, params)]
    if cursor:
        params["cur_at"], params["cur_id"] = decode_cursor(cursor)
        where.append("(c.reported_at, c.id) < (CAST(:cur_at AS timestamptz), :cur_id)")
    sql = (f"SELECT {_CASE_COLUMNS.format(scope=scope)} {_CASE_FROM}"
           f" WHERE {' AND '.join(where) or 'true'}"
           " ORDER BY c.reported_at DESC, c.id DESC LIMIT :limit OFFSET :offset")
    rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["reported_at"], rows[-1]["id"])
    return {"cases": [shape(r, principal) for r in rows], "next_cursor": next_cursor}


def nearby(conn: Connection, *, lon: float, lat: float, category: str | None = None,
           radius_m: float | None = None, settings: CaseSettings | None = None,
           limit: int = 20, now: datetime | None = None) -> list[dict[str, Any]]:
    """Open cases near a point (likely duplicates, shown before submitting): public fields."""
    settings = settings or CaseSettings()
    check_lonlat(lon, lat)
    radius = settings.nearby_radius_m if radius_m is None else radius_m
    if not 0 < radius <= 5000:
        raise InvalidInput(f"radius_m must be in (0, 5000], got {radius}", field="radius_m")
    params: dict[str, Any] = {
        "lon": lon, "lat": lat, "r": radius, "deg": tolerance_degrees(radius, lat),
        "window_s": settings.nearby_window_days * 86400, "now": _now(now), "limit": limit,
    }
    cat_filter = ""
    if category:
        if conn.execute(text("SELECT 1 FROM categories WHERE code = :c"),
                        {"c": category}).first() is None:
            raise InvalidInput(f"unknown category {category!r}", field="category")
        params["category"] = category
        cat_filter = "AND k.code = :category"
    rows = conn.execute(text(f"""
        WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
        SELECT c.id, c.status, k.code AS category, k.name AS category_name, c.reported_at,
               c.due_at, left(c.description, 200) AS description,
               ST_X(ST_PointOnSurface(c.geom)) AS lon, ST_Y(ST_PointOnSurface(c.geom)) AS lat,
               round(CAST(ST_Distance(CAST(c.geom AS geography),
                                      CAST(pt.g AS geography)) AS numeric), 1) AS distance_m
          FROM cases c JOIN categories k ON k.id = c.category_id, pt
         WHERE c.geom && ST_Expand(pt.g, :deg)
           AND ST_DWithin(CAST(c.geom AS geography), CAST(pt.g AS geography), :r)
           AND c.status NOT IN ('closed', 'rejected') AND c.duplicate_of IS NULL
           AND c.reported_at >= CAST(:now AS timestamptz) - make_interval(secs => :window_s)
           {cat_filter}
         ORDER BY distance_m, c.id LIMIT :limit
    """), params).mappings()
    out = []
    for r in rows:
        item = dict(r)
        item["distance_m"] = float(item["distance_m"])
        for key in ("reported_at", "due_at"):
            item[key] = item[key].isoformat() if item[key] else None
        item["lon"], item["lat"] = round(item["lon"], 7), round(item["lat"], 7)
        out.append(item)
    return out


def case_events(conn: Connection, case_id: int, principal: Principal) -> list[dict[str, Any]]:
    """The history of a case, oldest first. Public: what happened and when; staff in scope:
    also who, the note and the event data."""
    row = fetch_case(conn, case_id, principal)
    full = principal.is_staff and row["in_scope"]
    events = conn.execute(text(
        """
        SELECT e.id, e.action, e.from_state, e.to_state, e.at, e.note, e.data,
               u.name AS actor, u.role AS actor_role
          FROM case_events e LEFT JOIN users u ON u.id = e.actor_id
         WHERE e.case_id = :id ORDER BY e.at, e.id
        """), {"id": case_id}).mappings()
    out = []
    for e in events:
        item = {"id": e["id"], "action": e["action"], "from_state": e["from_state"],
                "to_state": e["to_state"], "at": e["at"].isoformat()}
        if full:
            data = e["data"] or {}
            item.update({"actor": e["actor"] or (data.get("actor") or {}).get("name"),
                         "actor_role": e["actor_role"] or (data.get("actor") or {}).get("role"),
                         "note": e["note"], "data": data})
        out.append(item)
    return out

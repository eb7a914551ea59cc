"""Dispatch: responders (status, skills, live positions with bounded history), the settings
and validation shared with the nearest queries (:mod:`gis.nearest`), and facility listings.

Privacy (DOMAIN.md): positions are recorded only while a responder is on duty. Going off duty
clears the live position and refuses further updates; the on-duty history in
``responder_positions`` is thinned to one point per ``history_interval_s`` and pruned beyond
``retention_h``, which bounds it to ``max_positions_per_responder`` points per responder. Pruning
happens on writes, so readers of the history filter on ``retention_h`` themselves.

Scope: reading responders is not scoped (dispatch crosses lines), but a department-scoped
account changes, creates and reports positions only for its own department's responders
(:func:`check_responder_scope`; a batch lists the others as refused).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, text

from gis import crs as crs_mod
from gis.areas import check_bbox, check_lonlat, default_jurisdiction
from gis.auth import Forbidden, Principal
from gis.errors import Conflict, InvalidInput, NotFound
from gis.models import RESPONDER_STATUSES

RESPONDER_KINDS = ("staff", "vehicle")
ON_DUTY = ("available", "busy")


class DispatchSettings(BaseSettings):
    """Dispatch and live-feed knobs (env prefix ``GRIDGOV_DISPATCH_``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_DISPATCH_", extra="ignore")

    stale_after_s: float = Field(default=600, description="Older positions are not used.")
    retention_h: float = Field(default=24, description="Older position history is deleted.")
    max_positions_per_responder: int = Field(default=2880, ge=2)
    future_skew_s: float = Field(default=120, description="Tolerated device clock skew.")
    max_batch: int = Field(default=20000, description="Positions per batch request.")
    max_k: int = Field(default=50, description="Largest k for nearest queries.")
    max_snap_m: float = Field(default=500, description="Farther from any road = off network.")
    max_travel_s: float = Field(default=3600, description="Road-mode search horizon (s).")
    offroad_speed_kmh: float = Field(default=5.0, description="Speed between point and road.")
    live_heartbeat_s: float = 15.0
    live_max_stream_s: float = Field(default=900, description="Streams end; clients resume.")
    live_buffer: int = Field(default=2000, description="Events kept for Last-Event-ID.")
    prepared_statements: bool = Field(
        default=True, description="Run the nearest queries (and the nearest endpoints' token"
        " lookup) as server-side prepared statements, planned once per connection; false"
        " behind a transaction-pooling proxy such as PgBouncer in transaction mode.")

    @property
    def history_interval_s(self) -> float:
        """Minimum spacing of history points: retention / (max count - 1) keeps the count
        within ``max_positions_per_responder`` for any window of ``retention_h``."""
        return self.retention_h * 3600.0 / (self.max_positions_per_responder - 1)


# ---------------------------------------------------------------------------------------------
# Reference data and validation


def departments(conn: Connection) -> dict[str, int]:
    rows = conn.execute(text("SELECT code, id FROM departments ORDER BY code")).all()
    return {str(c): int(i) for c, i in rows}


def department_id(conn: Connection, code: str | None) -> int | None:
    """Department code → id; 422 naming it and listing the valid codes when unknown."""
    if code is None or code == "":
        return None
    known = departments(conn)
    if code in known:
        return known[code]
    raise InvalidInput(f"unknown department {code!r}; departments are: "
                       f"{_listing(known) or '(none loaded)'}", field="department",
                       extra={"valid": sorted(known)})


def skills(conn: Connection) -> list[str]:
    rows = conn.execute(text("SELECT DISTINCT unnest(skills) AS s FROM responders ORDER BY s"))
    return [str(r[0]) for r in rows]


def check_skill(conn: Connection, skill: str | None) -> None:
    if skill is None or skill == "":
        return
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM responders"
                         " WHERE CAST(:s AS text) = ANY(skills))"), {"s": skill}).scalar():
        return
    known = skills(conn)
    if skill not in known:
        raise InvalidInput(f"unknown skill {skill!r}; skills are: "
                           f"{_listing(known) or '(none)'}", field="skill",
                           extra={"valid": known})


def facility_types(conn: Connection) -> list[str]:
    rows = conn.execute(text("SELECT DISTINCT type FROM facilities ORDER BY type"))
    return [str(r[0]) for r in rows]


def check_facility_type(conn: Connection, kind: str | None) -> None:
    if kind is None or kind == "":
        return
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM facilities WHERE type = :t)"),
                    {"t": kind}).scalar():
        return
    known = facility_types(conn)
    if kind not in known:
        raise InvalidInput(f"unknown facility type {kind!r}; types are: "
                           f"{_listing(known) or '(none loaded)'}", field="type",
                           extra={"valid": known})


def _listing(values: Iterable[str], limit: int = 60) -> str:
    values = list(values)
    more = f" … (+{len(values) - limit})" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def check_status(status: str | None, *, field_name: str = "status",
                 allowed: Sequence[str] = RESPONDER_STATUSES) -> None:
    if status is not None and status not in allowed:
        raise InvalidInput(f"unknown {field_name} {status!r}; use one of: {', '.join(allowed)}",
                           field=field_name)


def jurisdiction_id(conn: Connection, code: str | None) -> int | None:
    """Jurisdiction code → id; 422 listing the codes when unknown."""
    if code is None or code == "":
        return None
    rows: dict[str, int] = {str(c): int(i) for c, i in conn.execute(
        text("SELECT code, id FROM jurisdictions ORDER BY code")).all()}
    if code in rows:
        return int(rows[code])
    raise InvalidInput(f"unknown jurisdiction {code!r}; jurisdictions are: "
                       f"{_listing(rows) or '(none loaded)'}", field="jurisdiction")


def check_jurisdiction_id(conn: Connection, jid: int) -> int:
    """A jurisdiction id that exists; 422 naming ``jurisdiction_id`` and listing the ids."""
    if not isinstance(jid, bool) and isinstance(jid, int) and conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM jurisdictions WHERE id = CAST(:j AS numeric))"),
            {"j": jid}).scalar():
        return jid
    known = [f"{i} ({c})" for i, c in conn.execute(
        text("SELECT id, code FROM jurisdictions ORDER BY id")).all()]
    raise InvalidInput(f"unknown jurisdiction_id {jid!r}; jurisdictions are: "
                       f"{_listing(known) or '(none loaded)'}", field="jurisdiction_id")


def check_k(k: int, settings: DispatchSettings) -> None:
    if not 1 <= k <= settings.max_k:
        raise InvalidInput(f"k must be between 1 and {settings.max_k}, got {k}", field="k")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Responders


_RESPONDER_COLS = """
    r.id, r.jurisdiction_id, r.name, r.kind, d.code AS department, r.skills, r.status,
    r.position_at, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat
"""


def _responder_row(row: Any, *, stale_before: datetime) -> dict[str, Any]:
    out = dict(row)
    out["skills"] = list(out["skills"] or [])
    at = out.get("position_at")
    out["stale"] = bool(at is not None and at < stale_before)
    return out


def foreign_responders(conn: Connection, principal: Principal, responder_ids: Iterable[int]
                       ) -> dict[int, str | None]:
    """The responders among ``responder_ids`` outside a department-scoped principal's
    department, as id → their department code (None: no department). Empty for accounts
    without a department restriction; unknown ids are not listed (they are a 404 elsewhere)."""
    ids = sorted(set(responder_ids))
    if principal.department_id is None or not ids:
        return {}
    rows = conn.execute(
        text("SELECT r.id, d.code FROM responders r LEFT JOIN departments d"
             " ON d.id = r.department_id WHERE r.id = ANY(CAST(:ids AS bigint[]))"
             " AND r.department_id IS DISTINCT FROM :dept"),
        {"ids": ids, "dept": principal.department_id}).all()
    return {int(i): (str(c) if c is not None else None) for i, c in rows}


def _foreign_reason(principal: Principal, responder_id: int, department: str | None) -> str:
    theirs = f"department {department}" if department else "no department"
    return (f"responder {responder_id} belongs to {theirs}; your account works only with"
            f" responders of department {principal.department_code}")


def check_responder_scope(conn: Connection, principal: Principal, responder_id: int) -> None:
    """403 naming the responder when it is outside a department-scoped principal's
    department (an unknown responder passes: the caller answers 404 for it)."""
    foreign = foreign_responders(conn, principal, [responder_id])
    if responder_id in foreign:
        raise Forbidden(_foreign_reason(principal, responder_id, foreign[responder_id]),
                        field="id")


def check_department_scope(principal: Principal, department: str | None) -> None:
    """403 when a department-scoped principal gives a responder another department (or
    none: the responder would leave its scope)."""
    if principal.department_id is None or department == principal.department_code:
        return
    given = f"department {department!r}" if department else "no department"
    raise Forbidden(f"your account may not give a responder {given}: it works only with"
                    f" responders of department {principal.department_code}",
                    field="department")


def get_responder(conn: Connection, responder_id: int, *,
                  settings: DispatchSettings) -> dict[str, Any]:
    row = conn.execute(
        text(f"SELECT {_RESPONDER_COLS} FROM responders r"
             " LEFT JOIN departments d ON d.id = r.department_id WHERE r.id = :id"),
        {"id": responder_id},
    ).mappings().first()
    if row is None:
        raise NotFound(f"no responder with id {responder_id}", field="id")
    return _responder_row(row, stale_before=utcnow() - timedelta(seconds=settings.stale_after_s))


def list_responders(
    conn: Connection,
    *,
    settings: DispatchSettings,
    status: str | None = None,
    department: str | None = None,
    skill: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    jurisdiction_id: int | None = None,
) -> list[dict[str, Any]]:
    """Responders with their last position (``lon``/``lat`` None when off duty or unknown)."""
    check_status(status)
    where: list[str] = ["true"]
    params: dict[str, Any] = {}
    if status:
        where.append("r.status = :status")
        params["status"] = status
    dept = department_id(conn, department)
    if dept is not None:
        where.append("r.department_id = :dept")
        params["dept"] = dept
    if skill:
        check_skill(conn, skill)
        where.append("CAST(:skill AS text) = ANY(r.skills)")
        params["skill"] = skill
    if bbox is not None:
        check_bbox(bbox)
        where.append("r.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True)))
    if jurisdiction_id is not None:
        where.append("r.jurisdiction_id = :j")
        params["j"] = jurisdiction_id
    rows = conn.execute(
        text(f"SELECT {_RESPONDER_COLS} FROM responders r"
             f" LEFT JOIN departments d ON d.id = r.department_id"
             f" WHERE {' AND '.join(where)} ORDER BY r.id"),
        params,
    ).mappings()
    stale_before = utcnow() - timedelta(seconds=settings.stale_after_s)
    return [_responder_row(r, stale_before=stale_before) for r in rows]


def create_responder(
    conn: Connection,
    *,
    settings: DispatchSettings,
    name: str,
    kind: str = "staff",
    department: str | None = None,
    skills: Sequence[str] = (),
    status: str = "off",
    jurisdiction_id: int | None = None,
) -> dict[str, Any]:
    check_status(status)
    if kind not in RESPONDER_KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; use one of: {', '.join(RESPONDER_KINDS)}",
                           field="kind")
    if not name.strip():
        raise InvalidInput("name must not be empty", field="name")
    jid = check_jurisdiction_id(conn, jurisdiction_id) if jurisdiction_id is not None \
        else default_jurisdiction(conn)
    rid = conn.execute(
        text("INSERT INTO responders (jurisdiction_id, name, kind, department_id, skills, status)"
             " VALUES (:j, :name, :kind, :dept, CAST(:skills AS text[]), :status) RETURNING id"),
        {"j": jid, "name": name.strip(), "kind": kind, "dept": department_id(conn, department),
         "skills": _clean_skills(skills), "status": status},
    ).scalar_one()
    return get_responder(conn, int(rid), settings=settings)


def _clean_skills(values: Sequence[str]) -> list[str]:
    out = sorted({s.strip() for s in values if s and s.strip()})
    for s in out:
        if len(s) > 64:
            raise InvalidInput(f"skill {s[:20]!r}… is longer than 64 characters", field="skills")
    return out


def update_responder(
    conn: Connection,
    responder_id: int,
    *,
    settings: DispatchSettings,
    status: str | None = None,
    name: str | None = None,
    department: str | None = None,
    skills: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Change status and details. Going off duty clears the live position (privacy)."""
    check_status(status)
    sets: list[str] = []
    params: dict[str, Any] = {"id": responder_id}
    if status is not None:
        sets.append("status = :status")
        params["status"] = status
        if status == "off":
            sets += ["geom = NULL", "position_at = NULL"]
    if name is not None:
        if not name.strip():
            raise InvalidInput("name must not be empty", field="name")
        sets.append("name = :name")
        params["name"] = name.strip()
    if department is not None:
        sets.append("department_id = :dept")
        params["dept"] = department_id(conn, department) if department else None
    if skills is not None:
        sets.append("skills = CAST(:skills AS text[])")
        params["skills"] = _clean_skills(skills)
    if sets:
        done = conn.execute(
            text(f"UPDATE responders SET {', '.join(sets)} WHERE id = :id RETURNING id"), params
        ).first()
        if done is None:
            raise NotFound(f"no responder with id {responder_id}", field="id")
    return get_responder(conn, responder_id, settings=settings)


# ---------------------------------------------------------------------------------------------
# Positions


@dataclass(frozen=True)
class PositionIn:
    """One position report; ``lon``/``lat`` in ``crs`` (default WGS84)."""

    id: int
    lon: float
    lat: float
    crs: str | int | None = None
    recorded_at: datetime | None = None


@dataclass
class PositionsResult:
    accepted: int = 0        # reports taken (valid, on duty)
    moved: int = 0           # last positions advanced (older reports only feed the history)
    recorded: int = 0        # history points written (thinned to history_interval_s)
    pruned: int = 0          # history points deleted beyond retention
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "moved": self.moved, "recorded": self.recorded,
                "pruned": self.pruned, "rejected": self.rejected}


def _validate_position(p: PositionIn, *, now: datetime, settings: DispatchSettings
                       ) -> tuple[int, float, float, datetime]:
    code = crs_mod.parse_crs(p.crs)
    if code == crs_mod.WGS84:
        check_lonlat(p.lon, p.lat)
    elif not (math.isfinite(p.lon) and math.isfinite(p.lat)):
        raise InvalidInput("lon and lat must be finite numbers", field="lon")
    lon, lat = crs_mod.to_wgs84(p.lon, p.lat, code)
    check_lonlat(lon, lat)
    at = as_utc(p.recorded_at) or now
    if at > now + timedelta(seconds=settings.future_skew_s):
        raise InvalidInput(f"recorded_at {at.isoformat()} is in the future (server time "
                           f"{now.isoformat()})", field="recorded_at")
    if at < now - timedelta(hours=settings.retention_h):
        raise InvalidInput(f"recorded_at {at.isoformat()} is older than the retention of "
                           f"{settings.retention_h:g} h", field="recorded_at")
    return int(p.id), lon, lat, at


_RECORD_SQL = """
WITH i AS (
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:xs AS float8[]), CAST(:ys AS float8[]),
                         CAST(:ts AS timestamptz[])) AS i(id, x, y, at)
), moved AS (
    UPDATE responders r SET geom = ST_SetSRID(ST_MakePoint(i.x, i.y), 4326), position_at = i.at
      FROM i
     WHERE r.id = i.id AND r.status <> 'off' AND (r.position_at IS NULL OR r.position_at < i.at)
    RETURNING r.id
), hist AS (
    INSERT INTO responder_positions (responder_id, recorded_at, geom)
    SELECT i.id, i.at, ST_SetSRID(ST_MakePoint(i.x, i.y), 4326)
      FROM i JOIN responders r ON r.id = i.id AND r.status <> 'off'
     WHERE NOT EXISTS (
           SELECT 1 FROM responder_positions h
            WHERE h.responder_id = i.id
              AND h.recorded_at > i.at - make_interval(secs => :gap)
              AND h.recorded_at < i.at + make_interval(secs => :gap))
    RETURNING responder_id
), pruned AS (
    DELETE FROM responder_positions h USING i
     WHERE h.responder_id = i.id AND h.recorded_at < :cutoff
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM hist), (SELECT count(*) FROM pruned)
"""


def record_positions(
    conn: Connection,
    positions: Sequence[PositionIn],
    *,
    settings: DispatchSettings,
    now: datetime | None = None,
    principal: Principal | None = None,
) -> PositionsResult:
    """Record many position reports in one statement; bad or refused ones are listed, not
    raised. Off-duty responders' reports are refused (their positions are not kept), and so
    are reports for responders outside ``principal``'s department when it has one."""
    now = as_utc(now) or utcnow()
    if len(positions) > settings.max_batch:
        raise InvalidInput(f"at most {settings.max_batch} positions per request, "
                           f"got {len(positions)}", field="positions")
    result = PositionsResult()
    latest: dict[int, tuple[float, float, datetime]] = {}
    for n, p in enumerate(positions):
        try:
            rid, lon, lat, at = _validate_position(p, now=now, settings=settings)
        except InvalidInput as exc:
            result.rejected.append({"index": n, "id": p.id, "reason": exc.detail,
                                    "field": exc.field})
            continue
        if rid not in latest or latest[rid][2] < at:   # duplicates in a batch: newest wins
            latest[rid] = (lon, lat, at)
    if latest and principal is not None:
        for rid, dept in foreign_responders(conn, principal, latest).items():
            result.rejected.append({"id": rid, "reason": _foreign_reason(principal, rid, dept),
                                    "field": "id"})
            del latest[rid]
    if latest:
        status: dict[int, str] = dict(conn.execute(  # type: ignore[arg-type]
            text("SELECT id, status FROM responders WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": list(latest)}).all())
        for rid in list(latest):
            if rid not in status:
                result.rejected.append({"id": rid, "reason": f"no responder with id {rid}",
                                        "field": "id"})
                del latest[rid]
            elif status[rid] == "off":
                result.rejected.append({"id": rid, "reason": "responder is off duty: positions "
                                        "are recorded only on duty", "field": "id"})
                del latest[rid]
    if latest:
        ids = list(latest)
        moved, recorded, pruned = conn.execute(text(_RECORD_SQL), {
            "ids": ids, "xs": [latest[i][0] for i in ids], "ys": [latest[i][1] for i in ids],
            "ts": [latest[i][2] for i in ids], "gap": settings.history_interval_s,
            "cutoff": now - timedelta(hours=settings.retention_h),
        }).one()
        result.accepted = len(ids)
        result.moved, result.recorded, result.pruned = int(moved), int(recorded), int(pruned)
    return result


def record_position(conn: Connection, position: PositionIn, *, settings: DispatchSettings,
                    now: datetime | None = None, principal: Principal | None = None
                    ) -> dict[str, Any]:
    """One report; raises 403/422/404/409-style errors instead of listing them (403: the
    responder is outside ``principal``'s department)."""
    now = as_utc(now) or utcnow()
    if principal is not None:
        check_responder_scope(conn, principal, position.id)
    _validate_position(position, now=now, settings=settings)  # raises with the field named
    result = record_positions(conn, [position], settings=settings, now=now)
    if result.rejected:
        reason = result.rejected[0]["reason"]
        if reason.startswith("no responder"):
            raise NotFound(reason, field="id")
        raise Conflict(reason, field="status")
    out = get_responder(conn, position.id, settings=settings)
    out["moved"] = bool(result.moved)
    out["recorded"] = bool(result.recorded)
    return out


def prune_positions(conn: Connection, *, settings: DispatchSettings,
                    now: datetime | None = None) -> int:
    """Enforce retention and the per-responder cap over the whole history (maintenance)."""
    now = as_utc(now) or utcnow()
    old = conn.execute(text("DELETE FROM responder_positions WHERE recorded_at < :cutoff"),
                       {"cutoff": now - timedelta(hours=settings.retention_h)}).rowcount
    over = conn.execute(
        text("""
            DELETE FROM responder_positions h USING (
                SELECT id FROM (
                    SELECT id, row_number() OVER (PARTITION BY responder_id
                                                  ORDER BY recorded_at DESC, id DESC) AS n
                      FROM responder_positions) s
                 WHERE s.n > :cap) x
             WHERE h.id = x.id
        """), {"cap": settings.max_positions_per_responder}).rowcount
    return int(old or 0) + int(over or 0)


def position_history(conn: Connection, responder_id: int, *, settings: DispatchSettings,
                     limit: int = 1000, now: datetime | None = None) -> list[dict[str, Any]]:
    """The responder's history within ``retention_h`` of ``now``, newest first. Points older
    than that are deleted only when the responder reports again (or by
    :func:`prune_positions`), so they are filtered here too: never shown past retention."""
    now = as_utc(now) or utcnow()
    rows = conn.execute(
        text("SELECT recorded_at, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM responder_positions"
             " WHERE responder_id = :id AND recorded_at >= :cutoff"
             " ORDER BY recorded_at DESC LIMIT :limit"),
        {"id": responder_id, "limit": limit,
         "cutoff": now - timedelta(hours=settings.retention_h)},
    ).mappings()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Facilities


def list_facilities(conn: Connection, *, type: str | None = None,
                    bbox: tuple[float, float, float, float] | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
    check_facility_type(conn, type)
    where: list[str] = ["true"]
    params: dict[str, Any] = {"limit": limit}
    if type:
        where.append("f.type = :type")
        params["type"] = type
    if bbox is not None:
        check_bbox(bbox)
        where.append("f.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True)))
    rows = conn.execute(text(
        f"SELECT f.id, f.type, f.name, f.capacity, f.hours, f.service_radius_m,"
        f" f.service_minutes, ST_AsGeoJSON(f.geom, 7) AS geometry FROM facilities f"
        f" WHERE {' AND '.join(where)} ORDER BY f.type, f.id LIMIT :limit"), params).mappings()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------------------------------------
# Demo patrols: keep the demo's on-duty responders live


@dataclass
class _Walker:
    edge: int          # graph edge index
    forward: bool      # travelling source → target
    along_m: float     # metres travelled along the edge in the travel direction
    fixed: bool = False  # too far from any road to patrol: reports where it is


class PatrolSimulator:
    """Moves a jurisdiction's on-duty demo responders along the road network, for demos.

    Available responders patrol: each walks or drives along the main road component at
    ``staff_kmh`` (staff) or the road's own speed (vehicles), turning at random at every node
    and only in the directions one-way streets allow (no U-turn unless at a dead end). Busy
    responders stay where they are (working at the site) but report again, so their position
    does not go stale. Off-duty responders are never touched: positions are written only for
    responders on duty, through :func:`record_positions`, which also thins and prunes the
    history to the retention (the privacy stance holds for simulated staff as for real ones).

    >>> # sim = PatrolSimulator(conn, jurisdiction_id=3, seed=1)
    >>> # result = sim.tick(conn, dt_s=10, settings=DispatchSettings())
    """

    def __init__(self, conn: Connection, jurisdiction_id: int, *, seed: int = 1,
                 staff_kmh: float = 12.0):
        import numpy as np

        from gis import routing

        self.jurisdiction_id = int(jurisdiction_id)
        self.graph = routing.get_graph(conn, self.jurisdiction_id)
        self.staff_ms = staff_kmh / 3.6
        self.rng = np.random.default_rng(seed)
        g = self.graph
        # Per node: the (edge, forward) moves allowed out of it, main component only.
        self._out: dict[int, list[tuple[int, bool]]] = {}
        for e in np.flatnonzero(g.main):
            if g.cost[e] >= 0:
                self._out.setdefault(int(g.edge_u[e]), []).append((int(e), True))
            if g.reverse_cost[e] >= 0:
                self._out.setdefault(int(g.edge_v[e]), []).append((int(e), False))
        self._main = np.flatnonzero(g.main)
        if not len(self._main):
            raise NotFound(f"jurisdiction {jurisdiction_id} has no routable road network",
                           field="jurisdiction")
        self.walkers: dict[int, _Walker] = {}

    def _speed_ms(self, edge: int, forward: bool, kind: str) -> float:
        g = self.graph
        cost = float(g.cost[edge] if forward else g.reverse_cost[edge])
        road = float(g.length_m[edge]) / cost if cost > 0 else self.staff_ms
        return max(road if kind == "vehicle" else min(road, self.staff_ms), 0.1)

    def _place(self, rid: int, lon: float | None, lat: float | None, *,
               max_snap_m: float) -> _Walker:
        import numpy as np

        from gis import routing

        g = self.graph
        fixed = False
        if lon is None or lat is None:
            edge, frac = int(self.rng.choice(self._main)), float(self.rng.random())
        else:
            snap = routing.snap_points(g, np.array([lon]), np.array([lat]))
            edge, frac = int(snap.edge[0]), float(snap.fraction[0])
            fixed = bool(snap.offroad_m[0] > max_snap_m)  # off the network: stays put
        ways = [d for d in (True, False) if (g.cost[edge] if d else g.reverse_cost[edge]) >= 0]
        forward = ways[int(self.rng.integers(len(ways)))] if ways else True
        length = float(g.length_m[edge])
        along = frac * length if forward else (1.0 - frac) * length
        walker = _Walker(edge, forward, along, fixed)
        self.walkers[rid] = walker
        return walker

    def _advance(self, w: _Walker, seconds: float, kind: str) -> None:
        """Travel for ``seconds`` at each edge's speed, turning at random at the nodes."""
        g = self.graph
        for _ in range(10_000):  # bounded: a run of zero-length edges cannot spin forever
            length = float(g.length_m[w.edge])
            speed = self._speed_ms(w.edge, w.forward, kind)
            if w.along_m + speed * seconds <= length:
                w.along_m += speed * seconds
                return
            seconds -= max(length - w.along_m, 0.0) / speed
            node = int(g.edge_v[w.edge] if w.forward else g.edge_u[w.edge])
            moves = self._out.get(node, [])
            onward = [m for m in moves if m[0] != w.edge] or moves
            if not onward:
                w.along_m = length
                return
            w.edge, w.forward = onward[int(self.rng.integers(len(onward)))]
            w.along_m = 0.0

    def _point(self, w: _Walker) -> tuple[float, float]:
        g = self.graph
        length = float(g.length_m[w.edge]) or 1.0
        frac = min(max(w.along_m / length, 0.0), 1.0)
        pt = g.geoms[w.edge].interpolate(frac if w.forward else 1.0 - frac, normalized=True)
        return float(pt.x), float(pt.y)

    def tick(self, conn: Connection, *, dt_s: float, settings: DispatchSettings,
             now: datetime | None = None) -> dict[str, Any]:
        """Move every on-duty responder by ``dt_s`` seconds and record the positions (in the
        caller's transaction). Returns counts: ``moved`` (patrolling), ``held`` (busy),
        ``rejected`` (e.g. went off duty meanwhile)."""
        rows = conn.execute(text(
            "SELECT id, kind, status, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM responders"
            " WHERE jurisdiction_id = :j AND status IN ('available', 'busy') ORDER BY id"),
            {"j": self.jurisdiction_id}).mappings().all()
        on_duty = {int(r["id"]) for r in rows}
        for gone in set(self.walkers) - on_duty:   # off duty: forget where they were
            del self.walkers[gone]
        items: list[PositionIn] = []
        moved = held = 0
        for r in rows:
            rid = int(r["id"])
            w = self.walkers.get(rid) or self._place(rid, r["lon"], r["lat"],
                                                     max_snap_m=settings.max_snap_m)
            if r["status"] == "available" and not w.fixed:
                self._advance(w, dt_s, r["kind"])
                lon, lat = self._point(w)
                moved += 1
            elif r["lon"] is not None:
                lon, lat = float(r["lon"]), float(r["lat"])
                held += 1
            else:
                lon, lat = self._point(w)
                held += 1
            items.append(PositionIn(id=rid, lon=lon, lat=lat, recorded_at=now))
        result = record_positions(conn, items, settings=settings, now=now)
        return {"moved": moved, "held": held, "rejected": len(result.rejected),
                "recorded": result.recorded, "pruned": result.pruned}

"""Case intake: one report from any channel becomes one located, routed, dated case.

The whole intake is a handful of statements in the caller's transaction:

1. one resolve query: the case stored under the Idempotency-Key if any (it answers the retry),
   category, grid in force (``area_parts`` + ``ST_Covers``, smallest code on a shared edge),
   department (``gis.routing_rules``), the jurisdiction's calendar days and the open duplicate
   candidate (searched from the geometry index, time-first only in a crowded spot:
   ``NEAR_LIMIT``);
2. (a reported component) its location is looked up first, and a retry before that;
3. due_at from the category deadline on the working calendar (Python, no I/O);
4. one INSERT of the case ``ON CONFLICT (idempotency_key) DO NOTHING`` with its events in the
   same statement; when a racing request won the key, its case is re-read and answered. Its
   tile-cell counters are added at COMMIT (migration 0008_intake_speed): those rows are shared
   by every intake in a busy cell and would otherwise stay locked for the whole transaction.

Nothing is written unless everything is valid, and a retry with the same key never creates a
second case, also when the two requests race (the partial unique index decides).

The resolve and insert statements run as server-side prepared statements (``gis.prepared``):
PostgreSQL plans the resolve query's dozen CTEs in three times as long as it runs them, and a
prepared statement on its generic plan is planned once per pooled session (``_resolve``).
``prepare=False`` sends them as text (for a transaction-pooling proxy such as PgBouncer in
transaction mode).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gis import crs as crs_mod
from gis import prepared
from gis.areas import check_lonlat
from gis.auth import PUBLIC, Principal, require_role
from gis.calendar import CalendarSettings, build_calendar
from gis.caseconfig import CHANNEL_ROLES, INTAKE_CHANNELS, CaseSettings
from gis.errors import InvalidInput
from gis.routing_rules import LINEAGE_CTE, ROUTING_CTE, tolerance_degrees

CONTACT_FIELDS = ("name", "phone", "email", "address", "note")
RESPONSE_KEYS = ("id", "status", "category", "category_name", "channel", "urgency", "area_code",
                 "department", "routed_by", "reported_at", "due_at", "duplicate_of", "overdue",
                 "lon", "lat")


@dataclass
class Report:
    """What a reporter sends, channel-independent (the API, Open311 and the CLI fill it)."""

    category: str
    channel: str = "app"
    lon: float | None = None
    lat: float | None = None
    crs: str | int | None = None
    component_id: int | None = None
    description: str = ""
    contact: dict[str, Any] | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """SHA-256 of the request's content: the same key with other content is refused."""
        canonical = {
            "category": self.category, "channel": self.channel, "lon": self.lon,
            "lat": self.lat, "crs": str(self.crs) if self.crs is not None else None,
            "component_id": self.component_id, "description": self.description,
            "contact": self.contact, "media": sorted(m["sha256"] for m in self.media),
        }
        blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class IntakeResult:
    body: dict[str, Any]
    created: bool


def _validate(report: Report, principal: Principal, settings: CaseSettings) -> None:
    if report.channel not in INTAKE_CHANNELS:
        raise InvalidInput(f"unknown channel {report.channel!r}; channels are:"
                           f" {', '.join(INTAKE_CHANNELS)}", field="channel")
    require_role(principal, CHANNEL_ROLES[report.channel],
                 f"report through the {report.channel} channel")
    if not isinstance(report.category, str) or not report.category.strip():
        raise InvalidInput("category is required (a category code such as E010101)",
                           field="category")
    if len(report.description) > settings.description_max_chars:
        raise InvalidInput(f"description is {len(report.description):,} characters; the limit"
                           f" is {settings.description_max_chars:,}", field="description")
    if report.component_id is None:
        if report.lon is None and report.lat is None:
            raise InvalidInput("missing location: give lon and lat (optionally crs), or a"
                               " component_id", field="location")
        for name in ("lon", "lat"):
            if getattr(report, name) is None:
                raise InvalidInput(f"{name} is missing (lon and lat go together)", field=name)
    if report.contact is not None:
        if not isinstance(report.contact, dict):
            raise InvalidInput("contact must be an object", field="contact")
        for key, value in report.contact.items():
            if key not in CONTACT_FIELDS:
                raise InvalidInput(f"contact.{key} is not a contact field; use"
                                   f" {', '.join(CONTACT_FIELDS)}", field=f"contact.{key}")
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise InvalidInput(f"contact.{key} must be text of at most 200 characters",
                                   field=f"contact.{key}")
    idem = report.idempotency_key
    if idem is not None and (not idem.strip() or len(idem) > settings.idempotency_key_max
                             or not idem.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1–{settings.idempotency_key_max} printable"
                           " characters (a UUID is ideal)", field="Idempotency-Key")


def _stored_key(principal: Principal, key: str) -> str:
    # Keys are per account (the public shares one namespace): two accounts never collide.
    owner = f"u{principal.user_id}" if principal.user_id is not None else "public"
    return f"{owner}:{key}"


def _tracking_token(stored_key: str | None, fingerprint: str) -> str:
    """The reporter's tracking token. With an Idempotency-Key it is derived from key and content,
    so a retry gets the very same token back; without one it is random."""
    if stored_key is None:
        return "gtr_" + secrets.token_urlsafe(24)
    digest = hashlib.sha256(f"gridgov-tracking|{stored_key}|{fingerprint}".encode()).digest()
    return "gtr_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def hash_tracking(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Statements are TextClauses built once: text() scans the SQL for bind parameters, which for
# the resolve query costs ~0.2 ms per call.
_REPLAY = text("SELECT c.id, c.idempotency_fingerprint, e.data FROM cases c"
               " JOIN case_events e ON e.case_id = c.id AND e.action = 'report'"
               " WHERE c.idempotency_key = :k")
_COMPONENT_POINT = text("SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT"
                        " ST_PointOnSurface(geom) AS p FROM components WHERE id = :id) s")
_SIMILAR_CATEGORIES = text("SELECT code FROM categories WHERE code LIKE :p AND active"
                           " ORDER BY code LIMIT 5")


def _replay(conn: Connection, stored_key: str, fingerprint: str) -> IntakeResult | None:
    row = conn.execute(_REPLAY, {"k": stored_key}).first()
    if row is None:
        return None
    return _answer_replay(stored_key, fingerprint, int(row.id), row.idempotency_fingerprint,
                          row.data)


def _answer_replay(stored_key: str, fingerprint: str, case_id: int, stored_fingerprint: str,
                   data: dict[str, Any]) -> IntakeResult:
    """The first answer under ``stored_key`` again, or a 422 when the content differs."""
    if stored_fingerprint != fingerprint:
        raise InvalidInput("this Idempotency-Key was already used for a different report"
                           f" (case {case_id}); use a new key for a new report",
                           field="Idempotency-Key", extra={"case_id": case_id})
    stored = data["response"]
    # jsonb does not keep key order: restore the order of the first answer.
    body = {k: stored[k] for k in RESPONSE_KEYS if k in stored}
    body["tracking_token"] = _tracking_token(stored_key, fingerprint)
    return IntakeResult(body=body, created=False)


_UNDEFINED_STATEMENT = "26000"   # SQLSTATE invalid_sql_statement_name

# Cases fetched from the geometry index before the duplicate search turns time-first.
NEAR_LIMIT = 64

_RESOLVE_SQL = f"""
WITH RECURSIVE pt AS (
    SELECT ST_SetSRID(ST_MakePoint(CAST(:lon AS float8), CAST(:lat AS float8)), 4326) AS g
), grid AS (
    SELECT a.id, a.code, a.jurisdiction_id
      FROM area_parts p JOIN areas a ON a.id = p.area_id, pt
     WHERE ST_Covers(p.geom, pt.g) AND p.valid_from <= CAST(:at AS timestamptz)
       AND (p.valid_to IS NULL OR p.valid_to > CAST(:at AS timestamptz))
     ORDER BY p.level DESC, a.code LIMIT 1
), {LINEAGE_CTE}, {ROUTING_CTE}, near AS MATERIALIZED (
    -- The duplicate search starts from the geometry index. Left to itself the planner
    -- BitmapAnds it with ix_cases_reported_at (every case of the city inside the time window,
    -- 10-20k rows: several ms) whatever the density. Almost everywhere the radius' bounding box
    -- holds a handful of cases: fetch at most NEAR_LIMIT of them; fewer means these are all,
    -- and the time, status and category tests are mere filters on them. A hotspot (up to
    -- ~20k cases of all time in one box) fills the limit and takes the time-first plan below.
    SELECT c.id, c.duplicate_of, c.category_id, c.status, c.reported_at, c.geom
      FROM cases c, pt
     WHERE c.geom && ST_Expand(pt.g, CAST(:dup_deg AS float8))
     LIMIT {NEAR_LIMIT}
), dup AS (
    SELECT COALESCE(c.duplicate_of, c.id) AS id, c.geom <-> pt.g AS dist, c.id AS case_id
      FROM near c, pt, cat
     WHERE (SELECT count(*) FROM near) < {NEAR_LIMIT}
       AND c.category_id = cat.id AND c.status NOT IN ('closed', 'rejected')
       AND c.reported_at >= CAST(:at AS timestamptz) - make_interval(secs => :dup_window_s)
       AND ST_DWithin(CAST(c.geom AS geography), CAST(pt.g AS geography),
                      CAST(:dup_m AS float8))
    UNION ALL
    SELECT COALESCE(c.duplicate_of, c.id), c.geom <-> pt.g, c.id
      FROM cases c, pt, cat
     WHERE (SELECT count(*) FROM near) >= {NEAR_LIMIT}
       AND c.category_id = cat.id AND c.status NOT IN ('closed', 'rejected')
       AND c.reported_at >= CAST(:at AS timestamptz) - make_interval(secs => :dup_window_s)
       AND c.geom && ST_Expand(pt.g, CAST(:dup_deg AS float8))
       AND ST_DWithin(CAST(c.geom AS geography), CAST(pt.g AS geography),
                      CAST(:dup_m AS float8))
     ORDER BY dist, case_id
     LIMIT 1
)
SELECT ST_X(pt.g) AS lon, ST_Y(pt.g) AS lat,
       k.id AS category_id, k.code AS category_code, k.name AS category_name,
       k.active AS category_active, k.deadline_value, k.deadline_unit, k.urgency,
       EXISTS (SELECT 1 FROM categories ch WHERE ch.parent_id = k.id) AS category_has_children,
       grid.id AS area_id, grid.code AS area_code, grid.jurisdiction_id, j.timezone,
       routing.dep_id AS department_id, d.code AS department_code, routing.how AS routed_by,
       (SELECT json_agg(json_build_array(cd.day, cd.working)) FROM calendar_days cd
         WHERE cd.jurisdiction_id = grid.jurisdiction_id
           AND cd.day >= CAST(CAST(:at AS timestamptz) AS date) - 2) AS calendar_days,
       (SELECT id FROM dup) AS duplicate_of,
       replay.id AS replay_id, replay.idempotency_fingerprint AS replay_fingerprint,
       replay.data AS replay_data
  FROM pt
  LEFT JOIN LATERAL (
      -- A retry: the case stored under this Idempotency-Key (NULL key: never a row).
      SELECT c.id, c.idempotency_fingerprint, e.data FROM cases c
        JOIN case_events e ON e.case_id = c.id AND e.action = 'report'
       WHERE c.idempotency_key = CAST(:k AS text)
  ) replay ON true
  LEFT JOIN categories k ON k.code = :category
  LEFT JOIN grid ON true
  LEFT JOIN jurisdictions j ON j.id = grid.jurisdiction_id
  LEFT JOIN routing ON true
  LEFT JOIN departments d ON d.id = routing.dep_id
"""

# The tile-cell counters of the new case are added at COMMIT (flag read by the cases triggers,
# migration 0008_intake_speed): the counter rows of a busy cell are shared by every intake, and
# a row written here would stay locked for the rest of the transaction.
_INSERT_SQL = """
WITH at_commit AS MATERIALIZED (
    SELECT set_config('gridgov.cells_at_commit', 'on', true) AS flag
), ins AS (
    INSERT INTO cases (jurisdiction_id, category_id, channel, urgency, description, media,
                       reporter_contact, area_id, department_id, component_id, status,
                       reported_at, due_at, duplicate_of, idempotency_key,
                       idempotency_fingerprint, reporter_id, tracking_sha256, routed_by, geom)
    SELECT :jurisdiction_id, :category_id, :channel, :urgency, :description,
           CAST(:media AS jsonb), CAST(:contact AS jsonb), :area_id, :department_id,
           :component_id, 'reported', :at, :due_at, :duplicate_of, :key, :fingerprint,
           :reporter_id, :tracking, :routed_by,
           ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
      FROM at_commit
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
), events AS (
    INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data, at)
    SELECT ins.id, CAST(:actor_id AS integer), 'report', CAST(NULL AS text), 'reported',
           CAST(NULL AS text),
           jsonb_set(CAST(:event_data AS jsonb), '{response,id}', to_jsonb(ins.id)),
           CAST(:at AS timestamptz)
      FROM ins
    UNION ALL
    SELECT ins.id, CAST(:actor_id AS integer), 'duplicate', 'reported', 'reported',
           'likely duplicate of case ' || CAST(:duplicate_of AS text),
           jsonb_build_object('duplicate_of', CAST(:duplicate_of AS bigint)),
           CAST(:at AS timestamptz)
      FROM ins WHERE CAST(:duplicate_of AS bigint) IS NOT NULL
    UNION ALL
    SELECT o.id, CAST(:actor_id AS integer), 'duplicate_linked', o.status, o.status,
           'new case ' || ins.id || ' linked as a likely duplicate',
           jsonb_build_object('case_id', ins.id), CAST(:at AS timestamptz)
      FROM ins JOIN cases o ON o.id = CAST(:duplicate_of AS bigint)
)
SELECT id FROM ins
"""
_RESOLVE = text(_RESOLVE_SQL)
_INSERT = text(_INSERT_SQL)
# PostgreSQL types of the parameters, for the prepared statements.
_RESOLVE_TYPES = (
    ("component_id", "int8"), ("lon", "float8"), ("lat", "float8"), ("at", "timestamptz"),
    ("category", "text"), ("line_tol_m", "float8"), ("tol_deg", "float8"),
    ("dup_window_s", "float8"), ("dup_m", "float8"), ("dup_deg", "float8"), ("k", "text"),
)
_INSERT_TYPES = (
    ("jurisdiction_id", "int4"), ("category_id", "int4"), ("channel", "text"),
    ("urgency", "int2"), ("description", "text"), ("media", "text"), ("contact", "text"),
    ("area_id", "int8"), ("department_id", "int4"), ("component_id", "int8"),
    ("at", "timestamptz"), ("due_at", "timestamptz"), ("duplicate_of", "int8"),
    ("key", "text"), ("fingerprint", "text"), ("reporter_id", "int4"), ("tracking", "text"),
    ("routed_by", "text"), ("lon", "float8"), ("lat", "float8"), ("actor_id", "int4"),
    ("event_data", "text"),
)


# The resolve query runs on its generic plan (``_resolve``); these go in front of the
# statements around it, in the same round trip.
_GENERIC_PLAN = "SET LOCAL plan_cache_mode = force_generic_plan"
_AUTO_PLAN = "RESET plan_cache_mode"


def _prepared(conn: Connection, before: str, sql: str, params: dict[str, Any],
              types: tuple[tuple[str, str], ...]) -> Any:
    """``before`` then ``sql`` as a prepared statement (``gis.prepared``), in one round trip
    once the session holds the statement: psycopg2 sends both as one simple query and the
    result is the last statement's."""
    stmt = prepared.statement(sql, types)
    if stmt.name not in prepared.held_statements(conn):
        conn.exec_driver_sql(before)
        return prepared.execute(conn, sql, params, types=types)
    try:
        return conn.exec_driver_sql(f"{before}; {stmt.execute_sql}",
                                    tuple(params[n] for n in stmt.params))
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) == _UNDEFINED_STATEMENT:
            # The session lost its statements behind our back (DISCARD ALL): this call fails,
            # the next one gets a fresh session (prepared.execute's own rule).
            conn.invalidate()
        raise


def _run(conn: Connection, sql: str, statement: Any, params: dict[str, Any],
         types: tuple[tuple[str, str], ...], prepare: bool) -> Any:
    if prepare:
        return _prepared(conn, _AUTO_PLAN, sql, params, types)
    return conn.execute(statement, params)


def _resolve(conn: Connection, params: dict[str, Any], prepare: bool) -> Any:
    """The resolve row. Prepared, it runs on the generic plan: PostgreSQL estimates that plan
    dearer than a custom one (it cannot see the time window or the point) and so re-plans on
    every EXECUTE (~1.7 ms of server CPU, three times the execution) for the very same plan.
    ``SET LOCAL`` before it and the ``RESET`` sent in front of the INSERT (or right after, when
    no INSERT follows) confine that to this one statement: the triggers of the INSERT plan as
    before. Both ride in the round trip of a neighbouring statement."""
    if not prepare:
        return conn.execute(_RESOLVE, params).mappings().one()
    return _prepared(conn, _GENERIC_PLAN, _RESOLVE_SQL, params, _RESOLVE_TYPES).mappings().one()


def _category_error(conn: Connection, code: str) -> InvalidInput:
    close = conn.execute(_SIMILAR_CATEGORIES, {"p": code[:3] + "%"}).scalars().all()
    hint = f"; similar codes: {', '.join(close)}" if close else ""
    return InvalidInput(f"unknown category {code!r} (GET /api/categories lists them){hint}",
                        field="category")


def create_case(
    conn: Connection,
    report: Report,
    *,
    principal: Principal = PUBLIC,
    settings: CaseSettings | None = None,
    calendar_settings: CalendarSettings | None = None,
    now: datetime | None = None,
    prepare: bool = True,
) -> IntakeResult:
    """Record a report as a case (status ``reported``) and its ``report`` event.

    Returns the response body (``id``, ``status``, ``area_code``, ``department``, ``due_at``,
    ``tracking_token``…) and whether a case was created (False: an Idempotency-Key retry).
    ``prepare``: run the statements as server-side prepared statements (module docstring).
    """
    settings = settings or CaseSettings()
    _validate(report, principal, settings)
    fingerprint = report.fingerprint()
    stored_key = (_stored_key(principal, report.idempotency_key)
                  if report.idempotency_key is not None else None)

    if report.component_id is not None:
        # A retry is answered before the component is looked up (it may be gone since).
        if stored_key is not None:
            replay = _replay(conn, stored_key, fingerprint)
            if replay is not None:
                return replay
        # Location = the component's (a point on it, for lines and polygons).
        comp = conn.execute(_COMPONENT_POINT, {"id": report.component_id}).first()
        if comp is None:
            raise InvalidInput(f"unknown component_id {report.component_id}",
                               field="component_id")
        lon, lat = float(comp.lon), float(comp.lat)
    else:
        assert report.lon is not None and report.lat is not None
        code = crs_mod.parse_crs(report.crs)
        if code == crs_mod.WGS84:
            # No transformation (to_wgs84 would re-validate the EPSG code with pyproj).
            check_lonlat(report.lon, report.lat)
            lon, lat = float(report.lon), float(report.lat)
        else:
            lon, lat = crs_mod.to_wgs84(report.lon, report.lat, code)
            check_lonlat(lon, lat)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    row = _resolve(conn, {
        "component_id": report.component_id, "lon": lon, "lat": lat, "at": at,
        "category": report.category, "line_tol_m": settings.zone_line_tolerance_m,
        "tol_deg": tolerance_degrees(settings.zone_line_tolerance_m, lat),
        "dup_window_s": settings.duplicate_window_h * 3600, "dup_m": settings.duplicate_radius_m,
        "dup_deg": tolerance_degrees(settings.duplicate_radius_m, lat), "k": stored_key,
    }, prepare)

    if prepare and (row["replay_id"] is not None or row["category_id"] is None
                    or not row["category_active"] or row["category_has_children"]
                    or row["area_id"] is None):
        conn.exec_driver_sql(_AUTO_PLAN)   # no INSERT follows to carry the RESET
    if row["replay_id"] is not None:
        assert stored_key is not None
        return _answer_replay(stored_key, fingerprint, int(row["replay_id"]),
                              row["replay_fingerprint"], row["replay_data"])
    if row["category_id"] is None:
        raise _category_error(conn, report.category)
    if not row["category_active"]:
        raise InvalidInput(f"category {report.category!r} is retired", field="category")
    if row["category_has_children"]:
        raise InvalidInput(f"category {report.category!r} ({row['category_name']}) is a class;"
                           " report with one of its minor categories", field="category")
    if row["area_id"] is None:
        raise InvalidInput(f"location ({row['lon']:.6f}, {row['lat']:.6f}) is outside every"
                           " grid in force", field="location")
    due_at = None
    if row["deadline_value"] is not None and row["deadline_unit"]:
        days = [(date.fromisoformat(d), bool(w)) for d, w in (row["calendar_days"] or [])]
        calendar = build_calendar(row["timezone"] or "UTC", calendar_settings, days)
        due_at = calendar.add(at, float(row["deadline_value"]), row["deadline_unit"])

    tracking = _tracking_token(stored_key, fingerprint)
    values = {
        "id": None, "status": "reported", "category": row["category_code"],
        "category_name": row["category_name"], "channel": report.channel,
        "urgency": row["urgency"], "area_code": row["area_code"],
        "department": row["department_code"], "routed_by": row["routed_by"],
        "reported_at": at.isoformat(), "due_at": due_at.isoformat() if due_at else None,
        "duplicate_of": row["duplicate_of"], "overdue": False,
        "lon": round(row["lon"], 7), "lat": round(row["lat"], 7),
    }
    response = {k: values[k] for k in RESPONSE_KEYS}
    event_data = {"actor": principal.as_actor(), "response": response}
    case_id = _run(conn, _INSERT_SQL, _INSERT, {
        "jurisdiction_id": row["jurisdiction_id"], "category_id": row["category_id"],
        "channel": report.channel, "urgency": row["urgency"],
        "description": report.description,
        "media": json.dumps(report.media) if report.media else None,
        "contact": json.dumps(report.contact, ensure_ascii=False) if report.contact else None,
        "area_id": row["area_id"], "department_id": row["department_id"],
        "component_id": report.component_id, "at": at, "due_at": due_at,
        "duplicate_of": row["duplicate_of"], "key": stored_key, "fingerprint": fingerprint,
        "reporter_id": principal.user_id, "tracking": hash_tracking(tracking),
        "routed_by": row["routed_by"], "lon": row["lon"], "lat": row["lat"],
        "actor_id": principal.user_id,
        "event_data": json.dumps(event_data, ensure_ascii=False, default=str),
    }, _INSERT_TYPES, prepare).scalar()
    if case_id is None:
        # A concurrent request with the same key committed first: answer with its case.
        assert stored_key is not None
        replay = _replay(conn, stored_key, fingerprint)
        if replay is None:  # pragma: no cover - the conflicting row must be visible now
            raise InvalidInput("Idempotency-Key conflict, retry", field="Idempotency-Key")
        return replay
    response["id"] = int(case_id)
    return IntakeResult(body={**response, "tracking_token": tracking}, created=True)


def deadline_for(conn: Connection, category_code: str, jurisdiction_id: int, start: datetime,
                 calendar_settings: CalendarSettings | None = None) -> datetime | None:
    """The due time of a case of ``category_code`` reported at ``start`` (None: no deadline)."""
    from gis.calendar import load_calendar

    row = conn.execute(text("SELECT deadline_value, deadline_unit FROM categories"
                            " WHERE code = :c"), {"c": category_code}).first()
    if row is None or row.deadline_value is None or not row.deadline_unit:
        return None
    calendar = load_calendar(conn, jurisdiction_id, calendar_settings)
    return calendar.add(start, float(row.deadline_value), row.deadline_unit)

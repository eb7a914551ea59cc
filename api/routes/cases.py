"""Cases: intake, queries, lifecycle actions, escalation and bulk import.

Handlers stay thin: parse the request (JSON or multipart), call ``gis``, ``commit`` before a 2xx
goes out, shape the response. Who may see and do what is decided in ``gis`` (auth, lifecycle).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from api.deps import CaseConfig, CaseConfigDep, ConnDep, case_config, commit
from api.routes.responders import SettingsDep
from api.schemas import feature_collection, parse_bbox, utc
from api.security import Access, PrincipalDep, authorised, require
from gis import bulk, casequery, intake, lifecycle, media
from gis.auth import CONTACT_ROLES, Forbidden, Principal, Unauthorized
from gis.caseconfig import INTAKE_CHANNELS
from gis.errors import InvalidInput

router = APIRouter(prefix="/api", tags=["cases"])

MAX_JSON_BYTES = 1_000_000
MAX_BULK_BYTES = 200_000_000
# Paging past a billion rows is a mistake (and PostgreSQL OFFSET is a bigint).
MAX_OFFSET = 1_000_000_000


# --- request parsing ----------------------------------------------------------------------

class ContactIn(BaseModel):
    """Reporter contact: private, shown only to staff in scope who need it."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=200)


class CaseIn(BaseModel):
    """A report. Location: ``lon``/``lat`` (in ``crs``, default WGS84) or ``component_id``."""

    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=16, description="category code, e.g. E010101")
    channel: Literal["patrol", "hotline", "app", "video", "sensor", "walk-in", "open311"] = "app"
    lon: float | None = Field(default=None, description="longitude, or x/easting in `crs`")
    lat: float | None = Field(default=None, description="latitude, or y/northing in `crs`")
    crs: str | int | None = Field(default=None, description="EPSG code, GCJ-02 or BD-09")
    component_id: int | None = Field(default=None, description="report on a known component")
    description: str = Field(default="", max_length=10_000)
    contact: ContactIn | None = None


class ActionIn(BaseModel):
    """One lifecycle step; which fields matter depends on ``action``."""

    model_config = ConfigDict(extra="forbid")
    action: str = Field(description=", ".join(lifecycle.TRANSITIONS))
    note: str | None = Field(default=None, max_length=10_000)
    department: str | None = Field(default=None, max_length=32)
    responder_id: int | None = None
    result: Literal["pass", "fail"] | None = None
    satisfaction: int | None = Field(default=None, ge=1, le=5)
    tracking_token: str | None = Field(default=None, max_length=200)


def _invalid(exc: ValidationError) -> InvalidInput:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        message = err.get("msg", "invalid")
        if err.get("type") == "string_too_long" and loc == "description":
            size = len(str(err.get("input", "")))
            message = f"description is {size:,} characters; the limit is 10,000"
        problems.append({"field": loc or None, "message": message})
    field, message = problems[0]["field"], str(problems[0]["message"])
    return InvalidInput(f"{field}: {message}" if field else message, field=field,
                        extra={"problems": problems})


def _parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidInput(f"request body is {len(raw):,} bytes; the limit is"
                           f" {MAX_JSON_BYTES:,}", field="body")
    if not raw.strip():
        raise InvalidInput("request body is empty; send a JSON object", field="body")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidInput("request body is not UTF-8 text", field="body") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           field="body") from exc


def _model(cls: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object", field="body")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError as exc:
        raise InvalidInput("Content-Length must be a number", field="Content-Length") from exc


class Parsed:
    """A parsed JSON or multipart body: the fields and any uploaded files."""

    def __init__(self, fields: dict[str, Any], uploads: list[media.Upload]):
        self.fields = fields
        self.uploads = uploads


async def parse_body(request: Request) -> Parsed:
    """JSON (``application/json``) or ``multipart/form-data`` with photos; 4xx naming the
    problem for malformed or oversized bodies."""
    settings = case_config(request).media
    length = _content_length(request)
    if not _is_multipart(request):
        if length > MAX_JSON_BYTES:
            raise InvalidInput(f"request body is {length:,} bytes; the limit is"
                               f" {MAX_JSON_BYTES:,}", field="body")
        return Parsed(_parse_json(await request.body()), [])
    limit = settings.max_files * settings.max_bytes + MAX_JSON_BYTES
    if length > limit:
        raise media.MediaTooLarge(f"request is {length / 1e6:.1f} MB; at most"
                                  f" {settings.max_files} photos of"
                                  f" {settings.max_bytes / 1e6:.1f} MB each", field="photos")
    form = await request.form(max_files=max(settings.max_files * 4, 20), max_fields=100)
    fields: dict[str, Any] = {}
    uploads: list[media.Upload] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read(settings.max_bytes + 1)
            uploads.append(media.Upload(value.filename or key, value.content_type, data))
        elif key == "contact":
            fields["contact"] = _parse_json(value.encode()) if value.strip() else None
        elif key.startswith("contact_"):
            fields.setdefault("contact", {})[key.removeprefix("contact_")] = value
        elif value != "":
            fields[key] = value
    return Parsed(fields, uploads)


BodyDep = Annotated[Parsed, Depends(parse_body)]


def _check_photos(uploads: list[media.Upload], config: CaseConfig) -> list[dict[str, Any]]:
    return media.check_uploads(uploads, config.media) if uploads else []


def _store_photos(uploads: list[media.Upload], refs: list[dict[str, Any]],
                  config: CaseConfig) -> None:
    """Write the photos of a request whose rows are written but not yet committed.

    Files are only ever added here, never removed: a request that fails (or whose commit has
    an unknown outcome) leaves at most unreferenced files, never a case that names a missing
    one. Content-addressed files are shared: the same photo in two concurrent requests is one
    file, so deleting "ours" after a failure could take another request's committed photo.
    Stored after the statements, a request refused by intake (unknown category, outside every
    grid, a bad key) writes no file at all; only a failed COMMIT can leave one behind.
    """
    if uploads:
        media.store(uploads, refs, config.media_dir)


# --- intake -------------------------------------------------------------------------------

# Intake is the hot write path: one threadpool hop in all (connection out, token looked up,
# case written and committed, connection back: ``api.security.Access``) instead of one per
# dependency. Who may report through which channel is decided by ``gis.intake``.
IntakeAccess = Annotated[Access, Depends(authorised(what="report a case"))]

@router.post("/cases", status_code=201, responses={
    200: {"description": "an Idempotency-Key retry: the same case, the same body"},
    201: {"description": "created"},
    401: {"description": "unknown, expired or revoked token"},
    403: {"description": "the role may not report through this channel"},
    413: {"description": "a photo is too large"},
    415: {"description": "a photo is not JPEG, PNG or WebP"},
    422: {"description": "invalid input; `field` names it"},
}, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": CaseIn.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "category": {"type": "string"}, "lon": {"type": "number"}, "lat": {"type": "number"},
        "description": {"type": "string"}, "contact": {"type": "string"},
        "photos": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}})
def create_case(
    access: IntakeAccess,
    body: BodyDep,
    config: CaseConfigDep,
    dispatch_settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Report a problem. JSON, or multipart with up to 5 photos (JPEG/PNG/WebP, 5 MB each).

    With an ``Idempotency-Key`` header a retry returns the same case (200, same body) and never
    creates a second one.
    """
    prepare = dispatch_settings.prepared_statements  # off behind a transaction-mode pooler
    with access.connect(prepare=prepare) as (conn, principal):
        data: CaseIn = _model(CaseIn, body.fields)
        refs = _check_photos(body.uploads, config)
        report = intake.Report(
            category=data.category, channel=data.channel, lon=data.lon, lat=data.lat,
            crs=data.crs, component_id=data.component_id, description=data.description,
            contact=data.contact.model_dump(exclude_none=True) if data.contact else None,
            media=refs, idempotency_key=idempotency_key,
        )
        result = intake.create_case(conn, report, principal=principal, settings=config.cases,
                                    calendar_settings=config.calendar, prepare=prepare)
        # Also for a replay: the first request's photos are the same files (the fingerprint
        # covers them); storing again restores any that went missing.
        _store_photos(body.uploads, refs, config)
        commit(conn)
    headers = {"Location": f"/api/cases/{result.body['id']}"}
    if not result.created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(result.body, status_code=201 if result.created else 200,
                        headers=headers)


@router.get("/cases/nearby")
def nearby_cases(
    conn: ConnDep,
    config: CaseConfigDep,
    lon: Annotated[float, Query()],
    lat: Annotated[float, Query()],
    category: Annotated[str | None, Query(max_length=16)] = None,
    radius_m: Annotated[float | None, Query(gt=0, le=5000)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    """Open cases near a point (likely duplicates), public fields only, nearest first."""
    rows = casequery.nearby(conn, lon=lon, lat=lat, category=category, radius_m=radius_m,
                            settings=config.cases, limit=limit)
    return {"cases": rows, "radius_m": radius_m or config.cases.nearby_radius_m}


@router.get("/cases/workflow")
def workflow() -> dict:
    """The state machine: per action, the states it is legal from, its result and its roles."""
    return {"actions": {a: {"from": sorted(t.sources), "to": t.target, "roles": list(t.roles),
                            "summary": t.summary}
                        for a, t in lifecycle.TRANSITIONS.items()},
            "supervision_actions": sorted(lifecycle.SUPERVISION_ACTIONS),
            "channels": list(INTAKE_CHANNELS)}


# --- queries ------------------------------------------------------------------------------

def _features(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return feature_collection(cases, id_key="id", drop=())["features"]


@router.get("/cases")
def list_cases(
    request: Request,
    conn: ConnDep,
    principal: PrincipalDep,
    config: CaseConfigDep,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    status: Annotated[str | None, Query(description="comma-separated statuses")] = None,
    area: Annotated[str | None, Query(description="area code: its whole subtree")] = None,
    category: Annotated[str | None, Query(description="category code: its subtree")] = None,
    department: Annotated[str | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="reported at or after")] = None,
    until: Annotated[datetime | None, Query(description="reported before")] = None,
    overdue: Annotated[bool | None, Query()] = None,
    mine: Annotated[bool, Query(description="only cases inside my scope")] = False,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    cursor: Annotated[str | None, Query()] = None,
) -> dict:
    """Cases as a GeoJSON FeatureCollection, newest first, paged (``links`` → ``next``)."""
    settings = config.cases
    size = min(limit or settings.page_default, settings.page_max)
    filters = casequery.CaseFilter(
        bbox=parse_bbox(bbox),
        status=[s.strip() for s in status.split(",") if s.strip()] if status else (),
        area=area, category=category, department=department, since=utc(since, "since"),
        until=utc(until, "until"), overdue=overdue, mine=mine,
    )
    page = casequery.list_cases(conn, principal, filters, limit=size, offset=offset,
                                cursor=cursor)
    links = [{"rel": "self", "href": str(request.url)}]
    if page["next_cursor"]:
        nxt = request.url.remove_query_params(["cursor", "offset"]).include_query_params(
            cursor=page["next_cursor"], limit=size)
        links.append({"rel": "next", "href": str(nxt)})
    return {"type": "FeatureCollection", "features": _features(page["cases"]),
            "numberReturned": len(page["cases"]), "next_cursor": page["next_cursor"],
            "links": links}


@router.get("/cases/{case_id}")
def get_case(conn: ConnDep, principal: PrincipalDep, case_id: int) -> dict:
    """One case as a GeoJSON Feature (private fields only for staff in scope)."""
    return _features([casequery.get_case(conn, case_id, principal)])[0]


@router.get("/cases/{case_id}/events")
def case_events(conn: ConnDep, principal: PrincipalDep, case_id: int) -> dict:
    """The append-only history, oldest first (actors and notes for staff in scope)."""
    return {"case_id": case_id, "events": casequery.case_events(conn, case_id, principal)}


@router.get("/cases/{case_id}/summons")
def case_summons(conn: ConnDep, principal: PrincipalDep, case_id: int) -> dict:
    """Summons (吹哨报到) of a case with the measured response time in seconds."""
    casequery.fetch_case(conn, case_id, principal)
    return {"case_id": case_id, "summons": lifecycle.summons(conn, case_id)}


@router.get("/cases/{case_id}/media/{sha256}")
def case_media(conn: ConnDep, principal: PrincipalDep, config: CaseConfigDep, case_id: int,
               sha256: str) -> FileResponse:
    """A photo of a case. The reporter's photos go where its contact goes: staff in scope whose
    role needs it and the reporter's own account; a handler's feedback photos (in the events)
    to any staff in scope (the verifier checks them)."""
    row = casequery.fetch_case(conn, case_id, principal)
    if principal.is_public:
        raise Unauthorized("photos need an account token (staff in scope or the reporter)",
                           field="Authorization")
    if not row["in_scope"]:
        raise Forbidden(f"photos of case {case_id} are visible to staff in scope only",
                        field="id")
    reporters = list(row["media"] or [])
    feedback = [m for e in conn.exec_driver_sql(
        "SELECT data -> 'media' FROM case_events WHERE case_id = %(c)s"
        " AND data ? 'media'", {"c": case_id}).scalars() for m in (e or [])]
    ref = next((m for m in feedback if m.get("sha256") == sha256), None)
    if ref is None:
        ref = next((m for m in reporters if m.get("sha256") == sha256), None)
        if ref is not None and principal.role not in CONTACT_ROLES | {"reporter"}:
            raise Forbidden(f"the reporter's photos are for {', '.join(sorted(CONTACT_ROLES))}"
                            f" in scope, not {principal.role}", field="role")
    if ref is None:
        raise InvalidInput(f"case {case_id} has no photo {sha256}", field="sha256")
    return FileResponse(media.open_media(config.media_dir, sha256), media_type=ref["type"])


# --- lifecycle ----------------------------------------------------------------------------

@router.post("/cases/{case_id}/actions", responses={
    403: {"description": "role, scope, or supervision separation"},
    409: {"description": "illegal from the current state; names it and the allowed actions"},
})
def case_action(conn: ConnDep, principal: PrincipalDep, case_id: int,
                body: BodyDep, config: CaseConfigDep, dispatch_settings: SettingsDep) -> dict:
    """Apply one lifecycle action: accept, file, reject, redirect, dispatch, start, handle,
    verify, close, reopen, rate, summon, respond (JSON, or multipart for handle photos)."""
    data: ActionIn = _model(ActionIn, body.fields)
    refs = _check_photos(body.uploads, config)
    req = lifecycle.ActionRequest(
        action=data.action, note=data.note, department=data.department,
        responder_id=data.responder_id, result=data.result, satisfaction=data.satisfaction,
        tracking_token=data.tracking_token, media=refs,
    )
    result = lifecycle.apply_action(conn, case_id, req, principal,
                                    dispatch_settings=dispatch_settings)
    _store_photos(body.uploads, refs, config)
    commit(conn)
    case = result["case"]
    return {"case": _features([case])[0], "event": result["event"]}


@router.post("/cases:escalate")
def escalate(
    conn: ConnDep,
    principal: Annotated[Principal, Depends(require("admin", what="run escalation"))],
    now: Annotated[datetime | None, Query(description="escalate as of (default now)")] = None,
) -> dict:
    """Escalate overdue cases one level up the hierarchy (idempotent per level)."""
    done = lifecycle.escalate_overdue(conn, now=utc(now, "now"))
    commit(conn)
    return {"escalations": done, "count": len(done)}


async def _bulk_rows(request: Request) -> list[tuple[int, dict[str, Any]]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if _content_length(request) > MAX_BULK_BYTES:
        raise InvalidInput(f"body over {MAX_BULK_BYTES // 1_000_000} MB: use"
                           " `gridgov import cases`", field="body")
    raw = await request.body()
    if kind in ("text/csv", "application/csv"):
        import io

        try:
            return list(bulk.read_csv(io.StringIO(raw.decode("utf-8-sig"))))
        except UnicodeDecodeError as exc:
            raise InvalidInput("CSV must be UTF-8", field="body") from exc
        except Exception as exc:  # noqa: BLE001 - csv.Error and friends
            raise InvalidInput(f"malformed CSV: {exc}", field="body") from exc
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="body") from exc
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
        return [(i, bulk._normalise(r if isinstance(r, dict) else {}))
                for i, r in enumerate(obj["rows"], start=1)]
    if not isinstance(obj, dict):
        raise InvalidInput("send a GeoJSON FeatureCollection, {\"rows\": [...]} or CSV",
                           field="body")
    return list(bulk.read_geojson(obj))


BulkRowsDep = Annotated[list[tuple[int, dict[str, Any]]], Depends(_bulk_rows)]


@router.post("/cases:bulk", responses={
    200: {"description": "counts and per-row errors (valid rows imported)"},
    422: {"description": "strict=true and some rows are invalid: nothing imported"},
}, openapi_extra={"requestBody": {"content": {
    "text/csv": {"schema": {"type": "string"}},
    "application/geo+json": {"schema": {"type": "object"}},
    "application/json": {"schema": {"type": "object"}}}}})
def bulk_import(
    conn: ConnDep,
    principal: Annotated[Principal, Depends(require("admin", "call_taker",
                                                    what="import cases in bulk"))],
    rows: BulkRowsDep,
    strict: Annotated[bool, Query(description="all or nothing")] = False,
    crs: Annotated[str | None, Query(description="CRS of lon/lat when rows carry none")] = None,
    jurisdiction: Annotated[str | None, Query(description="jurisdiction code")] = None,
) -> dict:
    """Import historical cases (CSV, GeoJSON, or ``{"rows": [...]}``) set-based.

    Default: valid rows go in, invalid rows come back with row number, field and message.
    ``strict=true``: any invalid row → 422 with every problem, nothing imported.
    """
    jid = None
    if jurisdiction is not None:
        jid = conn.exec_driver_sql("SELECT id FROM jurisdictions WHERE code = %(c)s",
                                   {"c": jurisdiction}).scalar()
        if jid is None:
            raise InvalidInput(f"unknown jurisdiction {jurisdiction!r}", field="jurisdiction")
    report = bulk.import_cases(conn, rows, principal=principal, jurisdiction_id=jid,
                               strict=strict, crs=crs)
    commit(conn)
    return report

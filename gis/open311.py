"""Open311 GeoReport v2: our categories and cases in the specification's terms.

The mapping (docs/open311.md has the whole table):

- a **service** is a reportable (minor, active) category: ``service_code`` = the category code,
  ``service_name`` its name, ``group`` its domain, ``type`` ``realtime`` (a POST answers with
  the case id at once), ``metadata`` false (no extra attributes are required);
- a **service request** is a case, read with public fields only: reporter contact, device and
  account ids are never selected by the queries below. Our eleven states map onto ``open`` and
  ``closed`` (closed = ``closed`` or ``rejected``) and ``status_notes`` says where the case is;
  ``agency_responsible`` is the department, ``expected_datetime`` the deadline (``due_at``),
  ``updated_datetime`` the time of the last event;
- a **token** is the reporter's tracking token (``gtr_…``); we answer POSTs synchronously with
  the ``service_request_id`` and also hand back the token.

A POST goes through the very same intake as ``POST /api/cases`` (``gis.intake.create_case``,
channel ``open311``): same routing, deadline, duplicates and Idempotency-Key semantics. Open311
fields that the case model has no column for (``address_string``, ``media_url``,
``attribute[...]``) are kept at the end of the description in an ``[Open311]`` block, which
GET reads back into ``address`` and ``media_url``.

No web framework here: ``api/routes/open311.py`` parses HTTP and picks JSON or XML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy import Connection, text

from gis import intake
from gis.auth import Forbidden, Principal, Unauthorized, authenticate
from gis.calendar import CalendarSettings
from gis.caseconfig import CHANNEL_ROLES, TERMINAL, CaseSettings
from gis.errors import InvalidInput, NotFound
from gis.models import CASE_STATUSES

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
# When this implementation's behaviour last changed (discovery's ``changeset``).
CHANGESET = "2026-11-23T00:00:00Z"
FORMATS = {"json": "application/json", "xml": "text/xml"}
DEFAULT_WINDOW = timedelta(days=90)  # the spec's default and maximum range of GET requests
MAX_RESULTS = 1000                  # "it may be wise to limit the number of results to 1000"
DESCRIPTION_MAX = 4000              # the spec's limit on ``description``
MAX_ATTRIBUTES = 20
OPEN311_STATUSES = ("open", "closed")
# Roles whose token is a valid api_key: whoever may report through the open311 channel.
API_KEY_ROLES = tuple(r for r in CHANNEL_ROLES["open311"] if r != "public")

TRAILER_MARK = "[Open311]"
_ATTR_RE = re.compile(r"^attribute\[([A-Za-z0-9_.\-]{1,50})\]$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_ID_RE = re.compile(r"^\d{1,18}$")

# Our state → the sentence in ``status_notes`` (public: never the staff's notes).
STATUS_NOTES = {
    "reported": "Received; waiting to be registered by the call centre.",
    "accepted": "Registered (受理); being checked before it is filed.",
    "filed": "Filed as a case (立案); waiting to be dispatched.",
    "redirected": "Handed over to {agency}.",
    "dispatched": "Dispatched to {agency}.",
    "in_progress": "{agency} is working on it.",
    "handled": "Work reported done; waiting for on-site verification.",
    "verified": "The fix was verified on site; the case is about to be closed.",
    "reopened": "Reopened: verification found the problem is not fixed yet.",
    "closed": "Fixed and closed (结案).",
    "rejected": "Closed without action: not a case for the city.",
}


def open311_status(state: str) -> str:
    """Our state → ``open`` or ``closed``.

    >>> open311_status("in_progress"), open311_status("rejected")
    ('open', 'closed')
    """
    return "closed" if state in TERMINAL else "open"


def states_for(statuses: Iterable[str]) -> list[str]:
    """Open311 statuses → our states (``closed`` = closed and rejected)."""
    out: list[str] = []
    for s in statuses:
        out += [st for st in CASE_STATUSES if open311_status(st) == s and st not in out]
    return out


# --- services -----------------------------------------------------------------------------

_SERVICES_SQL = """
SELECT c.code, c.kind, c.name, c.name_zh, c.deadline_value, c.deadline_unit, c.urgency,
       mj.name AS major, mj.name_zh AS major_zh, dm.name AS domain, dm.name_zh AS domain_zh,
       d.code AS department, d.name AS department_name
  FROM categories c
  LEFT JOIN categories mj ON mj.id = c.parent_id
  LEFT JOIN categories dm ON dm.id = mj.parent_id
  LEFT JOIN departments d ON d.id = c.department_id
 WHERE c.active AND NOT EXISTS (SELECT 1 FROM categories ch WHERE ch.parent_id = c.id)
   {extra}
 ORDER BY c.code
"""

_UNIT_WORDS = {"working_hours": "working hours", "working_days": "working days",
               "hours": "hours", "days": "days"}


def _zh(locale: str | None) -> bool:
    return bool(locale) and str(locale).lower().startswith("zh")


def _service(row: Mapping[str, Any], locale: str | None) -> dict[str, Any]:
    zh = _zh(locale) and row["name_zh"]
    name = row["name_zh"] if zh else row["name"]
    domain = (row["domain_zh"] if zh else row["domain"]) or row["major"] or row["kind"]
    kind = "component (部件)" if row["kind"] == "component" else "event (事件)"
    parts = [f"{row['name']} ({row['name_zh']})" if row["name_zh"] else row["name"],
             f"{kind}: {row['domain']} › {row['major']}"]
    if row["department_name"]:
        parts.append(f"handled by {row['department_name']}")
    if row["deadline_value"] is not None and row["deadline_unit"]:
        value = f"{float(row['deadline_value']):g}"
        parts.append(f"within {value} {_UNIT_WORDS.get(row['deadline_unit'], '')}".rstrip())
    words = [row["kind"], row["domain"], row["major"], row["name_zh"], row["domain_zh"],
             row["major_zh"], row["department"]]
    return {
        "service_code": row["code"],
        "service_name": name,
        "description": "; ".join(parts) + ".",
        "metadata": False,
        "type": "realtime",
        "keywords": ", ".join(w for w in words if w),
        "group": domain,
    }


def services(conn: Connection, *, locale: str | None = None) -> list[dict[str, Any]]:
    """Every reportable category as an Open311 service (``locale=zh…``: Chinese names)."""
    rows = conn.execute(text(_SERVICES_SQL.format(extra=""))).mappings()
    return [_service(dict(r), locale) for r in rows]


def service_definition(conn: Connection, code: str) -> dict[str, Any]:
    """The definition of one service: no extra attributes (``metadata`` is false)."""
    row = conn.execute(text(_SERVICES_SQL.format(extra="AND c.code = :code")),
                       {"code": code}).first()
    if row is None:
        raise NotFound(f"service_code {code!r} was not found (GET services lists them)",
                       field="service_code")
    return {"service_code": code, "attributes": []}


# --- jurisdictions and api keys -------------------------------------------------------------

def jurisdiction(conn: Connection, code: str | None) -> int | None:
    """The id of a jurisdiction by its code (``jurisdiction_id`` in Open311); None when not
    given; 400 when unknown."""
    if code is None or code == "":
        return None
    jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"), {"c": code}).scalar()
    if jid is None:
        raise InvalidInput(f"jurisdiction_id {code!r} was not found", field="jurisdiction_id")
    return int(jid)


def api_key_principal(conn: Connection, api_key: str | None) -> Principal:
    """The account behind an ``api_key`` (a bearer token). Missing, unknown, expired or revoked
    keys and roles that may not report through Open311 raise ``Forbidden`` (HTTP 403)."""
    if not api_key or not api_key.strip():
        raise Forbidden("api_key was not provided: send an account token as api_key",
                        field="api_key")
    try:
        principal = authenticate(conn, api_key.strip())
    except Unauthorized as exc:
        raise Forbidden(f"invalid api_key: {exc.detail}", field="api_key") from exc
    if principal.role not in API_KEY_ROLES:
        raise Forbidden(f"api_key of role {principal.role} may not create requests; roles:"
                        f" {', '.join(API_KEY_ROLES)}", field="api_key")
    return principal


# --- POST requests ----------------------------------------------------------------------------

@dataclass
class NewRequest:
    """A parsed POST: the report for the intake, plus what only Open311 knows."""

    report: intake.Report
    jurisdiction: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


def _text(fields: Mapping[str, Any], name: str, limit: int = 200) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be text", field=name)
    value = str(value).strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} is {len(value):,} characters; the limit is {limit:,}",
                           field=name)
    return value or None


def _coordinate(fields: Mapping[str, Any], name: str) -> float | None:
    raw = fields.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number in decimal degrees (WGS84), got {raw!r}",
                           field=name) from exc
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {raw!r}", field=name)
    return value


def _attributes(fields: Mapping[str, Any]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    nested = fields.get("attribute")
    items: list[tuple[str, Any]] = []
    if isinstance(nested, Mapping):
        items += [(f"attribute[{k}]", v) for k, v in nested.items()]
    elif nested is not None:
        raise InvalidInput("attribute must be attribute[CODE]=value pairs", field="attribute")
    items += [(k, v) for k, v in fields.items() if k.startswith("attribute[")]
    for key, value in items:
        m = _ATTR_RE.match(key)
        if m is None:
            raise InvalidInput(f"{key!r} is not attribute[CODE] (CODE: letters, digits, _ . -;"
                               " at most 50)", field=key)
        values = value if isinstance(value, list) else [value]
        text_value = ", ".join(str(v) for v in values if v is not None).strip()
        if len(text_value) > 200:
            raise InvalidInput(f"{key} is longer than 200 characters", field=key)
        attrs[m.group(1)] = " ".join(text_value.split())
    if len(attrs) > MAX_ATTRIBUTES:
        raise InvalidInput(f"at most {MAX_ATTRIBUTES} attributes", field="attribute")
    return attrs


def _trailer(address: str | None, media_url: str | None, attrs: Mapping[str, str]) -> str:
    lines = []
    if address:
        lines.append(f"address_string: {' '.join(address.split())}")
    if media_url:
        lines.append(f"media_url: {media_url}")
    lines += [f"attribute[{k}]: {v}" for k, v in attrs.items()]
    return f"{TRAILER_MARK}\n" + "\n".join(lines) if lines else ""


def split_description(description: str) -> tuple[str, dict[str, str]]:
    """A stored description → (the reporter's text, the ``[Open311]`` block's fields).

    >>> split_description("Pothole\\n\\n[Open311]\\naddress_string: 5th street")
    ('Pothole', {'address_string': '5th street'})
    """
    description = description or ""
    head = f"{TRAILER_MARK}\n"
    at = description.rfind(head)
    if at < 0 or (at > 0 and not description[:at].endswith("\n\n")):
        return description, {}
    extra: dict[str, str] = {}
    for line in description[at + len(head):].splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            extra[key] = value
    return description[:at].rstrip("\n"), extra


def parse_new_request(fields: Mapping[str, Any], *,
                      idempotency_key: str | None = None) -> NewRequest:
    """Open311 POST fields (form, JSON or XML, already decoded) → a ``NewRequest``.

    400-style ``InvalidInput`` naming the Open311 field for anything missing or malformed.
    Contact fields (``email``, ``first_name``, ``last_name``, ``phone``, ``device_id``,
    ``account_id``) become the case's private reporter contact.
    """
    code = _text(fields, "service_code", 16)
    if not code:
        raise InvalidInput("service_code was not provided (GET services lists them)",
                           field="service_code")
    lon, lat = _coordinate(fields, "long"), _coordinate(fields, "lat")
    if lon is None and lat is None:
        if fields.get("address_string") or fields.get("address_id"):
            raise InvalidInput("lat and long are required: this server does not geocode"
                               " address_string or address_id", field="lat")
        raise InvalidInput("location missing: send lat and long (WGS84 decimal degrees)",
                           field="lat")
    if lon is None or lat is None:
        missing = "long" if lon is None else "lat"
        raise InvalidInput(f"{missing} is missing (lat and long go together)", field=missing)
    description = _text(fields, "description", DESCRIPTION_MAX) or ""
    address = _text(fields, "address_string", 500)
    media_url = _text(fields, "media_url", 1000)
    if media_url and not re.match(r"^https?://[^\s]+$", media_url):
        raise InvalidInput(f"media_url must be an http(s) URL, got {media_url!r}",
                           field="media_url")
    attrs = _attributes(fields)
    trailer = _trailer(address, media_url, attrs)
    if trailer:
        description = f"{description}\n\n{trailer}" if description else trailer

    contact: dict[str, str] = {}
    email = _text(fields, "email")
    if email:
        if not _EMAIL_RE.match(email):
            raise InvalidInput(f"email {email!r} is not an e-mail address", field="email")
        contact["email"] = email
    name = " ".join(p for p in (_text(fields, "first_name", 100),
                                _text(fields, "last_name", 100)) if p)
    if name:
        contact["name"] = name
    phone = _text(fields, "phone", 50)
    if phone:
        contact["phone"] = phone
    ids = [f"{k}={v}" for k in ("device_id", "account_id") if (v := _text(fields, k, 90))]
    if ids:
        contact["note"] = "open311 " + ", ".join(ids)
    report = intake.Report(category=code, channel="open311", lon=lon, lat=lat,
                           description=description, contact=contact or None,
                           idempotency_key=idempotency_key)
    return NewRequest(report, _text(fields, "jurisdiction_id", 64), attrs)


# intake field → the Open311 field it came from (error messages name what the client sent)
_FIELD_NAMES = {"lon": "long", "category": "service_code", "location": "lat",
                "contact.email": "email", "contact.name": "first_name",
                "contact.phone": "phone", "contact.note": "device_id"}


def create_request(conn: Connection, new: NewRequest, *, principal: Principal,
                   settings: CaseSettings | None = None,
                   calendar_settings: CalendarSettings | None = None,
                   now: datetime | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Create the case through the shared intake. Returns the Open311 POST response (a list of
    one request) and whether a case was created (False: an Idempotency-Key retry)."""
    jid = jurisdiction(conn, new.jurisdiction)
    try:
        result = intake.create_case(conn, new.report, principal=principal, settings=settings,
                                    calendar_settings=calendar_settings, now=now)
    except InvalidInput as exc:
        exc.field = _FIELD_NAMES.get(exc.field or "", exc.field)
        raise
    body = result.body
    row = conn.execute(text(
        "SELECT c.jurisdiction_id, d.name AS department_name FROM cases c"
        " LEFT JOIN departments d ON d.id = c.department_id WHERE c.id = :id"),
        {"id": body["id"]}).one()
    if jid is not None and row.jurisdiction_id != jid:
        # Raised before the caller commits: the case is rolled back with the request.
        raise InvalidInput(f"lat/long ({body['lat']}, {body['lon']}) lies outside"
                           f" jurisdiction_id {new.jurisdiction!r}", field="jurisdiction_id")
    notice = [f"Routed to {row.department_name or body['department'] or 'the call centre'}"
              f" (grid {body['area_code']})."]
    if body.get("due_at"):
        notice.append(f"Expected by {body['due_at']}.")
    if body.get("duplicate_of"):
        notice.append(f"Likely a duplicate of request {body['duplicate_of']}.")
    return [{
        "service_request_id": str(body["id"]),
        "token": body["tracking_token"],
        "service_notice": " ".join(notice),
        "account_id": None,
    }], result.created


# --- GET requests -----------------------------------------------------------------------------

@dataclass
class RequestQuery:
    """The filters of ``GET requests``; ``ids`` overrides every other filter (spec)."""

    ids: list[int] = field(default_factory=list)
    service_codes: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    statuses: list[str] = field(default_factory=list)
    jurisdiction_id: int | None = None
    limit: int = MAX_RESULTS


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_datetime(value: str | None, name: str) -> datetime | None:
    """A w3c date/time (``2010-01-01T00:00:00Z``, an offset, or a plain date); naive = UTC."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a w3c date/time such as 2010-01-01T00:00:00Z,"
                           f" got {raw!r}", field=name) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_query(conn: Connection, params: Mapping[str, str | None], *,
                now: datetime | None = None) -> RequestQuery:
    """Query parameters → a ``RequestQuery``; 400-style errors name the parameter."""
    q = RequestQuery()
    q.jurisdiction_id = jurisdiction(conn, params.get("jurisdiction_id"))
    ids = _csv(params.get("service_request_id"))
    for i in ids:
        if not _ID_RE.match(i):
            raise InvalidInput(f"service_request_id must be numbers separated by commas, got"
                               f" {i!r}", field="service_request_id")
    if ids:
        q.ids = [int(i) for i in ids][:MAX_RESULTS]
        return q
    q.service_codes = _csv(params.get("service_code"))
    if q.service_codes:
        known = set(conn.execute(text("SELECT code FROM categories WHERE code = ANY(:c)"),
                                 {"c": q.service_codes}).scalars())
        unknown = [c for c in q.service_codes if c not in known]
        if unknown:
            raise InvalidInput(f"service_code {unknown[0]!r} was not found", field="service_code")
    q.statuses = [s.lower() for s in _csv(params.get("status"))]
    bad = [s for s in q.statuses if s not in OPEN311_STATUSES]
    if bad:
        raise InvalidInput(f"status must be open or closed (comma-separated), got {bad[0]!r}",
                           field="status")
    start = parse_datetime(params.get("start_date"), "start_date")
    end = parse_datetime(params.get("end_date"), "end_date")
    if start and end:
        if end < start:
            raise InvalidInput("end_date is before start_date", field="end_date")
        if end - start > DEFAULT_WINDOW:
            raise InvalidInput("start_date and end_date may not span more than 90 days",
                               field="end_date")
    elif start:
        end = start + DEFAULT_WINDOW
    elif end:
        start = end - DEFAULT_WINDOW
    else:
        end = now or datetime.now(UTC)
        start = end - DEFAULT_WINDOW
    q.start, q.end = start, end
    return q


_REQUESTS_SQL = """
SELECT c.id, c.status, c.description, c.reported_at, c.due_at, c.duplicate_of,
       k.code AS service_code, k.name AS service_name, k.name_zh AS service_name_zh,
       d.name AS agency, a.code AS area_code, a.name AS area_name,
       ST_X(ST_PointOnSurface(c.geom)) AS lon, ST_Y(ST_PointOnSurface(c.geom)) AS lat,
       (SELECT max(e.at) FROM case_events e WHERE e.case_id = c.id) AS updated_at
  FROM cases c
  JOIN categories k ON k.id = c.category_id
  LEFT JOIN departments d ON d.id = c.department_id
  LEFT JOIN areas a ON a.id = c.area_id
 WHERE {where}
 ORDER BY c.reported_at DESC, c.id DESC
 LIMIT :limit
"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _request(row: Mapping[str, Any], locale: str | None = None) -> dict[str, Any]:
    """One case row (public columns only) → an Open311 service request."""
    agency = row["agency"]
    notes = STATUS_NOTES.get(row["status"], row["status"]).format(
        agency=agency or "the responsible department")
    if row["duplicate_of"]:
        notes += f" Linked as a likely duplicate of request {row['duplicate_of']}."
    text_, extra = split_description(row["description"])
    address = extra.get("address_string")
    if not address and row["area_code"]:
        address = f"{row['area_name']} (grid {row['area_code']})"
    name = row["service_name_zh"] if _zh(locale) and row["service_name_zh"] else \
        row["service_name"]
    return {
        "service_request_id": str(row["id"]),
        "status": open311_status(row["status"]),
        "status_notes": notes,
        "service_name": name,
        "service_code": row["service_code"],
        "description": text_.strip() or None,
        "agency_responsible": agency,
        "service_notice": None,
        "requested_datetime": _iso(row["reported_at"]),
        "updated_datetime": _iso(row["updated_at"] or row["reported_at"]),
        "expected_datetime": _iso(row["due_at"]),
        "address": address,
        "address_id": None,
        "zipcode": None,
        "lat": round(float(row["lat"]), 7),
        "long": round(float(row["lon"]), 7),
        # Photos uploaded to us are private; only a URL the reporter published is echoed.
        "media_url": extra.get("media_url"),
    }


def find_requests(conn: Connection, q: RequestQuery, *,
                  locale: str | None = None) -> list[dict[str, Any]]:
    """Service requests matching ``q``, newest first, at most ``q.limit``."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": min(q.limit, MAX_RESULTS)}
    if q.jurisdiction_id is not None:
        where.append("c.jurisdiction_id = :j")
        params["j"] = q.jurisdiction_id
    if q.ids:
        where.append("c.id = ANY(:ids)")
        params["ids"] = q.ids
    else:
        if q.service_codes:
            where.append("k.code = ANY(:codes)")
            params["codes"] = q.service_codes
        if q.statuses:
            where.append("c.status = ANY(:states)")
            params["states"] = states_for(q.statuses)
        if q.start is not None:
            where.append("c.reported_at >= :start")
            params["start"] = q.start
        if q.end is not None:
            where.append("c.reported_at <= :end")
            params["end"] = q.end
    sql = _REQUESTS_SQL.format(where=" AND ".join(where) or "true")
    return [_request(dict(r), locale) for r in conn.execute(text(sql), params).mappings()]


def get_request(conn: Connection, request_id: str, *, jurisdiction_id: int | None = None,
                locale: str | None = None) -> dict[str, Any]:
    """One service request; 404 when there is none."""
    if not _ID_RE.match(request_id or ""):
        raise NotFound(f"service_request_id {request_id!r} was not found",
                       field="service_request_id")
    found = find_requests(conn, RequestQuery(ids=[int(request_id)],
                                             jurisdiction_id=jurisdiction_id), locale=locale)
    if not found:
        raise NotFound(f"service_request_id {request_id} was not found",
                       field="service_request_id")
    return found[0]


def request_for_token(conn: Connection, token: str) -> dict[str, Any]:
    """``GET tokens/{token}``: the service request id behind a tracking token; 404 if none."""
    case_id = None
    if token and len(token) <= 200:
        case_id = conn.execute(text("SELECT id FROM cases WHERE tracking_sha256 = :h"),
                               {"h": intake.hash_tracking(token)}).scalar()
    if case_id is None:
        raise NotFound("token was not found", field="token")
    return {"service_request_id": str(case_id), "token": token}


def discovery(base_url: str) -> dict[str, Any]:
    """The service discovery document for this server (``base_url`` ends in ``/open311/v2``)."""
    return {
        "changeset": CHANGESET,
        "contact": "gridgov command centre: see docs/open311.md",
        "key_service": "api_key is an account token: `gridgov users add NAME --role reporter`",
        "endpoints": [{
            "specification": SPEC_URL,
            "url": base_url,
            "changeset": CHANGESET,
            "type": "production",
            "formats": [FORMATS["xml"], FORMATS["json"]],
        }],
    }


# --- XML ------------------------------------------------------------------------------------------

# A list under this tag holds elements of this name (the spec's plural → singular).
ITEM_TAGS = {"services": "service", "service_requests": "request", "errors": "error",
             "attributes": "attribute", "values": "value", "endpoints": "endpoint",
             "formats": "format"}


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _append(el, k, v)
    elif isinstance(value, list):
        item = ITEM_TAGS.get(tag, "item")
        for v in value:
            _append(el, item, v)
    else:
        el.text = _scalar(value)


XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def to_xml(root: str, payload: Any) -> bytes:
    """``payload`` (a list or a dict) as the spec's XML document under ``root``, UTF-8 with
    the XML declaration. ElementTree escapes every text node.

    >>> to_xml("errors", [{"code": 404, "description": "no"}]).decode().splitlines()[1]
    '<errors><error><code>404</code><description>no</description></error></errors>'
    """
    el = ET.Element(root)
    if isinstance(payload, list):
        item = ITEM_TAGS.get(root, "item")
        for v in payload:
            _append(el, item, v)
    else:
        for k, v in payload.items():
            _append(el, k, v)
    return XML_DECLARATION + ET.tostring(el, encoding="unicode").encode("utf-8")


def fields_from_xml(raw: bytes) -> dict[str, Any]:
    """Fields of an XML POST body (a tolerated extension; the spec posts forms).

    ``<request><service_code>…</service_code><lat>…</lat>…<attribute code="X">v</attribute>
    </request>``. Parsed with defusedxml: DTDs, entities and external references are refused.
    """
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidInput("XML with a DTD, entities or external references is refused",
                           field="body") from exc
    except ET.ParseError as exc:
        raise InvalidInput(f"malformed XML: {exc}", field="body") from exc
    fields: dict[str, Any] = {}
    for child in root:
        if len(child):
            raise InvalidInput(f"<{child.tag}> must hold text, not elements", field=child.tag)
        if child.tag == "attribute":
            code = child.get("code")
            if not code:
                raise InvalidInput('<attribute> needs code="…"', field="attribute")
            fields[f"attribute[{code}]"] = (child.text or "").strip()
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields

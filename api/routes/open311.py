"""Open311 GeoReport v2 at ``/open311/v2/``: services, service definitions, requests (GET and
POST), one request, tokens, and the discovery document, each as ``.json`` or ``.xml``.

Errors use the specification's format and status codes, not the rest of the API's
``{"detail", "field"}``: ``[{"code": 400, "description": "..."}]`` in JSON and
``<errors><error><code>400</code><description>...</description></error></errors>`` in XML;
400 for bad input, 403 for a missing or invalid ``api_key``, 404 for an unknown id, code or token.
The mapping itself lives in ``gis/open311.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from api.deps import ConnDep, case_config, commit
from gis import open311
from gis.auth import Forbidden, Unauthorized
from gis.errors import Conflict, InvalidInput, NotFound

router = APIRouter(prefix="/open311/v2", tags=["open311"])

MAX_BODY_BYTES = 100_000  # a GeoReport POST is a handful of short fields
MEDIA_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}


class Open311Failure(Exception):
    """An error answered in the GeoReport format of the request (``.json`` or ``.xml``)."""

    def __init__(self, status: int, description: str, fmt: str = "json"):
        super().__init__(description)
        self.status = status
        self.description = description
        self.fmt = fmt if fmt in MEDIA_TYPES else "json"


def respond(payload: Any, root: str, fmt: str, status: int = 200,
            headers: dict[str, str] | None = None) -> Response:
    if fmt == "xml":
        body = open311.to_xml(root, payload)
    else:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status, media_type=MEDIA_TYPES[fmt], headers=headers)


def _failure(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Open311Failure)
    return respond([{"code": exc.status, "description": exc.description}], "errors", exc.fmt,
                   exc.status)


def install(app: FastAPI) -> None:
    """Answer ``Open311Failure`` in the specification's error format."""
    app.add_exception_handler(Open311Failure, _failure)


def _fmt(fmt: str) -> str:
    if fmt not in MEDIA_TYPES:
        raise Open311Failure(404, f"unknown format .{fmt}: use .json or .xml")
    return fmt


@contextmanager
def spec_errors(fmt: str) -> Iterator[None]:
    """Domain errors → Open311 errors. The exception still propagates, so the request's
    transaction is rolled back (nothing half-written)."""
    try:
        yield
    except (Unauthorized, Forbidden) as exc:
        raise Open311Failure(403, exc.detail, fmt) from exc
    except NotFound as exc:
        raise Open311Failure(404, exc.detail, fmt) from exc
    except Conflict as exc:
        raise Open311Failure(409, exc.detail, fmt) from exc
    except InvalidInput as exc:
        field = exc.field or ""
        described = exc.detail if not field or exc.detail.startswith(field) \
            else f"{field}: {exc.detail}"
        raise Open311Failure(400, described, fmt) from exc
    except ValueError as exc:  # psycopg2 refuses text holding NUL before sending the query
        if "NUL (0x00)" not in str(exc):
            raise
        raise Open311Failure(400, "text must not contain NUL (0x00) characters", fmt) from exc


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


# --- discovery and services -------------------------------------------------------------------

@router.get("/discovery.{fmt}")
def discovery(request: Request, fmt: str) -> Response:
    """Service discovery: where this GeoReport v2 endpoint is and which formats it speaks."""
    fmt = _fmt(fmt)
    base = str(request.url_for("services", fmt="json")).rsplit("/", 1)[0]
    return respond(open311.discovery(base), "discovery", fmt)


@router.get("/services.{fmt}", name="services")
def services(request: Request, conn: ConnDep, fmt: str) -> Response:
    """Every reportable category as a service (``locale=zh`` for Chinese names)."""
    fmt = _fmt(fmt)
    params = _params(request)
    with spec_errors(fmt):
        open311.jurisdiction(conn, params.get("jurisdiction_id"))
        rows = open311.services(conn, locale=params.get("locale"))
    return respond(rows, "services", fmt)


@router.get("/services/{service_code}.{fmt}")
def service_definition(request: Request, conn: ConnDep, service_code: str,
                       fmt: str) -> Response:
    """A service's definition (no extra attributes: every service has ``metadata`` false)."""
    fmt = _fmt(fmt)
    with spec_errors(fmt):
        open311.jurisdiction(conn, _params(request).get("jurisdiction_id"))
        definition = open311.service_definition(conn, service_code)
    return respond(definition, "service_definition", fmt)


# --- requests ---------------------------------------------------------------------------------

@router.get("/requests.{fmt}")
def get_requests(request: Request, conn: ConnDep, fmt: str) -> Response:
    """Service requests (public fields only), newest first, at most 1000: filters
    ``service_request_id`` (comma list; overrides the others), ``service_code`` (comma list),
    ``start_date``/``end_date`` (at most 90 days; default the last 90 days), ``status``
    (``open``, ``closed``), ``jurisdiction_id``."""
    fmt = _fmt(fmt)
    params = _params(request)
    with spec_errors(fmt):
        query = open311.parse_query(conn, params)
        rows = open311.find_requests(conn, query, locale=params.get("locale"))
    return respond(rows, "service_requests", fmt)


async def post_fields(request: Request) -> dict[str, Any]:
    """The POST's fields: the query string, then the body (form-encoded as the specification
    says; multipart form fields, a JSON object and a flat XML document are tolerated)."""
    fmt = request.path_params.get("fmt", "json")
    fmt = fmt if fmt in MEDIA_TYPES else "json"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise Open311Failure(413, f"request body is {declared:,} bytes; the limit is"
                                  f" {MAX_BODY_BYTES:,}", fmt)
    fields: dict[str, Any] = dict(request.query_params)
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=200)
        except Exception as exc:  # noqa: BLE001 - starlette raises several kinds
            raise Open311Failure(400, "malformed multipart body, or a file: Open311 takes"
                                      " media_url (upload photos through /api/cases)",
                                 fmt) from exc
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):  # pragma: no cover - max_files=0 refuses files
                raise Open311Failure(400, "files are not accepted; send media_url", fmt)
            fields[key] = value
        return fields
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise Open311Failure(413, f"request body is over {MAX_BODY_BYTES:,} bytes", fmt)
    if not raw.strip():
        return fields
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Open311Failure(400, "request body is not UTF-8", fmt) from exc
    if kind in ("", "application/x-www-form-urlencoded"):
        fields.update(parse_qsl(decoded, keep_blank_values=True))
    elif kind == "application/json" or kind.endswith("+json"):
        try:
            obj = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise Open311Failure(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column"
                                      f" {exc.colno}", fmt) from exc
        if not isinstance(obj, dict):
            raise Open311Failure(400, "a JSON body must be an object of request fields", fmt)
        fields.update(obj)
    elif kind in ("application/xml", "text/xml") or kind.endswith("+xml"):
        with spec_errors(fmt):
            fields.update(open311.fields_from_xml(raw))
    else:
        raise Open311Failure(415, f"Content-Type {kind!r} is not supported: send"
                                  " application/x-www-form-urlencoded", fmt)
    return fields


def _api_key(fields: dict[str, Any], request: Request) -> str | None:
    key = fields.get("api_key")
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token if scheme.lower() == "bearer" else None
    return str(key) if key is not None else None


@router.post("/requests.{fmt}", status_code=201, responses={
    200: {"description": "an Idempotency-Key retry: the same request id"},
    400: {"description": "a field is missing or malformed"},
    403: {"description": "api_key missing, invalid, or of a role that may not report"},
})
def post_request(
    request: Request,
    conn: ConnDep,
    fmt: str,
    fields: Annotated[dict[str, Any], Depends(post_fields)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Create a service request (a case through the shared intake, channel ``open311``).

    ``api_key`` is an account token (reporter, call_taker, dispatcher, supervisor or admin).
    The answer carries ``service_request_id`` at once and the reporter's tracking ``token``.
    """
    fmt = _fmt(fmt)
    with spec_errors(fmt):
        principal = open311.api_key_principal(conn, _api_key(fields, request))
        new = open311.parse_new_request(fields, idempotency_key=idempotency_key)
        config = case_config(request)  # built once per app
        body, created = open311.create_request(conn, new, principal=principal,
                                               settings=config.cases,
                                               calendar_settings=config.calendar)
        commit(conn)
    rid = body[0]["service_request_id"]
    headers = {"Location": f"/open311/v2/requests/{rid}.{fmt}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return respond(body, "service_requests", fmt, 201 if created else 200, headers)


@router.get("/requests/{request_id}.{fmt}")
def get_request(request: Request, conn: ConnDep, request_id: str, fmt: str) -> Response:
    """One service request (a list of one, as the specification has it)."""
    fmt = _fmt(fmt)
    params = _params(request)
    with spec_errors(fmt):
        jid = open311.jurisdiction(conn, params.get("jurisdiction_id"))
        row = open311.get_request(conn, request_id, jurisdiction_id=jid,
                                  locale=params.get("locale"))
    return respond([row], "service_requests", fmt)


@router.get("/tokens/{token}.{fmt}")
def get_token(conn: ConnDep, token: str, fmt: str) -> Response:
    """The service request id behind a token (our reporter's tracking token)."""
    fmt = _fmt(fmt)
    with spec_errors(fmt):
        row = open311.request_for_token(conn, token)
    return respond([row], "service_requests", fmt)


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown(rest: str) -> Response:
    fmt = rest.rsplit(".", 1)[-1] if "." in rest else "json"
    raise Open311Failure(404, f"no such GeoReport v2 resource: {rest!r}; see"
                              " discovery.json", fmt)

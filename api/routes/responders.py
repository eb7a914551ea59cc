"""Responders: list, create, status, live positions (one and batch), nearest by line or road.

Auth: responders and their positions are staff-only (roles below, via ``api/security.py``);
the public gets 401, other roles 403. Reading is not scoped (dispatch crosses lines); a
department-scoped account changes, creates and reports positions only for its own department's
responders (403 naming the responder; a batch lists the others as refused, like every other
refused item).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import ConnDep, commit
from api.schemas import feature_collection, parse_bbox
from api.security import Access, authorised, get_principal, require
from gis import crs, dispatch, nearest
from gis.areas import check_lonlat
from gis.auth import Principal
from gis.dispatch import DispatchSettings, PositionIn
from gis.nearest import NearestQuery

router = APIRouter(prefix="/api", tags=["responders"])


# Who may do what with responders (positions of on-duty staff are not public, DOMAIN.md):
# read and search — the staff who dispatch or oversee; report positions — devices of field
# staff and the dispatch centre; change responders — the dispatch centre; read a position
# history — dispatchers and supervisors only.
READ_ROLES = ("call_taker", "dispatcher", "supervisor", "analyst", "admin")
POSITION_ROLES = ("grid_worker", "handler", "dispatcher", "admin")
MANAGE_ROLES = ("dispatcher", "supervisor", "admin")
HISTORY_ROLES = ("dispatcher", "supervisor", "admin")

AuthDep = Annotated[Principal, Depends(get_principal)]
ReadDep = Annotated[Principal, Depends(require(*READ_ROLES, what="see responders"))]
PositionDep = Annotated[Principal, Depends(require(*POSITION_ROLES,
                                                   what="report responder positions"))]
ManageDep = Annotated[Principal, Depends(require(*MANAGE_ROLES, what="manage responders"))]
HistoryDep = Annotated[Principal, Depends(require(*HISTORY_ROLES,
                                                  what="read position histories"))]


async def get_dispatch_settings(request: Request) -> DispatchSettings:
    """Settings built once per app (from ``GRIDGOV_DISPATCH_*``), kept on ``app.state``."""
    settings = getattr(request.app.state, "dispatch_settings", None)
    if settings is None:
        settings = DispatchSettings()
        request.app.state.dispatch_settings = settings
    return settings


SettingsDep = Annotated[DispatchSettings, Depends(get_dispatch_settings)]

MAX_ID = 2**63 - 1  # responders.id is a bigint: larger ids are a 422, not a database error
ResponderId = Annotated[int, Path(ge=1, le=MAX_ID, description="responder id")]


class ResponderIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "staff"
    department: str | None = Field(None, description="department code")
    skills: list[str] = Field(default_factory=list, max_length=50)
    status: str = "off"
    # strict: JSON `false` is not jurisdiction 0
    jurisdiction_id: int | None = Field(None, strict=True, ge=1, le=2**31 - 1,
                                        description="default: the first jurisdiction")


class ResponderPatch(BaseModel):
    status: str | None = Field(None, description="available, busy or off")
    name: str | None = Field(None, max_length=200)
    department: str | None = Field(None, description="department code; empty string clears")
    skills: list[str] | None = Field(None, max_length=50)


class PositionBody(BaseModel):
    lon: float = Field(description="longitude (or x in `crs`)")
    lat: float = Field(description="latitude (or y in `crs`)")
    crs: str | int | None = Field(None, description="EPSG code, GCJ-02 or BD-09; default WGS84")
    recorded_at: datetime | None = Field(None, description="device time; default now")


class BatchPosition(PositionBody):
    id: int = Field(ge=1, le=MAX_ID)


class BatchBody(BaseModel):
    positions: list[BatchPosition]


def _feature(row: dict[str, Any]) -> dict[str, Any]:
    lon, lat = row.pop("lon", None), row.pop("lat", None)
    geometry = {"type": "Point", "coordinates": [lon, lat]} if lon is not None else None
    props = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    return {"type": "Feature", "id": row["id"], "geometry": geometry, "properties": props}


@router.get("/responders", response_model=None)
def list_responders(
    conn: ConnDep,
    principal: ReadDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(description="available, busy or off")] = None,
    department: Annotated[str | None, Query(description="department code")] = None,
    skill: str | None = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
) -> dict:
    """Responders as a GeoJSON FeatureCollection (geometry null when off duty or unknown)."""
    rows = dispatch.list_responders(conn, settings=settings, status=status,
                                    department=department, skill=skill, bbox=parse_bbox(bbox))
    return {"type": "FeatureCollection", "features": [_feature(r) for r in rows]}


@router.post("/responders", status_code=201)
def create_responder(conn: ConnDep, principal: ManageDep, settings: SettingsDep,
                     body: ResponderIn) -> dict:
    """A new responder. A department-scoped account creates responders of its own department
    (the default when ``department`` is omitted); another department is a 403."""
    fields = body.model_dump()
    if principal.department_id is not None and body.department is None:
        fields["department"] = principal.department_code
    dispatch.check_department_scope(principal, fields["department"])
    row = dispatch.create_responder(conn, settings=settings, **fields)
    commit(conn)
    return _feature(row)


class JSONBody(JSONResponse):
    """JSON rendered where the response is made (in the handler's worker thread), with the
    encoding FastAPI would give the same ``dict`` (datetimes as ISO 8601…), but without walking
    the whole body through ``jsonable_encoder`` on the event loop first: only the values
    ``json`` cannot write itself go through it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                          separators=(",", ":"), default=jsonable_encoder).encode("utf-8")


ReadAccess = Annotated[Access, Depends(authorised(*READ_ROLES, what="see responders",
                                                  read_only=True))]


# The hot path of dispatch: one threadpool hop in all, which checks the connection out (in
# autocommit: it only reads), looks the token up, checks the role, runs the query, gives the
# connection back (``Access``) and encodes the body; nothing is left to validate
# (``response_model=None``).
@router.get("/responders/nearest", response_model=None, response_class=JSONBody)
def nearest_responders(
    access: ReadAccess,
    settings: SettingsDep,
    lon: Annotated[float, Query(description="longitude (or x in `crs`)")],
    lat: Annotated[float, Query(description="latitude (or y in `crs`)")],
    k: Annotated[int, Query(description="how many (1 … max_k, default 50)")] = 5,
    mode: Annotated[str, Query(description="straight or road")] = "straight",
    status: Annotated[str, Query(description="available, busy or any")] = "available",
    skill: str | None = None,
    department: Annotated[str | None, Query(description="department code")] = None,
    route: Annotated[bool, Query(description="road mode: include the route geometry")] = False,
    crs_: Annotated[str | None, Query(alias="crs")] = None,
    jurisdiction: Annotated[str | None, Query(
        description="jurisdiction code; default: the one whose roads are nearest")] = None,
) -> Response:
    """Nearest responders, ranked: by geodesic distance (straight) or by ETA over the roads
    (road). ``reason`` says why fewer than k were found."""
    with access.connect(prepare=settings.prepared_statements) as (conn, _):
        x, y = point_param(lon, lat, crs_)
        jid = dispatch.jurisdiction_id(conn, jurisdiction)
        q = NearestQuery(lon=x, lat=y, k=k, mode=mode, status=status, skill=skill,  # type: ignore[arg-type]
                         department=department, route=route, jurisdiction_id=jid)
        body = nearest.nearest(conn, q, settings=settings, kind="responders")
    return JSONBody(body)


def point_param(lon: float, lat: float, crs_: str | None) -> tuple[float, float]:
    code = crs.parse_crs(crs_)
    if code == crs.WGS84:
        check_lonlat(lon, lat)
    return crs.to_wgs84(lon, lat, code)


@router.put("/responders/positions")
def put_positions(conn: ConnDep, principal: PositionDep, settings: SettingsDep,
                  body: BatchBody) -> dict:
    """Many position reports at once (devices or a gateway). Refused items are listed with a
    reason (unknown id, off duty, another department's responder, bad coordinates or time);
    the others are stored."""
    items = [PositionIn(id=p.id, lon=p.lon, lat=p.lat, crs=p.crs, recorded_at=p.recorded_at)
             for p in body.positions]
    result = dispatch.record_positions(conn, items, settings=settings, principal=principal)
    commit(conn)
    return result.as_dict()


@router.get("/responders/{responder_id}")
def get_responder(conn: ConnDep, principal: ReadDep, settings: SettingsDep,
                  responder_id: ResponderId) -> dict:
    return _feature(dispatch.get_responder(conn, responder_id, settings=settings))


@router.patch("/responders/{responder_id}")
def patch_responder(conn: ConnDep, principal: ManageDep, settings: SettingsDep,
                    responder_id: ResponderId, body: ResponderPatch) -> dict:
    """Change status (available, busy, off) and details. Off duty clears the position.
    A department-scoped account changes only its department's responders, and keeps them
    there (403 naming the responder or the department)."""
    dispatch.check_responder_scope(conn, principal, responder_id)
    if body.department is not None:
        dispatch.check_department_scope(principal, body.department)
    row = dispatch.update_responder(conn, responder_id, settings=settings,
                                    **body.model_dump(exclude_unset=True))
    commit(conn)
    return _feature(row)


@router.put("/responders/{responder_id}/position")
def put_position(conn: ConnDep, principal: PositionDep, settings: SettingsDep,
                 responder_id: ResponderId, body: PositionBody) -> dict:
    """One position report. 409 when the responder is off duty (positions are not kept),
    403 when it is another department's."""
    row = dispatch.record_position(
        conn, PositionIn(id=responder_id, lon=body.lon, lat=body.lat, crs=body.crs,
                         recorded_at=body.recorded_at), settings=settings, principal=principal)
    commit(conn)
    moved, recorded = row.pop("moved"), row.pop("recorded")
    feature = _feature(row)
    feature["properties"].update({"moved": moved, "recorded": recorded})
    return feature


@router.get("/responders/{responder_id}/positions")
def get_positions(conn: ConnDep, principal: HistoryDep, settings: SettingsDep,
                  responder_id: ResponderId,
                  limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> dict:
    """The responder's on-duty history (thinned, within retention), newest first."""
    dispatch.get_responder(conn, responder_id, settings=settings)  # 404 when unknown
    rows = dispatch.position_history(conn, responder_id, settings=settings, limit=limit)
    for r in rows:
        r["geometry"] = f'{{"type":"Point","coordinates":[{r.pop("lon")},{r.pop("lat")}]}}'
    return feature_collection(rows, id_key="recorded_at", drop=())

"""The planner workbench API: ``/api/plans`` (issue 7). Thin handlers over ``gis.planning``.

Access: dependencies ``ReadDep`` and ``WriteDep`` (below), built on
``api.security.require``: planners and admins edit plans, analysts may read them. Swap them
here to change who may plan. ``PlanWriteDep`` adds the area scope to ``WriteDep`` for every
route that changes an existing plan: its root must lie in the account's area scope, as
``POST /api/plans`` requires of a new one. Every write commits before it answers (2xx means
stored).
"""

from __future__ import annotations

from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from api.deps import ConnDep, commit
from api.security import require
from gis import audit
from gis.auth import Forbidden, Principal, area_in_scope
from gis.errors import InvalidInput
from gis.planning import autopartition, checks, files, plans, publish, store
from gis.planning.blocks import road_faces

router = APIRouter(prefix="/api/plans", tags=["plans"])

ReadDep = Annotated[Principal, Depends(require("planner", "admin", "analyst",
                                               what="read plans"))]
WriteDep = Annotated[Principal, Depends(require("planner", "admin", what="edit plans"))]


def _plan_writer(conn: ConnDep, plan_id: int, principal: WriteDep) -> Principal:
    """A planner or admin whose area scope holds the plan's root: an account edits only the
    plans it could have created (403 naming the plan otherwise, 404 for an unknown plan).
    Reading plans is not scoped."""
    plans.check_scope(conn, principal, plan_id)
    return principal


PlanWriteDep = Annotated[Principal, Depends(_plan_writer)]

Versions = dict[str, int]


def _geometry(value: dict[str, Any] | None, field: str) -> BaseGeometry:
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a GeoJSON geometry object", field=field)
    if value.get("type") == "Feature":
        value = value.get("geometry")
    try:
        return shape(value)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            shapely.errors.ShapelyError) as exc:
        raise InvalidInput(f"{field} is not a valid GeoJSON geometry ({type(exc).__name__})",
                           field=field) from exc


class PlanIn(BaseModel):
    root: str | None = Field(None, description="code of the area to copy (with everything"
                             " below it); omit for the whole jurisdiction")
    name: str | None = Field(None, max_length=200)
    jurisdiction: str | None = Field(None, description="jurisdiction code (default: first)")


class ReshapeIn(BaseModel):
    geometry: dict[str, Any]
    version: int | None = Field(None, description="version of the area you saw")
    snap_m: float = Field(plans.SNAP_M, ge=0, le=50)


class CarveIn(BaseModel):
    parent: int = Field(description="key of the area to draw the new one in")
    geometry: dict[str, Any]
    name: str = Field("", max_length=200)
    grid_type: str | None = None
    versions: Versions | None = None
    snap_m: float = Field(plans.SNAP_M, ge=0, le=50)


class SplitIn(BaseModel):
    line: dict[str, Any]
    version: int | None = None


class MergeIn(BaseModel):
    keys: list[int] = Field(min_length=2)
    versions: Versions | None = None


class MoveIn(BaseModel):
    to: int = Field(description="key of the area receiving the buildings or blocks")
    version: int | None = Field(None, description="version of `to` you saw")
    versions: Versions | None = None
    buildings: list[int] | None = None
    blocks: list[list[float]] | None = Field(None, description="[lon, lat] inside each block")


class SnapIn(BaseModel):
    tolerance_m: float = Field(15.0, gt=0, le=200)
    version: int | None = None


class AreaPatch(BaseModel):
    version: int | None = None
    locked: bool | None = None
    name: str | None = Field(None, max_length=200)
    grid_type: str | None = None


class UndoIn(BaseModel):
    op: int | None = Field(None, description="id of the operation you expect to undo")


class PartitionIn(BaseModel):
    parent: int | None = Field(None, description="key of the community/street to cut")
    parent_code: str | None = None
    weight: str = Field("households", description="households, population or area_m2")
    target: float | None = Field(None, gt=0, description="per grid (default: the level's)")
    tolerance: float | None = Field(None, ge=0, lt=1)
    n: int | None = Field(None, ge=1, le=999, description="number of grids instead of a target")
    seed: int = 0
    versions: Versions | None = None


def _actor(principal: Principal) -> int | None:
    return principal.user_id


def _seen(versions: Versions | None) -> dict[int, int] | None:
    if versions is None:
        return None
    try:
        return {int(k): int(v) for k, v in versions.items()}
    except ValueError as exc:
        raise InvalidInput("versions must map area keys to versions", field="versions") from exc


@router.post("", status_code=201)
def create_plan(conn: ConnDep, body: PlanIn, principal: WriteDep) -> dict:
    """Copy an area subtree (a community, street, district; or the whole jurisdiction) into a
    new draft plan."""
    plan = plans.create_plan(conn, root=body.root, name=body.name,
                             jurisdiction=body.jurisdiction, actor_id=_actor(principal))
    if principal.scope_area_ids and not area_in_scope(conn, principal, plan.root_area_id):
        raise Forbidden(f"{body.root or 'the whole jurisdiction'} is outside your scope"
                        f" ({principal.describe_scope()})", field="root")
    commit(conn)
    return plan.as_dict()


@router.get("")
def list_plans(conn: ConnDep, _: ReadDep, status: str | None = None) -> dict:
    return {"plans": plans.list_plans(conn, status=status)}


@router.get("/{plan_id}")
def get_plan(conn: ConnDep, plan_id: int, _: ReadDep) -> dict:
    return {**store.get_plan(conn, plan_id).as_dict(), "ops": store.history(conn, plan_id)}


@router.delete("/{plan_id}")
def discard_plan(conn: ConnDep, plan_id: int, _: PlanWriteDep) -> dict:
    out = plans.discard(conn, plan_id)
    commit(conn)
    return out


@router.get("/{plan_id}/areas")
def plan_areas(conn: ConnDep, plan_id: int, _: ReadDep,
               level: Annotated[int | None, Query(description="rank (3 = grid)")] = None,
               parent: Annotated[int | None, Query(description="key of the parent")] = None
               ) -> dict:
    """The plan's areas as GeoJSON (feature id = key), with deviations from the targets."""
    return plans.features(conn, plan_id, level=level, parent=parent)


@router.get("/{plan_id}/areas/{key}")
def plan_area(conn: ConnDep, plan_id: int, key: int, _: ReadDep) -> dict:
    return store.feature(store.load_one(conn, plan_id, key))


@router.post("/{plan_id}/areas", status_code=201)
def carve(conn: ConnDep, plan_id: int, body: CarveIn, principal: PlanWriteDep) -> dict:
    """Draw a new grid inside ``parent``: it takes its ground from the grids there."""
    out = plans.carve(conn, plan_id, body.parent, _geometry(body.geometry, "geometry"),
                      name=body.name, grid_type=body.grid_type, versions=body.versions,
                      snap_m=body.snap_m, actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.patch("/{plan_id}/areas/{key}")
def patch_area(conn: ConnDep, plan_id: int, key: int, body: AreaPatch,
               principal: PlanWriteDep) -> dict:
    """Lock/unlock (locked grids are never changed by edits or the partition), rename."""
    out = plans.set_attributes(conn, plan_id, key, version=body.version, locked=body.locked,
                               name=body.name, grid_type=body.grid_type,
                               actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.post("/{plan_id}/areas/{key}/reshape")
def reshape(conn: ConnDep, plan_id: int, key: int, body: ReshapeIn,
            principal: PlanWriteDep) -> dict:
    """New outline for a grid; neighbours give or take the difference."""
    out = plans.reshape(conn, plan_id, key, _geometry(body.geometry, "geometry"),
                        version=body.version, snap_m=body.snap_m, actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.post("/{plan_id}/areas/{key}/split")
def split(conn: ConnDep, plan_id: int, key: int, body: SplitIn,
          principal: PlanWriteDep) -> dict:
    """Cut a grid along a line drawn across it."""
    out = plans.split(conn, plan_id, key, _geometry(body.line, "line"), version=body.version,
                      actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.post("/{plan_id}/areas/{key}/snap")
def snap(conn: ConnDep, plan_id: int, key: int, body: SnapIn,
         principal: PlanWriteDep) -> dict:
    """Move the grid's edges that run near a road onto the road."""
    out = plans.snap_to_roads(conn, plan_id, key, tolerance_m=body.tolerance_m,
                              version=body.version, actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.post("/{plan_id}/merge")
def merge(conn: ConnDep, plan_id: int, body: MergeIn, principal: PlanWriteDep) -> dict:
    out = plans.merge(conn, plan_id, body.keys, versions=body.versions,
                      actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.post("/{plan_id}/move")
def move(conn: ConnDep, plan_id: int, body: MoveIn, principal: PlanWriteDep) -> dict:
    """Move buildings (by id) or road blocks (by a point inside each) into grid ``to``."""
    if bool(body.buildings) == bool(body.blocks):
        raise InvalidInput("give either buildings or blocks", field="buildings")
    if body.buildings:
        out = plans.move_buildings(conn, plan_id, body.to, body.buildings,
                                   version=body.version, versions=body.versions,
                                   actor_id=_actor(principal))
    else:
        out = plans.move_blocks(conn, plan_id, body.to, body.blocks or [],
                                version=body.version, versions=body.versions,
                                actor_id=_actor(principal))
    commit(conn)
    return out.as_dict()


@router.get("/{plan_id}/blocks")
def blocks(conn: ConnDep, plan_id: int, parent: int, _: ReadDep) -> dict:
    """The road blocks of an area of the plan (what "move blocks" moves)."""
    plan = store.get_plan(conn, plan_id)
    area = store.load_one(conn, plan_id, parent)
    faces = road_faces(conn, plan, area.geom)
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "id": i, "geometry": store.geojson(f),
                          "properties": {"block": i}} for i, f in enumerate(faces)]}


@router.get("/{plan_id}/buildings")
def buildings(conn: ConnDep, plan_id: int, parent: int, _: ReadDep) -> dict:
    """The buildings of an area of the plan (what "move buildings" moves) with their counts
    and the key of the grid holding each now."""
    return plans.buildings_in(conn, plan_id, parent)


@router.post("/{plan_id}/undo")
def undo(conn: ConnDep, plan_id: int, principal: PlanWriteDep,
         body: UndoIn | None = None) -> dict:
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    out = store.undo(conn, plan, expected_op=body.op if body else None)
    commit(conn)
    return out


@router.post("/{plan_id}/redo")
def redo(conn: ConnDep, plan_id: int, principal: PlanWriteDep) -> dict:
    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    out = store.redo(conn, plan)
    commit(conn)
    return out


@router.get("/{plan_id}/ops")
def ops(conn: ConnDep, plan_id: int, _: ReadDep) -> dict:
    store.get_plan(conn, plan_id)
    return {"ops": store.history(conn, plan_id)}


@router.get("/{plan_id}/check")
def check(conn: ConnDep, plan_id: int, _: ReadDep,
          road_tolerance_m: Annotated[float, Query(gt=0, le=100)] = checks.ROAD_TOLERANCE_M
          ) -> dict:
    """Gaps, overlaps, nesting, contiguity, holes, slivers, balance, compactness, roads."""
    out = checks.check_plan(conn, plan_id, road_tolerance_m=road_tolerance_m)
    commit(conn)  # the plan keeps the summary of its last check
    return out


@router.post("/{plan_id}/partition")
def partition(conn: ConnDep, plan_id: int, body: PartitionIn,
              principal: PlanWriteDep) -> dict:
    """Cut a community (or every community of a street) into grids near a target size."""
    plan = store.get_plan(conn, plan_id)
    if body.parent is not None:
        parent = store.load_one(conn, plan_id, body.parent)
    elif body.parent_code:
        parent = store.find_by_code(conn, plan_id, body.parent_code)
    else:
        raise InvalidInput("give parent (a key) or parent_code", field="parent")
    grid = plan.level(plan.bottom)
    default = {"households": grid.target_households, "population": grid.target_population,
               "area_m2": grid.target_area_m2}.get(body.weight)
    target = autopartition.Target(
        weight=body.weight, value=body.target if body.target is not None else (
            float(default) if default and body.n is None else None),
        tolerance=body.tolerance if body.tolerance is not None else grid.tolerance,
        n=body.n, seed=body.seed)
    out = autopartition.run(conn, plan_id, parent.key, target,  # type: ignore[arg-type]
                            actor_id=_actor(principal), versions=_seen(body.versions))
    commit(conn)
    return out


@router.get("/{plan_id}/diff")
def diff(conn: ConnDep, plan_id: int, _: ReadDep) -> dict:
    """What publishing would change: grids, buildings and households moved, open cases."""
    return publish.diff(conn, plan_id)


@router.post("/{plan_id}/publish")
def publish_plan(conn: ConnDep, plan_id: int, principal: PlanWriteDep) -> dict:
    """Publish as a new boundary version (atomic; 422 with the problems if checks fail)."""
    out = publish.publish(conn, plan_id, actor_id=_actor(principal))
    audit.record(conn, principal, "plan.publish", target=plan_id, details=out)
    commit(conn)
    return out


@router.get("/{plan_id}/export")
def export(conn: ConnDep, plan_id: int, _: ReadDep,
           format: Annotated[str, Query(pattern="^(gpkg|geojson|shp)$")] = "gpkg",
           level: int | None = None) -> Response:
    """The plan as GeoPackage, GeoJSON or zipped Shapefile."""
    with files.temp_folder() as folder:
        from pathlib import Path

        path = files.export_plan(conn, plan_id, format, Path(folder), level=level)
        data = path.read_bytes()
        name = path.name
    return Response(data, media_type=files.MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/{plan_id}/import")
def import_file(conn: ConnDep, plan_id: int, principal: PlanWriteDep,
                      file: Annotated[UploadFile, File(description=".geojson, .gpkg, or .zip"
                                                       " holding a Shapefile")],
                      layer: Annotated[str | None, Form()] = None,
                      crs: Annotated[str | None, Form(description="EPSG code if the file"
                                                      " declares none")] = None) -> dict:
    """Replace grids of the plan with those of a file, then check the plan."""
    from pathlib import Path

    data = file.file.read()
    with files.temp_folder() as folder:
        path = files.save_upload(data, file.filename or "upload", Path(folder))
        out = files.import_plan(conn, plan_id, path, layer=layer or None,
                                source_crs=crs or None, actor_id=_actor(principal))
    commit(conn)
    return out

"""Property tests on geometry input: degenerate polygons (zero area, repeated points, unclosed
rings, bow-ties), NaN/inf, huge coordinates, the antimeridian, swapped lat/lon and very many
vertices, for file import (``gis.io``, real files), ``/api/locate``, ``POST /api/cases`` and
plan edits (reshape, split). The property: never a server error — either a 4xx (or an import
report) naming the problem, or a stored result whose geometry is valid.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import shape
from sqlalchemy import Connection, text

from gis import areas
from gis.errors import GridgovError, ImportFailed
from gis.io import import_areas
from tests.trust.conftest import cell
from tests.trust.world import CATEGORY, World

PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))
HELSINKI = (24.94, 60.17)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([0.0, -0.0, 1e308, -1e308, 180.0, -180.0, 90.0, -90.0,
                                  180.0000001, 90.0000001, 24.94, 60.17]))


def _ring(kind: str, x: float, y: float, size: float, n: int) -> list[list[float]]:
    """One exterior ring of a given pathology around (x, y)."""
    s = size
    if kind == "box":
        return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    if kind == "zero_area":
        return [[x, y], [x + s, y], [x + 2 * s, y], [x, y]]
    if kind == "repeated":
        return [[x, y], [x, y], [x + s, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]
    if kind == "unclosed":
        return [[x, y], [x + s, y], [x + s, y + s], [x, y + s]]
    if kind == "bowtie":
        return [[x, y], [x + s, y + s], [x + s, y], [x, y + s], [x, y]]
    if kind == "two_points":
        return [[x, y], [x, y]]
    if kind == "antimeridian":
        return [[179.99, y], [-179.99, y], [-179.99, y + s], [179.99, y + s], [179.99, y]]
    if kind == "swapped":
        return [[y, x], [y + s, x], [y + s, x + s], [y, x + s], [y, x]]
    if kind == "many":
        pts = [[x + s * math.cos(2 * math.pi * i / n), y + s * math.sin(2 * math.pi * i / n)]
               for i in range(n)]
        return [*pts, pts[0]]
    raise AssertionError(kind)


KINDS = ("box", "zero_area", "repeated", "unclosed", "bowtie", "two_points", "antimeridian",
         "swapped", "many")


@st.composite
def rings(draw: Any, wild_coords: bool = True) -> list[list[float]]:
    kind = draw(st.sampled_from(KINDS))
    x = draw(st.one_of(st.just(HELSINKI[0]), wild if wild_coords else finite))
    y = draw(st.one_of(st.just(HELSINKI[1]), wild if wild_coords else finite))
    size = draw(st.sampled_from([0.0, 1e-9, 0.001, 0.01, 1.0, 400.0]))
    n = draw(st.integers(min_value=3, max_value=3000))
    return _ring(kind, x, y, size, n)


def _dumps(value: Any) -> str:
    """JSON as a sloppy client writes it: NaN and Infinity included."""
    return json.dumps(value, allow_nan=True)


def _valid_wkb(conn: Connection, code: str, jur: str) -> bool:
    return bool(conn.execute(text(
        "SELECT bool_and(ST_IsValid(a.geom)) FROM areas a JOIN jurisdictions j"
        " ON j.id = a.jurisdiction_id WHERE j.code = :j AND a.code = :c"),
        {"j": jur, "c": code}).scalar())


# --- file import ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def import_jur(mconn: Connection) -> str:
    code = "fz" + uuid.uuid4().hex[:8]
    areas.create_jurisdiction(mconn, code=code, name="fuzz import", local_srid=3067)
    return code


def _import(conn: Connection, folder: Path, ring: list[list[float]], jur: str
            ) -> dict[str, Any] | None:
    path = folder / f"f{uuid.uuid4().hex[:8]}.geojson"
    doc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"code": "990101", "name": "fuzz", "level": 0},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    path.write_text(_dumps(doc))
    try:
        return import_areas(conn, path, jurisdiction=jur, level=0)
    except ImportFailed as exc:
        assert exc.problems and all(p.get("problem") for p in exc.problems)
        return None


@given(ring=rings())
@PROPS
def test_import_of_any_polygon_is_a_report_or_valid_areas(
        ring: list[list[float]], mconn: Connection, import_jur: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    with cell(mconn):
        try:
            summary = _import(mconn, folder, ring, import_jur)
        except GridgovError as exc:  # any other domain error must name a field
            assert exc.detail
            return
        if summary is not None:
            assert summary["inserted"] == 1
            assert _valid_wkb(mconn, "990101", import_jur)


def test_import_of_a_million_vertices_ends_quickly(mconn: Connection, import_jur: str,
                                                   tmp_path: Path) -> None:
    ring = _ring("many", HELSINKI[0], HELSINKI[1], 0.01, 1_000_000)
    started = time.monotonic()
    with cell(mconn):
        summary = _import(mconn, tmp_path, ring, import_jur)
        if summary is not None:
            assert _valid_wkb(mconn, "990101", import_jur)
    assert time.monotonic() - started < 120


# --- /api/locate ---------------------------------------------------------------------------

CRS_CHOICES = st.sampled_from([None, "EPSG:4326", "EPSG:3067", "EPSG:4490", "GCJ-02", "BD-09",
                               "EPSG:4547", "EPSG:999999", "nonsense"])


@given(lon=wild, lat=wild, crs=CRS_CHOICES)
@PROPS
def test_locate_answers_any_point(lon: float, lat: float, crs: str | None, mclient: Any,
                                  mconn: Connection) -> None:
    params: dict[str, Any] = {"lon": repr(lon), "lat": repr(lat)}
    if crs:
        params["crs"] = crs
    with cell(mconn):
        r = mclient.get("/api/locate", params=params)
    assert r.status_code in (200, 404, 422), r.text
    if r.status_code == 422:
        assert r.json()["field"] in ("lon", "lat", "crs", "location")
    if r.status_code == 200:
        assert isinstance(r.json()["areas"], list)


def test_locate_hints_at_swapped_lat_lon(mclient: Any) -> None:
    r = mclient.get("/api/locate", params={"lon": HELSINKI[1], "lat": HELSINKI[0] + 100})
    assert r.status_code == 422 and "swapped" in r.json()["detail"]


# --- POST /api/cases -----------------------------------------------------------------------

@given(lon=wild, lat=wild, crs=CRS_CHOICES)
@PROPS
def test_reporting_any_location_is_stored_or_refused(lon: float, lat: float, crs: str | None,
                                                     mclient: Any, mconn: Connection) -> None:
    body: dict[str, Any] = {"category": CATEGORY, "lon": lon, "lat": lat}
    if crs:
        body["crs"] = crs
    with cell(mconn):
        r = mclient.post("/api/cases", content=_dumps(body),
                         headers={"Content-Type": "application/json"})
        assert r.status_code in (201, 422), r.text
        if r.status_code == 422:
            assert r.json()["field"] in ("lon", "lat", "crs", "location", "body")
        else:
            case_id = r.json()["id"]
            valid = mconn.execute(text("SELECT ST_IsValid(geom) AND ST_X(geom) BETWEEN -180"
                                       " AND 180 FROM cases WHERE id = :i"),
                                  {"i": case_id}).scalar()
            assert valid


# --- plan edits ----------------------------------------------------------------------------

def _plan(world: World) -> tuple[int, dict[str, Any], dict[str, str]]:
    p = world.plans["in"]
    return p["id"], p["grids"][0], world.headers("planner")


@given(ring=rings())
@PROPS
def test_reshape_with_any_polygon_is_refused_or_valid(ring: list[list[float]], mclient: Any,
                                                      mconn: Connection, world: World) -> None:
    pid, grid, headers = _plan(world)
    url = f"/api/plans/{pid}/areas/{grid['id']}"
    with cell(mconn):
        r = mclient.post(url + "/reshape", headers={**headers,
                                                    "Content-Type": "application/json"},
                         content=_dumps({"geometry": {"type": "Polygon",
                                                      "coordinates": [ring]}}))
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            stored = mclient.get(url, headers=headers).json()
            assert shape(stored["geometry"]).is_valid


@st.composite
def lines(draw: Any) -> list[list[float]]:
    n = draw(st.integers(min_value=0, max_value=6))
    base = [HELSINKI[0], HELSINKI[1]]
    anywhere = st.floats(allow_nan=True, allow_infinity=True)  # non-finite: a 422 naming it
    pts = draw(st.lists(st.tuples(st.one_of(anywhere, st.floats(24.9, 25.0)),
                                  st.one_of(anywhere, st.floats(60.15, 60.2))),
                        min_size=n, max_size=n))
    return [list(p) for p in pts] or [base]


@given(line=lines())
@PROPS
def test_split_with_any_line_is_refused_or_valid(line: list[list[float]], mclient: Any,
                                                 mconn: Connection, world: World) -> None:
    pid, grid, headers = _plan(world)
    with cell(mconn):
        r = mclient.post(f"/api/plans/{pid}/areas/{grid['id']}/split",
                         headers={**headers, "Content-Type": "application/json"},
                         content=_dumps({"line": {"type": "LineString", "coordinates": line}}))
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            feats = mclient.get(f"/api/plans/{pid}/areas", params={"level": 3},
                                headers=headers).json()["features"]
            assert all(shape(f["geometry"]).is_valid for f in feats)


def test_reshape_with_a_million_vertices_is_refused_quickly(mclient: Any, mconn: Connection,
                                                            world: World) -> None:
    pid, grid, headers = _plan(world)
    ring = _ring("many", HELSINKI[0], HELSINKI[1], 0.001, 1_000_000)
    body = json.dumps({"geometry": {"type": "Polygon", "coordinates": [ring]}})
    started = time.monotonic()
    with cell(mconn):
        r = mclient.post(f"/api/plans/{pid}/areas/{grid['id']}/reshape", content=body,
                         headers={**headers, "Content-Type": "application/json"})
    assert r.status_code in (413, 422), r.text[:300]
    assert time.monotonic() - started < 30


def test_shapely_agrees_that_the_pathologies_are_pathological() -> None:
    """The generator really produces what the properties claim to cover."""
    x, y = HELSINKI
    assert not shapely.Polygon(_ring("bowtie", x, y, 0.01, 0)).is_valid
    assert shapely.Polygon(_ring("zero_area", x, y, 0.01, 0)).area == 0
    assert len(_ring("many", x, y, 0.01, 1000)) == 1001

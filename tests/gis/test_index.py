"""AreaIndex answers exactly like the SQL locate (gis.areas.locate), shared edges included.

Speed is not asserted here; ``bench/bench_assign.py`` measures it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box
from sqlalchemy import Connection, text

from gis.areas import AreaRow, LevelSpec, create_jurisdiction, insert_areas, locate
from gis.errors import NotFound
from gis.index import AreaIndex
from gis.synth import build_synth_in

AS_OF = datetime(2026, 3, 16, 10, tzinfo=UTC)


def sql_grid(conn: Connection, lon: float, lat: float) -> str | None:
    try:
        return str(locate(conn, float(lon), float(lat))["areas"][-1]["code"])
    except NotFound:
        return None


@pytest.fixture
def city(conn: Connection) -> dict:
    return build_synth_in(conn, grids=40, seed=11, cases=0, jurisdiction_code="IDXTEST",
                          as_of=AS_OF)


@pytest.fixture
def index(conn: Connection, city: dict) -> AreaIndex:
    return AreaIndex.load(conn, jurisdiction_id=city["jurisdiction_id"])


def grid_vertices(conn: Connection, jid: int) -> np.ndarray:
    """Every distinct vertex of the grid polygons, with how many grids share it."""
    rows = conn.execute(text("""
        SELECT ST_X(d.geom), ST_Y(d.geom), count(DISTINCT a.id) FROM areas a,
               ST_DumpPoints(a.geom) d WHERE a.jurisdiction_id = :j AND a.level = 3
         GROUP BY 1, 2"""), {"j": jid}).all()
    return np.array(rows, dtype=float)


def test_index_agrees_with_sql_locate_on_random_points(conn: Connection, city: dict,
                                                       index: AreaIndex) -> None:
    x0, y0, x1, y1 = city["bbox"]
    rng = np.random.default_rng(0)
    lons = rng.uniform(x0 - 0.002, x1 + 0.002, 300)
    lats = rng.uniform(y0 - 0.002, y1 + 0.002, 300)
    expected = [sql_grid(conn, x, y) for x, y in zip(lons, lats, strict=True)]
    assert [index.lookup(x, y) for x, y in zip(lons, lats, strict=True)] == expected
    assert index.assign(lons, lats).tolist() == expected
    assert None in expected and len(set(expected)) > 20


def test_locate_point_on_shared_vertex_goes_to_smallest_code(conn: Connection, city: dict,
                                                             index: AreaIndex) -> None:
    vertices = grid_vertices(conn, city["jurisdiction_id"])
    shared = vertices[vertices[:, 2] >= 2]
    assert len(shared) > 50 and (shared[:, 2] >= 3).any()
    expected = [sql_grid(conn, x, y) for x, y, _ in shared]
    assert index.assign(shared[:, 0], shared[:, 1]).tolist() == expected
    assert [index.lookup(x, y) for x, y, _ in shared] == expected


def test_locate_point_on_shared_edge_goes_to_one_grid_like_sql(conn: Connection, city: dict,
                                                               index: AreaIndex) -> None:
    edges = conn.execute(text("""
        SELECT ST_X(ST_StartPoint(s.geom)), ST_Y(ST_StartPoint(s.geom)),
               ST_X(ST_EndPoint(s.geom)), ST_Y(ST_EndPoint(s.geom))
          FROM areas a, ST_DumpSegments(a.geom) s
         WHERE a.jurisdiction_id = :j AND a.level = 3"""),
        {"j": city["jurisdiction_id"]}).all()
    e = np.array(edges)
    rng = np.random.default_rng(1)
    t = rng.random((len(e), 1))
    points = np.vstack([(e[:, :2] + e[:, 2:]) / 2, e[:, :2] + t * (e[:, 2:] - e[:, :2])])
    expected = [sql_grid(conn, x, y) for x, y in points]
    assert index.assign(points[:, 0], points[:, 1]).tolist() == expected


def test_boundary_rule_is_postgis_float_test_not_geos(conn: Connection) -> None:
    # (1/3, 1) is exactly on the edge (0,0)-(1,3) for PostGIS's floating-point test, so both
    # areas cover it and the smaller code wins; GEOS (shapely) puts it strictly inside one.
    left = Polygon([(0, 0), (1, 3), (-1, 3)])
    right = Polygon([(0, 0), (2, 0), (1, 3)])
    point = shapely.Point(1 / 3, 1)
    assert left.covers(point) != right.covers(point)  # GEOS disagrees with PostGIS here
    jid = create_jurisdiction(conn, code="IDXEDGE", name="edge", local_srid=3857,
                              levels=(LevelSpec("grid", 2),))
    insert_areas(conn, jid, [AreaRow("E2", "left", 0, left), AreaRow("E1", "right", 0, right)])
    shapely_code = "E2" if left.covers(point) else "E1"
    index = AreaIndex.load(conn, jurisdiction_id=jid)
    assert sql_grid(conn, 1 / 3, 1) == "E1" == index.lookup(1 / 3, 1)
    assert index.assign([1 / 3], [1.0]).tolist() == ["E1"]
    if shapely_code == "E2":
        assert index.lookup(1 / 3, 1) != shapely_code


def test_outside_points_are_none(index: AreaIndex) -> None:
    assert index.lookup(0.0, 0.0) is None
    assert index.lookup(float("nan"), 39.9) is None
    assert index.assign([0.0, float("nan"), 200.0], [0.0, 39.9, 95.0]).tolist() == [None] * 3
    assert index.assign_ids([0.0], [0.0]).tolist() == [-1]


def test_assign_ids_are_area_ids_of_the_codes(conn: Connection, city: dict,
                                              index: AreaIndex) -> None:
    x0, y0, x1, y1 = city["bbox"]
    lons, lats = np.linspace(x0, x1, 50), np.linspace(y0, y1, 50)
    codes, ids = index.assign(lons, lats), index.assign_ids(lons, lats)
    by_id = dict(conn.execute(text("SELECT id, code FROM areas WHERE jurisdiction_id = :j"),
                              {"j": city["jurisdiction_id"]}).all())
    assert [by_id.get(int(i)) for i in ids] == codes.tolist()


def test_load_by_level_name_and_time(conn: Connection, city: dict) -> None:
    jid = city["jurisdiction_id"]
    communities = AreaIndex.load(conn, level="community", jurisdiction_id=jid)
    assert len(communities) == city["areas"]["community"]
    assert {len(c) for c in communities.codes} == {12}
    before = AreaIndex.load(conn, jurisdiction_id=jid, at=datetime(2000, 1, 1, tzinfo=UTC))
    assert len(before) == 0 and before.lookup(116.45, 39.9) is None


def test_from_geometries_honours_holes_and_multipolygons() -> None:
    ring = box(0, 0, 4, 4).difference(box(1, 1, 3, 3))
    islands = shapely.MultiPolygon([box(1, 1, 2, 3), box(2, 1, 3, 3)])
    index = AreaIndex.from_geometries([ring, islands], ["R", "I"], ids=[10, 20])
    assert index.lookup(0.5, 0.5) == "R"
    assert index.lookup(1.5, 2.0) == "I" and index.lookup(2.5, 2.0) == "I"
    assert index.lookup(1.0, 2.0) == "I"  # on the hole's edge: both cover, "I" < "R"
    assert index.lookup(5.0, 5.0) is None
    assert index.assign_ids([0.5, 2.5, 9.0], [0.5, 2.0, 9.0]).tolist() == [10, 20, -1]


@pytest.mark.parametrize("cells_per_part", [1, 16, 1024])
def test_raster_resolution_never_changes_the_answer(cells_per_part: float) -> None:
    rng = np.random.default_rng(2)
    polys = [box(x, y, x + 1, y + 1) for x in range(5) for y in range(5)]
    codes = [f"G{i:02d}" for i in range(25)]
    reference = AreaIndex.from_geometries(polys, codes, cells_per_part=256)
    other = AreaIndex.from_geometries(polys, codes, cells_per_part=cells_per_part)
    pts = np.vstack([rng.uniform(-0.5, 5.5, (2000, 2)),
                     rng.integers(0, 6, (500, 2)).astype(float),
                     np.column_stack([rng.integers(0, 6, 500), rng.uniform(0, 5, 500)])])
    assert (other.assign_index(pts[:, 0], pts[:, 1])
            == reference.assign_index(pts[:, 0], pts[:, 1])).all()
    # grid lines are shared edges: points on them go to the smallest code covering them
    assert reference.lookup(1.0, 0.5) == "G00" and reference.lookup(1.0, 1.0) == "G00"

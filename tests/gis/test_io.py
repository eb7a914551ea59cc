"""Import and export of real files (GeoJSON, GeoPackage, Shapefile, CSV) against real PostGIS.

Every test makes its own jurisdiction (a unique code) and runs in a rolled-back transaction.
"""

from __future__ import annotations

import json
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, box, shape
from sqlalchemy import Connection, text

from gis import areas
from gis.crs import wgs84_to_gcj02
from gis.errors import ImportFailed, InvalidInput, NotFound
from gis.io import EXPORT_LAYERS, export_layer, import_areas
from tests.fixtures_geom import (
    CELL,
    COLS,
    COMMUNITY,
    HELSINKI,
    HELSINKI_SRID,
    LOCAL_SRID,
    ROWS,
    X0,
    Y0,
    bowtie,
    cell,
    feature,
    grid_code,
    point,
    swap_xy,
    tiny_city,
    write_file,
    write_geojson,
)

YESTERDAY = datetime.now(UTC) - timedelta(days=1)


def _jurisdiction(conn: Connection, local_srid: int = LOCAL_SRID) -> str:
    code = "t" + uuid.uuid4().hex[:9]
    areas.create_jurisdiction(conn, code=code, name=f"test {code}", local_srid=local_srid)
    return code


@pytest.fixture
def jur(conn: Connection) -> str:
    return _jurisdiction(conn)


def _counts(conn: Connection) -> tuple[int, ...]:
    return tuple(conn.execute(text(
        "SELECT (SELECT count(*) FROM areas), (SELECT count(*) FROM area_parts),"
        " (SELECT count(*) FROM areas WHERE valid_to IS NOT NULL)")).one())


def _stored(conn: Connection, jur: str, *, current: bool = True) -> dict[str, Any]:
    """{code: row} of the jurisdiction's areas, geometry decoded with shapely."""
    rows = conn.execute(text(
        "SELECT a.code, a.name, a.level, p.code AS parent_code, a.valid_from, a.valid_to,"
        " ST_AsBinary(a.geom) AS wkb FROM areas a JOIN jurisdictions j ON j.id ="
        " a.jurisdiction_id LEFT JOIN areas p ON p.id = a.parent_id WHERE j.code = :j"
        " AND (a.valid_to IS NULL OR NOT :current)"), {"j": jur, "current": current}).mappings()
    return {r["code"]: {**r, "geom": shapely.from_wkb(bytes(r["wkb"]))} for r in rows}


def _fails(conn: Connection, path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """Import must fail, list its problems, and leave the database as it was."""
    before = _counts(conn)
    with pytest.raises(ImportFailed) as info:
        import_areas(conn, path, **kwargs)
    assert _counts(conn) == before
    assert info.value.problems == info.value.extra["problems"]
    return info.value.problems


def _kinds(problems: list[dict[str, Any]]) -> set[str]:
    return {p["problem"] for p in problems}


def _same_shape(a: shapely.Geometry, b: shapely.Geometry, tol: float = 1e-7) -> bool:
    return bool(a.hausdorff_distance(b) < tol)


# --- import: the happy paths ------------------------------------------------------------------

def test_import_geojson_builds_the_hierarchy(conn: Connection, jur: str, tmp_path: Path
                                             ) -> None:
    report = import_areas(conn, write_file(tmp_path / "city.geojson", tiny_city()),
                          jurisdiction=jur)
    assert report["inserted"] == 3 + COLS * ROWS
    assert report["levels"] == {"district": 1, "street": 1, "community": 1, "grid": COLS * ROWS}
    stored = _stored(conn, jur)
    assert stored[grid_code(0, 0)]["parent_code"] == COMMUNITY
    assert _same_shape(stored[grid_code(0, 0)]["geom"], cell(0, 0))
    assert areas.locate(conn, X0 + CELL / 2, Y0 + CELL / 2)["areas"][-1]["code"] == \
        grid_code(0, 0)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".csv"])
def test_round_trip_export_then_import(conn: Connection, jur: str, tmp_path: Path,
                                       suffix: str) -> None:
    import_areas(conn, write_file(tmp_path / "city.gpkg", tiny_city()), jurisdiction=jur)
    path = tmp_path / f"export{suffix}"
    assert export_layer(conn, "areas", path, jurisdiction=jur) == 3 + COLS * ROWS
    other = _jurisdiction(conn)
    report = import_areas(conn, path, jurisdiction=other)
    assert report["inserted"] == 3 + COLS * ROWS
    first, second = _stored(conn, jur), _stored(conn, other)
    assert set(first) == set(second)
    for code, row in first.items():
        again = second[code]
        assert (again["name"], again["level"], again["parent_code"]) == (
            row["name"], row["level"], row["parent_code"])
        assert _same_shape(again["geom"], row["geom"], 1e-9)


@pytest.mark.parametrize(("epsg", "suffix"), [
    (4490, ".geojson"),   # CGCS2000 geographic
    (4490, ".gpkg"),
    (4548, ".gpkg"),      # 3-degree Gauss-Krüger CM 117E (false easting 500 km)
    (4548, ".shp"),
    (4527, ".geojson"),   # 3-degree zone 39 (zone number in the false easting: 39 500 km)
    (4527, ".shp"),
    (4509, ".gpkg"),      # 6-degree CM 117E
    (4498, ".shp"),       # 6-degree zone 20
])
def test_cgcs2000_sources_give_the_wgs84_geometry(conn: Connection, jur: str, tmp_path: Path,
                                                  epsg: int, suffix: str) -> None:
    city = tiny_city()
    report = import_areas(conn, write_file(tmp_path / f"city{suffix}", city, crs=epsg),
                          jurisdiction=jur)
    assert report["source_crs"] == f"EPSG:{epsg}"
    stored = _stored(conn, jur)
    for f in city:
        assert _same_shape(stored[f["code"]]["geom"], f["geometry"], 1e-7), f["code"]


def test_shapefile_without_prj_needs_source_crs(conn: Connection, jur: str, tmp_path: Path
                                                ) -> None:
    path = write_file(tmp_path / "city.shp", tiny_city(), crs=LOCAL_SRID)
    path.with_suffix(".prj").unlink()
    problems = _fails(conn, path, jurisdiction=jur)
    assert [p["problem"] for p in problems] == ["unexpected_crs"]
    assert problems[0]["feature"] is None and "--crs" in problems[0]["message"]
    assert any(s.startswith("EPSG:4548 ") for s in problems[0]["suggested_crs"])
    import_areas(conn, path, jurisdiction=jur, source_crs="EPSG:4548")
    assert _same_shape(_stored(conn, jur)[grid_code(1, 1)]["geom"], cell(1, 1))


def test_zone_numbered_gauss_kruger_without_prj_is_recognised(conn: Connection, jur: str,
                                                              tmp_path: Path) -> None:
    path = write_file(tmp_path / "city.shp", tiny_city(), crs=4527)
    path.with_suffix(".prj").unlink()
    problem, = _fails(conn, path, jurisdiction=jur)
    assert problem["suggested_crs"][0].startswith("EPSG:4527 ")


def test_gcj02_source_is_converted_to_wgs84(conn: Connection, jur: str, tmp_path: Path
                                            ) -> None:
    city = tiny_city()
    shifted = [{**f, "geometry": shapely.transform(
        f["geometry"], lambda c: shapely.get_coordinates(shapely.points(
            [wgs84_to_gcj02(x, y) for x, y in c])))} for f in city]
    import_areas(conn, write_file(tmp_path / "amap.geojson", shifted), jurisdiction=jur,
                 source_crs="GCJ-02")
    assert _same_shape(_stored(conn, jur)[grid_code(0, 1)]["geom"], cell(0, 1), 1e-8)


def test_level_argument_overrides_the_level_field(conn: Connection, jur: str, tmp_path: Path
                                                  ) -> None:
    import_areas(conn, write_file(tmp_path / "top.geojson", tiny_city()[:3]), jurisdiction=jur)
    grids = [f for f in tiny_city() if f["level"] == "grid"]
    path = write_file(tmp_path / "grids.gpkg", grids, drop=("level",))
    report = import_areas(conn, path, jurisdiction=jur, level="grid")
    assert report["levels"] == {"grid": COLS * ROWS} and report["inserted"] == COLS * ROWS
    assert {r["level"] for c, r in _stored(conn, jur).items() if len(c) == 14} == {3}


def test_custom_field_names_and_numeric_levels(conn: Connection, jur: str, tmp_path: Path
                                               ) -> None:
    rows = [{"id": f["code"], "title": f["name"], "rank": {"district": 0, "street": 1,
             "community": 2, "grid": 3}[f["level"]], "up": f["parent_code"],
             "geometry": f["geometry"]} for f in tiny_city()]
    report = import_areas(conn, write_file(tmp_path / "custom.shp", rows), jurisdiction=jur,
                          code_field="id", name_field="title", level_field="rank",
                          parent_field="up")
    assert report["inserted"] == len(rows)
    assert _stored(conn, jur)[grid_code(2, 0)]["parent_code"] == COMMUNITY


def test_reimport_closes_the_old_version_and_keeps_history(conn: Connection, jur: str,
                                                           tmp_path: Path) -> None:
    import_areas(conn, write_file(tmp_path / "v1.gpkg", tiny_city()), jurisdiction=jur,
                 valid_from=YESTERDAY)
    code = grid_code(0, 0)
    old_id = conn.execute(text("SELECT id FROM areas WHERE code = :c AND valid_to IS NULL"),
                          {"c": COMMUNITY}).scalar_one()
    moved = [f for f in tiny_city() if f["code"] in (COMMUNITY, code)]
    moved[1]["geometry"] = box(X0, Y0, X0 + CELL * 0.9, Y0 + CELL)  # gives up a strip
    report = import_areas(conn, write_file(tmp_path / "v2.gpkg", moved), jurisdiction=jur)
    assert report["replaced"] == 2 and report["children_relinked"] == COLS * ROWS - 1
    assert _same_shape(shape(json.loads(areas.get_area(conn, code)["geometry"])),
                       moved[1]["geometry"])
    earlier = areas.get_area(conn, code, at=YESTERDAY + timedelta(hours=1))
    assert _same_shape(shape(json.loads(earlier["geometry"])), cell(0, 0))
    new_parent = conn.execute(text(
        "SELECT count(*) FROM areas WHERE parent_id = :old AND valid_to IS NULL"),
        {"old": old_id}).scalar_one()
    assert new_parent == 0  # every current grid follows the community's new version


def test_reimport_in_the_same_instant_is_a_version_conflict(conn: Connection, jur: str,
                                                            tmp_path: Path) -> None:
    path = write_file(tmp_path / "city.geojson", tiny_city())
    import_areas(conn, path, jurisdiction=jur)
    problems = _fails(conn, path, jurisdiction=jur)
    assert _kinds(problems) == {"version_conflict"}


def test_progress_bar_runs(conn: Connection, jur: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    import_areas(conn, write_file(tmp_path / "city.geojson", tiny_city()), jurisdiction=jur,
                 progress=True)
    assert "importing areas" in capsys.readouterr().err


# --- import: every bad input gets its own problem ---------------------------------------------

def _city_with(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*tiny_city(), *extra]


def _grid(code_suffix: str, geometry: Any, **kw: Any) -> dict[str, Any]:
    return feature(COMMUNITY + code_suffix, kw.pop("level", "grid"), geometry,
                   kw.pop("parent_code", COMMUNITY), **kw)


OUTSIDE = cell(0, -3)  # south of the city: overlaps nothing
BAD_FEATURES: list[tuple[str, dict[str, Any]]] = [
    ("self_intersection", _grid("90", bowtie(X0, Y0 - 3 * CELL))),
    ("unclosed_ring", _grid("90", {"type": "Polygon", "coordinates": [[
        [X0, Y0 - 3 * CELL], [X0 + CELL, Y0 - 3 * CELL], [X0 + CELL, Y0 - 2 * CELL]]]})),
    ("missing_geometry", _grid("90", None)),
    ("empty_geometry", _grid("90", {"type": "Polygon", "coordinates": []})),
    ("not_polygon", _grid("90", point())),
    ("not_polygon", _grid("90", LineString([(X0, Y0), (X0 + CELL, Y0 - CELL)]))),
    ("latlon_swapped", _grid("90", swap_xy(OUTSIDE))),
    ("empty_code", {**_grid("90", OUTSIDE), "code": ""}),
    ("duplicate_code", _grid("01", OUTSIDE)),
    ("unknown_parent", _grid("90", OUTSIDE, parent_code=COMMUNITY[:-1] + "9")),
    ("unknown_level", _grid("90", OUTSIDE, level="block")),
    ("missing_level", _grid("90", OUTSIDE, level="")),
    ("parent_level", _grid("90", OUTSIDE, level="community", parent_code=COMMUNITY)),
    ("overlap", _grid("90", box(X0 + CELL / 2, Y0, X0 + CELL * 1.5, Y0 + CELL))),
]


@pytest.mark.parametrize(("problem", "bad"), BAD_FEATURES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD_FEATURES)])
def test_bad_feature_is_reported_and_nothing_is_written(conn: Connection, jur: str,
                                                        tmp_path: Path, problem: str,
                                                        bad: dict[str, Any]) -> None:
    path = write_geojson(tmp_path / "bad.geojson", _city_with(bad))
    problems = _fails(conn, path, jurisdiction=jur)
    assert _kinds(problems) == {problem}
    for found in problems:
        assert found["feature"] == len(tiny_city())
        assert found["code"] == (bad["code"] or None)
        assert found["message"]


def test_self_intersection_names_where(conn: Connection, jur: str, tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "bad.geojson", _city_with(_grid("90",
                                                                    bowtie(X0, Y0 - 3 * CELL))))
    problem, = _fails(conn, path, jurisdiction=jur)
    assert "Self-intersection" in problem["message"]
    assert problem["where"] == pytest.approx([X0 + CELL / 2, Y0 - 2.5 * CELL], abs=1e-9)


def test_overlap_names_both_codes_and_where(conn: Connection, jur: str, tmp_path: Path) -> None:
    bad = _grid("90", box(X0 + CELL / 2, Y0, X0 + CELL * 1.5, Y0 + CELL))
    problems = _fails(conn, write_geojson(tmp_path / "o.geojson", _city_with(bad)),
                      jurisdiction=jur)
    pairs = {(p["code"], p["other_code"]) for p in problems}
    # The bottom row holds grids 04..06 (numbered north → south).
    assert pairs == {(bad["code"], grid_code(0, 0)), (bad["code"], grid_code(1, 0))}
    for p in problems:
        assert p["overlap_m2"] > 1000
        assert shapely.Point(p["where"]).within(box(X0 + CELL / 2, Y0, X0 + 1.5 * CELL,
                                                     Y0 + CELL))


def test_overlap_with_a_current_area_not_in_the_file(conn: Connection, jur: str,
                                                     tmp_path: Path) -> None:
    import_areas(conn, write_file(tmp_path / "city.gpkg", tiny_city()), jurisdiction=jur)
    bad = _grid("90", box(X0 + CELL / 2, Y0, X0 + CELL, Y0 + CELL))
    problem, = _fails(conn, write_file(tmp_path / "more.gpkg", [bad]), jurisdiction=jur)
    assert (problem["problem"], problem["other_code"]) == ("overlap", grid_code(0, 0))


def test_all_problems_are_reported_at_once(conn: Connection, jur: str, tmp_path: Path) -> None:
    bad = [{**b, "code": f"{COMMUNITY}{70 + i}" if b["code"] else ""}
           for i, (kind, b) in enumerate(BAD_FEATURES) if kind != "duplicate_code"]
    problems = _fails(conn, write_geojson(tmp_path / "bad.geojson", _city_with(*bad)),
                      jurisdiction=jur)
    assert _kinds(problems) == {k for k, _ in BAD_FEATURES} - {"duplicate_code"}


def test_problems_are_capped(conn: Connection, jur: str, tmp_path: Path) -> None:
    many = [_grid(f"{i:04d}", point(), parent_code=None) for i in range(250)]
    problems = _fails(conn, write_geojson(tmp_path / "pts.geojson", many), jurisdiction=jur)
    assert len(problems) == 201 and problems[-1]["problem"] == "truncated"
    assert "50 more" in problems[-1]["message"]


def test_unclosed_ring_in_a_geopackage_is_reported(conn: Connection, jur: str,
                                                   tmp_path: Path) -> None:
    ring = [(X0, Y0 - 3 * CELL), (X0 + CELL, Y0 - 3 * CELL), (X0 + CELL, Y0 - 2 * CELL),
            (X0, Y0 - 2 * CELL)]  # four points, last != first
    wkb = struct.pack("<bIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<dd", *p)
                                                               for p in ring)
    path = tmp_path / "open.gpkg"
    pyogrio.raw.write(path, geometry=np.array([wkb], dtype=object),
                      field_data=[np.array([COMMUNITY + "90"]), np.array(["grid"])],
                      fields=["code", "level"], geometry_type="Polygon", crs="EPSG:4326",
                      driver="GPKG")
    problem, = _fails(conn, path, jurisdiction=jur)
    assert (problem["problem"], problem["feature"]) == ("unclosed_ring", 0)
    assert problem["where"] == pytest.approx(list(ring[0]))


def test_empty_file_is_reported(conn: Connection, jur: str, tmp_path: Path) -> None:
    problem, = _fails(conn, write_geojson(tmp_path / "empty.geojson", []), jurisdiction=jur)
    assert problem["problem"] == "no_features"


def test_source_crs_overrides_the_file_with_a_warning(conn: Connection, jur: str,
                                                      tmp_path: Path) -> None:
    path = write_file(tmp_path / "city.gpkg", tiny_city())
    report = import_areas(conn, path, jurisdiction=jur, source_crs=4490)
    assert report["source_crs"] == "EPSG:4490"
    assert any("declares EPSG:4326" in w for w in report["warnings"])


def test_missing_code_field_is_reported(conn: Connection, jur: str, tmp_path: Path) -> None:
    path = write_file(tmp_path / "nocode.gpkg", tiny_city(), drop=("code",))
    problems = _fails(conn, path, jurisdiction=jur)
    missing = [p for p in problems if p["problem"] == "missing_field"]
    assert missing[0]["field"] == "code" and "--code-field" in missing[0]["message"]


def test_missing_level_field_without_level_argument(conn: Connection, jur: str,
                                                    tmp_path: Path) -> None:
    path = write_file(tmp_path / "nolevel.gpkg", tiny_city(), drop=("level",))
    problem, = _fails(conn, path, jurisdiction=jur)
    assert (problem["problem"], problem["field"]) == ("missing_field", "level")


def test_projected_geojson_without_crs_suggests_crs(conn: Connection, jur: str,
                                                    tmp_path: Path) -> None:
    fwd = Transformer.from_crs(4326, LOCAL_SRID, always_xy=True)
    city = [{**f, "geometry": shapely.transform(
        f["geometry"], lambda c: shapely.get_coordinates(shapely.points(
            list(zip(*fwd.transform(c[:, 0], c[:, 1]), strict=True)))))} for f in tiny_city()]
    problem, = _fails(conn, write_geojson(tmp_path / "gk.geojson", city), jurisdiction=jur)
    assert problem["problem"] == "unexpected_crs"
    assert "declares no CRS" in problem["message"] and "--crs" in problem["message"]
    assert problem["features"] == len(city)


def test_swapped_file_is_reported_once(conn: Connection, jur: str, tmp_path: Path) -> None:
    city = [{**f, "geometry": swap_xy(f["geometry"])} for f in tiny_city()]
    problem, = _fails(conn, write_geojson(tmp_path / "yx.geojson", city), jurisdiction=jur)
    assert problem["problem"] == "latlon_swapped" and "lat/lon look swapped" in problem["message"]


def test_swapped_lonlat_detected_from_the_jurisdiction_extent(conn: Connection,
                                                              tmp_path: Path) -> None:
    """In Helsinki (24.9, 60.2) swapped is (60.2, 24.9): valid lon/lat, but off the map."""
    helsinki = _jurisdiction(conn, HELSINKI_SRID)
    city = [{**f, "geometry": swap_xy(f["geometry"])} for f in tiny_city(*HELSINKI)]
    problem, = _fails(conn, write_geojson(tmp_path / "yx.geojson", city),
                      jurisdiction=helsinki)
    assert problem["problem"] == "latlon_swapped"
    assert problem["where"] == pytest.approx(list(HELSINKI), abs=0.01)
    import_areas(conn, write_file(tmp_path / "ok.geojson", tiny_city(*HELSINKI)),
                 jurisdiction=helsinki)


def test_swapped_easting_northing_detected(conn: Connection, jur: str, tmp_path: Path
                                           ) -> None:
    frame = gpd.GeoDataFrame(tiny_city(), crs=4326).to_crs(LOCAL_SRID)
    frame["geometry"] = [swap_xy(g) for g in frame.geometry]  # northing first
    pyogrio.write_dataframe(frame, tmp_path / "yx.gpkg")
    problem, = _fails(conn, tmp_path / "yx.gpkg", jurisdiction=jur)
    assert problem["problem"] == "latlon_swapped" and "x/y look swapped" in problem["message"]


def test_data_far_from_the_jurisdiction_is_reported(conn: Connection, jur: str,
                                                    tmp_path: Path) -> None:
    problem, = _fails(conn, write_file(tmp_path / "far.geojson", tiny_city(*HELSINKI)),
                      jurisdiction=jur)
    assert problem["problem"] == "unexpected_crs" and "far from" in problem["message"]


def test_unknown_jurisdiction_is_not_found(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        import_areas(conn, write_file(tmp_path / "c.geojson", tiny_city()),
                     jurisdiction="nope-nope")
    assert info.value.field == "jurisdiction"


def test_geopackage_with_two_layers_needs_layer(conn: Connection, jur: str, tmp_path: Path
                                                ) -> None:
    path = tmp_path / "two.gpkg"
    export_layer(conn, "areas", path, jurisdiction=jur)
    export_layer(conn, "road_nodes", path, jurisdiction=jur)
    with pytest.raises(InvalidInput) as info:
        import_areas(conn, path, jurisdiction=jur)
    assert info.value.field == "layer" and "areas" in info.value.detail


# --- export -----------------------------------------------------------------------------------

def test_unknown_layer_names_the_valid_ones(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        export_layer(conn, "area_levels", tmp_path / "x.geojson")
    assert info.value.field == "layer"
    assert "'area_levels'" in info.value.detail
    assert all(name in info.value.detail for name in EXPORT_LAYERS)


def test_export_areas_by_level_and_time(conn: Connection, jur: str, tmp_path: Path) -> None:
    import_areas(conn, write_file(tmp_path / "v1.gpkg", tiny_city()), jurisdiction=jur,
                 valid_from=YESTERDAY)
    path = tmp_path / "grids.gpkg"
    assert export_layer(conn, "areas", path, level="grid", jurisdiction=jur) == COLS * ROWS
    frame = pyogrio.read_dataframe(path)
    assert set(frame["level"]) == {"grid"} and frame.crs.to_epsg() == 4326
    before = (YESTERDAY - timedelta(hours=1)).isoformat()
    assert export_layer(conn, "areas", tmp_path / "none.geojson", at=before,
                        jurisdiction=jur) == 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"level": "block"}, "level"), ({"at": "yesterday"}, "at"),
    ({"driver": "kml"}, "driver"), ({"jurisdiction": "nope"}, "jurisdiction"),
])
def test_export_rejects_bad_options(conn: Connection, tmp_path: Path, kwargs: dict[str, Any],
                                    field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        export_layer(conn, "areas", tmp_path / "x.geojson", **kwargs)
    assert info.value.field == field


def test_export_rejects_unknown_extension(conn: Connection, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="extension"):
        export_layer(conn, "areas", tmp_path / "x.kml")


def _case(conn: Connection, jur: str) -> None:
    conn.execute(text(
        "INSERT INTO categories (code, kind, depth, name) VALUES ('t-io-cat', 'event', 0,"
        " 'test') ON CONFLICT (code) DO NOTHING"))
    conn.execute(text(
        "INSERT INTO cases (jurisdiction_id, category_id, channel, description,"
        " reporter_contact, idempotency_key, geom)"
        " SELECT j.id, c.id, 'app', 'bin overflowing',"
        " CAST('{\"phone\": \"13800138000\", \"name\": \"Li Lei\"}' AS jsonb), 'key-7f3a9c',"
        " ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
        " FROM jurisdictions j, categories c WHERE j.code = :j AND c.code = 't-io-cat'"),
        {"j": jur, "x": X0 + CELL / 2, "y": Y0 + CELL / 2})


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".csv"])
def test_export_of_cases_never_contains_reporter_contact(conn: Connection, jur: str,
                                                         tmp_path: Path, suffix: str) -> None:
    _case(conn, jur)
    path = tmp_path / f"cases{suffix}"
    assert export_layer(conn, "cases", path, jurisdiction=jur) == 1
    frame = pyogrio.read_dataframe(path)
    description = next(c for c in frame.columns if c.startswith("descripti"))  # .shp: 10 chars
    assert len(frame) == 1 and frame[description][0] == "bin overflowing"
    assert not [c for c in frame.columns if "contact" in c or "idempot" in c or "media" in c]
    for sidecar in tmp_path.iterdir():
        data = sidecar.read_bytes()
        assert b"13800138000" not in data and b"Li Lei" not in data and b"key-7f3a9c" not in data


def test_export_of_cases_with_no_rows_writes_an_empty_layer(conn: Connection, jur: str,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "cases.gpkg"
    assert export_layer(conn, "cases", path, jurisdiction=jur) == 0
    info = pyogrio.read_info(path)
    assert info["features"] == 0
    assert "reporter_contact" not in list(info["fields"])
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert (types["id"], types["status"], types["reported_at"]) == (
        "OFTInteger64", "OFTString", "OFTDateTime")


def test_export_of_responders_has_only_public_fields(conn: Connection, jur: str,
                                                     tmp_path: Path) -> None:
    conn.execute(text(
        "INSERT INTO responders (jurisdiction_id, name, kind, status, skills, position_at, geom)"
        " SELECT j.id, n, 'staff', s, ARRAY['sanitation','first_aid'], now(),"
        " ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
        " FROM jurisdictions j, (VALUES ('Wang', 'available'), ('Zhao', 'off')) v(n, s)"
        " WHERE j.code = :j"), {"j": jur, "x": X0, "y": Y0})
    path = tmp_path / "responders.geojson"
    assert export_layer(conn, "responders", path, jurisdiction=jur) == 2
    frame = pyogrio.read_dataframe(path).set_index("name")
    assert set(frame.columns) == {"id", "kind", "department", "status", "skills",
                                  "position_at", "geometry"}
    assert frame.loc["Wang", "skills"] == "sanitation,first_aid"
    assert frame.loc["Wang", "geometry"].equals(point())
    assert frame.loc["Zhao", "geometry"] is None  # off duty: no position


@pytest.mark.parametrize(("layer", "columns"), [
    ("road_nodes", {"id", "lon", "lat"}),
    ("areas", {"wkt", "code", "parent_code"}),
])
def test_csv_has_lonlat_for_points_and_wkt_otherwise(conn: Connection, jur: str,
                                                     tmp_path: Path, layer: str,
                                                     columns: set[str]) -> None:
    import_areas(conn, write_file(tmp_path / "c.gpkg", tiny_city()), jurisdiction=jur)
    conn.execute(text("INSERT INTO road_nodes (jurisdiction_id, geom) SELECT id,"
                      " ST_SetSRID(ST_MakePoint(:x, :y), 4326) FROM jurisdictions"
                      " WHERE code = :j"), {"j": jur, "x": X0, "y": Y0})
    path = tmp_path / f"{layer}.csv"
    export_layer(conn, layer, path, jurisdiction=jur)
    header = path.read_text().splitlines()[0].split(",")
    assert columns <= set(header)


def test_shapefile_cannot_mix_geometry_types(conn: Connection, jur: str, tmp_path: Path
                                             ) -> None:
    conn.execute(text(
        "INSERT INTO buildings (jurisdiction_id, geom, pt) SELECT j.id, g, ST_PointOnSurface(g)"
        " FROM jurisdictions j, (VALUES (ST_MakeEnvelope(:x, :y, :x + 0.0001, :y + 0.0001,"
        " 4326)), (ST_SetSRID(ST_MakePoint(:x, :y), 4326))) v(g) WHERE j.code = :j"),
        {"j": jur, "x": X0, "y": Y0})
    with pytest.raises(InvalidInput, match="GeoPackage"):
        export_layer(conn, "buildings", tmp_path / "b.shp", jurisdiction=jur)
    assert export_layer(conn, "buildings", tmp_path / "b.gpkg", jurisdiction=jur) == 2

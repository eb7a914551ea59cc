"""Shared test geometries: a tiny four-level city near Tiananmen in WGS84 lon/lat, broken
shapes, and writers that put them in real files (GeoJSON, GeoPackage, Shapefile).

The tiny city is one district → one street → one community → ``COLS`` × ``ROWS`` grids of
``CELL`` degrees, coded like the unit-grid standard (6 + 3 + 3 + 2 digits).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
from shapely.geometry import Point, Polygon, box, mapping
from shapely.geometry.base import BaseGeometry

# South-west corner of the tiny city: Beijing, inside CGCS2000 3-degree Gauss-Krüger CM 117E.
X0, Y0 = 116.38, 39.90
CELL = 0.002
COLS, ROWS = 3, 2
LOCAL_SRID = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E
DISTRICT = "910199"
STREET = DISTRICT + "001"
COMMUNITY = STREET + "001"

# Helsinki: a place where swapped lon/lat (60.17, 24.94) is still a valid lon/lat pair.
HELSINKI = (24.93, 60.16)
HELSINKI_SRID = 3067  # ETRS89 / TM35FIN


def grid_code(col: int, row: int) -> str:
    """Grids are numbered west → east, north → south, from 01."""
    return f"{COMMUNITY}{(ROWS - 1 - row) * COLS + col + 1:02d}"


def cell(col: int, row: int, x0: float = X0, y0: float = Y0) -> Polygon:
    return box(x0 + col * CELL, y0 + row * CELL, x0 + (col + 1) * CELL, y0 + (row + 1) * CELL)


def feature(code: str, level: str, geometry: BaseGeometry | dict | None,
            parent_code: str | None = None, name: str | None = None) -> dict[str, Any]:
    return {"code": code, "name": name or f"area {code}", "level": level,
            "parent_code": parent_code, "geometry": geometry}


def tiny_city(x0: float = X0, y0: float = Y0) -> list[dict[str, Any]]:
    """District, street, community and the grids, parents first."""
    whole = box(x0, y0, x0 + COLS * CELL, y0 + ROWS * CELL)
    out = [
        feature(DISTRICT, "district", whole),
        feature(STREET, "street", whole, DISTRICT),
        feature(COMMUNITY, "community", whole, STREET),
    ]
    out += [feature(grid_code(c, r), "grid", cell(c, r, x0, y0), COMMUNITY)
            for r in range(ROWS) for c in range(COLS)]
    return out


def bowtie(x: float, y: float, size: float = CELL) -> Polygon:
    """A self-intersecting polygon whose edges cross at (x + size/2, y + size/2)."""
    return Polygon([(x, y), (x + size, y + size), (x + size, y), (x, y + size), (x, y)])


def point(x: float = X0, y: float = Y0) -> Point:
    return Point(x, y)


def write_file(path: Path, features: list[dict[str, Any]], *, crs: int = 4326,
               drop: tuple[str, ...] = ()) -> Path:
    """Write features (WGS84 shapely geometries) with pyogrio, reprojected to ``crs``."""
    rows = [{k: v for k, v in f.items() if k != "geometry" and k not in drop} for f in features]
    frame = gpd.GeoDataFrame(rows, geometry=[f["geometry"] for f in features], crs=4326)
    if crs != 4326:
        frame = frame.to_crs(crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # .shp cuts parent_code to parent_cod
        pyogrio.write_dataframe(frame, path)
    return path


def write_geojson(path: Path, features: list[dict[str, Any]], *, crs: str | None = None
                  ) -> Path:
    """Write GeoJSON by hand, so a test controls every coordinate (open rings, swapped axes).

    Geometries may be shapely objects or GeoJSON dicts; ``crs`` adds the old-style member.
    """
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": []}
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    for f in features:
        geom = f["geometry"]
        if isinstance(geom, BaseGeometry):
            geom = mapping(geom)
        props = {k: v for k, v in f.items() if k != "geometry"}
        doc["features"].append({"type": "Feature", "properties": props,
                                "geometry": json.loads(json.dumps(geom))})
    path.write_text(json.dumps(doc))
    return path


def swap_xy(geom: BaseGeometry) -> BaseGeometry:
    import shapely

    return shapely.transform(geom, lambda c: c[:, ::-1])

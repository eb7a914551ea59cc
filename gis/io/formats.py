"""File formats: drivers by extension, reading a layer with pyogrio, field-name matching.

Everything GDAL might smooth over on the way in (an unclosed GeoJSON ring, a geometry shapely
cannot decode) is recorded here so the import can report it instead of loading a silently
"fixed" polygon.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from shapely.errors import GEOSException

from gis.errors import InvalidInput

GEOJSON = "GeoJSON"
GPKG = "GPKG"
SHAPEFILE = "ESRI Shapefile"
CSV = "CSV"

DRIVERS_BY_SUFFIX = {
    ".geojson": GEOJSON,
    ".json": GEOJSON,
    ".gpkg": GPKG,
    ".shp": SHAPEFILE,
    ".csv": CSV,
}
_DRIVER_ALIASES = {
    "geojson": GEOJSON, "json": GEOJSON, "gpkg": GPKG, "geopackage": GPKG, "shp": SHAPEFILE,
    "shapefile": SHAPEFILE, "esri shapefile": SHAPEFILE, "csv": CSV,
}
SHAPEFILE_NAME_LENGTH = 10  # dBase field names are cut to 10 characters

# How GDAL finds the geometry of a CSV file gridgov wrote (a ``wkt`` column, or ``lon``/``lat``).
_CSV_OPEN_OPTIONS = {
    "GEOM_POSSIBLE_NAMES": "wkt,WKT,geometry",
    "X_POSSIBLE_NAMES": "lon,longitude,x",
    "Y_POSSIBLE_NAMES": "lat,latitude,y",
    "KEEP_GEOM_COLUMNS": "NO",
}


def driver_for(path: Path, driver: str | None = None) -> str:
    """The OGR driver for ``path``: from ``driver`` (a name or alias) or from the extension.

    >>> driver_for(Path("grids.gpkg"))
    'GPKG'
    >>> driver_for(Path("out.dat"), "shapefile")
    'ESRI Shapefile'
    """
    if driver:
        name = _DRIVER_ALIASES.get(driver.strip().lower())
        if name is None:
            valid = ", ".join(sorted({GEOJSON, GPKG, SHAPEFILE, CSV}))
            raise InvalidInput(f"unknown driver {driver!r}; drivers are: {valid}", field="driver")
        return name
    name = DRIVERS_BY_SUFFIX.get(path.suffix.lower())
    if name is None:
        valid = ", ".join(DRIVERS_BY_SUFFIX)
        raise InvalidInput(
            f"cannot tell the format of {path.name!r} from its extension; use one of {valid}"
            " or give the driver", field="file")
    return name


def shapefile_field_name(name: str) -> str:
    """The name a field gets in a Shapefile (dBase cuts names to 10 characters)."""
    return name[:SHAPEFILE_NAME_LENGTH]


def resolve_field(columns: list[str], wanted: str) -> str | None:
    """The column that holds ``wanted``: exact, then case-insensitive, then the 10-character
    Shapefile cut (``parent_code`` is stored as ``parent_cod``)."""
    if wanted in columns:
        return wanted
    lowered = {c.lower(): c for c in columns}
    for candidate in (wanted.lower(), shapefile_field_name(wanted).lower()):
        if candidate in lowered:
            return lowered[candidate]
    return None


@dataclass
class Source:
    """One layer read from a file, with what GDAL could not or would not tell us."""

    path: Path
    layer: str
    driver: str
    frame: gpd.GeoDataFrame
    crs: str | None
    """The CRS the file declares (a GeoJSON without a ``crs`` member declares none)."""
    unclosed: dict[int, tuple[float, float]] = field(default_factory=dict)
    """Feature index → first point of a ring whose first and last points differ."""
    undecodable: dict[int, str] = field(default_factory=dict)
    """Feature index → why the geometry GDAL returned could not be decoded."""

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.frame.geometry.name]


def read_source(path: Path, layer: str | None = None) -> Source:
    """Read one layer of a GeoJSON, GeoPackage, Shapefile or CSV file with pyogrio."""
    if not path.exists():
        raise InvalidInput(f"no such file: {path}", field="file")
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"cannot open {path.name}: {exc}", field="file") from exc
    if layer is None:
        if len(layers) != 1:
            raise InvalidInput(
                f"{path.name} has {len(layers)} layers ({', '.join(layers)}): choose one with"
                " --layer", field="layer")
        layer = layers[0]
    elif layer not in layers:
        raise InvalidInput(f"{path.name} has no layer {layer!r}; layers are: {', '.join(layers)}",
                           field="layer")
    info = pyogrio.read_info(path, layer=layer)
    driver = str(info["driver"])
    options = _CSV_OPEN_OPTIONS if driver == CSV else {}
    with warnings.catch_warnings():
        # GDAL warns about unclosed rings and odd fields; we report those ourselves.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            frame = pyogrio.read_dataframe(path, layer=layer, on_invalid="ignore",
                                           fid_as_index=True, **options)
        except (DataSourceError, DataLayerError) as exc:
            raise InvalidInput(f"cannot read {path.name}: {exc}", field="file") from exc
    crs = info["crs"]
    source = Source(path=path, layer=layer, driver=driver, frame=frame,
                    crs=str(crs) if crs else None)
    if driver == GEOJSON:
        _inspect_raw_geojson(source)
    _find_undecodable(source)
    return source


def _inspect_raw_geojson(source: Source) -> None:
    """GeoJSON has no CRS unless it says so; and GDAL may close an open ring on the quiet."""
    try:
        doc = json.loads(source.path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return  # GDAL read it, so it is some GeoJSON flavour we do not parse (e.g. a sequence)
    if isinstance(doc, dict) and "crs" not in doc:
        source.crs = None
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or len(features) != len(source.frame):
        return
    for index, feature in enumerate(features):
        start = _first_unclosed_ring(feature.get("geometry") if isinstance(feature, dict)
                                     else None)
        if start is not None:
            source.unclosed[index] = start


def _first_unclosed_ring(geometry: Any) -> tuple[float, float] | None:
    if not isinstance(geometry, dict):
        return None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    polygons: list[Any] = []
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon" and isinstance(coords, list):
        polygons = coords
    try:
        for polygon in polygons:
            for ring in polygon:
                if len(ring) >= 2 and [float(v) for v in ring[0][:2]] != [
                        float(v) for v in ring[-1][:2]]:
                    return float(ring[0][0]), float(ring[0][1])
    except (TypeError, ValueError, IndexError):
        return None
    return None


def _find_undecodable(source: Source) -> None:
    """Features GDAL returned a geometry for that shapely could not decode (read as None)."""
    missing = [i for i, g in enumerate(source.frame.geometry.array) if g is None
               and i not in source.unclosed]
    if not missing:
        return
    fids = [int(source.frame.index[i]) for i in missing]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, _, wkbs, _ = pyogrio.raw.read(source.path, layer=source.layer, fids=fids,
                                             columns=[])
    except Exception:  # best effort: the feature is then reported as missing
        return
    for index, wkb in zip(missing, wkbs, strict=False):
        if wkb is None:
            continue
        try:
            shapely.from_wkb(wkb)
        except GEOSException as exc:
            fixed = shapely.from_wkb(wkb, on_invalid="fix")
            where = _first_point(fixed)
            source.undecodable[index] = str(exc).split(":", 1)[-1].strip()
            if where is not None and "closed" in str(exc):
                source.unclosed[index] = where


def _first_point(geom: Any) -> tuple[float, float] | None:
    if geom is None or shapely.is_empty(geom):
        return None
    x, y = shapely.get_coordinates(geom)[0]
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    return float(x), float(y)

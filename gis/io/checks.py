"""Validation for area imports: the problem report, CRS handling and spatial checks.

Every check adds to one ``Report`` so that a bad file is answered with all of its problems at
once (capped at ``MAX_PROBLEMS``), each naming the feature, its code and, where it helps, a
``where`` point as [lon, lat].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from shapely import STRtree
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.crs import WGS84, bd09_to_wgs84, gcj02_to_wgs84, parse_crs
from gis.errors import ImportFailed, InvalidInput

MAX_PROBLEMS = 200
OVERLAP_TOLERANCE_M2 = 1.0
"""Two areas of one level and parent may share edges; an intersection above this is an overlap."""

_WHERE_DIGITS = 7
_LOCATION = re.compile(r"\[\s*(-?[\d.eE+-]+)\s+(-?[\d.eE+-]+)\s*\]")

Coords = np.ndarray
Transform = Callable[[Coords], Coords]


def lonlat(x: float, y: float) -> list[float]:
    return [round(float(x), _WHERE_DIGITS), round(float(y), _WHERE_DIGITS)]


@dataclass
class Report:
    """Problems (which make the import fail) and warnings (which do not)."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, problem: str, message: str, *, feature: int | None = None,
            code: str | None = None, field: str | None = None,
            where: Sequence[float] | None = None, **extra: Any) -> None:
        item: dict[str, Any] = {"feature": feature, "code": code, "problem": problem}
        if field is not None:
            item["field"] = field
        item["message"] = message
        if where is not None and all(math.isfinite(v) for v in where):
            item["where"] = lonlat(*where)
        item.update(extra)
        self.problems.append(item)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def bad_features(self) -> set[int]:
        return {p["feature"] for p in self.problems if p["feature"] is not None}

    def raise_if_any(self, name: str, features: int) -> None:
        if not self.problems:
            return
        problems = sorted(self.problems, key=lambda p: (p["feature"] is not None,
                                                         p["feature"] or 0))
        total = len(problems)
        bad = len(self.bad_features())
        detail = f"{name}: {total} problem{'s' if total != 1 else ''}"
        detail += f" in {bad} of {features} features" if bad else ""
        detail += "; nothing was imported"
        if total > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS]
            problems.append({"feature": None, "code": None, "problem": "truncated",
                             "message": f"{total - MAX_PROBLEMS} more problems not listed"})
            detail += f" (first {MAX_PROBLEMS} listed)"
        raise ImportFailed(detail, problems)


# --- CRS -------------------------------------------------------------------------------------

def crs_label(crs: CRS) -> str:
    """``EPSG:4547``, ``OGC:CRS84``..., else the CRS's name."""
    epsg = crs.to_epsg(min_confidence=70)
    if epsg:
        return f"EPSG:{epsg}"
    authority = crs.to_authority(min_confidence=70)
    return ":".join(authority) if authority else str(crs.name)


def _xy(x: float, y: float) -> str:
    """A coordinate pair for a message: metres to 0.1, degrees to 1e-6."""
    return "(" + ", ".join(f"{v:.1f}" if abs(v) >= 1000 else f"{v:.6f}".rstrip("0").rstrip(".")
                           for v in (x, y)) + ")"


@dataclass(frozen=True)
class SourceCRS:
    """The CRS the coordinates of the file are in, and whether anyone actually said so."""

    label: str
    crs: CRS | None
    offset: str | None = None  # "GCJ02" or "BD09": offset systems of Chinese map apps
    declared: bool = True

    @property
    def geographic(self) -> bool:
        return self.offset is not None or bool(self.crs is not None and self.crs.is_geographic)

    def transform(self) -> Transform | None:
        """A function (N, 2) → (N, 2) to WGS84 lon/lat; None when none is needed."""
        if self.offset is not None:
            point = gcj02_to_wgs84 if self.offset == "GCJ02" else bd09_to_wgs84
            vector = np.vectorize(point)
            return lambda c: np.column_stack(vector(c[:, 0], c[:, 1]))
        assert self.crs is not None
        if self.crs.equals(CRS.from_epsg(WGS84), ignore_axis_order=True):
            return None
        return pyproj_transform(self.crs, CRS.from_epsg(WGS84))

    def to_wgs84(self, geoms: np.ndarray) -> np.ndarray:
        fn = self.transform()
        return geoms if fn is None else shapely.transform(geoms, fn)


def pyproj_transform(source: CRS, target: CRS) -> Transform:
    tr = Transformer.from_crs(source, target, always_xy=True)

    def fn(coords: Coords) -> Coords:
        x, y = tr.transform(coords[:, 0], coords[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return fn


def resolve_source_crs(file_crs: str | None, source_crs: str | int | None,
                       report: Report) -> SourceCRS:
    """The caller's ``source_crs`` wins (it is how a wrong .prj is overridden); then the CRS the
    file declares; else WGS84, assumed, which the coordinate checks then question."""
    if source_crs not in (None, ""):
        parsed = parse_crs(source_crs)
        if isinstance(parsed, str):
            return SourceCRS(label={"GCJ02": "GCJ-02", "BD09": "BD-09"}[parsed], crs=None,
                             offset=parsed)
        crs = CRS.from_epsg(parsed)
        label = f"EPSG:{parsed}"
        if file_crs:
            declared = _file_crs(file_crs)
            if not declared.equals(crs, ignore_axis_order=True):
                report.warn(f"the file declares {crs_label(declared)}; its coordinates were read"
                            f" as {label}, as asked")
        return SourceCRS(label=label, crs=crs)
    if file_crs:
        crs = _file_crs(file_crs)
        return SourceCRS(label=crs_label(crs), crs=crs)
    return SourceCRS(label="EPSG:4326 (assumed: the file declares no CRS)",
                     crs=CRS.from_epsg(WGS84), declared=False)


def _file_crs(value: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise InvalidInput(f"the file's CRS is not understood ({value[:80]}...); give its EPSG"
                           " code with --crs", field="crs") from exc


# --- where the jurisdiction is ----------------------------------------------------------------

@dataclass(frozen=True)
class Extent:
    """Lon/lat bounds the data of a jurisdiction is expected in."""

    bounds: tuple[float, float, float, float]
    origin: str

    def _grown(self, margin: float) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.bounds
        return x0 - margin, y0 - margin, x1 + margin, y1 + margin

    @property
    def size(self) -> float:
        x0, y0, x1, y1 = self.bounds
        return max(x1 - x0, y1 - y0)

    def near(self, b: Sequence[float]) -> bool:
        """The bounds ``b`` touch the extent (with a little slack)."""
        return _intersects(b, self._grown(0.02 + 0.1 * self.size))

    def far(self, b: Sequence[float]) -> bool:
        """The bounds ``b`` are well away from the extent: not a neighbouring district."""
        margin = 0.5 if self.origin.startswith("area of use") else max(1.0, 0.5 * self.size)
        return not _intersects(b, self._grown(margin))


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    if not all(math.isfinite(v) for v in a):
        return False
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


def jurisdiction_extent(conn: Connection, jurisdiction_id: int, local_srid: int
                        ) -> Extent | None:
    """The extent of the jurisdiction's areas; before it has any, the area of use of its local
    projection (None when that is the whole world)."""
    row = conn.execute(
        text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT"
             " ST_Extent(geom) AS e FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL)"
             " s"),
        {"j": jurisdiction_id},
    ).one()
    if row[0] is not None:
        return Extent(bounds=(row[0], row[1], row[2], row[3]), origin="current areas")
    try:
        area = CRS.from_epsg(local_srid).area_of_use
    except CRSError:
        return None
    if area is None or area.east - area.west >= 359:
        return None
    return Extent(bounds=(area.west, area.south, area.east, area.north),
                  origin=f"area of use of its projection EPSG:{local_srid}")


# --- coordinates: CRS and swapped axes ----------------------------------------------------------

def suggest_crs(x: float, y: float, extent: Extent | None, local_srid: int | None = None
                ) -> list[str]:
    """EPSG codes under which the projected point (x, y) lands in ``extent``: the jurisdiction's
    own projection, CGCS2000 Gauss-Krüger zones (with the zone number in the false easting or
    not), UTM."""
    candidates: list[int] = []
    if local_srid and _is_projected(local_srid):
        candidates.append(local_srid)
    zone = int(x // 1_000_000) if math.isfinite(x) else 0
    if 25 <= zone <= 45:
        candidates.append(4513 + zone - 25)  # CGCS2000 3-degree GK zone 25..45
    elif 13 <= zone <= 23:
        candidates.append(4491 + zone - 13)  # CGCS2000 6-degree GK zone 13..23
    if extent is not None:
        lon = (extent.bounds[0] + extent.bounds[2]) / 2
        lat = (extent.bounds[1] + extent.bounds[3]) / 2
        cm3, cm6 = 3 * round(lon / 3), 6 * math.floor(lon / 6) + 3
        if 75 <= cm3 <= 135:
            candidates.append(4534 + (cm3 - 75) // 3)  # CGCS2000 3-degree GK CM 75E..135E
        if 75 <= cm6 <= 135:
            candidates.append(4502 + (cm6 - 75) // 6)  # CGCS2000 6-degree GK CM 75E..135E
        utm = int((lon + 180) // 6) + 1
        candidates.append((32600 if lat >= 0 else 32700) + utm)
    found: list[str] = []
    for epsg in dict.fromkeys(candidates):
        try:
            lon_, lat_ = Transformer.from_crs(epsg, WGS84, always_xy=True).transform(x, y)
        except CRSError:
            continue
        point = (lon_, lat_, lon_, lat_)
        if (extent is None and zone) or (extent is not None and not extent.far(point)):
            found.append(f"EPSG:{epsg} ({CRS.from_epsg(epsg).name})")
    return found[:3]


def _is_projected(epsg: int) -> bool:
    try:
        return bool(CRS.from_epsg(epsg).is_projected)
    except CRSError:
        return False


def _first_xy(geom: BaseGeometry) -> tuple[float, float]:
    x, y = shapely.get_coordinates(geom)[0]
    return float(x), float(y)


def _swap(geoms: np.ndarray) -> np.ndarray:
    return shapely.transform(geoms, lambda c: c[:, ::-1])


def reproject(geoms: list[BaseGeometry | None], codes: list[str | None], crs: SourceCRS,
              extent: Extent | None, report: Report, *, jurisdiction: str,
              local_srid: int | None = None) -> list[BaseGeometry | None]:
    """WGS84 copies of ``geoms``; features in an unexpected CRS or with swapped axes are
    reported (once for the whole file when every feature has the same problem) and come back
    as None."""
    out: list[BaseGeometry | None] = [None] * len(geoms)
    idx = [i for i, g in enumerate(geoms) if g is not None]
    if not idx:
        return out
    src = np.array([geoms[i] for i in idx], dtype=object)
    wgs = crs.to_wgs84(src)
    sb, wb = shapely.bounds(src), shapely.bounds(wgs)
    xs = np.abs(sb[:, [0, 2]]).max(axis=1)
    ys = np.abs(sb[:, [1, 3]]).max(axis=1)
    issues: dict[str, list[tuple[int, int]]] = {}
    swapped_where: dict[int, tuple[float, float]] = {}
    swapped: np.ndarray | None = None

    def swapped_fits(k: int) -> bool:
        nonlocal swapped
        if swapped is None:
            swapped = crs.to_wgs84(_swap(src))
        b = shapely.bounds(swapped[k])
        ok = bool(np.isfinite(b).all()) and (
            extent.near(b) if extent is not None else (abs(b[0]) <= 180 and abs(b[1]) <= 90))
        if ok:
            swapped_where[k] = _first_xy(swapped[k])
        return ok

    for k, i in enumerate(idx):
        finite = bool(np.isfinite(wb[k]).all())
        if crs.geographic and ys[k] > 90 and xs[k] <= 90:
            issues.setdefault("latlon_swapped_range", []).append((k, i))
            y0, x0 = _first_xy(src[k])
            swapped_where[k] = (x0, y0)
        elif crs.geographic and (xs[k] > 180 or ys[k] > 90):
            issues.setdefault("unexpected_crs", []).append((k, i))
        elif not finite:
            kind = "xy_swapped" if swapped_fits(k) else "outside_crs_area"
            issues.setdefault(kind, []).append((k, i))
        elif extent is not None and not extent.near(wb[k]):
            if swapped_fits(k):
                issues.setdefault("latlon_swapped" if crs.geographic else "xy_swapped",
                                  []).append((k, i))
            elif extent.far(wb[k]):
                issues.setdefault("outside_extent", []).append((k, i))
            else:
                out[i] = wgs[k]
        else:
            out[i] = wgs[k]

    for kind, hits in issues.items():
        whole_file = len(hits) == len(idx) and len(idx) > 1
        chosen = hits[:1] if whole_file else hits
        for k, i in chosen:
            x, y = _first_xy(src[k])
            message, kind_reported, extra = _location_message(
                kind, x, y, wb[k], crs, extent, jurisdiction, local_srid)
            if whole_file:
                message = f"all {len(hits)} features: {message}"
                extra["features"] = len(hits)
            where = swapped_where.get(k)
            report.add(kind_reported, message, feature=None if whole_file else i,
                       code=None if whole_file else codes[i], field="geometry", where=where,
                       **extra)
    return out


def _location_message(kind: str, x: float, y: float, wgs_bounds: np.ndarray, crs: SourceCRS,
                      extent: Extent | None, jurisdiction: str, local_srid: int | None
                      ) -> tuple[str, str, dict[str, Any]]:
    at = _xy(x, y)
    extra: dict[str, Any] = {}
    if kind == "latlon_swapped_range":
        return (f"lat/lon look swapped: a point {at} has a latitude beyond ±90 while its"
                " longitude is within ±90; write coordinates longitude first (x = lon, y = lat)",
                "latlon_swapped", extra)
    if kind == "latlon_swapped":
        return (f"lat/lon look swapped: the feature (first point {at}) lies outside jurisdiction"
                f" {jurisdiction}'s extent, but with x and y exchanged it falls inside; write"
                " coordinates longitude first (x = lon, y = lat)", "latlon_swapped", extra)
    if kind == "xy_swapped":
        return (f"x/y look swapped: the point {at} does not fit {crs.label}, but with easting and"
                " northing exchanged it falls inside the jurisdiction; put the easting first",
                "latlon_swapped", extra)
    suggestions = [s for s in suggest_crs(x, y, extent, local_srid)
                   if not s.startswith(crs.label + " ")]
    if kind == "outside_extent":
        wx, wy = float(wgs_bounds[0]), float(wgs_bounds[1])
        message = (f"the feature lies around {_xy(wx, wy)} after reading it as"
                   f" {crs.label}, far from jurisdiction {jurisdiction}'s"
                   f" {extent.origin if extent else 'extent'}"
                   f" {list(extent.bounds) if extent else ''}: wrong CRS or wrong jurisdiction?"
                   " give the file's CRS with --crs")
    elif kind == "unexpected_crs" and not crs.declared:
        message = (f"coordinates such as {at} are outside the lon/lat range and the file"
                   " declares no CRS, so they were read as WGS84 lon/lat: the data is probably"
                   " projected; give its CRS with --crs")
    elif kind == "unexpected_crs":
        message = (f"coordinates such as {at} are outside the lon/lat range although the file"
                   f" says {crs.label}: the file's CRS is wrong; give the right one with --crs")
    else:  # outside_crs_area
        message = (f"coordinates such as {at} cannot be converted from {crs.label}: they lie"
                   " outside that CRS's area; wrong CRS? give the right one with --crs")
    if suggestions:
        extra["suggested_crs"] = suggestions
        message += f" (the data fits {', '.join(suggestions)})"
    return message, "unexpected_crs", extra


# --- geometry validity ------------------------------------------------------------------------

def invalid_reason(geom: BaseGeometry) -> tuple[str, str, tuple[float, float] | None] | None:
    """(problem, explanation, location) for an invalid polygon, else None."""
    if geom.is_valid:
        return None
    reason = shapely.is_valid_reason(geom)
    match = _LOCATION.search(reason)
    where = (float(match.group(1)), float(match.group(2))) if match else None
    text_ = _LOCATION.sub("", reason).strip()
    problem = "self_intersection" if "self-intersection" in text_.lower() else "invalid_geometry"
    return problem, text_, where


# --- overlaps ---------------------------------------------------------------------------------

def metric_crs(local_srid: int, lon: float, lat: float) -> CRS:
    """The jurisdiction's projection when it is metric, else an equal-area one centred here."""
    if _is_projected(local_srid):
        return CRS.from_epsg(local_srid)
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:.4f} +lon_0={lon:.4f} +datum=WGS84 +units=m")


def to_metric(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    return shapely.transform(geoms, pyproj_transform(CRS.from_epsg(WGS84), crs))


def overlaps(left: np.ndarray, right: np.ndarray, left_keys: Sequence[Any],
             right_keys: Sequence[Any], *, same: bool, tolerance_m2: float
             ) -> list[tuple[int, int, float, BaseGeometry]]:
    """Pairs (i, j, area_m2, overlap) of metric polygons with equal keys whose intersection is
    larger than ``tolerance_m2``; ``same`` when ``left`` and ``right`` are one array (each pair
    then appears once, i < j)."""
    if len(left) == 0 or len(right) == 0:
        return []
    tree = STRtree(right)
    li, rj = tree.query(left, predicate="intersects")
    keep = np.array([(not same or a < b) and left_keys[a] == right_keys[b]
                     for a, b in zip(li, rj, strict=True)], dtype=bool)
    li, rj = li[keep], rj[keep]
    if len(li) == 0:
        return []
    inter = shapely.intersection(left[li], right[rj])
    areas = shapely.area(inter)
    return [(int(a), int(b), float(s), g) for a, b, s, g in zip(li, rj, areas, inter,
                                                                strict=True)
            if s > tolerance_m2]

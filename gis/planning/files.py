"""A plan as a file: export to GeoPackage, GeoJSON or (zipped) Shapefile, and import back.

Export writes every area of the plan (or one level) with its key, code, name, level, parent,
lock, counts and version, in WGS84. Import reads grids from any of those formats (any CRS the
file declares or the caller names; ``gis.io`` reprojects and validates), places each under its
parent (``parent_key``, else ``parent_code``, else the parent containing it) and replaces the
unlocked grids of those parents with the file's, as one undoable operation. A feature whose
``key`` (or else ``code``) names a grid of the plan updates that grid, so its code survives. A
file with any problem is rejected whole, listing every problem (``ImportFailed``).
"""

from __future__ import annotations

import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from sqlalchemy import Connection

from gis import media
from gis.crs import WGS84
from gis.errors import InvalidInput
from gis.io.checks import Report, invalid_reason, jurisdiction_extent, reproject, resolve_source_crs
from gis.io.formats import GEOJSON, GPKG, SHAPEFILE, read_source, resolve_field
from gis.planning import store
from gis.planning.store import PArea

FORMATS = {"gpkg": GPKG, "geojson": GEOJSON, "shp": SHAPEFILE}
MEDIA_TYPES = {"gpkg": "application/geopackage+sqlite3", "geojson": "application/geo+json",
               "shp": "application/zip"}


def export_plan(conn: Connection, plan_id: int, fmt: str, folder: Path, *,
                level: int | None = None) -> Path:
    """Write the plan to ``folder`` and return the file (a .zip for Shapefile)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}",
                           field="format")
    plan = store.get_plan(conn, plan_id)
    areas = store.load(conn, plan_id, level=level)
    if not areas:
        raise InvalidInput(f"plan {plan_id} has no areas at level {level}", field="level")
    names = {lv.rank: lv.name for lv in plan.levels}
    codes = {a.key: a.code for a in areas}
    codes.update({a.key: a.code for a in store.load(conn, plan_id)} if level is not None else {})
    frame = gpd.GeoDataFrame({
        "key": [a.key for a in areas], "code": [a.code for a in areas],
        "name": [a.name for a in areas], "level": [names.get(a.level, str(a.level))
                                                   for a in areas],
        "parent_key": [a.parent_key for a in areas],
        "parent_code": [codes.get(a.parent_key) for a in areas],
        "locked": [int(a.locked) for a in areas], "grid_type": [a.grid_type for a in areas],
        "households": [a.households for a in areas], "population": [a.population for a in areas],
        "area_m2": [round(a.area_m2, 1) for a in areas], "version": [a.version for a in areas],
    }, geometry=[shapely.MultiPolygon([a.geom]) if a.geom.geom_type == "Polygon" else a.geom
                 for a in areas], crs=f"EPSG:{WGS84}")
    frame["parent_key"] = frame["parent_key"].astype("Int64")
    stem = f"plan-{plan_id}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if fmt == "shp":
            shp_dir = folder / stem
            shp_dir.mkdir(parents=True, exist_ok=True)
            pyogrio.write_dataframe(frame, shp_dir / f"{stem}.shp", driver=SHAPEFILE,
                                    encoding="UTF-8", promote_to_multi=True)
            out = folder / f"{stem}.zip"
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
                for f in sorted(shp_dir.iterdir()):
                    z.write(f, f.name)
            return out
        out = folder / f"{stem}.{fmt}"
        options: dict[str, Any] = {"layer": stem} if fmt == "gpkg" else {}
        pyogrio.write_dataframe(frame, out, driver=FORMATS[fmt], **options)
        return out


def _unpack(path: Path) -> Path:
    """A zipped Shapefile → the .shp inside (extracted next to the zip)."""
    if path.suffix.lower() != ".zip":
        return path
    target = path.with_suffix("")
    target.mkdir(exist_ok=True)
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            name = Path(member).name  # never a path from the archive (zip slip)
            if not name or name.startswith(".") or member.endswith("/"):
                continue
            (target / name).write_bytes(z.read(member))
    shps = sorted(target.glob("*.shp"))
    if len(shps) != 1:
        raise InvalidInput(f"the zip must hold exactly one .shp, it holds {len(shps)}",
                           field="file")
    return shps[0]


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and float(value).is_integer():
        value = int(value)
    out = str(value).strip()
    return out or None


def import_plan(conn: Connection, plan_id: int, path: Path, *, layer: str | None = None,
                source_crs: str | int | None = None, actor_id: int | None = None
                ) -> dict[str, Any]:
    """Replace grids of the plan with the file's (see the module docstring); returns the
    operation and the plan's check."""
    from gis.planning.checks import check_plan

    plan = store.get_plan(conn, plan_id, lock=True, draft=True)
    source = read_source(_unpack(path), layer)
    report = Report()
    crs = resolve_source_crs(source.crs, source_crs, report)
    frame = source.frame
    if len(frame) == 0:
        report.add("no_features", f"{path.name} has no features")
        report.raise_if_any(path.name, 0)
    cols = source.columns

    def column(name: str) -> list[str | None]:
        c = resolve_field(cols, name)
        return [_text(v) for v in frame[c].tolist()] if c else [None] * len(frame)

    keys, codes, names = column("key"), column("code"), column("name")
    levels, parents, parent_codes = column("level"), column("parent_key"), column("parent_code")
    locked, grid_types = column("locked"), column("grid_type")
    bottom = plan.bottom
    bottom_names = {str(bottom), plan.level(bottom).name.lower()}
    rows = [i for i, lv in enumerate(levels) if lv is None or lv.lower() in bottom_names]
    skipped = len(frame) - len(rows)
    if skipped:
        report.warn(f"{skipped} features of other levels than {plan.level(bottom).name} were"
                    " skipped")
    geoms: list[Any] = []
    for i in rows:
        g = frame.geometry.array[i]
        if g is None or g.is_empty:
            report.add("missing_geometry", "the feature has no geometry", feature=i,
                       code=codes[i], field="geometry")
            geoms.append(None)
        elif g.geom_type not in ("Polygon", "MultiPolygon"):
            report.add("not_polygon", f"a {g.geom_type} is not an area", feature=i,
                       code=codes[i], field="geometry")
            geoms.append(None)
        else:
            geoms.append(shapely.force_2d(g))
    extent = jurisdiction_extent(conn, plan.jurisdiction_id, plan.local_srid)
    wgs = reproject(geoms, [codes[i] for i in rows], crs, extent, report,
                    jurisdiction=str(plan.jurisdiction_id), local_srid=plan.local_srid)
    for n, g in enumerate(wgs):
        if g is not None and (found := invalid_reason(g)) is not None:
            problem, reason, where = found
            report.add(problem, f"the polygon is not valid: {reason}", feature=rows[n],
                       code=codes[rows[n]], field="geometry", where=where)
    areas = store.load(conn, plan_id)
    by_key = {a.key: a for a in areas}
    by_code = {a.code: a for a in areas if a.code}
    above = [a for a in areas if a.level == bottom - 1]
    tree = shapely.STRtree([a.geom for a in above]) if above else None
    placed: list[tuple[int, PArea, PArea | None, Any]] = []
    seen_keys: set[int] = set()
    for n, i in enumerate(rows):
        g = wgs[n]
        if g is None:
            continue
        parent = None
        pk, pc = parents[i], parent_codes[i]
        if pk is not None and pk.isdigit() and int(pk) in by_key:
            parent = by_key[int(pk)]
        elif pc is not None and pc in by_code:
            parent = by_code[pc]
        elif tree is not None:
            hits = tree.query(g.representative_point(), predicate="intersects")
            parent = above[int(hits[0])] if len(hits) else None
        if parent is None or parent.level != bottom - 1:
            report.add("outside_plan", "the feature lies in no "
                       f"{plan.level(bottom - 1).name} of the plan", feature=i, code=codes[i],
                       field="geometry", where=tuple(g.representative_point().coords[0]))
            continue
        same = None
        k, code = keys[i], codes[i]
        if k is not None and k.isdigit() and int(k) in by_key:
            same = by_key[int(k)]
        elif code is not None and code in by_code:
            same = by_code[code]
        if same is not None and (same.level != bottom or same.key in seen_keys):
            report.add("duplicate_key", f"{same.label()} appears more than once or is not a"
                       " grid", feature=i, code=codes[i], field="key")
            continue
        if same is not None:
            seen_keys.add(same.key)  # type: ignore[arg-type]
        placed.append((i, parent, same, g))
    report.raise_if_any(path.name, len(frame))
    parent_keys = sorted({p.key for _, p, _, _ in placed})  # type: ignore[type-var]
    current = [a for a in areas if a.parent_key in parent_keys and a.level == bottom]
    locked_keys = {a.key for a in current if a.locked}
    before = [a for a in current if not a.locked]
    after: list[PArea] = []
    for i, parent, same, g in placed:
        if same is not None and same.key in locked_keys:
            report.warn(f"{same.label()} is locked: its row in the file was ignored")
            continue
        flag = (locked[i] or "").lower() in ("1", "true", "yes", "t")
        if same is not None and same.parent_key == parent.key:
            after.append(PArea(**{**same.__dict__, "geom": g, "locked": flag,
                                  "name": names[i] if names[i] is not None else same.name,
                                  "grid_type": grid_types[i] or same.grid_type}))
        else:
            after.append(PArea(key=None, parent_key=parent.key, level=bottom, code=None,
                               name=names[i] or "", geom=g, grid_type=grid_types[i],
                               locked=flag))
    applied = store.apply(conn, plan, "import", before, after,
                          params={"file": path.name, "features": len(frame)},
                          summary={"imported": len(after), "replaced": len(before),
                                   "warnings": report.warnings}, actor_id=actor_id)
    check = check_plan(conn, plan_id)
    return {**applied.as_dict(), "file": path.name, "source_crs": crs.label,
            "warnings": report.warnings, "check": {"ok": check["ok"],
                                                   "summary": check["summary"],
                                                   "problems": check["problems"][:200]}}


def save_upload(data: bytes, filename: str, folder: Path) -> Path:
    """Write uploaded bytes under their (sanitised) name; the suffix tells the format and the
    content must match it (``gis.media.check_geodata``: 415 for a program renamed .gpkg)."""
    name = Path(filename or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in (".geojson", ".json", ".gpkg", ".zip", ".shp"):
        raise InvalidInput(f"upload a .geojson, .gpkg or a zipped Shapefile (.zip), not"
                           f" {name!r}", field="file")
    media.check_geodata(data, name)
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    return path


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="gridgov-plan-")


__all__ = ["FORMATS", "MEDIA_TYPES", "export_plan", "import_plan", "save_upload", "temp_folder"]

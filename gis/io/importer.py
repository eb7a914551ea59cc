"""Import areas from GeoJSON, GeoPackage, Shapefile (or CSV written by ``export_layer``).

The whole file is checked before anything is written; a file with any problem is rejected as a
whole with one report (``ImportFailed``). Writing happens inside a savepoint of the caller's
transaction, which is never committed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text
from tqdm import tqdm

from gis.areas import (
    AreaRow,
    default_jurisdiction,
    insert_areas,
    level_rank,
    levels,
    refresh_counts,
)
from gis.crs import WGS84
from gis.errors import NotFound
from gis.io.checks import (
    OVERLAP_TOLERANCE_M2,
    Report,
    SourceCRS,
    invalid_reason,
    jurisdiction_extent,
    metric_crs,
    overlaps,
    pyproj_transform,
    reproject,
    resolve_source_crs,
    to_metric,
)
from gis.io.formats import Source, read_source, resolve_field

CODE_MAX_LENGTH = 32  # areas.code is VARCHAR(32)
_INSERT_CHUNK = 1000
_DEFAULT_FIELDS = {"code": "code", "name": "name", "level": "level", "parent": "parent_code"}


@dataclass(frozen=True)
class _Jurisdiction:
    id: int
    code: str
    local_srid: int


@dataclass
class _Attributes:
    codes: list[str | None]
    names: list[str]
    ranks: list[int | None]
    parents: list[str | None]
    grid_types: list[str | None]


def import_areas(
    conn: Connection,
    path: Path | str,
    *,
    layer: str | None = None,
    code_field: str = "code",
    name_field: str = "name",
    level_field: str = "level",
    parent_field: str = "parent_code",
    source_crs: str | int | None = None,
    jurisdiction: str | int | None = None,
    level: str | int | None = None,
    progress: bool = False,
    valid_from: datetime | None = None,
    overlap_tolerance_m2: float = OVERLAP_TOLERANCE_M2,
) -> dict[str, Any]:
    """Import the polygons of one layer of ``path`` as areas in force from ``valid_from``
    (default: the transaction's ``now()``); returns a summary.

    A code that is already a current area gets a new version: the old one is closed
    (``valid_to = valid_from``), so lookups ``at=`` an earlier time still find it, and its
    current children are re-linked to the new version. Raises ``ImportFailed`` listing every
    problem when anything in the file is wrong; then nothing is written.

    ``jurisdiction`` is a jurisdiction code (or id; default: the first one); ``level`` (a name
    such as ``"grid"`` or a rank) overrides the level field for every feature; ``source_crs``
    (``"EPSG:4547"``, ``4490``, ``"GCJ-02"``...) overrides the CRS the file declares.
    """
    path = Path(path)
    jur = _jurisdiction(conn, jurisdiction)
    level_table = levels(conn, jur.id)
    fixed_rank = level_rank(conn, level, jur.id) if level not in (None, "") else None
    source = read_source(path, layer)
    name = path.name if source.layer == path.stem else f"{path.name} (layer {source.layer})"
    report = Report()
    crs = resolve_source_crs(source.crs, source_crs, report)
    n = len(source.frame)
    if n == 0:
        report.add("no_features", f"{name} has no features")
        report.raise_if_any(name, 0)
    when = _import_time(conn, valid_from)

    attrs = _attributes(source, report, level_table, fixed_rank, code_field=code_field,
                        name_field=name_field, level_field=level_field,
                        parent_field=parent_field)
    polygons = _polygons(source, attrs.codes, crs, report)
    extent = jurisdiction_extent(conn, jur.id, jur.local_srid)
    wgs = reproject(polygons, attrs.codes, crs, extent, report, jurisdiction=jur.code,
                    local_srid=jur.local_srid)
    _check_validity(wgs, attrs.codes, report, progress)
    replaced = _check_codes_and_parents(conn, jur, attrs, level_table, when, report,
                                        parent_field=parent_field)
    _check_overlaps(conn, jur, attrs, wgs, level_table, report, overlap_tolerance_m2)
    report.raise_if_any(name, n)

    rows = sorted(
        (AreaRow(code=str(attrs.codes[i]), name=attrs.names[i], level=int(attrs.ranks[i] or 0),
                 geom=g, parent_code=attrs.parents[i], grid_type=attrs.grid_types[i])
         for i, g in enumerate(wgs) if g is not None),
        key=lambda r: r.level,
    )
    relinked = 0
    with conn.begin_nested():
        if replaced:
            conn.execute(text("UPDATE areas SET valid_to = :t WHERE id = ANY(:ids)"),
                         {"t": when, "ids": sorted(replaced.values())})
        with tqdm(total=len(rows), desc="importing areas", unit="area",
                  disable=not progress) as bar:
            for chunk in _chunks(rows, _INSERT_CHUNK):
                insert_areas(conn, jur.id, chunk, valid_from=when)
                bar.update(len(chunk))
        if replaced:
            relinked = _relink_children(conn, sorted(replaced.values()))
        refresh_counts(conn, jur.id)
    names = {int(r["rank"]): str(r["name"]) for r in level_table}
    return {
        "file": str(path),
        "layer": source.layer,
        "driver": source.driver,
        "jurisdiction": jur.code,
        "source_crs": crs.label,
        "features": n,
        "inserted": len(rows),
        "replaced": len(replaced),
        "children_relinked": relinked,
        "valid_from": when.isoformat(),
        "levels": dict(Counter(names.get(r.level, str(r.level)) for r in rows)),
        "warnings": report.warnings,
    }


def _jurisdiction(conn: Connection, value: str | int | None) -> _Jurisdiction:
    if value is None or value == "":
        row = conn.execute(text("SELECT id, code, local_srid FROM jurisdictions WHERE id = :j"),
                           {"j": default_jurisdiction(conn)}).one()
    else:
        column = "id" if isinstance(value, int) else "code"
        found = conn.execute(
            text(f"SELECT id, code, local_srid FROM jurisdictions WHERE {column} = :v"),
            {"v": value},
        ).one_or_none()
        if found is None:
            codes = conn.execute(text("SELECT code FROM jurisdictions ORDER BY code")).scalars()
            raise NotFound(f"no jurisdiction {value!r}; jurisdictions are: "
                           f"{', '.join(codes) or 'none'}", field="jurisdiction")
        row = found
    return _Jurisdiction(id=int(row[0]), code=str(row[1]), local_srid=int(row[2]))


def _import_time(conn: Connection, valid_from: datetime | None) -> datetime:
    if valid_from is None:
        return conn.execute(text("SELECT now()")).scalar_one()  # type: ignore[no-any-return]
    return valid_from if valid_from.tzinfo else valid_from.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    """A field value as text: None for missing/blank; 9.10101e13 read from a number → digits."""
    if value is None:
        return None
    if not isinstance(value, str | bytes) and pd.isna(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    out = str(value).strip()
    return out or None


def _column(source: Source, wanted: str, default: str, option: str, report: Report, *,
            required: bool) -> str | None:
    """The column for a field; a missing one is a problem when required or asked for by name."""
    column = resolve_field(source.columns, wanted)
    if column is None and (required or wanted != default):
        fields = ", ".join(source.columns) or "none"
        report.add("missing_field", f"no field {wanted!r} in {source.path.name}; its fields are:"
                   f" {fields}; choose one with --{option}", field=wanted)
    return column


def _attributes(source: Source, report: Report, level_table: list[dict[str, Any]],
                fixed_rank: int | None, *, code_field: str, name_field: str,
                level_field: str, parent_field: str) -> _Attributes:
    frame, n = source.frame, len(source.frame)

    def values(column: str | None) -> list[str | None]:
        return [_text(v) for v in frame[column].tolist()] if column else [None] * n

    code_col = _column(source, code_field, _DEFAULT_FIELDS["code"], "code-field", report,
                       required=True)
    name_col = _column(source, name_field, _DEFAULT_FIELDS["name"], "name-field", report,
                       required=False)
    level_col = None
    if fixed_rank is None:
        level_col = _column(source, level_field, _DEFAULT_FIELDS["level"], "level-field (or"
                            " give every feature's level with --level)", report, required=True)
    parent_col = _column(source, parent_field, _DEFAULT_FIELDS["parent"], "parent-field",
                         report, required=False)
    codes = values(code_col)
    first_seen: dict[str, int] = {}
    if code_col:
        for i, code in enumerate(codes):
            if code is None:
                report.add("empty_code", f"feature {i} has no {code_field!r}", feature=i,
                           field=code_field)
            elif len(code) > CODE_MAX_LENGTH:
                report.add("code_too_long", f"code {code!r} is longer than {CODE_MAX_LENGTH}"
                           " characters", feature=i, code=code, field=code_field)
            elif code in first_seen:
                report.add("duplicate_code", f"code {code!r} appears again (first in feature"
                           f" {first_seen[code]}); codes must be unique in a file", feature=i,
                           code=code, field=code_field, first_feature=first_seen[code])
            else:
                first_seen[code] = i

    names = values(name_col)
    if name_col is None:
        report.warn(f"no field {name_field!r}: areas are named by their codes")
    unnamed = sum(1 for c, nm in zip(codes, names, strict=True) if c and not nm)
    if name_col is not None and unnamed:
        report.warn(f"{unnamed} features have no {name_field!r}: they are named by their codes")
    final_names = [nm or c or "" for c, nm in zip(codes, names, strict=True)]

    ranks: list[int | None] = [fixed_rank] * n
    if fixed_rank is None and level_col is not None:
        lookup = {str(r["name"]).lower(): int(r["rank"]) for r in level_table}
        lookup.update({str(r["rank"]): int(r["rank"]) for r in level_table})
        known = ", ".join(f"{r['name']} ({r['rank']})" for r in level_table)
        for i, value in enumerate(values(level_col)):
            if value is None:
                report.add("missing_level", f"feature {i} has no {level_field!r}; levels are:"
                           f" {known}", feature=i, code=codes[i], field=level_field)
            elif value.lower() not in lookup:
                report.add("unknown_level", f"unknown level {value!r}; levels are: {known}",
                           feature=i, code=codes[i], field=level_field)
            else:
                ranks[i] = lookup[value.lower()]

    parents = values(parent_col)
    if parent_col is None:
        report.warn(f"no field {parent_field!r}: areas are imported without parents")
    for i, (code, parent) in enumerate(zip(codes, parents, strict=True)):
        if parent is not None and parent == code:
            report.add("unknown_parent", f"area {code!r} names itself as its parent", feature=i,
                       code=code, field=parent_field)
    grid_types = values(resolve_field(source.columns, "grid_type"))
    return _Attributes(codes=codes, names=final_names, ranks=ranks, parents=parents,
                       grid_types=grid_types)


def _where(crs: SourceCRS, xy: tuple[float, float]) -> tuple[float, float] | None:
    fn = crs.transform()
    point = np.array([xy], dtype=float)
    x, y = (fn(point) if fn else point)[0]
    if not (np.isfinite([x, y]).all() and abs(x) <= 180 and abs(y) <= 90):
        return None
    return float(x), float(y)


def _polygons(source: Source, codes: list[str | None], crs: SourceCRS, report: Report
              ) -> list[BaseGeometry | None]:
    """The 2D polygon of each feature, in the source CRS; None (and a problem) otherwise."""
    out: list[BaseGeometry | None] = []
    for i, geom in enumerate(source.frame.geometry.array):
        code = codes[i]
        polygon: BaseGeometry | None = None
        if i in source.unclosed:
            report.add("unclosed_ring", "a ring is not closed (its first and last points"
                       " differ); repeat the first point at the end of every ring", feature=i,
                       code=code, field="geometry", where=_where(crs, source.unclosed[i]))
        elif i in source.undecodable:
            report.add("invalid_geometry", f"the geometry cannot be decoded:"
                       f" {source.undecodable[i]}", feature=i, code=code, field="geometry")
        elif geom is None:
            report.add("missing_geometry", "the feature has no geometry", feature=i,
                       code=code, field="geometry")
        elif geom.is_empty:
            report.add("empty_geometry", "the geometry is empty", feature=i, code=code,
                       field="geometry")
        elif geom.geom_type not in ("Polygon", "MultiPolygon"):
            report.add("not_polygon", f"a {geom.geom_type} is not an area: areas must be"
                       " Polygon or MultiPolygon", feature=i, code=code, field="geometry",
                       geometry_type=geom.geom_type)
        else:
            polygon = shapely.force_2d(geom)
        out.append(polygon)
    return out


def _check_validity(wgs: list[BaseGeometry | None], codes: list[str | None], report: Report,
                    progress: bool) -> None:
    """The database keeps only valid polygons (OGC rules, as ``ST_IsValid``)."""
    for i, geom in enumerate(tqdm(wgs, desc="checking geometry", unit="feature",
                                  disable=not progress)):
        if geom is None:
            continue
        found = invalid_reason(geom)
        if found is None:
            continue
        problem, reason, where = found
        at = f" at ({where[0]:.7f}, {where[1]:.7f})" if where else ""
        report.add(problem, f"the polygon is not valid: {reason}{at}; fix it (e.g. QGIS 'Fix"
                   " geometries' or ST_MakeValid) and import again", feature=i, code=codes[i],
                   field="geometry", where=where)


def _check_codes_and_parents(conn: Connection, jur: _Jurisdiction, attrs: _Attributes,
                             level_table: list[dict[str, Any]], when: datetime,
                             report: Report, *, parent_field: str) -> dict[str, int]:
    """Checks against the areas in force; returns {code: id} of the versions to close."""
    wanted = {c for c in attrs.codes if c} | {p for p in attrs.parents if p}
    current = {
        str(code): (int(area_id), int(rank), valid_from)
        for code, area_id, rank, valid_from in conn.execute(
            text("SELECT code, id, level, valid_from FROM areas WHERE jurisdiction_id = :j"
                 " AND valid_to IS NULL AND code = ANY(:codes)"),
            {"j": jur.id, "codes": sorted(wanted)},
        )
    }
    names = {int(r["rank"]): str(r["name"]) for r in level_table}
    in_file = {c: r for c, r in zip(attrs.codes, attrs.ranks, strict=True) if c}
    replaced: dict[str, int] = {}
    orphans = 0
    for i, (code, rank, parent) in enumerate(zip(attrs.codes, attrs.ranks, attrs.parents,
                                                 strict=True)):
        if code in current:
            area_id, old_rank, old_from = current[code]
            if rank is not None and rank != old_rank:
                report.add("level_conflict", f"code {code!r} is a current"
                           f" {names.get(old_rank, old_rank)}; the file makes it a"
                           f" {names.get(rank, rank)}: give the new area a new code",
                           feature=i, code=code, field="level")
            elif old_from >= when:
                report.add("version_conflict", f"the current version of {code!r} is in force"
                           f" from {old_from.isoformat()}, not before this import"
                           f" ({when.isoformat()}); import it later or with a later valid_from",
                           feature=i, code=code)
            else:
                replaced[str(code)] = area_id
        if parent is None or parent == code:
            orphans += int(rank is not None and rank > 0)
            continue
        parent_rank = in_file.get(parent) if parent in in_file else (
            current[parent][1] if parent in current else None)
        if parent not in in_file and parent not in current:
            report.add("unknown_parent", f"parent code {parent!r} is neither in the file nor a"
                       f" current area of jurisdiction {jur.code}", feature=i, code=code,
                       field=parent_field, parent_code=parent)
        elif parent_rank is not None and rank is not None and parent_rank >= rank:
            report.add("parent_level", f"parent {parent!r} is a"
                       f" {names.get(parent_rank, parent_rank)}, not a level above"
                       f" {names.get(rank, rank)}", feature=i, code=code, field=parent_field,
                       parent_code=parent)
    if orphans:
        report.warn(f"{orphans} areas below the top level have no parent")
    return replaced


def _check_overlaps(conn: Connection, jur: _Jurisdiction, attrs: _Attributes,
                    wgs: list[BaseGeometry | None], level_table: list[dict[str, Any]],
                    report: Report, tolerance_m2: float) -> None:
    """Areas of one level under one parent must not overlap: in the file, nor with the current
    areas the file does not replace."""
    bad = report.bad_features()
    good = [i for i, g in enumerate(wgs) if g is not None and i not in bad
            and attrs.codes[i] and attrs.ranks[i] is not None]
    if not good:
        return
    geoms = np.array([wgs[i] for i in good], dtype=object)
    x0, y0, x1, y1 = (float(v) for v in shapely.total_bounds(geoms))
    crs = metric_crs(jur.local_srid, (x0 + x1) / 2, (y0 + y1) / 2)
    metric = to_metric(geoms, crs)
    keys = [(int(attrs.ranks[i] or 0), attrs.parents[i]) for i in good]
    names = {int(r["rank"]): str(r["name"]) for r in level_table}
    back = _to_lonlat(crs)

    def describe(key: tuple[Any, Any]) -> str:
        rank, parent = key
        under = f"under {parent!r}" if parent else "without a parent"
        return f"both {names.get(rank, rank)}s {under}"

    for a, b, area, overlap in overlaps(metric, metric, keys, keys, same=True,
                                        tolerance_m2=tolerance_m2):
        i, j = good[a], good[b]
        report.add("overlap", f"{attrs.codes[j]!r} overlaps {attrs.codes[i]!r} by"
                   f" {area:,.1f} m² ({describe(keys[a])})", feature=j, code=attrs.codes[j],
                   other_feature=i, other_code=attrs.codes[i], overlap_m2=round(area, 1),
                   where=back(shapely.point_on_surface(overlap)))

    rows = conn.execute(
        text("SELECT a.code, a.level, p.code, ST_AsBinary(a.geom) FROM areas a"
             " LEFT JOIN areas p ON p.id = a.parent_id"
             " WHERE a.jurisdiction_id = :j AND a.valid_to IS NULL AND a.level = ANY(:levels)"
             " AND NOT a.code = ANY(:codes)"
             " AND a.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"),
        {"j": jur.id, "levels": sorted({k[0] for k in keys}), "x0": x0, "y0": y0, "x1": x1,
         "y1": y1, "codes": [attrs.codes[i] for i in good]},
    ).all()
    if not rows:
        return
    other_keys = [(int(r[1]), r[2]) for r in rows]
    others = to_metric(shapely.from_wkb([bytes(r[3]) for r in rows]), crs)
    for a, b, area, overlap in overlaps(metric, others, keys, other_keys, same=False,
                                        tolerance_m2=tolerance_m2):
        i = good[a]
        report.add("overlap", f"{attrs.codes[i]!r} overlaps the current area {rows[b][0]!r}"
                   f" (not in this file) by {area:,.1f} m² ({describe(keys[a])})", feature=i,
                   code=attrs.codes[i], other_feature=None, other_code=rows[b][0],
                   overlap_m2=round(area, 1), where=back(shapely.point_on_surface(overlap)))


def _to_lonlat(crs: CRS) -> Any:
    fn = pyproj_transform(crs, CRS.from_epsg(WGS84))

    def back(point: BaseGeometry) -> tuple[float, float]:
        x, y = fn(shapely.get_coordinates(point))[0]
        return float(x), float(y)

    return back


def _relink_children(conn: Connection, old_ids: Sequence[int]) -> int:
    """Current children of a replaced area follow its new version (same code)."""
    result = conn.execute(
        text("UPDATE areas c SET parent_id = n.id, version = c.version + 1"
             "  FROM areas o JOIN areas n ON n.jurisdiction_id = o.jurisdiction_id"
             "   AND n.code = o.code AND n.valid_to IS NULL"
             " WHERE o.id = ANY(:old) AND c.parent_id = o.id AND c.valid_to IS NULL"),
        {"old": list(old_ids)},
    )
    return int(result.rowcount or 0)


def _chunks(rows: list[AreaRow], size: int) -> Iterator[list[AreaRow]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]

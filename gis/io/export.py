"""Export of gridgov layers to GeoJSON, GeoPackage, Shapefile and CSV (written with pyogrio).

``EXPORT_LAYERS`` is the allow-list: every table, column and join that can reach the SQL is
written here; callers choose a layer by name and nothing they type is put into a query. Private
columns are simply not listed: ``cases.reporter_contact`` and ``cases.idempotency_key`` never
leave the database, and responders are exported with their current position only (none at all
while off duty) and no history.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyogrio.errors import DataSourceError, FieldError, GeometryError
from sqlalchemy import Connection, text

from gis.crs import WGS84
from gis.errors import InvalidInput
from gis.io.formats import CSV, GPKG, SHAPEFILE, driver_for, shapefile_field_name

_CHUNK_ROWS = 50_000
# Timestamp columns of the allow-list: typed as date-times even when every value is NULL.
_TIME_COLUMNS = frozenset({"valid_from", "valid_to", "position_at", "reported_at", "due_at",
                           "closed_at"})
# GeoPackage 1.2: what GDAL 3.6 (Debian 12) and older QGIS read without a warning.
_GPKG_OPTIONS = {"dataset_options": {"VERSION": "1.2"}}

_VALID_AT = (
    "{t}.valid_from <= COALESCE(CAST(:at AS timestamptz), now())"
    " AND ({t}.valid_to IS NULL OR {t}.valid_to > COALESCE(CAST(:at AS timestamptz), now()))"
)


@dataclass(frozen=True)
class ExportLayer:
    """One exportable layer: a fixed SELECT whose last column is the geometry as WKB."""

    name: str
    alias: str
    """Alias of the main table (its ``jurisdiction_id`` selects one jurisdiction)."""
    select: str
    order_by: str
    geometry_type: str
    """OGR geometry type of the column ("Unknown" when points, lines and polygons may mix)."""
    valid_alias: str | None = None
    """Alias of the table whose validity period ``at`` selects (versioned layers only)."""
    level_filter: str | None = None
    """SQL selecting one level by name or rank (areas only)."""


EXPORT_LAYERS: Mapping[str, ExportLayer] = {
    layer.name: layer for layer in (
        ExportLayer(
            name="areas",
            alias="a",
            select="""
                SELECT a.id, j.code AS jurisdiction, a.code, a.name, l.name AS level,
                       a.level AS rank, pa.code AS parent_code, a.grid_type, a.households,
                       a.population, a.area_m2, a.valid_from, a.valid_to, a.version,
                       ST_AsBinary(a.geom) AS geometry
                  FROM areas a
                  JOIN jurisdictions j ON j.id = a.jurisdiction_id
                  JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id
                                    AND l.rank = a.level
                  LEFT JOIN areas pa ON pa.id = a.parent_id
            """,
            order_by="j.code, a.level, a.code",
            geometry_type="MultiPolygon",
            valid_alias="a",
            level_filter="(l.name = :level OR CAST(l.rank AS text) = :level)",
        ),
        ExportLayer(
            name="buildings",
            alias="b",
            select="""
                SELECT b.id, b.source_id, b.use, b.levels, b.households, b.residents,
                       ST_AsBinary(b.geom) AS geometry
                  FROM buildings b
            """,
            order_by="b.id",
            geometry_type="Unknown",
        ),
        ExportLayer(
            name="facilities",
            alias="f",
            select="""
                SELECT f.id, f.type, f.name, f.capacity, f.hours, f.service_radius_m,
                       f.service_minutes, f.source_id, f.attributes,
                       ST_AsBinary(f.geom) AS geometry
                  FROM facilities f
            """,
            order_by="f.id",
            geometry_type="Point",
        ),
        ExportLayer(
            name="components",
            alias="c",
            select="""
                SELECT c.id, c.code, cat.code AS category, c.kind, d.code AS department,
                       c.state, c.source_id, c.attributes, ST_AsBinary(c.geom) AS geometry
                  FROM components c
                  LEFT JOIN categories cat ON cat.id = c.category_id
                  LEFT JOIN departments d ON d.id = c.department_id
            """,
            order_by="c.id",
            geometry_type="Unknown",
        ),
        ExportLayer(
            # Current position only, and none while off duty: gridgov tracks on-duty staff.
            name="responders",
            alias="r",
            select="""
                SELECT r.id, r.name, r.kind, d.code AS department, r.status, r.skills,
                       CASE WHEN r.status <> 'off' THEN r.position_at END AS position_at,
                       CASE WHEN r.status <> 'off' THEN ST_AsBinary(r.geom) END AS geometry
                  FROM responders r
                  LEFT JOIN departments d ON d.id = r.department_id
            """,
            order_by="r.id",
            geometry_type="Point",
        ),
        ExportLayer(
            name="road_edges",
            alias="e",
            select="""
                SELECT e.id, e.source, e.target, e.cost, e.reverse_cost, e.length_m,
                       e.maxspeed_kmh, e.oneway, e.highway, e.name, e.source_id, e.component,
                       ST_AsBinary(e.geom) AS geometry
                  FROM road_edges e
            """,
            order_by="e.id",
            geometry_type="LineString",
        ),
        ExportLayer(
            name="road_nodes",
            alias="n",
            select="SELECT n.id, ST_AsBinary(n.geom) AS geometry FROM road_nodes n",
            order_by="n.id",
            geometry_type="Point",
        ),
        ExportLayer(
            name="responsibility_zones",
            alias="z",
            select="""
                SELECT z.id, z.kind, z.code, z.name, d.code AS department, z.organisation,
                       z.category_codes, z.valid_from, z.valid_to,
                       ST_AsBinary(z.geom) AS geometry
                  FROM responsibility_zones z
                  LEFT JOIN departments d ON d.id = z.department_id
            """,
            order_by="z.kind, z.code",
            geometry_type="Unknown",
            valid_alias="z",
        ),
        ExportLayer(
            # Never reporter_contact, never idempotency_key, no media references.
            name="cases",
            alias="c",
            select="""
                SELECT c.id, cat.code AS category, c.channel, c.urgency, c.status,
                       c.description, a.code AS area_code, d.code AS department,
                       c.responder_id, c.reported_at, c.due_at, c.closed_at,
                       c.escalation_level, c.duplicate_of, c.satisfaction,
                       ST_AsBinary(c.geom) AS geometry
                  FROM cases c
                  LEFT JOIN categories cat ON cat.id = c.category_id
                  LEFT JOIN areas a ON a.id = c.area_id
                  LEFT JOIN departments d ON d.id = c.department_id
            """,
            order_by="c.id",
            geometry_type="Unknown",
        ),
    )
}

_SHAPEFILE_FAMILIES = {
    "ST_Point": "Point", "ST_MultiPoint": "MultiPoint",
    "ST_LineString": "MultiLineString", "ST_MultiLineString": "MultiLineString",
    "ST_Polygon": "MultiPolygon", "ST_MultiPolygon": "MultiPolygon",
}


def export_layer(
    conn: Connection,
    layer: str,
    path: Path | str,
    *,
    level: str | int | None = None,
    at: datetime | str | None = None,
    driver: str | None = None,
    jurisdiction: str | None = None,
) -> int:
    """Write one layer to ``path`` (format from the extension or ``driver``); returns the
    number of features written. Coordinates are WGS84 lon/lat.

    ``level`` (name or rank) selects one level of ``areas``; ``at`` selects the versions in
    force at that time for ``areas`` and ``responsibility_zones`` (default: now);
    ``jurisdiction`` (a code) keeps one jurisdiction's rows (default: all). A GeoPackage
    gets one layer named after ``layer`` (other layers in the file are kept); other formats
    are overwritten. CSV has ``lon``/``lat`` columns for point layers and ``wkt`` otherwise.
    """
    spec = EXPORT_LAYERS.get(layer)
    if spec is None:
        raise InvalidInput(f"unknown layer {layer!r}; layers are: {', '.join(EXPORT_LAYERS)}",
                           field="layer")
    path = Path(path)
    fmt = driver_for(path, driver)
    if not path.parent.is_dir():
        raise InvalidInput(f"folder {path.parent} does not exist", field="file")
    where: list[str] = []
    params: dict[str, Any] = {"at": _parse_at(at) if at not in (None, "") else None}
    if spec.valid_alias:
        where.append(_VALID_AT.format(t=spec.valid_alias))
    elif params["at"] is not None:
        versioned = ", ".join(n for n, s in EXPORT_LAYERS.items() if s.valid_alias)
        raise InvalidInput(f"at applies only to versioned layers ({versioned})", field="at")
    if jurisdiction not in (None, ""):
        params["jurisdiction"] = _check_jurisdiction(conn, str(jurisdiction))
        where.append(f"{spec.alias}.jurisdiction_id = :jurisdiction")
    if level not in (None, ""):
        if spec.level_filter is None:
            raise InvalidInput("level applies only to the areas layer", field="level")
        params["level"] = _check_level(conn, str(level))
        where.append(spec.level_filter)
    sql = spec.select + (f" WHERE {' AND '.join(where)}" if where else "")
    sql += f" ORDER BY {spec.order_by}"
    geometry_type = spec.geometry_type
    if fmt == SHAPEFILE and geometry_type == "Unknown":
        geometry_type = _shapefile_type(conn, spec, sql, params)
    return _write(conn, sql, params, path, fmt, spec, geometry_type)


def _parse_at(value: datetime | str | None) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidInput(f"at must be an ISO 8601 time such as 2024-05-01T08:00:00+08:00,"
                           f" not {value!r}", field="at") from exc


def _check_jurisdiction(conn: Connection, code: str) -> int:
    found = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"), {"c": code}
                         ).scalar()
    if found is None:
        codes = ", ".join(conn.execute(text("SELECT code FROM jurisdictions ORDER BY code"))
                          .scalars()) or "none"
        raise InvalidInput(f"no jurisdiction {code!r}; jurisdictions are: {codes}",
                           field="jurisdiction")
    return int(found)


def _check_level(conn: Connection, level: str) -> str:
    rows = conn.execute(text("SELECT DISTINCT name, rank FROM area_levels ORDER BY rank, name")
                        ).all()
    if not any(level in (str(name), str(rank)) for name, rank in rows):
        names = ", ".join(dict.fromkeys(str(name) for name, _ in rows)) or "none yet"
        raise InvalidInput(f"unknown level {level!r}; levels are: {names}", field="level")
    return level


def _shapefile_type(conn: Connection, spec: ExportLayer, sql: str, params: dict[str, Any]
                    ) -> str:
    """A Shapefile holds one geometry type: find the layer's, or say why it cannot be one."""
    kinds = conn.execute(
        text(f"SELECT DISTINCT ST_GeometryType(ST_GeomFromWKB(s.geometry)) FROM ({sql}) s"
             " WHERE s.geometry IS NOT NULL"), params).scalars().all()
    families = {_SHAPEFILE_FAMILIES.get(str(k), str(k)) for k in kinds}
    if len(families) > 1:
        raise InvalidInput(f"{spec.name} mixes {', '.join(sorted(families))} geometries, which a"
                           " Shapefile cannot hold: export to GeoPackage (.gpkg) or GeoJSON",
                           field="file")
    return families.pop() if families else "Point"


# PostgreSQL type OIDs → column dtypes, so that fields keep their type in an empty export.
_DTYPES = {16: "boolean", 20: "Int64", 21: "Int64", 23: "Int64", 700: "float64",
           701: "float64", 1700: "float64"}


def _rows(conn: Connection, sql: str, params: dict[str, Any]
          ) -> Iterator[tuple[dict[str, str], list[Sequence[Any]]]]:
    """Chunks of rows, with {column: dtype} for every column but the geometry (the last)."""
    result = conn.execute(text(sql), params, execution_options={"yield_per": _CHUNK_ROWS})
    description = result.cursor.description if result.cursor is not None else None
    oids: list[Any] = [d[1] for d in description] if description else [0] * len(result.keys())
    dtypes = {str(k): _DTYPES.get(int(oid or 0), "string")
              for k, oid in zip(result.keys(), oids, strict=True)}
    dtypes.pop(list(dtypes)[-1])
    empty = True
    for part in result.partitions():
        empty = False
        yield dtypes, [tuple(r) for r in part]
    if empty:
        yield dtypes, []


def _frame(dtypes: dict[str, str], rows: list[Sequence[Any]], fmt: str) -> gpd.GeoDataFrame:
    data: dict[str, Any] = {}
    for k, (column, dtype) in enumerate(dtypes.items()):
        values = [_plain(r[k], fmt) for r in rows]
        if column in _TIME_COLUMNS and fmt not in (CSV, SHAPEFILE):
            data[column] = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
        else:
            data[column] = pd.array(values, dtype=dtype)
    geometry = shapely.from_wkb([bytes(r[-1]) if r[-1] is not None else None for r in rows])
    frame = gpd.GeoDataFrame(pd.DataFrame(data, columns=list(dtypes)),
                             geometry=gpd.GeoSeries(geometry, crs=WGS84), crs=WGS84)
    if fmt == SHAPEFILE:
        frame = frame.rename(columns={c: shapefile_field_name(c) for c in dtypes})
    return frame


def _plain(value: Any, fmt: str) -> Any:
    """A value every format can hold: lists joined by commas, JSON as text, and times as
    ISO 8601 text where the format has no time-zone-aware type (Shapefile, CSV)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, datetime | date) and fmt in (CSV, SHAPEFILE):
        return value.isoformat()
    return value


def _csv_frame(frame: gpd.GeoDataFrame, geometry_type: str) -> pd.DataFrame:
    geometry = frame.geometry.array
    out = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    if geometry_type == "Point":
        out["lon"] = [None if g is None else float(g.x) for g in geometry]
        out["lat"] = [None if g is None else float(g.y) for g in geometry]
    else:
        out["wkt"] = [None if g is None else g.wkt for g in geometry]
    return out


def _write(conn: Connection, sql: str, params: dict[str, Any], path: Path, fmt: str,
           spec: ExportLayer, geometry_type: str) -> int:
    options: dict[str, Any] = {"layer": spec.name, **_GPKG_OPTIONS} if fmt == GPKG else {}
    if fmt == SHAPEFILE:
        options["encoding"] = "UTF-8"
    if fmt != GPKG:
        _remove(path, fmt)
    multi = fmt == SHAPEFILE and geometry_type.startswith("Multi")
    count = 0
    csv_parts: list[pd.DataFrame] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # GDAL's notes on field types
        for dtypes, rows in _rows(conn, sql, params):
            frame = _frame(dtypes, rows, fmt)
            if fmt == CSV:
                csv_parts.append(_csv_frame(frame, geometry_type))
                count += len(frame)
                continue
            try:
                pyogrio.write_dataframe(frame, path, driver=fmt, geometry_type=geometry_type,
                                        append=count > 0, promote_to_multi=multi, **options)
            except (DataSourceError, FieldError, GeometryError) as exc:
                raise InvalidInput(f"cannot write {spec.name} to {path.name}: {exc}",
                                   field="file") from exc
            count += len(frame)
        if fmt == CSV:
            pyogrio.write_dataframe(pd.concat(csv_parts, ignore_index=True), path, driver=CSV)
    return count


def _remove(path: Path, fmt: str) -> None:
    """Formats other than GeoPackage are written afresh (a Shapefile is several files)."""
    suffixes = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix") if fmt == SHAPEFILE else ()
    for candidate in [path, *(path.with_suffix(s) for s in suffixes)]:
        if candidate.exists():
            candidate.unlink()

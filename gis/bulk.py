"""Bulk import of (historical) cases from CSV or GeoJSON, set-based, with per-row errors.

Rows are checked in Python (category, location, times, status…); the valid ones are streamed in
chunks with ``COPY`` into a temporary table and inserted with **one** ``INSERT … SELECT`` per
chunk that assigns each case to the grid in force *at its reported_at* (a ``LATERAL`` join on the
indexed ``area_parts``, smallest code on a shared edge), routes it (zone > category × area rule >
category default, unless the row names its department) and appends one ``import`` event per
case in the same statement.

Two load paths, the same rows in every table (tests compare them): the *trigger path*, where
each chunk's statement fires the triggers on ``cases`` (tile cells, ``case_tiles``, KPI
rollups, tile invalidation, live feed) and the row-level foreign-key checks; and the *fast
path* (default when ``fast_load_refusal`` finds nothing against it), where the chunks go in
with ``session_replication_role = replica`` and, once per import, the referenced rows are
locked ``FOR KEY SHARE`` set-based and every derived table gets one set-based statement over
all loaded rows (``gis.bulk_fast``).

Two modes (``strict``):

- default — valid rows go in, invalid rows are reported (row number, field, message);
- strict — all or nothing: any invalid row raises ``ImportFailed`` listing every problem, and
  the caller's transaction (the CLI's, the API request's) is rolled back.

CSV columns (header names, case-insensitive): ``lon``/``lat`` (or ``x``/``y``, ``longitude``/
``latitude``) or ``wkt``; ``category`` (code); optional ``description``, ``channel`` (default
``import``), ``status`` (default ``closed`` when ``closed_at`` is given, else ``reported``),
``reported_at`` (default now), ``closed_at``, ``due_at`` (default: from the category deadline),
``department``, ``satisfaction``, ``crs`` (per row; else the import's ``crs``) and ``id`` (an
external id: importing the same file twice skips rows already imported). Naive times are local
time of the jurisdiction. GeoJSON: Point (or any) geometries, the same names as properties.
"""

from __future__ import annotations

import csv
import io
import json
import math
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gis import crs as crs_mod
from gis.auth import Principal
from gis.bulk_fast import (
    DERIVED_STEPS,
    apply_derived,
    fast_load_refusal,
    lock_references,
    restore_role,
)
from gis.calendar import CalendarSettings, WorkingCalendar, load_calendar
from gis.errors import GridgovError, ImportFailed, InvalidInput
from gis.index import AreaIndex
from gis.models import CASE_STATUSES, CHANNELS

_ALIASES = {
    "lon": ("lon", "lng", "long", "longitude", "x"),
    "lat": ("lat", "latitude", "y"),
    "wkt": ("wkt", "geometry", "geom", "the_geom"),
    "category": ("category", "category_code", "service_code"),
    "id": ("id", "external_id", "source_id"),
}
_MAX_DESCRIPTION = 10_000


@dataclass
class BulkReport:
    rows: int = 0
    inserted: int = 0
    skipped_existing: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, strict: bool) -> dict[str, Any]:
        return {"rows": self.rows, "inserted": self.inserted,
                "skipped_existing": self.skipped_existing, "rejected": len(self.errors),
                "strict": strict, "errors": self.errors}


class _RowError(Exception):
    def __init__(self, field_: str, message: str):
        super().__init__(message)
        self.field = field_
        self.message = message


# --- reading ------------------------------------------------------------------------------

def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    lower = {str(k).strip().lower(): (v.strip() if isinstance(v, str) else v)
             for k, v in raw.items() if k is not None}
    out: dict[str, Any] = {}
    for key, value in lower.items():
        if value == "":
            value = None
        canonical = next((c for c, names in _ALIASES.items() if key in names), key)
        if out.get(canonical) is None:
            out[canonical] = value
    return out


def _canonical(key: str) -> str:
    key = key.strip().lower()
    return next((c for c, names in _ALIASES.items() if key in names), key)


def read_csv(source: str | Path | io.TextIOBase) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, fields) for each data row; row 1 is the first row after the header.

    Blank lines are skipped (and not numbered), as ``csv.DictReader`` does; each row is the
    ``DictReader`` row passed through the same normalisation as :func:`_normalise`, with the
    header's names resolved once per file instead of once per row.
    """
    if isinstance(source, str | Path):
        with open(source, newline="", encoding="utf-8-sig") as fh:
            yield from read_csv(fh)
        return
    reader = csv.reader(source)  # type: ignore[arg-type]
    header = next(reader, None)
    if header is None:
        return
    # The column each key reads, as DictReader then _normalise resolve repeated names: one
    # key per (lower-cased, stripped) name at its first position, holding its last column;
    # then aliases, the first non-empty one winning. Extra unnamed cells are dropped.
    lowered: dict[str, int] = {}
    for i, name in enumerate(header):
        lowered[name.strip().lower()] = i
    columns = [(_canonical(name), col) for name, col in lowered.items()]
    width = len(header)
    # Usually every key reads one column: one dict comprehension per row.
    unique = len({key for key, _ in columns}) == len(columns)
    row_no = 0
    for raw in reader:
        if not raw:
            continue
        row_no += 1
        if len(raw) < width:
            raw = raw + [""] * (width - len(raw))
        if unique:
            yield row_no, {key: raw[col].strip() or None for key, col in columns}
            continue
        out: dict[str, Any] = {}
        for key, col in columns:
            value = raw[col].strip() or None
            if out.get(key) is None:
                out[key] = value
        yield row_no, out


def read_geojson(obj: dict[str, Any] | str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(feature number, fields) for each feature; the geometry becomes ``wkt``."""
    if isinstance(obj, str | Path):
        with open(obj, encoding="utf-8") as fh:
            obj = json.load(fh)
    assert isinstance(obj, dict)
    if obj.get("type") != "FeatureCollection" or not isinstance(obj.get("features"), list):
        raise InvalidInput("GeoJSON must be a FeatureCollection with features", field="file")
    for i, feat in enumerate(obj["features"], start=1):
        props = _normalise(dict((feat or {}).get("properties") or {}))
        geom = (feat or {}).get("geometry")
        if geom is not None:
            props["__geojson"] = geom
        yield i, props


def read_file(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".txt"):
        return read_csv(path)
    if suffix in (".geojson", ".json"):
        return read_geojson(path)
    raise InvalidInput(f"cannot import {Path(path).name}: use .csv or .geojson", field="file")


def count_rows(path: str | Path) -> int | None:
    """A cheap row count for the progress bar (CSV lines minus header)."""
    if Path(path).suffix.lower() not in (".csv", ".txt"):
        return None
    with open(path, "rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


# --- checking -----------------------------------------------------------------------------

@dataclass
class _Context:
    categories: dict[str, dict[str, Any]]
    departments: dict[str, int]
    calendar: WorkingCalendar
    zone: ZoneInfo
    default_crs: str | int
    now: datetime


def _time(value: Any, name: str, zone: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    try:
        text_value = str(value).replace(" ", "T", 1) if len(str(value)) > 10 else str(value)
        moment = datetime.fromisoformat(text_value)
    except ValueError as exc:
        raise _RowError(name, f"{name} {value!r} is not an ISO date/time") from exc
    if isinstance(moment, datetime) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise _RowError(name, f"{name} {value!r} is not a number") from exc
    if not math.isfinite(number):
        raise _RowError(name, f"{name} must be finite")
    return number


def _location(r: dict[str, Any], ctx: _Context) -> tuple[float | None, float | None,
                                                          str | None, int]:
    """(lon, lat, None, srid) for points; (None, None, wkt, srid) for other geometries."""
    lon_v, lat_v = r.get("lon"), r.get("lat")
    if (lon_v is not None and lat_v is not None and ctx.default_crs == crs_mod.WGS84
            and r.get("crs") is None and r.get("__geojson") is None and r.get("wkt") is None):
        # The common row, lon/lat in WGS 84; anything unusual (not a number, NaN, out of
        # range) takes the general path below, which names the problem.
        try:
            lon, lat = float(lon_v), float(lat_v)
        except (TypeError, ValueError):
            pass
        else:
            if -180 <= lon <= 180 and -90 <= lat <= 90:
                return lon, lat, None, 4326
    code = ctx.default_crs
    if r.get("crs") is not None:
        try:
            code = _parse_crs(str(r["crs"]))
        except GridgovError as exc:
            raise _RowError("crs", exc.detail) from exc
    geom = None
    if r.get("__geojson") is not None:
        try:
            geom = shapely.from_geojson(json.dumps(r["__geojson"]))
        except Exception as exc:  # noqa: BLE001 - shapely raises several types
            raise _RowError("geometry", "invalid GeoJSON geometry") from exc
    elif r.get("wkt") is not None:
        try:
            geom = shapely.from_wkt(str(r["wkt"]))
        except Exception as exc:  # noqa: BLE001
            raise _RowError("wkt", f"invalid WKT {str(r['wkt'])[:40]!r}") from exc
    if geom is not None:
        if geom.is_empty:
            raise _RowError("location", "empty geometry")
        if geom.geom_type == "Point":
            x, y = geom.x, geom.y
        else:
            if not isinstance(code, int):
                raise _RowError("crs", "GCJ-02/BD-09 are supported for points only")
            if not geom.is_valid:
                raise _RowError("location", "invalid geometry (self-intersection?)")
            return None, None, geom.wkt, code
    elif r.get("lon") is None and r.get("lat") is None:
        raise _RowError("location", "missing location: lon and lat, or wkt")
    else:
        if r.get("lon") is None or r.get("lat") is None:
            raise _RowError("lon" if r.get("lon") is None else "lat",
                            "lon and lat go together")
        x, y = _number(r["lon"], "lon"), _number(r["lat"], "lat")
    if code == crs_mod.WGS84:
        lon, lat = x, y
    else:
        try:
            lon, lat = _to_wgs84(x, y, code)
        except GridgovError as exc:
            raise _RowError("crs", exc.detail) from exc
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise _RowError("lat" if abs(lon) <= 180 else "lon",
                        f"({lon}, {lat}) is outside lon/lat range")
    return lon, lat, None, 4326


@lru_cache(maxsize=64)
def _parse_crs(value: str) -> str | int:
    return crs_mod.parse_crs(value)


def _to_wgs84(x: float, y: float, code: str | int) -> tuple[float, float]:
    if code == "GCJ02":
        return crs_mod.gcj02_to_wgs84(x, y)
    if code == "BD09":
        return crs_mod.bd09_to_wgs84(x, y)
    assert isinstance(code, int)
    lon, lat = crs_mod.transformer(code, crs_mod.WGS84).transform(x, y)
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise _RowError("crs", f"({x}, {y}) is outside the area of EPSG:{code}")
    return float(lon), float(lat)


def _check_row(r: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    code = r.get("category")
    if code is None:
        raise _RowError("category", "category is required")
    cat = ctx.categories.get(str(code))
    if cat is None:
        raise _RowError("category", f"unknown category {code!r}")
    if not cat["leaf"]:
        raise _RowError("category", f"category {code!r} is a class; use a minor category")
    lon, lat, wkt, srid = _location(r, ctx)
    reported = _time(r.get("reported_at"), "reported_at", ctx.zone) or ctx.now
    if reported > ctx.now + timedelta(days=1):
        raise _RowError("reported_at", "reported_at is in the future")
    closed = _time(r.get("closed_at"), "closed_at", ctx.zone)
    status = r.get("status") or ("closed" if closed else "reported")
    if status not in CASE_STATUSES:
        raise _RowError("status", f"unknown status {status!r}")
    if closed is not None and status != "closed":
        raise _RowError("closed_at", f"closed_at given but status is {status}")
    if status == "closed" and closed is None:
        raise _RowError("closed_at", "a closed case needs closed_at")
    if closed is not None and closed < reported:
        raise _RowError("closed_at", "closed_at is before reported_at")
    channel = r.get("channel") or "import"
    if channel not in CHANNELS:
        raise _RowError("channel", f"unknown channel {channel!r}")
    description = r.get("description") or ""
    if len(description) > _MAX_DESCRIPTION:
        raise _RowError("description", f"description is over {_MAX_DESCRIPTION:,} characters")
    department_id = None
    if r.get("department") is not None:
        department_id = ctx.departments.get(str(r["department"]))
        if department_id is None:
            raise _RowError("department", f"unknown department {r['department']!r}")
    satisfaction = None
    if r.get("satisfaction") is not None:
        satisfaction = int(_number(r["satisfaction"], "satisfaction"))
        if not 1 <= satisfaction <= 5:
            raise _RowError("satisfaction", "satisfaction must be 1–5")
    due = _time(r.get("due_at"), "due_at", ctx.zone)
    # A missing deadline comes from the category, computed for the whole chunk at once
    # (WorkingCalendar.add_many, equal to add() row by row).
    deadline = None
    if due is None and cat["deadline_value"] is not None and cat["deadline_unit"]:
        deadline = (float(cat["deadline_value"]), str(cat["deadline_unit"]))
    ext = r.get("id")
    if ext is not None and len(str(ext)) > 90:
        raise _RowError("id", "id is longer than 90 characters")
    return {
        "category_id": cat["id"], "lineage": cat["lineage"], "urgency": cat["urgency"],
        "department_id": department_id, "channel": channel, "status": status,
        "description": description, "reported_at": reported, "closed_at": closed,
        "due_at": due, "deadline": deadline, "satisfaction": satisfaction, "ext": ext,
        "lon": lon, "lat": lat, "wkt": wkt, "srid": srid,
        "cat_dep": cat["route_dep"], "cat_how": cat["route_how"],
    }


# --- loading ------------------------------------------------------------------------------

_STAGE_COLUMNS = ("row_no", "category_id", "lineage", "urgency", "department_id", "channel",
                  "status", "description", "reported_at", "closed_at", "due_at",
                  "satisfaction", "ext_key", "lon", "lat", "wkt", "srid", "grid_id", "cat_dep",
                  "cat_how")

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS _gg_bulk (
    row_no integer, category_id integer, lineage text[], urgency smallint,
    department_id integer, channel text, status text, description text,
    reported_at timestamptz, closed_at timestamptz, due_at timestamptz,
    satisfaction smallint, ext_key text, lon float8, lat float8, wkt text, srid integer,
    grid_id bigint, cat_dep integer, cat_how text
) ON COMMIT DROP
"""

# Every area version's ancestors (by code), for category × area rules.
_CREATE_ANCESTORS = """
CREATE TEMP TABLE IF NOT EXISTS _gg_anc ON COMMIT DROP AS
WITH RECURSIVE anc AS (
    SELECT a.id AS area_id, a.id, a.parent_id, a.code, 0 AS up
      FROM areas a WHERE a.jurisdiction_id = :j
    UNION ALL
    SELECT anc.area_id, p.id, p.parent_id, p.code, anc.up + 1
      FROM anc JOIN areas p ON p.id = anc.parent_id
)
SELECT area_id, code, up FROM anc
  WHERE code IN (SELECT area_code FROM routing_rules WHERE jurisdiction_id = :j)
"""

# The insert of a chunk's rows into cases, ids in file order (the fast path swaps it).
_INS_IN_FILE_ORDER = """
    INSERT INTO cases (jurisdiction_id, category_id, channel, urgency, description, area_id,
                       department_id, status, reported_at, due_at, closed_at, satisfaction,
                       idempotency_key, routed_by, geom)
    SELECT :j, category_id, channel, urgency, description, area_id, dep_id, status,
           reported_at, due_at, closed_at, satisfaction,
           CASE WHEN ext_key IS NULL THEN NULL ELSE :key_prefix || ext_key END, routed_by, geom
      FROM routed WHERE area_id IS NOT NULL
     ORDER BY row_no
"""

# Grids come staged (``grid_id``, from the in-memory AreaIndex) or are looked up here; the
# category's default department comes staged (``cat_dep``/``cat_how``, resolved once per
# category in Python). Conditions on the staged row sit inside the LATERAL subqueries so that
# PostgreSQL skips them per row (a gating filter) instead of running them and discarding.
_LOAD_SQL = ("""
WITH staged AS (
    SELECT b.*,
           CASE WHEN b.wkt IS NULL THEN ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326)
                ELSE ST_Transform(ST_GeomFromText(b.wkt, b.srid), 4326) END AS geom
      FROM _gg_bulk b
), located AS (
    SELECT s.*, COALESCE(s.grid_id, g.area_id) AS area_id,
           ST_PointOnSurface(s.geom) AS pt
      FROM staged s
      LEFT JOIN LATERAL (
          SELECT a.id AS area_id
            FROM area_parts p JOIN areas a ON a.id = p.area_id
           WHERE s.grid_id IS NULL AND a.jurisdiction_id = :j
             AND ST_Covers(p.geom, ST_PointOnSurface(s.geom))
             AND p.valid_from <= s.reported_at
             AND (p.valid_to IS NULL OR p.valid_to > s.reported_at)
           ORDER BY p.level DESC, a.code LIMIT 1
      ) g ON true
), routed AS (
    SELECT l.*,
           COALESCE(l.department_id, zr.department_id, rr.department_id, l.cat_dep)
             AS dep_id,
           CASE WHEN l.department_id IS NOT NULL THEN 'import'
                WHEN zr.department_id IS NOT NULL THEN zr.how
                WHEN rr.department_id IS NOT NULL THEN rr.how
                ELSE l.cat_how END AS routed_by
      FROM located l
      LEFT JOIN LATERAL (
          SELECT z.department_id, 'zone:' || z.kind || ':' || z.code AS how
            FROM responsibility_zones z
           WHERE :have_zones AND l.department_id IS NULL AND l.area_id IS NOT NULL
             AND z.jurisdiction_id = :j AND z.department_id IS NOT NULL
             AND ST_Covers(z.geom, l.pt)
             AND z.valid_from <= l.reported_at
             AND (z.valid_to IS NULL OR z.valid_to > l.reported_at)
             AND (z.category_codes IS NULL OR z.category_codes && l.lineage)
           ORDER BY COALESCE((SELECT max(array_position(l.lineage, cc))
                                FROM unnest(z.category_codes) cc), 0) DESC,
                    ST_Area(z.geom), z.code
           LIMIT 1
      ) zr ON true
      LEFT JOIN LATERAL (
          SELECT r.department_id, 'rule:' || r.area_code || ':' || r.category_code AS how
            FROM routing_rules r JOIN _gg_anc an ON an.code = r.area_code
           WHERE :have_rules AND l.department_id IS NULL AND l.area_id IS NOT NULL
             AND r.jurisdiction_id = :j AND an.area_id = l.area_id
             AND r.category_code = ANY(l.lineage)
           ORDER BY array_position(l.lineage, CAST(r.category_code AS text)) DESC, an.up
           LIMIT 1
      ) rr ON true
), ins AS (""" + _INS_IN_FILE_ORDER + """\
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status, reported_at, closed_at
), events AS (
    INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data, at)
    SELECT id, :actor_id, 'import', NULL, status, 'historical case imported',
           jsonb_build_object('actor', CAST(:actor AS jsonb), 'reported_at', reported_at,
                              'closed_at', closed_at),
           now()
      FROM ins
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM routed WHERE area_id IS NOT NULL) AS located,
       (SELECT array_agg(row_no ORDER BY row_no) FROM routed WHERE area_id IS NULL) AS outside
""")

# Without external ids no row can conflict: a plain INSERT skips the speculative insertion
# that ON CONFLICT costs per row.
_LOAD_SQL_NO_KEYS = _LOAD_SQL.replace(
    "    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING\n", "")
assert _LOAD_SQL_NO_KEYS != _LOAD_SQL

# --- the fast path's load statement (the rest of the fast path: gis/bulk_fast.py) ----------
#
# The chunks go in with ``session_replication_role = replica`` (no triggers, no RI checks) and
# the inserted rows are kept in ``_gg_new``; once per import ``gis.bulk_fast`` locks the
# referenced rows and writes every derived table from it.

_INS_IN_SPACE_ORDER = """
    INSERT INTO cases (id, jurisdiction_id, category_id, channel, urgency, description,
                       area_id, department_id, status, reported_at, due_at, closed_at,
                       satisfaction, idempotency_key, routed_by, geom)
    SELECT * FROM (
        SELECT nextval('cases_id_seq'), r.* FROM (
            SELECT :j, category_id, channel, urgency, description, area_id, dep_id, status,
                   reported_at, due_at, closed_at, satisfaction,
                   CASE WHEN ext_key IS NULL THEN NULL ELSE :key_prefix || ext_key END,
                   routed_by, geom
              FROM routed WHERE area_id IS NOT NULL
             ORDER BY row_no) r
        OFFSET 0) n
     ORDER BY n.geom
"""

_NEW_COLUMNS = ("id", "jurisdiction_id", "category_id", "urgency", "status", "reported_at",
                "due_at", "closed_at", "area_id", "department_id", "satisfaction", "geom")

_CREATE_NEW = """
CREATE TEMP TABLE IF NOT EXISTS _gg_new (
    id bigint, jurisdiction_id integer, category_id integer, urgency smallint, status text,
    reported_at timestamptz, due_at timestamptz, closed_at timestamptz, area_id bigint,
    department_id integer, satisfaction smallint, geom geometry
) ON COMMIT DROP
"""

# Ids in file order (as on the trigger path), rows written in spatial order: the GiST index on
# cases.geom is filled page by page instead of at random (half the insert time of a chunk).
# Only here: on the trigger path the insertion order is the order of the live-feed items.
_LOAD_SQL_FAST = _LOAD_SQL.replace(_INS_IN_FILE_ORDER, _INS_IN_SPACE_ORDER).replace(
    "    RETURNING id, status, reported_at, closed_at\n), events AS (",
    f"    RETURNING {', '.join(_NEW_COLUMNS)}\n"
    f"), kept AS (\n    INSERT INTO _gg_new ({', '.join(_NEW_COLUMNS)})"
    f" SELECT {', '.join(_NEW_COLUMNS)} FROM ins\n), events AS (")
assert _LOAD_SQL_FAST != _LOAD_SQL
_LOAD_SQL_FAST_NO_KEYS = _LOAD_SQL_FAST.replace(
    "    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING\n", "")
assert _LOAD_SQL_FAST_NO_KEYS != _LOAD_SQL_FAST

# Imports smaller than this many point rows look grids up in SQL; larger ones load the
# AreaIndex once (a second or two for 20,000 grids) and assign in memory.
INDEX_MIN_ROWS = 5_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _context(conn: Connection, jurisdiction_id: int, default_crs: str | int | None,
             calendar_settings: CalendarSettings | None, now: datetime) -> _Context:
    cats: dict[str, dict[str, Any]] = {}
    rows = conn.execute(text(
        """
        WITH RECURSIVE lin AS (
            SELECT id, code, parent_id, ARRAY[CAST(code AS text)] AS lineage FROM categories
             WHERE parent_id IS NULL
            UNION ALL
            SELECT c.id, c.code, c.parent_id, lin.lineage || CAST(c.code AS text)
              FROM categories c JOIN lin ON c.parent_id = lin.id
        )
        SELECT k.id, k.code, k.urgency, k.deadline_value, k.deadline_unit, k.active,
               k.department_id, lin.lineage,
               NOT EXISTS (SELECT 1 FROM categories ch WHERE ch.parent_id = k.id) AS leaf
          FROM categories k JOIN lin ON lin.id = k.id
        """)).mappings()
    for r in rows:
        cats[r["code"]] = dict(r)
    # Default department: the category's own or its nearest ancestor's (as routing does).
    for cat in cats.values():
        cat["route_dep"] = cat["route_how"] = None
        for code in reversed(cat["lineage"]):
            owner = cats.get(code)
            if owner is not None and owner["department_id"] is not None:
                cat["route_dep"], cat["route_how"] = owner["department_id"], f"category:{code}"
                break
    deps = {str(c): int(i) for c, i in conn.execute(text("SELECT code, id FROM departments"))}
    calendar = load_calendar(conn, jurisdiction_id, calendar_settings)
    return _Context(cats, deps, calendar, calendar.zone,
                    crs_mod.parse_crs(default_crs), now)


def _pg_array(values: list[str]) -> str:
    return "{" + ",".join('"' + v.replace('"', '\\"') + '"' for v in values) + "}"


@dataclass
class _Grids:
    """The in-memory grid lookup of one import: valid for cases reported at or after
    ``since_us`` (the last boundary change), when the grids in force are the current ones."""

    index: AreaIndex
    since_us: int


def _load_grids(conn: Connection, jurisdiction_id: int) -> _Grids | None:
    last_change = conn.execute(text(
        "SELECT max(GREATEST(p.valid_from, COALESCE(p.valid_to, p.valid_from)))"
        " FROM area_parts p JOIN areas a ON a.id = p.area_id WHERE a.jurisdiction_id = :j"),
        {"j": jurisdiction_id}).scalar()
    if last_change is None:
        return None
    index = AreaIndex.load(conn, at=last_change, jurisdiction_id=jurisdiction_id)
    if len(index) == 0:
        return None
    return _Grids(index, (last_change - _EPOCH) // _MICRO)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _finish(rows: list[tuple[int, dict[str, Any]]], calendar: WorkingCalendar,
            grids: _Grids | None) -> None:
    """Chunk-wide work on checked rows: deadlines from the calendar, grids from the index."""
    pending: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for _, v in rows:
        if v["deadline"] is not None:
            pending.setdefault(v["deadline"], []).append(v)
    for (value, unit), group in pending.items():
        due = calendar.add_many(np.fromiter((_us(v["reported_at"]) for v in group),
                                            dtype=np.int64, count=len(group)), value, unit)
        for v, us in zip(group, due.tolist(), strict=True):
            v["due_at"] = _EPOCH + timedelta(microseconds=us)
    if grids is None:
        return
    points = [v for _, v in rows
              if v["wkt"] is None and _us(v["reported_at"]) >= grids.since_us]
    if not points:
        return
    ids = grids.index.assign_ids(np.fromiter((v["lon"] for v in points), dtype=np.float64,
                                             count=len(points)),
                                 np.fromiter((v["lat"] for v in points), dtype=np.float64,
                                             count=len(points)))
    for v, area_id in zip(points, ids.tolist(), strict=True):
        if area_id >= 0:  # outside every grid: SQL looks again (any level) and reports it
            v["grid_id"] = area_id


def _copy_text(rows: list[tuple[int, dict[str, Any]]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row_no, v in rows:
        writer.writerow([
            row_no, v["category_id"], _pg_array(v["lineage"]), v["urgency"],
            v["department_id"] if v["department_id"] is not None else "", v["channel"],
            v["status"], v["description"], v["reported_at"].isoformat(),
            v["closed_at"].isoformat() if v["closed_at"] else "",
            v["due_at"].isoformat() if v["due_at"] else "",
            v["satisfaction"] if v["satisfaction"] is not None else "",
            v["ext"] if v["ext"] is not None else "",
            repr(v["lon"]) if v["lon"] is not None else "",
            repr(v["lat"]) if v["lat"] is not None else "",
            v["wkt"] or "", v["srid"],
            v.get("grid_id", ""),
            v["cat_dep"] if v["cat_dep"] is not None else "", v["cat_how"] or "",
        ])
    return buf.getvalue()


def _copy(conn: Connection, payload: str) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        # Empty unquoted fields are NULL; descriptions are never NULL.
        cur.copy_expert(  # type: ignore[attr-defined]
            f"COPY _gg_bulk ({', '.join(_STAGE_COLUMNS)}) FROM STDIN WITH (FORMAT csv,"
            " FORCE_NOT_NULL (description))", io.StringIO(payload))
    finally:
        cur.close()


@dataclass
class _Chunk:
    rows: list[tuple[int, dict[str, Any]]]
    errors: list[dict[str, Any]]
    read: int
    payload: str = ""


def _checked(rows: Iterable[tuple[int, dict[str, Any]]], ctx: _Context,
             chunk_size: int) -> Iterator[_Chunk]:
    """Checked rows in chunks of ``chunk_size`` valid rows, with the invalid ones' errors."""
    chunk = _Chunk([], [], 0)
    for row_no, raw in rows:
        chunk.read += 1
        try:
            chunk.rows.append((row_no, _check_row(raw, ctx)))
        except _RowError as exc:
            chunk.errors.append({"row": row_no, "field": exc.field, "message": exc.message})
        if len(chunk.rows) >= chunk_size:
            yield chunk
            chunk = _Chunk([], [], 0)
    if chunk.read:
        yield chunk


class _Pipeline:
    """Prepares chunks (checks, deadlines, grids, COPY text) in a thread while the caller's
    thread runs the previous chunk's SQL: both cores work (psycopg2 releases the GIL while
    the server works). At most ``depth`` prepared chunks wait, so memory stays bounded."""

    _DONE = object()

    def __init__(self, chunks: Iterator[_Chunk], prepare: Any, depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks, prepare),
                                        name="gridgov-bulk", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, chunks: Iterator[_Chunk], prepare: Any) -> None:
        try:
            for chunk in chunks:
                prepare(chunk)
                if not self._put(chunk):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            self._put(exc)
            return
        self._put(self._DONE)

    def __iter__(self) -> Iterator[_Chunk]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def import_cases(
    conn: Connection,
    rows: Iterable[tuple[int, dict[str, Any]]],
    *,
    principal: Principal,
    jurisdiction_id: int | None = None,
    strict: bool = False,
    crs: str | int | None = None,
    chunk_size: int = 20_000,
    calendar_settings: CalendarSettings | None = None,
    progress: Any = None,
    now: datetime | None = None,
    use_index: bool | None = None,
    fast: bool | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Import (row number, fields) rows as cases; returns counts and per-row errors.

    ``progress``: an object with ``update(n)`` (a tqdm bar), advanced by the rows read.
    ``use_index``: assign grids with the in-memory :class:`~gis.index.AreaIndex` (True), in SQL
    (False), or the index when the first chunk holds at least ``INDEX_MIN_ROWS`` point rows
    (None). Both give the same grid (tests compare them).
    ``fast``: the fast load path (see ``fast_load_refusal``) when it is available (None), never
    (False), or always (True: ``RuntimeError`` when it is not available). Both paths leave
    the same cases, events and derived tables (tests compare them).
    ``timings``: a dict that receives seconds spent per database phase (for the benchmark).
    """
    from gis.areas import default_jurisdiction

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    jid = jurisdiction_id if jurisdiction_id is not None else default_jurisdiction(conn)
    at = (now or datetime.now(UTC)).astimezone(UTC)
    ctx = _context(conn, jid, crs, calendar_settings, at)
    have_rules, have_zones = conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM routing_rules WHERE jurisdiction_id = :j),"
        " EXISTS (SELECT 1 FROM responsibility_zones WHERE jurisdiction_id = :j"
        " AND department_id IS NOT NULL)"), {"j": jid}).one()
    conn.execute(text(_CREATE_STAGE))
    conn.execute(text("TRUNCATE _gg_bulk"))
    # Empty (and cheap) when the jurisdiction has no category × area rules.
    conn.execute(text("DROP TABLE IF EXISTS _gg_anc"))
    conn.execute(text(_CREATE_ANCESTORS), {"j": jid})
    refusal = None if fast is False else fast_load_refusal(conn)
    if fast and refusal is not None:
        raise RuntimeError(f"the fast bulk load path is not available: {refusal}")
    use_fast = fast is not False and refusal is None
    if timings is None:
        timings = {}
    timings["fast path"] = float(use_fast)
    prior_role = None
    if use_fast:
        conn.execute(text(_CREATE_NEW))
        conn.execute(text("TRUNCATE _gg_new"))
        prior_role = conn.execute(text("SELECT current_setting('session_replication_role')")
                                  ).scalar()
    report = BulkReport()
    params = {"j": jid, "actor_id": principal.user_id, "have_rules": bool(have_rules),
              "have_zones": bool(have_zones),
              "actor": json.dumps(principal.as_actor()), "key_prefix": f"import:{jid}:"}

    chunks = _checked(rows, ctx, chunk_size)
    first = next(chunks, None)
    if first is None:
        return report.as_dict(strict)
    grids = None
    if use_index or (use_index is None
                     and sum(v["wkt"] is None for _, v in first.rows) >= INDEX_MIN_ROWS):
        grids = _load_grids(conn, jid)

    def prepare(chunk: _Chunk) -> None:
        _finish(chunk.rows, ctx.calendar, grids)
        chunk.payload = _copy_text(chunk.rows) if chunk.rows else ""

    def load(chunk: _Chunk) -> None:
        report.rows += chunk.read
        report.errors.extend(chunk.errors)
        if progress is not None:
            progress.update(chunk.read)
        if not chunk.rows:
            return
        started = time.perf_counter()
        _copy(conn, chunk.payload)
        keyed = any(v["ext"] is not None for _, v in chunk.rows)
        if use_fast:
            sql = _LOAD_SQL_FAST if keyed else _LOAD_SQL_FAST_NO_KEYS
        else:
            sql = _LOAD_SQL if keyed else _LOAD_SQL_NO_KEYS
        res = conn.execute(text(sql), params).one()
        conn.execute(text("TRUNCATE _gg_bulk"))
        timings["insert chunks"] = (timings.get("insert chunks", 0.0)
                                    + time.perf_counter() - started)
        report.inserted += int(res.inserted)
        report.skipped_existing += int(res.located) - int(res.inserted)
        for row_no in res.outside or []:
            report.errors.append({"row": row_no, "field": "location",
                                  "message": "outside every grid in force at reported_at"})

    prepare(first)
    if use_fast:
        # No triggers and no RI checks for this transaction's inserts until restore_role.
        conn.execute(text("SELECT set_config('session_replication_role', 'replica', true)"))
    pipeline = _Pipeline(chunks, prepare)
    try:
        load(first)
        for chunk in pipeline:
            load(chunk)
    finally:
        pipeline.close()
        if use_fast:
            restore_role(conn, prior_role)
    report.errors.sort(key=lambda e: e["row"])
    if use_fast and not (strict and report.errors):
        steps = ("lock references", *DERIVED_STEPS)

        def finishing(name: str) -> None:
            # The rows are all in: the bar stays full while the derived tables are written
            # (a minute for a million rows), so it says which of them it is at.
            if progress is not None and hasattr(progress, "set_postfix_str"):
                progress.set_postfix_str(
                    f"finishing {steps.index(name) + 1}/{len(steps)}: {name}")

        finishing("lock references")
        started = time.perf_counter()
        lock_references(conn, principal.user_id)
        timings["lock references"] = time.perf_counter() - started
        assert prior_role is not None
        apply_derived(conn, prior_role, timings, on_step=finishing)
    if strict and report.errors:
        raise ImportFailed(f"{len(report.errors)} of {report.rows} rows are invalid; nothing"
                           " was imported (strict)", report.errors)
    return report.as_dict(strict)


__all__ = ["INDEX_MIN_ROWS", "BulkReport", "count_rows", "fast_load_refusal", "import_cases",
           "read_csv", "read_file", "read_geojson"]

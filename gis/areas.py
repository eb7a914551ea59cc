"""Areas: jurisdictions and their level hierarchy, versioned polygons, lookup of points.

A point on an edge shared by two grids counts as inside both (``ST_Covers``); it is always
assigned to the one with the smallest code, so every lookup path gives the same single grid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class LevelSpec:
    """One level of a hierarchy, top first: e.g. district (6 digits), street (+3)..."""

    name: str
    code_digits: int
    target_households: int | None = None
    target_population: int | None = None
    target_area_m2: float | None = None
    tolerance: float = 0.1


DEFAULT_LEVELS: tuple[LevelSpec, ...] = (
    LevelSpec("district", 6),
    LevelSpec("street", 3),
    LevelSpec("community", 3, target_households=2000),
    LevelSpec("grid", 2, target_households=200, target_population=600),
)


@dataclass
class AreaRow:
    """An area to insert; ``parent_code`` links it to an area of the level above."""

    code: str
    name: str
    level: int
    geom: BaseGeometry
    parent_code: str | None = None
    grid_type: str | None = None
    households: int = 0
    population: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def create_jurisdiction(
    conn: Connection,
    *,
    code: str,
    name: str,
    local_srid: int,
    levels: Sequence[LevelSpec] = DEFAULT_LEVELS,
    timezone: str = "UTC",
) -> int:
    """Create a jurisdiction with its ordered levels and return its id."""
    jid = conn.execute(
        text(
            "INSERT INTO jurisdictions (code, name, local_srid, timezone) "
            "VALUES (:code, :name, :srid, :tz) RETURNING id"
        ),
        {"code": code, "name": name, "srid": local_srid, "tz": timezone},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO area_levels (jurisdiction_id, rank, name, code_digits, target_households,"
            " target_population, target_area_m2, tolerance) VALUES (:j, :rank, :name, :digits,"
            " :th, :tp, :ta, :tol)"
        ),
        [
            {"j": jid, "rank": rank, "name": lv.name, "digits": lv.code_digits,
             "th": lv.target_households, "tp": lv.target_population, "ta": lv.target_area_m2,
             "tol": lv.tolerance}
            for rank, lv in enumerate(levels)
        ],
    )
    return int(jid)


def levels(conn: Connection, jurisdiction_id: int | None = None) -> list[dict[str, Any]]:
    """The level table (of one jurisdiction, or of the first one)."""
    jid = jurisdiction_id if jurisdiction_id is not None else default_jurisdiction(conn)
    rows = conn.execute(
        text("SELECT rank, name, code_digits, target_households, target_population,"
             " target_area_m2, tolerance FROM area_levels WHERE jurisdiction_id = :j"
             " ORDER BY rank"),
        {"j": jid},
    ).mappings()
    return [dict(r) for r in rows]


def default_jurisdiction(conn: Connection) -> int:
    jid = conn.execute(text("SELECT min(id) FROM jurisdictions")).scalar()
    if jid is None:
        raise NotFound("no jurisdiction loaded yet: run `gridgov demo` or `gridgov import`")
    return int(jid)


def level_rank(conn: Connection, level: str | int, jurisdiction_id: int | None = None) -> int:
    """Resolve a level given by name ("grid") or rank (3) to its rank; 422 if unknown."""
    table = levels(conn, jurisdiction_id)
    for row in table:
        if str(level) in (row["name"], str(row["rank"])):
            return int(row["rank"])
    names = ", ".join(r["name"] for r in table)
    raise InvalidInput(f"unknown level {level!r}; levels are: {names}", field="level")


def insert_areas(
    conn: Connection,
    jurisdiction_id: int,
    rows: Iterable[AreaRow],
    *,
    valid_from: datetime | None = None,
) -> dict[str, int]:
    """Insert areas level by level (parents first); returns {code: id} of the inserted rows.

    Parents are found among the rows given and, failing that, among the current areas.
    """
    by_level: dict[int, list[AreaRow]] = {}
    for row in rows:
        by_level.setdefault(row.level, []).append(row)
    ids: dict[str, int] = {}
    for level in sorted(by_level):
        batch = by_level[level]
        missing = {r.parent_code for r in batch if r.parent_code and r.parent_code not in ids}
        if missing:
            found = conn.execute(
                text("SELECT code, id FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL"
                     " AND code = ANY(:codes)"),
                {"j": jurisdiction_id, "codes": sorted(missing)},
            ).all()
            ids.update({c: int(i) for c, i in found})
            unknown = missing - set(ids)
            if unknown:
                raise InvalidInput(f"unknown parent codes: {sorted(unknown)[:10]}",
                                   field="parent_code")
        # One set-based INSERT per level (unnest of arrays), not a round trip per row.
        conn.execute(
            text(
                "INSERT INTO areas (jurisdiction_id, level, code, name, parent_id, grid_type,"
                " households, population, valid_from, geom)"
                " SELECT :j, :level, t.code, t.name, t.parent, t.grid_type, t.hh, t.pop,"
                " COALESCE(CAST(:vf AS timestamptz), now()),"
                " ST_Multi(ST_SetSRID(ST_GeomFromWKB(t.wkb), 4326))"
                " FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]),"
                " CAST(:parents AS bigint[]), CAST(:grid_types AS text[]),"
                " CAST(:hh AS integer[]), CAST(:pop AS integer[]), CAST(:wkbs AS bytea[]))"
                " AS t(code, name, parent, grid_type, hh, pop, wkb)"
            ),
            {
                "j": jurisdiction_id, "level": level, "vf": valid_from,
                "codes": [r.code for r in batch],
                "names": [r.name for r in batch],
                "parents": [ids.get(r.parent_code) if r.parent_code else None for r in batch],
                "grid_types": [r.grid_type for r in batch],
                "hh": [int(r.households) for r in batch],
                "pop": [int(r.population) for r in batch],
                "wkbs": [shapely.to_wkb(r.geom, include_srid=False) for r in batch],
            },
        )
        found = conn.execute(
            text("SELECT code, id FROM areas WHERE jurisdiction_id = :j AND level = :level"
                 " AND valid_to IS NULL AND code = ANY(:codes)"),
            {"j": jurisdiction_id, "level": level, "codes": [r.code for r in batch]},
        ).all()
        ids.update({c: int(i) for c, i in found})
    return ids


def refresh_counts(conn: Connection, jurisdiction_id: int) -> None:
    """Recompute households/population of every current area from the buildings inside it.

    Each building counts once, in the grid its point falls in (smallest code on a shared edge);
    parents sum their children, so totals add up at every level.
    """
    bottom = conn.execute(
        text("SELECT max(level) FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL"),
        {"j": jurisdiction_id},
    ).scalar()
    if bottom is None:
        return
    conn.execute(
        text(
            """
            WITH assigned AS (
                SELECT DISTINCT ON (b.id) b.id, a.id AS area_id, b.households, b.residents
                  FROM buildings b
                  JOIN area_parts p ON ST_Covers(p.geom, b.pt)
                  JOIN areas a ON a.id = p.area_id
                 WHERE b.jurisdiction_id = :j AND a.jurisdiction_id = :j
                   AND a.valid_to IS NULL AND a.level = :bottom
                 ORDER BY b.id, a.code
            ), sums AS (
                SELECT area_id, sum(households) AS hh, sum(residents) AS pop
                  FROM assigned GROUP BY area_id
            )
            UPDATE areas a SET households = COALESCE(s.hh, 0), population = COALESCE(s.pop, 0)
              FROM areas a2 LEFT JOIN sums s ON s.area_id = a2.id
             WHERE a.id = a2.id AND a.jurisdiction_id = :j AND a.valid_to IS NULL
               AND a.level = :bottom
            """
        ),
        {"j": jurisdiction_id, "bottom": bottom},
    )
    for level in range(int(bottom) - 1, -1, -1):
        conn.execute(
            text(
                """
                UPDATE areas p SET households = s.hh, population = s.pop
                  FROM (SELECT parent_id, sum(households) AS hh, sum(population) AS pop
                          FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL
                           AND level = :child GROUP BY parent_id) s
                 WHERE p.id = s.parent_id
                """
            ),
            {"j": jurisdiction_id, "child": level + 1},
        )


_VALID_AT = (
    "{t}.valid_from <= COALESCE(CAST(:at AS timestamptz), now())"
    " AND ({t}.valid_to IS NULL OR {t}.valid_to > COALESCE(CAST(:at AS timestamptz), now()))"
)

_LOCATE_SQL = f"""
WITH RECURSIVE hit AS (
    SELECT a.id
      FROM area_parts p JOIN areas a ON a.id = p.area_id
     WHERE ST_Covers(p.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
       AND {_VALID_AT.format(t="p")}
     ORDER BY p.level DESC, a.code
     LIMIT 1
), chain AS (
    SELECT a.id, a.parent_id, a.level, a.code, a.name, a.grid_type, a.households, a.population,
           a.area_m2, a.valid_from, a.valid_to
      FROM areas a JOIN hit ON hit.id = a.id
    UNION ALL
    SELECT a.id, a.parent_id, a.level, a.code, a.name, a.grid_type, a.households, a.population,
           a.area_m2, a.valid_from, a.valid_to
      FROM areas a JOIN chain c ON a.id = c.parent_id
)
SELECT c.id, c.level, l.name AS level_name, c.code, c.name, c.grid_type, c.households,
       c.population, c.area_m2, c.valid_from, c.valid_to
  FROM chain c
  JOIN areas a ON a.id = c.id
  JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = c.level
 ORDER BY c.level
"""

_ZONES_SQL = f"""
SELECT z.kind, z.code, z.name, z.organisation, d.name AS department
  FROM responsibility_zones z LEFT JOIN departments d ON d.id = z.department_id
 WHERE ST_Covers(z.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
   AND {_VALID_AT.format(t="z")}
 ORDER BY z.kind, z.code
"""


def check_lonlat(lon: float, lat: float) -> None:
    """422-style errors for coordinates that cannot be WGS84 lon/lat."""
    import math

    for name, value, bound in (("lon", lon, 180.0), ("lat", lat, 90.0)):
        if not math.isfinite(value):
            raise InvalidInput(f"{name} must be a finite number, not {value}", field=name)
        if abs(value) > bound:
            hint = " (are lon and lat swapped?)" if name == "lat" and abs(lon) <= 90 else ""
            raise InvalidInput(f"{name}={value} is outside [-{bound:g}, {bound:g}]{hint}",
                               field=name)


def locate(conn: Connection, lon: float, lat: float, *, at: datetime | None = None
           ) -> dict[str, Any]:
    """The chain of areas containing a WGS84 point, top level → grid, plus responsibility zones.

    Raises ``NotFound`` when the point is outside every area in force at ``at`` (default now).
    """
    check_lonlat(lon, lat)
    params = {"lon": lon, "lat": lat, "at": at}
    chain = [dict(r) for r in conn.execute(text(_LOCATE_SQL), params).mappings()]
    if not chain:
        when = f" at {at.isoformat()}" if at else ""
        raise NotFound(f"point ({lon}, {lat}) is outside every area{when}", field="lon")
    zones = [dict(r) for r in conn.execute(text(_ZONES_SQL), params).mappings()]
    areas = [
        {"level": r["level_name"], "rank": r["level"], "code": r["code"], "name": r["name"],
         "grid_type": r["grid_type"], "households": r["households"],
         "population": r["population"], "area_m2": round(r["area_m2"], 1)}
        for r in chain
    ]
    return {"lon": lon, "lat": lat, "areas": areas, "zones": zones}


def list_areas(
    conn: Connection,
    *,
    level: str | int | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    at: datetime | None = None,
    parent_code: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Areas in force at ``at`` (default now), as dicts with a GeoJSON ``geometry`` string."""
    where = [_VALID_AT.format(t="a")]
    params: dict[str, Any] = {"at": at, "limit": limit}
    if level is not None:
        params["level"] = level_rank(conn, level)
        where.append("a.level = :level")
    if bbox is not None:
        check_bbox(bbox)
        params.update(dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True)))
        where.append("a.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
    if parent_code is not None:
        params["parent"] = parent_code
        where.append("pa.code = :parent")
    sql = f"""
        SELECT a.id, a.code, a.name, a.level, l.name AS level_name, pa.code AS parent_code,
               a.grid_type, a.households, a.population, a.area_m2, a.valid_from, a.valid_to,
               a.version, ST_AsGeoJSON(a.geom, 7) AS geometry
          FROM areas a
          JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
          LEFT JOIN areas pa ON pa.id = a.parent_id
         WHERE {' AND '.join(where)}
         ORDER BY a.level, a.code
         LIMIT :limit
    """
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def get_area(conn: Connection, code: str, *, at: datetime | None = None) -> dict[str, Any]:
    rows = conn.execute(
        text(
            f"""
            SELECT a.id, a.code, a.name, a.level, l.name AS level_name, pa.code AS parent_code,
                   a.grid_type, a.households, a.population, a.area_m2, a.valid_from,
                   a.valid_to, a.version, ST_AsGeoJSON(a.geom, 7) AS geometry,
                   (SELECT array_agg(c.code ORDER BY c.code) FROM areas c
                     WHERE c.parent_id = a.id AND {_VALID_AT.format(t="c")}) AS children
              FROM areas a
              JOIN area_levels l ON l.jurisdiction_id = a.jurisdiction_id AND l.rank = a.level
              LEFT JOIN areas pa ON pa.id = a.parent_id
             WHERE a.code = :code AND {_VALID_AT.format(t="a")}
            """
        ),
        {"code": code, "at": at},
    ).mappings().all()
    if not rows:
        raise NotFound(f"no area with code {code!r}" + (f" at {at.isoformat()}" if at else ""),
                       field="code")
    return dict(rows[0])


def check_bbox(bbox: Sequence[float]) -> None:
    if len(bbox) != 4:
        raise InvalidInput("bbox must be minlon,minlat,maxlon,maxlat", field="bbox")
    x0, y0, x1, y1 = bbox
    for v in bbox:
        if v != v or v in (float("inf"), float("-inf")):
            raise InvalidInput("bbox values must be finite numbers", field="bbox")
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise InvalidInput(f"bbox {list(bbox)} is outside lon/lat range", field="bbox")
    if x0 > x1 or y0 > y1:
        raise InvalidInput(f"bbox {list(bbox)} has min greater than max", field="bbox")

"""Features of a ``TableSource`` as GeoJSON, for OGC API Features: pages, single items, extents.

The JSON is built by PostgreSQL (``json_build_object``), so a page is one round trip and one
string; only allow-listed properties (``TableSource.props``) appear. Pages are ordered by id,
so ``offset`` paging is stable while the data does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import Connection, TextClause, text

from gis import readpool
from gis.crs import WGS84
from gis.errors import InvalidInput
from gis.tiles import Read, TableSource, bind_value


@dataclass(frozen=True)
class FeatureQuery:
    """Which features: a lon/lat ``bbox``, a time interval (either end open), filter values."""

    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)


def _geojson(source: TableSource) -> str:
    geom = f"t.{source.geom}"
    if source.srid != WGS84:
        geom = f"ST_Transform({geom}, {WGS84})"
    pairs = ", ".join(f"'{p.name}', {p.sql}" for p in source.props)
    return (f"json_build_object('type', 'Feature', 'id', {source.id_sql},"
            f" 'geometry', CAST(ST_AsGeoJSON({geom}, 7) AS json),"
            f" 'properties', json_build_object({pairs}))")


def _conditions(source: TableSource, names: frozenset[str], has_bbox: bool,
                has_start: bool, has_end: bool) -> str:
    conditions = [f"({source.where})"]
    if has_bbox:
        envelope = "ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        if source.srid != WGS84:
            envelope = f"ST_Transform({envelope}, {source.srid})"
        conditions.append(f"t.{source.geom} && {envelope}")
        conditions.append(f"ST_Intersects(t.{source.geom}, {envelope})")
    if (has_start or has_end) and source.time_sql is None:
        raise InvalidInput(f"{source.table} has no temporal property", field="datetime")
    if has_start:
        conditions.append(f"{source.time_sql} >= :t0")
    if has_end:
        conditions.append(f"{source.time_sql} <= :t1")
    conditions += [f"({source.filters[name]})" for name in sorted(names)]
    return " AND ".join(conditions)


@lru_cache(maxsize=256)
def _page_sql(source: TableSource, names: frozenset[str], has_bbox: bool, has_start: bool,
              has_end: bool) -> tuple[TextClause, TextClause]:
    where = _conditions(source, names, has_bbox, has_start, has_end)
    # One scan finds the page's ids and the total; JSON is built for the page's rows only.
    page = text(f"""
        SELECT coalesce(string_agg(CAST({_geojson(source)} AS text), ',' ORDER BY q.fid), ''),
               count(*), max(q.total)
          FROM (SELECT {source.id_sql} AS fid, count(*) OVER () AS total
                  FROM {source.table} t {source.joins}
                 WHERE {where}
                 ORDER BY {source.id_sql}
                 LIMIT :limit OFFSET :offset) q
          JOIN {source.table} t ON {source.id_sql} = q.fid
          {source.joins}
    """)
    count = text(f"SELECT count(*) FROM {source.table} t {source.joins} WHERE {where}")
    return page, count


def _params(source: TableSource, query: FeatureQuery) -> dict[str, Any]:
    unknown = set(query.filters) - set(source.filters)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(f"{source.table} cannot be filtered by {name!r}", field=name)
    params: dict[str, Any] = dict(source.where_params)
    if query.bbox is not None:
        params.update(zip(("x0", "y0", "x1", "y1"), query.bbox, strict=True))
    params["t0"], params["t1"] = query.start, query.end
    params.update({f"f_{name}": bind_value(value) for name, value in query.filters.items()})
    return params


def page_reads(source: TableSource, query: FeatureQuery, *, limit: int, offset: int = 0
               ) -> tuple[Read, Read]:
    """The statements of ``features_page``: the page (features, count, total) and the count
    run when an offset past the end returns no row to carry the total."""
    page_sql, count_sql = _page_sql(source, frozenset(query.filters), query.bbox is not None,
                                    query.start is not None, query.end is not None)
    params = _params(source, query)
    return Read(page_sql, {**params, "limit": limit, "offset": offset}), Read(count_sql, params)


def _page(row: Any) -> tuple[str, int, Any]:
    features, returned, total = row
    return features or "", int(returned), total


def features_page(conn: Connection, source: TableSource, query: FeatureQuery, *, limit: int,
                  offset: int = 0, count: bool = True) -> tuple[str, int, int | None]:
    """``(features, number_returned, number_matched)``: ``features`` is the comma-joined GeoJSON
    Features of one page (put it between ``[`` and ``]``), ``number_matched`` the total (None
    unless ``count``)."""
    page, counting = page_reads(source, query, limit=limit, offset=offset)
    features, returned, total = _page(conn.execute(page.clause, page.params).one())
    matched: int | None = None
    if count:
        matched = int(total) if total is not None else int(counting.run(conn))
    return features, returned, matched


async def features_page_async(con: asyncpg.Connection, source: TableSource,
                              query: FeatureQuery, *, limit: int, offset: int = 0,
                              count: bool = True) -> tuple[str, int, int | None]:
    """``features_page`` on a connection of the read pool (``gis.readpool``)."""
    page, counting = page_reads(source, query, limit=limit, offset=offset)
    features, returned, total = _page(await readpool.fetchrow(con, page))
    matched: int | None = None
    if count:
        matched = int(total) if total is not None else int(
            await readpool.fetchval(con, counting))
    return features, returned, matched


@lru_cache(maxsize=64)
def _item_sql(source: TableSource) -> TextClause:
    return text(f"SELECT CAST({_geojson(source)} AS text) FROM {source.table} t {source.joins}"
                f" WHERE ({source.where}) AND {source.id_sql} = :fid")


def feature(conn: Connection, source: TableSource, fid: int) -> str | None:
    """One GeoJSON Feature (text) by id, or None when there is none (or it is not public)."""
    return conn.execute(_item_sql(source), {**source.where_params, "fid": fid}).scalar()


def temporal_extent(conn: Connection, source: TableSource
                    ) -> tuple[datetime | None, datetime | None] | None:
    if source.time_sql is None:
        return None
    row = conn.execute(
        text(f"SELECT min({source.time_sql}), max({source.time_sql})"
             f" FROM {source.table} t WHERE ({source.where})"),
        dict(source.where_params),
    ).one()
    return row[0], row[1]


def parse_interval(value: str | None) -> tuple[datetime | None, datetime | None]:
    """OGC ``datetime``: an instant, or ``start/end`` with ``..`` (or empty) for an open end."""
    if value is None or value.strip() == "":
        return None, None

    def one(part: str) -> datetime | None:
        part = part.strip()
        if part in ("", ".."):
            return None
        try:
            parsed = datetime.fromisoformat(part.replace("z", "Z"))
        except ValueError as exc:
            raise InvalidInput(f"datetime must be RFC 3339 (or start/end), got {part[:60]!r}",
                               field="datetime") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed

    if "/" in value:
        parts = value.split("/")
        if len(parts) != 2:
            raise InvalidInput("datetime interval is start/end", field="datetime")
        start, end = one(parts[0]), one(parts[1])
        if start and end and start > end:
            raise InvalidInput("datetime interval ends before it starts", field="datetime")
        return start, end
    instant = one(value)
    if instant is None:
        raise InvalidInput("datetime instant cannot be open", field="datetime")
    return instant, instant


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """``minlon,minlat,maxlon,maxlat`` (or the 6-number 3D form, heights ignored)."""
    if value is None or value.strip() == "":
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise InvalidInput(f"bbox must have 4 (or 6) numbers, got {value[:80]!r}", field="bbox")
    try:
        numbers: Sequence[float] = [float(p) for p in parts]
    except ValueError as exc:
        raise InvalidInput(f"bbox must be numbers, got {value[:80]!r}", field="bbox") from exc
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    x0, y0, x1, y1 = numbers
    if any(v != v or abs(v) == float("inf") for v in numbers):
        raise InvalidInput("bbox values must be finite", field="bbox")
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise InvalidInput(f"bbox {list(numbers)} is outside lon/lat range", field="bbox")
    if y0 > y1:
        raise InvalidInput(f"bbox {list(numbers)} has south above north", field="bbox")
    if x0 > x1:
        raise InvalidInput(f"bbox {list(numbers)} crosses the antimeridian (unsupported)",
                           field="bbox")
    return x0, y0, x1, y1

"""Nearest responders or facilities to a point, by straight line or by road with an ETA.

Straight: KNN (``<->`` on the GiST index) for candidates, ranked by geodesic metres.

Road: ranks by ETA on the road network (:mod:`gis.routing`): one bounded Dijkstra from the case
point over the reversed graph gives every candidate's travel time *to* the case (partial edges
at both ends, one-way streets respected, plus the off-road connectors at ``offroad_speed_kmh``).
The bound starts near twice the travel time of the k-th nearest by straight line and grows ×3
until k candidates are found within it (then no one outside it can beat them) or
``max_travel_s``. Only candidates within ``bound × fastest road speed`` of the case can arrive
within the bound, so only they are fetched (indexed box) and snapped (cached per position).

Every query carries a jurisdiction (the shard key): given, or the one whose areas cover the
point, or the one with a road within ``max_snap_m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from shapely.geometry import mapping
from sqlalchemy import Connection, TextClause, text

from gis import prepared, routing
from gis.areas import check_lonlat
from gis.dispatch import (
    ON_DUTY,
    DispatchSettings,
    as_utc,
    check_facility_type,
    check_k,
    check_skill,
    department_id,
    get_responder,
    utcnow,
)
from gis.errors import InvalidInput, NotFound

Mode = Literal["straight", "road"]

# PostgreSQL types of the parameters of the nearest statements (for ``PREPARE``).
_PARAM_TYPES: tuple[tuple[str, str], ...] = (
    ("lon", "float8"), ("lat", "float8"), ("max_road", "float8"), ("jid", "int4"),
    ("stale_s", "float8"), ("now", "timestamptz"), ("status", "text"), ("dept", "int4"),
    ("skill", "text"), ("type", "text"), ("rid", "int8"))


# The jurisdiction a point is in, as one scalar SQL expression: the one whose current areas
# cover it, else the one with a main-network road within :max_road metres (KNN on the GiST
# index, re-ranked by geodesic distance), else NULL.
_POINT = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
_JURISDICTION_SQL = f"""
COALESCE(
    (SELECT a.jurisdiction_id FROM area_parts p JOIN areas a ON a.id = p.area_id
      WHERE ST_Covers(p.geom, {_POINT}) AND p.valid_to IS NULL
      ORDER BY p.level, a.jurisdiction_id LIMIT 1),
    (SELECT n.jurisdiction_id FROM (
         SELECT e.jurisdiction_id, e.geom FROM road_edges e
          WHERE e.component = 0 OR e.component IS NULL
          ORDER BY e.geom <-> {_POINT} LIMIT 8) n
      WHERE ST_DWithin(n.geom::geography, {_POINT}::geography, :max_road)
      ORDER BY ST_Distance(n.geom::geography, {_POINT}::geography) LIMIT 1))
"""


def jurisdiction_of_point(conn: Connection, lon: float, lat: float, *,
                          max_road_m: float) -> int | None:
    """The jurisdiction a point is in: the one whose current areas cover it, else the one
    with a main-network road within ``max_road_m``; None when neither."""
    jid = conn.execute(text(f"SELECT {_JURISDICTION_SQL}"),
                       {"lon": lon, "lat": lat, "max_road": max_road_m}).scalar()
    return None if jid is None else int(jid)


# ---------------------------------------------------------------------------------------------
# Nearest


@dataclass(frozen=True)
class NearestQuery:
    """Parameters of a nearest query; ``skill`` filters responders, ``type`` facilities.

    ``direction`` (facilities only): ``to_point`` = travel from the facility to the point (a
    fire station responding), ``from_point`` = from the point to the facility (a shelter).
    """

    lon: float
    lat: float
    k: int = 5
    mode: Mode = "straight"
    status: str = "available"
    skill: str | None = None
    department: str | None = None
    type: str | None = None
    route: bool = False
    direction: Literal["to_point", "from_point"] = "to_point"
    jurisdiction_id: int | None = None


@dataclass(frozen=True)
class _Source:
    """What is being ranked: a table, its filters and its output columns."""

    table: str
    alias_cols: str
    joins: str
    where: list[str]
    params: dict[str, Any]
    noun: str


def _responder_source(conn: Connection, q: NearestQuery, settings: DispatchSettings,
                      now: datetime) -> _Source:
    if q.status not in (*ON_DUTY, "any"):
        if q.status == "off":
            raise InvalidInput("status 'off' cannot be searched: positions of off-duty "
                               "responders are not kept; use available, busy or any",
                               field="status")
        raise InvalidInput(f"unknown status {q.status!r}; use one of: available, busy, any",
                           field="status")
    check_skill(conn, q.skill)
    # "Fresh" is written as an expression of position_at, not `position_at >= :cutoff`: against
    # a literal cutoff the planner reads the column's histogram, which always lags behind live
    # positions (every fresh one is newer than the last ANALYZE), estimates ~0 fresh rows and
    # picks a sequential scan + sort over the KNN index scan — 3–8 ms instead of 0.2 ms with
    # 5,000 responders, growing with their number. An expression has no statistics, so the
    # estimate is the default and the KNN scan on the GiST index wins.
    where = ["t.geom IS NOT NULL",
             "t.position_at + make_interval(secs => :stale_s) >= CAST(:now AS timestamptz)"]
    params: dict[str, Any] = {"stale_s": float(settings.stale_after_s), "now": now}
    if q.status == "any":
        where.append("t.status IN ('available', 'busy')")
    else:
        where.append("t.status = :status")
        params["status"] = q.status
    dept = department_id(conn, q.department)
    if dept is not None:
        where.append("t.department_id = :dept")
        params["dept"] = dept
    if q.skill:
        where.append("CAST(:skill AS text) = ANY(t.skills)")
        params["skill"] = q.skill
    return _Source(
        table="responders",
        alias_cols="t.id, t.name, t.kind, d.code AS department, t.skills, t.status,"
                   " t.position_at",
        joins="LEFT JOIN departments d ON d.id = t.department_id",
        where=where, params=params, noun="responder")


def _facility_source(conn: Connection, q: NearestQuery) -> _Source:
    check_facility_type(conn, q.type)
    where: list[str] = ["true"]
    params: dict[str, Any] = {}
    if q.type:
        where.append("t.type = :type")
        params["type"] = q.type
    return _Source(
        table="facilities",
        alias_cols="t.id, t.name, t.type, t.capacity, t.hours, t.service_radius_m,"
                   " t.service_minutes",
        joins="", where=where, params=params, noun="facility")


# Degrees per metre, conservatively (the largest degree span a metric radius can cover).
_M_PER_DEG_LAT = 110_570.0
_M_PER_DEG_LON_EQ = 111_320.0


def expand_deg(lat: float, radius_m: float) -> tuple[float, float]:
    dy = radius_m / _M_PER_DEG_LAT
    top = min(abs(lat) + dy, 89.9)
    dx = radius_m / (_M_PER_DEG_LON_EQ * math.cos(math.radians(top)))
    return min(dx, 360.0) + 1e-9, dy + 1e-9


@lru_cache(maxsize=256)
def _text(sql: str) -> TextClause:
    """``text(sql)``, built once per statement shape: parsing the bind parameters of this
    statement is ~0.15 ms of Python per call, a tenth of the whole query."""
    return text(sql)


def _straight(conn: Connection, src: _Source, q: NearestQuery, *, max_road_m: float = 0.0,
              prepare: bool = True) -> list[dict[str, Any]]:
    """k nearest by geodesic distance, in one statement. KNN ``<->`` (GiST, planar degrees)
    finds k candidates; their farthest geodesic distance bounds a second indexed box search
    that is ranked by geodesic metres, so the ranking is right at any latitude. Without
    ``q.jurisdiction_id`` the jurisdiction of the point is resolved in the same statement
    (an InitPlan, so the KNN scan keeps its index); every row carries it.

    With ``prepare`` the statement is a server-side prepared statement of the connection
    (``gis.prepared``): planned once per session instead of on every call."""
    pt = _POINT   # written out, not taken from a CTE: a constant lets the index order by it
    if q.jurisdiction_id is not None:
        jur = "CAST(:jid AS integer)"
        params: dict[str, Any] = {"jid": q.jurisdiction_id}
    else:
        jur = f"({_JURISDICTION_SQL})"
        params = {"max_road": max_road_m}
    # Not `jurisdiction_id = COALESCE(jur, jurisdiction_id)`: the planner estimates that as a
    # column compared with itself (0.5 % of rows), which with the other filters makes the
    # candidates look like a handful and a sequential scan + sort look cheaper than the KNN
    # index scan.
    where = " AND ".join([*src.where, "((SELECT id FROM jur) IS NULL"
                                      " OR t.jurisdiction_id = (SELECT id FROM jur))"])
    # k is written into the statement, not bound: with ``LIMIT $n`` the planner assumes 10 %
    # of the rows for a generic plan, prices it at twice the custom plans and so re-plans a
    # prepared statement on every call. It is an int checked by ``check_k``.
    limit = int(q.k)
    sql = f"""
        WITH jur AS MATERIALIZED (SELECT {jur} AS id),
        knn AS (
            SELECT t.geom FROM {src.table} t WHERE {where}
             ORDER BY t.geom <-> {pt} LIMIT {limit}
        ), r AS (
            SELECT max(ST_Distance(geom::geography, {pt}::geography)) AS m FROM knn
        )
        SELECT {src.alias_cols}, ST_X(t.geom) AS lon, ST_Y(t.geom) AS lat,
               ST_Distance(t.geom::geography, {pt}::geography) AS distance_m,
               (SELECT id FROM jur) AS jurisdiction_id
          FROM r JOIN {src.table} t
            ON t.geom && ST_Expand({pt},
                 r.m / ({_M_PER_DEG_LON_EQ} * cos(radians(least(abs(:lat) + r.m / {_M_PER_DEG_LAT},
                                                             89.9)))) + 1e-9,
                 r.m / {_M_PER_DEG_LAT} + 1e-9)
          {src.joins}
         WHERE {where}
         ORDER BY distance_m, t.id
         LIMIT {limit}
    """
    values = {**src.params, **params, "lon": q.lon, "lat": q.lat}
    if prepare:
        rows = prepared.execute(conn, sql, values, types=_PARAM_TYPES)
    else:
        rows = conn.execute(_text(sql), values)
    return [dict(r) for r in rows.mappings()]


def _within(conn: Connection, src: _Source, q: NearestQuery, radius_m: float,
            extra_where: str = "") -> list[dict[str, Any]]:
    """Every candidate in the box of ``radius_m`` around the point (a superset of the disc)."""
    dx, dy = expand_deg(q.lat, radius_m)
    where = " AND ".join(src.where) + extra_where
    pt = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
    sql = f"""
        SELECT {src.alias_cols}, ST_X(t.geom) AS lon, ST_Y(t.geom) AS lat,
               ST_Distance(t.geom::geography, {pt}::geography) AS straight_m
          FROM {src.table} t {src.joins}
         WHERE {where} AND t.geom && ST_Expand({pt}, :dx, :dy)
    """
    rows = conn.execute(text(sql), {**src.params, "lon": q.lon, "lat": q.lat, "dx": dx,
                                    "dy": dy})
    return [dict(r) for r in rows.mappings()]


def _shortfall(conn: Connection, q: NearestQuery, settings: DispatchSettings, now: datetime,
               found: int) -> str:
    """Why fewer than k responders were found: counts of the ones filtered out."""
    where: list[str] = ["true"]
    params: dict[str, Any] = {}
    dept = department_id(conn, q.department)
    if dept is not None:
        where.append("department_id = :dept")
        params["dept"] = dept
    if q.skill:
        where.append("CAST(:skill AS text) = ANY(skills)")
        params["skill"] = q.skill
    if q.jurisdiction_id is not None:
        where.append("jurisdiction_id = :j")
        params["j"] = q.jurisdiction_id
    statuses = list(ON_DUTY) if q.status == "any" else [q.status]
    row = conn.execute(text(f"""
        SELECT count(*) AS matching,
               count(*) FILTER (WHERE status = ANY(:st)) AS in_status,
               count(*) FILTER (WHERE status = ANY(:st) AND geom IS NULL) AS no_position,
               count(*) FILTER (WHERE status = ANY(:st) AND geom IS NOT NULL
                                AND position_at < :fresh) AS stale
          FROM responders WHERE {' AND '.join(where)}
    """), {**params, "st": statuses, "fresh": now - timedelta(seconds=settings.stale_after_s)}
    ).mappings().one()
    who = "responder"
    quals = [s for s in (f"skill {q.skill!r}" if q.skill else "",
                         f"department {q.department!r}" if q.department else "") if s]
    scope = f" with {' and '.join(quals)}" if quals else ""
    status_word = "on-duty" if q.status == "any" else q.status
    if row["matching"] == 0:
        return f"no {who}{scope} exists"
    if row["in_status"] == 0:
        return f"no {status_word} {who}{scope}"
    parts = [f"found {found} of {q.k} requested"]
    if row["stale"]:
        parts.append(f"{row['stale']} {status_word} {who}(s){scope} excluded: stale position "
                     f"(older than {settings.stale_after_s:g} s)")
    if row["no_position"]:
        parts.append(f"{row['no_position']} {status_word} {who}(s){scope} have no position")
    return "; ".join(parts)


def nearest(conn: Connection, q: NearestQuery, *, settings: DispatchSettings,
            kind: Literal["responders", "facilities"] = "responders",
            now: datetime | None = None) -> dict[str, Any]:
    """Rank responders (or facilities) near a point; ``{"results": [...], "reason": ...}``.

    ``reason`` is None when k results were found, else says why not (stale positions, nobody
    available, outside the road network...). Bad parameters raise ``InvalidInput``.
    """
    now = as_utc(now) or utcnow()
    check_lonlat(q.lon, q.lat)
    check_k(q.k, settings)
    if q.mode not in ("straight", "road"):
        raise InvalidInput(f"unknown mode {q.mode!r}; use straight or road", field="mode")
    src = (_responder_source(conn, q, settings, now) if kind == "responders"
           else _facility_source(conn, q))
    reasons: list[str] = []
    extra: dict[str, Any]
    if q.mode == "straight":
        # One round trip: the jurisdiction (unless given) is resolved inside the statement.
        results = _straight(conn, src, q, max_road_m=settings.max_snap_m,
                            prepare=settings.prepared_statements)
        jid = results[0].pop("jurisdiction_id") if results else None
        for r in results[1:]:
            r.pop("jurisdiction_id")
        if q.jurisdiction_id is None and len(results) < q.k:
            jid = jurisdiction_of_point(conn, q.lon, q.lat, max_road_m=settings.max_snap_m)
        q = replace(q, jurisdiction_id=q.jurisdiction_id if q.jurisdiction_id else jid)
        extra = {"mode": "straight", "jurisdiction_id": q.jurisdiction_id}
    else:
        if q.jurisdiction_id is None:
            q = replace(q, jurisdiction_id=jurisdiction_of_point(
                conn, q.lon, q.lat, max_road_m=settings.max_snap_m))
        if q.jurisdiction_id is not None:
            src = replace(src, where=[*src.where, "t.jurisdiction_id = :jid"],
                          params={**src.params, "jid": q.jurisdiction_id})
        results, reasons, extra = _road(conn, src, q, settings)
    for r in results:
        r["distance_m"] = round(float(r["distance_m"]), 1)
        if "skills" in r:
            r["skills"] = list(r["skills"] or [])
    reason = None
    if len(results) < q.k:
        if extra.get("outside_network"):
            pass  # the only reason worth giving
        elif kind == "responders":
            reasons.insert(0, _shortfall(conn, q, settings, now, len(results)))
        else:
            reasons.insert(0, f"found {len(results)} of {q.k} requested facilities"
                           + (f" of type {q.type!r}" if q.type else ""))
        reason = "; ".join(reasons)
    return {"results": results, "reason": reason, **extra}


def _road(conn: Connection, src: _Source, q: NearestQuery, settings: DispatchSettings
          ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Rank by ETA over the road network (see the module docstring)."""
    if q.jurisdiction_id is None:
        found = routing.jurisdiction_at(conn, q.lon, q.lat)
        if found is None:
            return [], ["no road network is loaded"], {"mode": "road"}
        return [], [f"outside network: nearest road is {found[1]:.0f} m away "
                    f"(limit {settings.max_snap_m:g} m)"], {"mode": "road",
                                                            "outside_network": True}
    try:
        graph = routing.get_graph(conn, q.jurisdiction_id)
    except NotFound as exc:
        return [], [exc.detail], {"mode": "road", "jurisdiction_id": q.jurisdiction_id}
    case = routing.snap_points(graph, np.array([q.lon]), np.array([q.lat]))
    case_off = float(case.offroad_m[0])
    meta: dict[str, Any] = {"mode": "road", "jurisdiction_id": q.jurisdiction_id,
                            "snap_m": round(case_off, 1)}
    if case_off > settings.max_snap_m:
        meta["outside_network"] = True
        return [], [f"outside network: nearest road is {case_off:.0f} m away "
                    f"(limit {settings.max_snap_m:g} m)"], meta
    v_off = settings.offroad_speed_kmh / 3.6
    direction: routing.Direction = (
        "to" if src.noun == "responder" or q.direction == "to_point" else "from")

    # First bound: about twice the time of the k-th nearest by straight line at median speed.
    straight = _straight(conn, src, q, prepare=settings.prepared_statements)
    if not straight:
        return [], [], meta
    d_k = float(straight[-1]["distance_m"])
    limit = max(120.0, 2.0 * d_k / graph.vtyp_ms + case_off / v_off)
    limit = min(limit, settings.max_travel_s)
    reasons: list[str] = []
    prev_settled = -1
    while True:
        radius = limit * graph.vmax_ms + settings.max_snap_m + case_off
        rows = _within(conn, src, q, radius)
        tree = routing.search(graph, case, direction=direction, limit=limit)
        ranked, off_network = _rank(graph, tree, rows, case_off, v_off, settings)
        within = [r for r in ranked if r[0] <= limit]
        if len(within) >= q.k or limit >= settings.max_travel_s:
            break
        settled = tree.settled
        if settled == prev_settled:   # the bound no longer adds nodes: go to the horizon
            limit = settings.max_travel_s
        else:
            limit = min(limit * 3.0, settings.max_travel_s)
        prev_settled = settled
    top = within[: q.k]
    if off_network:
        reasons.append(f"{off_network} {src.noun}(s) farther than {settings.max_snap_m:g} m "
                       "from any road were left out")
    if len(top) < q.k and limit >= settings.max_travel_s:
        beyond = len(ranked) - len(within)
        reasons.append(f"found {len(top)} of {q.k} within the road search horizon of "
                       f"{settings.max_travel_s:g} s"
                       + (f" ({beyond} more are farther)" if beyond > 0 else ""))
    results = []
    for eta, _, row, snap, via in top:
        line, length = tree.route(snap, via, geometry=q.route)
        row = dict(row)
        snap_off = float(snap.offroad_m[0])
        row["eta_s"] = round(eta, 1)
        row["distance_m"] = (length if math.isfinite(length) else 0.0) + snap_off + case_off
        row["straight_m"] = round(float(row.pop("straight_m")), 1)
        if q.route:
            row["route"] = mapping(line) if line is not None else None
        results.append(row)
    meta["searched_s"] = round(limit, 1)
    return results, reasons, meta


def responder_eta(conn: Connection, responder_id: int, lon: float, lat: float, *,
                  settings: DispatchSettings, route: bool = False) -> dict[str, Any]:
    """Road ETA of one responder to a point, whatever its status (for the case timeline when a
    responder is dispatched). ``eta_s`` is None, with a ``reason``, when it cannot be routed.

    >>> # responder_eta(conn, 12, 24.94, 60.17, settings=DispatchSettings())["eta_s"]
    """
    check_lonlat(lon, lat)
    row = get_responder(conn, responder_id, settings=settings)
    out: dict[str, Any] = {"id": responder_id, "eta_s": None, "distance_m": None,
                           "position_at": row["position_at"], "stale": row["stale"]}
    if row["lon"] is None:
        return {**out, "reason": "the responder has no current position"}
    src = _Source(
        table="responders", alias_cols="t.id, t.name, t.status, t.position_at",
        joins="", where=["t.geom IS NOT NULL", "t.id = :rid", "t.jurisdiction_id = :jid"],
        params={"rid": responder_id, "jid": row["jurisdiction_id"]}, noun="responder")
    q = NearestQuery(lon=lon, lat=lat, k=1, mode="road", route=route,
                     jurisdiction_id=row["jurisdiction_id"])
    results, reasons, _ = _road(conn, src, q, settings)
    if not results:
        return {**out, "reason": "; ".join(reasons) or "not reachable by road"}
    hit = results[0]
    out.update(eta_s=hit["eta_s"], distance_m=round(float(hit["distance_m"]), 1),
               straight_m=hit["straight_m"])
    if route:
        out["route"] = hit.get("route")
    return out


def _rank(graph: routing.RoadGraph, tree: routing.Search, rows: list[dict[str, Any]],
          case_off: float, v_off: float, settings: DispatchSettings
          ) -> tuple[list[tuple[float, int, dict[str, Any], routing.SnapArrays, int]], int]:
    """ETA of every candidate row: connector + network + connector, sorted (eta, id)."""
    if not rows:
        return [], 0
    ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
    lon = np.fromiter((r["lon"] for r in rows), dtype=np.float64, count=len(rows))
    lat = np.fromiter((r["lat"] for r in rows), dtype=np.float64, count=len(rows))
    snaps = routing.snap_cached(graph, ids, lon, lat)
    on_road = snaps.offroad_m <= settings.max_snap_m
    costs = tree.costs(snaps)
    eta = costs.time_s + snaps.offroad_m / v_off + case_off / v_off
    order = np.lexsort((ids, eta))
    ranked = []
    for i in order:
        if not on_road[i] or not math.isfinite(eta[i]):
            continue
        ranked.append((float(eta[i]), int(ids[i]), rows[i], snaps.take([i]),
                       int(costs.via[i])))
    return ranked, int((~on_road).sum())

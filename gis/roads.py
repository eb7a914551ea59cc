"""The routable road network: nodes, edges with travel-time costs, one-way streets.

Costs are seconds at the edge's speed; ``reverse_cost`` is negative for one-way edges, as
pgRouting expects. ``label_components`` stores each edge's connected component so routing can
snap only to the main one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import LineString
from sqlalchemy import Connection, text

_GEOD = Geod(ellps="WGS84")

# Default speeds (km/h) by OSM highway class when no maxspeed tag is given.
DEFAULT_SPEED_KMH = {
    "motorway": 80, "motorway_link": 50, "trunk": 60, "trunk_link": 40, "primary": 50,
    "primary_link": 40, "secondary": 40, "secondary_link": 30, "tertiary": 40,
    "tertiary_link": 30, "unclassified": 30, "residential": 30, "living_street": 10,
    "service": 20, "road": 30,
}


@dataclass
class EdgeRow:
    """One edge between two node ids; geometry runs from ``source`` to ``target``."""

    source: int
    target: int
    geom: LineString
    highway: str | None = None
    maxspeed_kmh: float | None = None
    oneway: bool = False
    name: str | None = None
    source_id: str | None = None


def geodesic_length_m(line: LineString) -> float:
    """Ellipsoidal length of a lon/lat line in metres."""
    return float(_GEOD.geometry_length(line))


def speed_for(highway: str | None, maxspeed_kmh: float | None) -> float:
    if maxspeed_kmh and maxspeed_kmh > 0:
        return float(maxspeed_kmh)
    return float(DEFAULT_SPEED_KMH.get(highway or "", 30))


def insert_network(
    conn: Connection,
    jurisdiction_id: int,
    nodes: dict[int, tuple[float, float]],
    edges: Iterable[EdgeRow],
    *,
    batch: int = 20000,
) -> int:
    """Insert nodes ({id: (lon, lat)}) and edges; returns the number of edges.

    Node ids are the caller's (they must be unique in the table); edge costs are computed here.
    """
    # Set-based inserts (unnest of arrays): one statement per batch, not a round trip per row.
    node_items = list(nodes.items())
    for start in range(0, len(node_items), batch):
        chunk = node_items[start:start + batch]
        conn.execute(
            text("INSERT INTO road_nodes (id, jurisdiction_id, geom)"
                 " SELECT t.id, :j, ST_SetSRID(ST_MakePoint(t.x, t.y), 4326)"
                 " FROM unnest(CAST(:ids AS bigint[]), CAST(:xs AS float8[]),"
                 " CAST(:ys AS float8[])) AS t(id, x, y)"),
            {"j": jurisdiction_id, "ids": [int(i) for i, _ in chunk],
             "xs": [float(p[0]) for _, p in chunk], "ys": [float(p[1]) for _, p in chunk]},
        )
    rows = []
    for e in edges:
        length = geodesic_length_m(e.geom)
        speed = speed_for(e.highway, e.maxspeed_kmh)
        cost = max(length / (speed / 3.6), 0.01)
        rows.append((e.source, e.target, cost, -1.0 if e.oneway else cost, length, speed,
                     e.oneway, e.highway, e.name, e.source_id, shapely.to_wkb(e.geom)))
    columns = ("s", "t", "cost", "rcost", "len", "speed", "oneway", "hw", "name", "sid", "wkb")
    for start in range(0, len(rows), batch):
        edge_chunk = rows[start:start + batch]
        params: dict = {name: [r[i] for r in edge_chunk] for i, name in enumerate(columns)}
        params["j"] = jurisdiction_id
        conn.execute(
            text("INSERT INTO road_edges (jurisdiction_id, source, target, cost, reverse_cost,"
                 " length_m, maxspeed_kmh, oneway, highway, name, source_id, geom)"
                 " SELECT :j, t.s, t.t, t.cost, t.rcost, t.len, t.speed, t.oneway, t.hw, t.name,"
                 " t.sid, ST_SetSRID(ST_GeomFromWKB(t.wkb), 4326)"
                 " FROM unnest(CAST(:s AS bigint[]), CAST(:t AS bigint[]),"
                 " CAST(:cost AS float8[]), CAST(:rcost AS float8[]), CAST(:len AS float8[]),"
                 " CAST(:speed AS float8[]), CAST(:oneway AS boolean[]), CAST(:hw AS text[]),"
                 " CAST(:name AS text[]), CAST(:sid AS text[]), CAST(:wkb AS bytea[]))"
                 " AS t(s, t, cost, rcost, len, speed, oneway, hw, name, sid, wkb)"),
            params,
        )
    conn.execute(
        text("SELECT setval(pg_get_serial_sequence('road_nodes', 'id'),"
             " GREATEST((SELECT max(id) FROM road_nodes), 1))")
    )
    return len(rows)


def label_components(conn: Connection, jurisdiction_id: int) -> dict[int, int]:
    """Store the (weakly) connected component of every edge; returns {component: edge count}.

    Component ids are renumbered so that 0 is the largest.
    """
    rows = conn.execute(
        text(
            """
            SELECT node, component FROM pgr_connectedComponents(
              format('SELECT id, source, target, cost, cost AS reverse_cost FROM road_edges'
                     ' WHERE jurisdiction_id = %s', CAST(:j AS integer)))
            """
        ),
        {"j": jurisdiction_id},
    ).all()
    if not rows:
        return {}
    node_comp = {int(n): int(c) for n, c in rows}
    edges = conn.execute(
        text("SELECT id, source FROM road_edges WHERE jurisdiction_id = :j"),
        {"j": jurisdiction_id},
    ).all()
    comps = np.array([node_comp[int(s)] for _, s in edges])
    uniq, counts = np.unique(comps, return_counts=True)
    order = uniq[np.argsort(-counts, kind="stable")]
    renumber = {int(c): i for i, c in enumerate(order)}
    conn.execute(
        text("UPDATE road_edges e SET component = v.c"
             " FROM unnest(CAST(:ids AS bigint[]), CAST(:comps AS integer[])) AS v(id, c)"
             " WHERE e.id = v.id"),
        {"ids": [int(i) for i, _ in edges],
         "comps": [renumber[node_comp[int(s)]] for _, s in edges]},
    )
    return {renumber[int(c)]: int(n) for c, n in zip(uniq, counts, strict=True)}

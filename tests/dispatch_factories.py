"""A hand-checkable road network and responders for the dispatch and routing tests.

``ladder_town`` (near 10°E 50°N, blocks of about 100 m × 100 m)::

    t0 ---- t1 ---- t2 ---- t3 ---- t4      top street: two-way, 30 km/h
    |       |       |       |       |       cross streets: two-way, 30 km/h
    b0 ---> b1 ---> b2 ---> b3 ---> b4      main street: ONE-WAY eastbound, 50 km/h

    i0 ---- i1      an island 2 km east, not connected (component 1)

So b1 → b2 takes 100 m at 50 km/h ≈ 7 s, but b2 → b1 must go round the block
(b2 → t2 → t1 → b1, 300 m at 30 km/h ≈ 36 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shapely.geometry import LineString
from sqlalchemy import Connection, text

from gis.areas import create_jurisdiction
from gis.roads import EdgeRow, insert_network, label_components

LON0, LAT0 = 10.0, 50.0
DX, DY = 0.0014, 0.0009   # ≈ 100 m at 50°N


@dataclass
class Town:
    jurisdiction_id: int
    node: dict[str, int]                    # name → road_nodes.id
    at: dict[str, tuple[float, float]]      # name → (lon, lat)

    def mid(self, a: str, b: str, f: float = 0.5) -> tuple[float, float]:
        (x0, y0), (x1, y1) = self.at[a], self.at[b]
        return x0 + f * (x1 - x0), y0 + f * (y1 - y0)


def ladder_town(conn: Connection, *, code: str = "TEST-LADDER",
                jurisdiction_id: int | None = None) -> Town:
    """The ladder network in a new jurisdiction ``code``, or in an existing one (e.g. a case
    world's tiny city, which covers the same corner of the map)."""
    jid = (jurisdiction_id if jurisdiction_id is not None
           else create_jurisdiction(conn, code=code, name="Ladder town", local_srid=25832))
    base = int(conn.execute(text("SELECT COALESCE(max(id), 0) FROM road_nodes")).scalar_one())
    at: dict[str, tuple[float, float]] = {}
    for i in range(5):
        at[f"b{i}"] = (LON0 + i * DX, LAT0)
        at[f"t{i}"] = (LON0 + i * DX, LAT0 + DY)
    at["i0"] = (LON0 + 30 * DX, LAT0)
    at["i1"] = (LON0 + 31 * DX, LAT0)
    node = {name: base + 1 + n for n, name in enumerate(at)}

    def edge(a: str, b: str, **kw: object) -> EdgeRow:
        return EdgeRow(node[a], node[b], LineString([at[a], at[b]]), **kw)  # type: ignore[arg-type]

    edges = [edge(f"b{i}", f"b{i + 1}", highway="primary", maxspeed_kmh=50, oneway=True,
                  name="Main street") for i in range(4)]
    edges += [edge(f"t{i}", f"t{i + 1}", highway="residential", name="Top street")
              for i in range(4)]
    edges += [edge(f"b{i}", f"t{i}", highway="residential", name=f"Cross {i}") for i in range(5)]
    edges.append(edge("i0", "i1", highway="residential", name="Island lane"))
    insert_network(conn, jid, {node[n]: at[n] for n in at}, edges)
    label_components(conn, jid)
    return Town(jid, node, at)


def ensure_departments(conn: Connection, *codes: str) -> None:
    conn.execute(
        text("INSERT INTO departments (code, name) VALUES (:code, :code)"
             " ON CONFLICT (code) DO NOTHING"),
        [{"code": c} for c in codes],
    )


def add_responder(
    conn: Connection,
    jurisdiction_id: int,
    name: str,
    at: tuple[float, float] | None,
    *,
    status: str = "available",
    skills: tuple[str, ...] = (),
    department: str | None = None,
    age_s: float = 0,
    kind: str = "staff",
) -> int:
    """A responder with a position ``age_s`` seconds old (``at=None``: no position)."""
    when = datetime.now(UTC) - timedelta(seconds=age_s) if at else None
    lon, lat = at if at else (None, None)
    return int(conn.execute(
        text("INSERT INTO responders (jurisdiction_id, name, kind, department_id, skills, status,"
             " position_at, geom) VALUES (:j, :name, :kind,"
             " (SELECT id FROM departments WHERE code = :dept), CAST(:skills AS text[]), :status,"
             " :when, CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL"
             " ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END) RETURNING id"),
        {"j": jurisdiction_id, "name": name, "kind": kind, "dept": department,
         "skills": list(skills), "status": status, "when": when, "lon": lon, "lat": lat},
    ).scalar_one())


def add_facility(conn: Connection, jurisdiction_id: int, kind: str, name: str,
                 at: tuple[float, float]) -> int:
    return int(conn.execute(
        text("INSERT INTO facilities (jurisdiction_id, type, name, geom)"
             " VALUES (:j, :type, :name, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
             " RETURNING id"),
        {"j": jurisdiction_id, "type": kind, "name": name, "lon": at[0], "lat": at[1]},
    ).scalar_one())


EDGES_SQL = ("SELECT id, source, target, cost, reverse_cost FROM road_edges"
             " WHERE jurisdiction_id = {j}")


def pgr_costs(conn: Connection, jid: int, starts: list[int], end: int) -> dict[int, float]:
    """pgRouting's directed ``pgr_dijkstra`` (cost and reverse_cost) from many starts to one
    end node: {start: total cost}; unreachable starts are absent."""
    rows = conn.execute(
        text("SELECT start_vid, agg_cost FROM pgr_dijkstra(:sql, CAST(:starts AS bigint[]),"
             " CAST(:end AS bigint), directed => true) WHERE edge = -1"),
        {"sql": EDGES_SQL.format(j=int(jid)), "starts": starts, "end": end},
    ).all()
    return {int(s): float(c) for s, c in rows}

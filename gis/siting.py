"""Where to put K new facilities so that they cover the most households not covered yet.

The maximal covering location problem (Church & ReVelle 1974) solved exactly with spopt's
``MCLP`` and the CBC solver bundled with PuLP:

- **demand**: the buildings that no existing facility of the type covers (``gis.coverage``,
  straight or road mode), weighted by households;
- **candidates**: the centroids of the current grids (``candidates="grids"``) or road nodes
  (``"nodes"``) near uncovered demand, at most ``max_candidates`` (the ones that could cover
  the most uncovered households on their own);
- **coverage**: straight distance ≤ radius, or travel time ≤ minutes over the network (one
  bounded Dijkstra per candidate from its road node).

Each chosen site comes with its **gain**: the households it adds, in greedy order (first the
site covering the most, then the next one's additional households…), so the gains add up to the
solution's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from sqlalchemy import Connection, text

from gis.coverage import WALK_MS, CoverageQuery, _arc_weights, _network, uncovered_demand
from gis.crs import WGS84, transformer
from gis.errors import InvalidInput

MAX_K = 50
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class SitingQuery:
    coverage: CoverageQuery
    k: int = 3
    candidates: str = "grids"
    max_candidates: int = 300


def _candidates(conn: Connection, jid: int, kind: str, srid: int, graph: Any | None
                ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """lon, lat, labels, node index (-1 for grid centroids in straight mode)."""
    if kind == "grids":
        rows = conn.execute(text(
            "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))"
            " FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL AND level ="
            " (SELECT max(level) FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL)"
            " ORDER BY code"), {"j": jid}).all()
        lon = np.array([r[1] for r in rows], dtype=float)
        lat = np.array([r[2] for r in rows], dtype=float)
        labels = [f"grid {r[0]}" for r in rows]
        node = np.full(len(rows), -1)
        if graph is not None and len(rows):
            from gis.routing import snap_points

            s = snap_points(graph, lon, lat)
            node = np.where(s.fraction < 0.5, graph.edge_u[s.edge], graph.edge_v[s.edge])
        return lon, lat, labels, node
    if graph is None:
        from gis.routing import get_graph

        graph = get_graph(conn, jid)
    from gis.coverage import _node_coordinates

    lon, lat = _node_coordinates(graph)
    main_nodes = np.unique(np.concatenate([graph.edge_u[graph.main_edges],
                                           graph.edge_v[graph.main_edges]]))
    return (lon[main_nodes], lat[main_nodes],
            [f"road node {int(graph.node_ids[i])}" for i in main_nodes], main_nodes)


def best_sites(conn: Connection, q: SitingQuery) -> dict[str, Any]:
    """The ``k`` best new sites with their gains (households), solved with MCLP/CBC."""
    import pulp
    from spopt.locate import MCLP

    if not 1 <= q.k <= MAX_K:
        raise InvalidInput(f"k must be 1 … {MAX_K}, not {q.k}", field="k")
    if q.candidates not in ("grids", "nodes"):
        raise InvalidInput("candidates must be 'grids' or 'nodes'", field="candidates")
    if not 1 <= q.max_candidates <= MAX_CANDIDATES:
        raise InvalidInput(f"max_candidates must be 1 … {MAX_CANDIDATES}",
                           field="max_candidates")
    found = uncovered_demand(conn, q.coverage)
    pop, fac, idx = found["population"], found["facilities"], found["uncovered"]
    jid, srid = found["jurisdiction_id"], found["srid"]
    road = q.coverage.mode == "road"
    graph = None
    if road:
        from gis.routing import get_graph

        graph = get_graph(conn, jid)
    c_lon, c_lat, labels, c_node = _candidates(conn, jid, q.candidates, srid, graph)
    reach = float(np.median(fac.reach)) if len(fac.reach) else float(
        q.coverage.radius_m or 60 * (q.coverage.minutes or 15))
    base = {"facility_type": q.coverage.facility_type, "mode": q.coverage.mode,
            "reach": reach, "k": q.k,
            "households_uncovered_before": int(pop.households[idx].sum()),
            "candidates": 0, "sites": [], "households_gained": 0}
    if not len(idx) or not len(c_lon):
        return base
    w = pop.households[idx].astype(float)
    # Candidate × demand coverage (boolean), straight or by road.
    if not road:
        cx, cy = transformer(WGS84, srid).transform(c_lon, c_lat)
        tree = cKDTree(np.column_stack([pop.x[idx], pop.y[idx]]))
        lists = tree.query_ball_point(np.column_stack([cx, cy]), r=reach)
        cover = np.zeros((len(c_lon), len(idx)), dtype=bool)
        for i, lst in enumerate(lists):
            cover[i, lst] = True
    else:
        assert graph is not None
        snaps = pop.snaps(graph)
        fw, bw = _arc_weights(graph, q.coverage.travel)
        rows, cols, wts = _network(graph, q.coverage.travel)
        from scipy.sparse import csr_matrix

        n = graph.n_nodes
        matrix = csr_matrix((wts, (rows, cols)), shape=(n, n))
        # Pre-select candidate nodes near demand (a walk to the road within reach).
        cover = np.zeros((len(c_lon), len(idx)), dtype=bool)
        be, bf = snaps.edge[idx], snaps.fraction[idx]
        walk = snaps.offroad_m[idx] / WALK_MS
        uniq = np.unique(c_node[c_node >= 0])
        if len(uniq) > q.max_candidates * 3:
            demand_nodes = np.concatenate([graph.edge_u[be], graph.edge_v[be]])
            counts = np.bincount(demand_nodes, minlength=n)[uniq]
            uniq = uniq[np.argsort(-counts, kind="stable")[: q.max_candidates * 3]]
        times = dijkstra(matrix, directed=True, indices=uniq, limit=reach)
        pos = {int(v): i for i, v in enumerate(uniq)}
        with np.errstate(invalid="ignore"):
            pu = np.where(bf > 0, bf * fw[be], 0.0)
            pv = np.where(bf < 1, (1 - bf) * bw[be], 0.0)
        for ci, node in enumerate(c_node):
            r = pos.get(int(node))
            if r is None:
                continue
            t = np.minimum(times[r, graph.edge_u[be]] + pu, times[r, graph.edge_v[be]] + pv)
            cover[ci] = (t + walk) <= reach
    potential = cover.astype(float) @ w
    keep = np.nonzero(potential > 0)[0]
    keep = keep[np.argsort(-potential[keep], kind="stable")[: q.max_candidates]]
    base["candidates"] = int(len(keep))
    if not len(keep):
        return base
    cover = cover[keep]
    k = min(q.k, len(keep))
    # spopt wants a cost matrix (demand × facility) and a service radius.
    cost = np.where(cover.T, 0.0, 2.0)
    model = MCLP.from_cost_matrix(cost, w, service_radius=1.0, p_facilities=k,
                                  name="gridgov-siting")
    model = model.solve(pulp.PULP_CBC_CMD(msg=False))
    chosen = [int(i) for i in np.nonzero(
        np.array([v.value() for v in model.fac_vars]) > 0.5)[0]]
    # Gains in greedy order over the chosen sites.
    covered = np.zeros(len(idx), dtype=bool)
    sites: list[dict[str, Any]] = []
    remaining = list(chosen)
    while remaining:
        gains = [float(w[cover[i] & ~covered].sum()) for i in remaining]
        best = remaining[int(np.argmax(gains))]
        gain_rows = cover[best] & ~covered
        covered |= cover[best]
        remaining.remove(best)
        j = int(keep[best])
        sites.append({"rank": len(sites) + 1, "label": labels[j],
                      "lon": round(float(c_lon[j]), 7), "lat": round(float(c_lat[j]), 7),
                      "households_gained": int(w[gain_rows].sum()),
                      "residents_gained": int(pop.residents[idx][gain_rows].sum()),
                      "buildings_gained": int(gain_rows.sum())})
    base["sites"] = sites
    base["households_gained"] = int(sum(s["households_gained"] for s in sites))
    base["objective"] = float(pulp.value(model.problem.objective) or 0)
    base["status"] = pulp.LpStatus[model.problem.status]
    return base


__all__ = ["SitingQuery", "best_sites"]

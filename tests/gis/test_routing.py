"""The in-memory road graph against pgRouting on the same network, one-way streets, snapping,
partial edges, routes, and cache invalidation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from shapely.geometry import LineString, Point
from sqlalchemy import Connection, text

from gis import routing
from gis.roads import geodesic_length_m
from tests.dispatch_factories import Town, ladder_town, pgr_costs


def ours(graph: routing.RoadGraph, starts: list[int], end: int) -> dict[int, float]:
    times = routing.node_times(graph, end, direction="to")
    out = {}
    for s in starts:
        t = float(times[graph.node_index(s)])
        if np.isfinite(t) and s != end:
            out[s] = t
    return out


@pytest.fixture
def town(conn: Connection) -> Town:
    return ladder_town(conn)


def test_travel_times_equal_pgr_dijkstra_for_every_pair_of_the_hand_network(
        conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    nodes = [town.node[n] for n in town.node if not n.startswith("i")]
    for end in nodes:
        starts = [s for s in nodes if s != end]
        expected = pgr_costs(conn, town.jurisdiction_id, starts, end)
        assert ours(graph, starts, end) == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_one_way_main_street_is_quick_eastbound_and_a_detour_westbound(
        conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    b1, b2 = town.node["b1"], town.node["b2"]
    east = ours(graph, [b1], b2)[b1]
    west = ours(graph, [b2], b1)[b2]
    assert east == pytest.approx(pgr_costs(conn, town.jurisdiction_id, [b1], b2)[b1])
    assert west == pytest.approx(pgr_costs(conn, town.jurisdiction_id, [b2], b1)[b2])
    assert east == pytest.approx(7.2, abs=0.3)       # 100 m at 50 km/h
    assert west == pytest.approx(36.0, abs=1.0)      # round the block, 300 m at 30 km/h


def test_the_island_is_not_the_main_component_and_is_never_snapped_to(
        conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    lon, lat = town.mid("i0", "i1")
    snap = routing.snap_points(graph, np.array([lon]), np.array([lat]))
    assert graph.main[snap.edge[0]]
    assert snap.offroad_m[0] > 2000  # the nearest main-component road is 2 km west


def test_case_in_the_middle_of_a_one_way_edge_is_reached_forward_only(
        conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    case = routing.snap_points(graph, *map(np.array, zip(town.mid("b1", "b2"), strict=True)))
    tree = routing.search(graph, case, direction="to", limit=600)
    starts = routing.snap_points(graph, np.array([town.at["b1"][0], town.at["b2"][0]]),
                                 np.array([town.at["b1"][1], town.at["b2"][1]]))
    behind, ahead = tree.costs(starts).time_s
    assert behind == pytest.approx(3.6, abs=0.2)          # half of b1 → b2
    assert ahead == pytest.approx(36.0 + 3.6, abs=1.0)     # round the block, then half


def test_route_against_a_one_way_goes_round_the_block(conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    case = routing.snap_points(graph, *map(np.array, zip(town.mid("b1", "b2"), strict=True)))
    tree = routing.search(graph, case, direction="to")
    start = routing.snap_points(graph, np.array([town.at["b2"][0]]),
                                np.array([town.at["b2"][1]]))
    costs = tree.costs(start)
    line, length = tree.route(start, int(costs.via[0]))
    assert isinstance(line, LineString)
    corners = [Point(town.at[n]) for n in ("b2", "t2", "t1", "b1")]
    assert all(line.distance(c) < 1e-9 for c in corners)
    assert Point(line.coords[0]).distance(corners[0]) < 1e-9
    assert Point(line.coords[-1]).distance(Point(town.mid("b1", "b2"))) < 1e-7
    assert length == pytest.approx(geodesic_length_m(line), rel=0.01)  # ≈ 350 m


def test_from_direction_uses_the_forward_graph(conn: Connection, town: Town) -> None:
    graph = routing.get_graph(conn, town.jurisdiction_id)
    origin = routing.snap_points(graph, np.array([town.at["b2"][0]]),
                                 np.array([town.at["b2"][1]]))
    tree = routing.search(graph, origin, direction="from")
    b1 = routing.snap_points(graph, np.array([town.at["b1"][0]]), np.array([town.at["b1"][1]]))
    assert tree.costs(b1).time_s[0] == pytest.approx(36.0, abs=1.0)


def test_graph_is_cached_and_rebuilt_when_road_edges_change(
        conn: Connection, town: Town) -> None:
    first = routing.get_graph(conn, town.jurisdiction_id)
    assert routing.get_graph(conn, town.jurisdiction_id) is first
    conn.execute(text("UPDATE road_edges SET reverse_cost = cost"
                      " WHERE jurisdiction_id = :j AND oneway"), {"j": town.jurisdiction_id})
    second = routing.get_graph(conn, town.jurisdiction_id)
    assert second is not first and second.version != first.version
    b1, b2 = town.node["b1"], town.node["b2"]
    assert ours(second, [b2], b1)[b2] == pytest.approx(7.2, abs=0.3)  # now two-way


def _demo_jurisdiction(conn: Connection) -> int | None:
    return conn.execute(text(
        "SELECT e.jurisdiction_id FROM road_edges e JOIN jurisdictions j"
        " ON j.id = e.jurisdiction_id WHERE j.code = 'FI-HEL-DEMO' LIMIT 1")).scalar()


def test_demo_city_sampled_pairs_equal_pgr_dijkstra(conn: Connection) -> None:
    jid = _demo_jurisdiction(conn)
    if jid is None:
        pytest.skip("the demo city is not in the test database")
    graph = routing.get_graph(conn, jid)
    n = graph.n_nodes
    _, scc = connected_components(graph.forward[:n, :n], directed=True, connection="strong")
    core = np.nonzero(scc == np.bincount(scc).argmax())[0]   # all mutually reachable
    rest = np.unique(np.concatenate([graph.edge_u[graph.main], graph.edge_v[graph.main]]))
    rng = random.Random(4)
    picks = rng.sample(core.tolist(), 30) + rng.sample(rest.tolist(), 10)
    ids = [int(graph.node_ids[i]) for i in picks]
    compared = 0
    for end in ids[:5] + ids[30:32]:
        starts = [s for s in ids if s != end]
        expected = pgr_costs(conn, jid, starts, end)   # unreachable pairs are absent in both
        assert ours(graph, starts, end) == pytest.approx(expected, rel=1e-9, abs=1e-6)
        compared += len(expected)
    assert compared >= 5 * 29


def test_demo_city_one_way_street_is_respected(conn: Connection) -> None:
    jid = _demo_jurisdiction(conn)
    if jid is None:
        pytest.skip("the demo city is not in the test database")
    graph = routing.get_graph(conn, jid)
    one_way = np.nonzero(graph.main & (graph.reverse_cost < 0) & (graph.cost > 0))[0]
    assert one_way.size > 0, "the demo network has no one-way streets"
    checked = 0
    for e in one_way[:200]:
        u, v = int(graph.node_ids[graph.edge_u[e]]), int(graph.node_ids[graph.edge_v[e]])
        back = pgr_costs(conn, jid, [v], u).get(v)
        if back is None or back < 2 * graph.cost[e] + 5:
            continue  # another edge runs the other way, or no way back at all
        forward = ours(graph, [u], v)[u]
        backward = ours(graph, [v], u)[v]
        assert forward == pytest.approx(pgr_costs(conn, jid, [u], v)[u])
        assert forward <= graph.cost[e] + 1e-9
        assert backward == pytest.approx(back) and backward > 2 * forward
        checked += 1
        if checked == 5:
            break
    assert checked > 0

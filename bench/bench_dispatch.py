"""Dispatch benchmark: nearest responders by road and by line, and live position updates, on
a synthetic city (≥ 100,000 road edges, 5,000 responders), side by side with pgRouting.

    .venv/bin/python bench/bench_dispatch.py                 # full run, about 4 minutes
    .venv/bin/python bench/bench_dispatch.py --quick         # smaller samples, about 1 minute

Everything runs in its own database (default ``gridgov_bench_dispatch``; ``--db`` or
``GRIDGOV_DB_NAME``), built once with ``gis.synth.build_synth`` and reused. The HTTP parts talk
to a real uvicorn server started here on loopback and stopped at the end. Each section prints
the peer's figure and ours from the same run and the ratio; a summary table comes last (and
goes to ``--out`` as JSON when given).

Peers:
- road mode: pgRouting ``pgr_dijkstra`` one-to-many from the case node to every available
  responder's node on the reversed graph (= travel time *to* the case), whole graph, then the
  same clipped to a box around the case; also ``pgr_dijkstraCost`` (no paths). The peer gets
  the responders' nearest nodes precomputed for free; ours snaps them and uses partial edges.
- straight mode: the same ranking as an unindexed ``ORDER BY ST_Distance(geography)``.
- positions: one ``PUT /api/responders/{id}/position`` per responder, against our batch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Connection, Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from gis import db, nearest, routing, schema  # noqa: E402
from gis.dispatch import DispatchSettings  # noqa: E402
from gis.nearest import NearestQuery  # noqa: E402
from gis.settings import DatabaseSettings  # noqa: E402

SEED = 1


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def ms(values: list[float]) -> dict[str, float]:
    """Latency summary in milliseconds."""
    v = [x * 1000 for x in values]
    return {"n": len(v), "p50": round(pct(v, 50), 2), "p95": round(pct(v, 95), 2),
            "p99": round(pct(v, 99), 2), "mean": round(statistics.fmean(v), 2) if v else 0.0}


def show(title: str, peer: dict[str, float] | None, ours: dict[str, float], key: str = "p95",
         peer_name: str = "peer") -> float | None:
    def line(name: str, v: dict[str, float]) -> str:
        return (f"  {name:<10} p50 {v['p50']:9.2f} ms  p95 {v['p95']:9.2f} ms  "
                f"p99 {v['p99']:9.2f} ms")

    print(f"\n{title}")
    ratio = None
    if peer is not None:
        print(line(peer_name, peer))
        ratio = peer[key] / ours[key] if ours[key] else float("inf")
    print(line("ours", ours))
    if ratio is not None:
        print(f"  ratio ({key}, peer / ours): {ratio:.1f}×")
    return ratio


@dataclass
class City:
    jurisdiction_id: int
    bbox: tuple[float, float, float, float]
    edges: int
    responders: int
    statuses: dict[int, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Set-up


def ensure_city(engine: Engine, args: argparse.Namespace) -> City:
    from gis.synth import build_synth, default_code

    code = default_code(args.grids, SEED)
    with engine.connect() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": code}).scalar()
    if jid is None:
        print(f"building synthetic city {code} ({args.grids} grids, {args.responders} responders)"
              " — once; later runs reuse it …", flush=True)
        t = time.perf_counter()
        build_synth(engine, grids=args.grids, seed=SEED, cases=1000, responders=args.responders,
                    progress=True)
        print(f"  built in {time.perf_counter() - t:.0f} s")
    with engine.connect() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": code}).scalar_one()
        x0, y0, x1, y1 = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
            " (SELECT ST_Extent(geom) AS e FROM road_edges WHERE jurisdiction_id = :j) s"),
            {"j": jid}).one()
        edges = conn.execute(text("SELECT count(*) FROM road_edges WHERE jurisdiction_id = :j"),
                             {"j": jid}).scalar_one()
        statuses: dict[int, str] = dict(conn.execute(text(
            "SELECT id, status FROM responders WHERE jurisdiction_id = :j"), {"j": jid}).all())
        # Synthetic positions are as old as the city: make the on-duty ones fresh.
        conn.execute(text("UPDATE responders SET position_at = now()"
                          " WHERE jurisdiction_id = :j AND geom IS NOT NULL"), {"j": jid})
        conn.commit()
    return City(int(jid), (x0, y0, x1, y1), int(edges), len(statuses), statuses)


def sample_points(city: City, n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = city.bbox
    dx, dy = (x1 - x0) * 0.03, (y1 - y0) * 0.03
    return list(zip(rng.uniform(x0 + dx, x1 - dx, n).tolist(),
                    rng.uniform(y0 + dy, y1 - dy, n).tolist(), strict=True))


class Server:
    """uvicorn on loopback in a child process; stopped (by its pid) when the bench ends."""

    def __init__(self, settings: DatabaseSettings, port: int):
        env = {**os.environ, "GRIDGOV_DB_NAME": settings.db_name,
               "GRIDGOV_DATA_DIR": str(settings.data_dir), "GRIDGOV_PG_PORT": str(settings.pg_port)}
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"], cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                # Not answering, or exited (e.g. the port was taken: then whatever answers
                # there is not ours, and must not be measured).
                raise SystemExit("the uvicorn server did not start")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------------------------------------
# Road mode


EDGES = ("SELECT id, target AS source, source AS target, cost, reverse_cost FROM road_edges"
         " WHERE jurisdiction_id = {j}")
EDGES_BOX = EDGES + (" AND geom && ST_Expand(ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326),"
                     " {dx}, {dy})")

PEER_SQL = """
WITH c AS (
    SELECT id FROM road_nodes WHERE jurisdiction_id = :j
     ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1
), hit AS (
    SELECT end_vid AS node, agg_cost FROM {fn}(:edges, (SELECT id FROM c),
                                                CAST(:nodes AS bigint[]), directed => true)
    {where}
)
SELECT r.id, hit.agg_cost FROM hit
  JOIN unnest(CAST(:rids AS bigint[]), CAST(:rnodes AS bigint[])) AS r(id, node)
    ON r.node = hit.node
 ORDER BY hit.agg_cost, r.id LIMIT :k
"""


def responder_nodes(conn: Connection, jid: int) -> tuple[list[int], list[int]]:
    """The nearest road node of every fresh available responder (precomputed for the peer)."""
    rows = conn.execute(text("""
        SELECT r.id, n.id FROM responders r CROSS JOIN LATERAL (
            SELECT id FROM road_nodes WHERE jurisdiction_id = :j ORDER BY geom <-> r.geom LIMIT 1
        ) n WHERE r.jurisdiction_id = :j AND r.status = 'available' AND r.geom IS NOT NULL
        ORDER BY r.id"""), {"j": jid}).all()
    return [int(a) for a, _ in rows], [int(b) for _, b in rows]


def bench_road(engine: Engine, city: City, args: argparse.Namespace) -> dict[str, Any]:
    settings = DispatchSettings()
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        routing.clear_cache()
        t = time.perf_counter()
        graph = routing.get_graph(conn, city.jurisdiction_id)
        out["graph_build_s"] = round(time.perf_counter() - t, 2)
        print(f"\ngraph of jurisdiction {city.jurisdiction_id}: {graph.n_nodes} nodes, "
              f"{graph.n_edges} edges, built in {out['graph_build_s']} s (once, then cached)")
        # Warm-up: snaps of responders get cached as queries touch them.
        for lon, lat in sample_points(city, 30, 99):
            nearest.nearest(conn, NearestQuery(lon=lon, lat=lat, k=5, mode="road"),
                             settings=settings)
        ours_t: list[float] = []
        ours_res: list[list[tuple[int, float]]] = []
        points = sample_points(city, args.queries, 1)
        for lon, lat in points:
            t = time.perf_counter()
            r = nearest.nearest(conn, NearestQuery(lon=lon, lat=lat, k=5, mode="road"),
                                 settings=settings)
            ours_t.append(time.perf_counter() - t)
            ours_res.append([(x["id"], x["eta_s"]) for x in r["results"]])
        out["ours"] = ms(ours_t)

        rids, rnodes = responder_nodes(conn, city.jurisdiction_id)
        nodes = sorted(set(rnodes))
        peers: dict[str, list[float]] = {"whole": [], "whole_cost": [], "box": []}
        agree: dict[str, float] = {"whole_top1": 0, "box_top1": 0, "whole_overlap": 0.0,
                                   "box_overlap": 0.0, "box_short": 0, "box_worse": 0}
        diffs: dict[str, list[float]] = {"eta_diff": [], "node_diff": []}
        node_of = dict(zip(rids, rnodes, strict=True))
        half = args.box_km * 1000
        for i, (lon, lat) in enumerate(points[: args.pgr_queries]):
            dx, dy = nearest.expand_deg(lat, half)
            whole_best = float("inf")
            runs = {
                "whole": (EDGES.format(j=city.jurisdiction_id), "pgr_dijkstra",
                          "WHERE edge = -1"),
                "whole_cost": (EDGES.format(j=city.jurisdiction_id), "pgr_dijkstraCost", ""),
                "box": (EDGES_BOX.format(j=city.jurisdiction_id, lon=lon, lat=lat, dx=dx, dy=dy),
                        "pgr_dijkstra", "WHERE edge = -1"),
            }
            for name, (edges, fn, where) in runs.items():
                t = time.perf_counter()
                rows = conn.execute(text(PEER_SQL.format(fn=fn, where=where)), {
                    "j": city.jurisdiction_id, "lon": lon, "lat": lat, "edges": edges,
                    "nodes": nodes, "rids": rids, "rnodes": rnodes, "k": 5}).all()
                peers[name].append(time.perf_counter() - t)
                if name == "whole_cost":
                    continue
                ids = [int(a) for a, _ in rows]
                mine = [a for a, _ in ours_res[i]]
                if ids and mine:
                    agree[f"{name}_top1"] += int(ids[0] == mine[0])
                    agree[f"{name}_overlap"] += len(set(ids) & set(mine)) / 5
                if name == "box" and len(ids) < 5:
                    agree["box_short"] += 1
                if name == "whole" and ids and mine and ids[0] == mine[0]:
                    diffs["eta_diff"].append(abs(float(rows[0][1]) - ours_res[i][0][1]))
                if name == "whole" and rows:
                    # Same question node to node on our graph: must equal pgRouting exactly.
                    case_node = conn.execute(text(
                        "SELECT id FROM road_nodes WHERE jurisdiction_id = :j ORDER BY geom <->"
                        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1"),
                        {"j": city.jurisdiction_id, "lon": lon, "lat": lat}).scalar_one()
                    times = routing.node_times(graph, case_node, direction="to")
                    whole_best = float(rows[0][1])
                    for rid, cost in rows:
                        t_ours = times[graph.node_index(node_of[int(rid)])]
                        diffs["node_diff"].append(abs(float(t_ours) - float(cost)))
                if name == "box" and rows:
                    agree["box_worse"] += int(float(rows[0][1]) > whole_best + 1e-6)
        # Same ranking without the walk between a point and its road (as the node-snapped peer):
        no_walk = DispatchSettings(offroad_speed_kmh=1e9)
        walk_top1 = 0
        for lon, lat in points[: args.pgr_queries]:
            r = nearest.nearest(conn, NearestQuery(lon=lon, lat=lat, k=5, mode="road"),
                                settings=no_walk)
            rows = conn.execute(text(PEER_SQL.format(fn="pgr_dijkstraCost", where="")), {
                "j": city.jurisdiction_id, "lon": lon, "lat": lat,
                "edges": EDGES.format(j=city.jurisdiction_id), "nodes": nodes, "rids": rids,
                "rnodes": rnodes, "k": 1}).all()
            if rows and r["results"]:
                walk_top1 += int(int(rows[0][0]) == r["results"][0]["id"])
        m = max(1, min(args.pgr_queries, len(points)))
        out["peer_whole"] = ms(peers["whole"])
        out["peer_whole_cost"] = ms(peers["whole_cost"])
        out["peer_box"] = ms(peers["box"])
        out["agreement"] = {
            "queries": m,
            "top1_same_as_whole_graph_pgr": f"{agree['whole_top1']}/{m}",
            "top5_overlap_with_whole_graph_pgr": round(agree["whole_overlap"] / m, 2),
            "top1_same_without_offroad_walk": f"{walk_top1}/{m}",
            "top1_same_as_box_pgr": f"{agree['box_top1']}/{m}",
            "box_pgr_found_fewer_than_5": agree["box_short"],
            "box_pgr_top1_slower_than_whole": agree["box_worse"],
            "max_abs_diff_node_to_node_s": float(f"{max(diffs['node_diff']):.2g}")
            if diffs["node_diff"] else None,
            "median_abs_eta_diff_top1_s": round(statistics.median(diffs["eta_diff"]), 1)
            if diffs["eta_diff"] else None,
        }
    out["ratio_whole"] = show("road mode, nearest k=5 (in process): pgr_dijkstra whole graph vs"
                              " ours", out["peer_whole"], out["ours"],
                              peer_name="pgr whole")
    out["ratio_whole_cost"] = show("road mode: pgr_dijkstraCost whole graph vs ours",
                                   out["peer_whole_cost"], out["ours"], peer_name="pgr cost")
    out["ratio_box"] = show(f"road mode: pgr_dijkstra clipped to ±{args.box_km} km vs ours",
                            out["peer_box"], out["ours"], peer_name="pgr box")
    print(f"  agreement: {out['agreement']}")
    return out


# ---------------------------------------------------------------------------------------------
# HTTP: straight and road mode


NAIVE_SQL = """
SELECT r.id, ST_Distance(r.geom::geography,
                         ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS d
  FROM responders r
 WHERE r.jurisdiction_id = :j AND r.status = 'available' AND r.geom IS NOT NULL
   AND r.position_at >= now() - interval '10 minutes'
 ORDER BY d, r.id LIMIT 5
"""


def bench_headers(engine: Engine) -> dict[str, str]:
    """A dispatcher's bearer token for the bench's own database (responders are staff-only)."""
    from gis.auth import create_user, issue_token

    with engine.begin() as conn:
        uid = conn.execute(text("SELECT id FROM users WHERE name = 'bench-dispatcher'")).scalar()
        if uid is None:
            uid = create_user(conn, "bench-dispatcher", "dispatcher")
        token = issue_token(conn, int(uid), expires_in=timedelta(hours=2), label="bench")
    return {"Authorization": f"Bearer {token}"}


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) of process ``pid`` so far; None off Linux.

    Per request it is a steadier figure than latency on a shared machine: other processes
    delay our requests, they hardly change the work each one takes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_requests(client: httpx.Client, server: Server, requests: list[tuple[str, Any]]
                   ) -> tuple[list[float], float | None]:
    """Latency of each request (must answer 200) and the server's CPU per request (ms)."""
    times = []
    cpu0 = cpu_seconds(server.proc.pid)
    for path, params in requests:
        t = time.perf_counter()
        r = client.get(path, params=params)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
    cpu1 = cpu_seconds(server.proc.pid)
    per = None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / len(requests) * 1e3, 3)
    return times, per


def bench_http(engine: Engine, server: Server, city: City, args: argparse.Namespace
               ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = bench_headers(engine)
    points = sample_points(city, args.http_requests, 2)
    settings = DispatchSettings()
    with engine.connect() as conn:
        naive, ours_sql = [], []
        for lon, lat in points[: args.queries]:
            t = time.perf_counter()
            conn.execute(text(NAIVE_SQL), {"lon": lon, "lat": lat,
                                           "j": city.jurisdiction_id}).all()
            naive.append(time.perf_counter() - t)
            t = time.perf_counter()
            nearest.nearest(conn, NearestQuery(lon=lon, lat=lat, k=5), settings=settings)
            ours_sql.append(time.perf_counter() - t)
    out["straight_inproc"] = ms(ours_sql)
    out["straight_naive"] = ms(naive)
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
        for lon, lat in points[:50]:   # warm-up: connections, plans, caches
            client.get("/api/responders/nearest", params={"lon": lon, "lat": lat, "k": 5})
        load0 = os.getloadavg()[0]
        times, cpu_straight = timed_requests(client, server, [
            ("/api/responders/nearest", {"lon": lon, "lat": lat, "k": 5}) for lon, lat in points])
        out["straight_http"] = ms(times)
        # the same server's GET /health (one SELECT): what the machine allows
        floor, cpu_health = timed_requests(client, server, [("/health", None)] * len(points))
        out["health_http"] = ms(floor)
        # GET /api/me: the same token lookup as nearest, and no other query
        me, cpu_me = timed_requests(client, server, [("/api/me", None)] * len(points))
        out["me_http"] = ms(me)
        out["server_cpu_ms_per_request"] = {"straight": cpu_straight, "health": cpu_health,
                                            "me": cpu_me}
        out["load_http"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        for lon, lat in points[-30:]:   # warm-up: the server builds its graph once
            client.get("/api/responders/nearest",
                       params={"lon": lon, "lat": lat, "k": 5, "mode": "road"})
        road = []
        for lon, lat in points[: args.queries]:
            t = time.perf_counter()
            r = client.get("/api/responders/nearest",
                           params={"lon": lon, "lat": lat, "k": 5, "mode": "road"})
            road.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        out["road_http"] = ms(road)
    out["ratio_straight"] = show("straight mode, k=5: unindexed ST_Distance (SQL) vs ours"
                                 " (whole call, in process)", out["straight_naive"],
                                 out["straight_inproc"], key="p99", peer_name="naive SQL")
    show("straight mode over HTTP (uvicorn, loopback, keep-alive) vs GET /health on the same"
         " server", out["health_http"], out["straight_http"], key="p99", peer_name="/health")
    show("straight mode over HTTP vs GET /api/me (token lookup only) on the same server",
         out["me_http"], out["straight_http"], key="p99", peer_name="/api/me")
    show("road mode over HTTP", None, out["road_http"])
    cpu = out["server_cpu_ms_per_request"]
    if cpu["straight"] is not None:
        print(f"\nserver CPU per request (uvicorn process, all threads): straight"
              f" {cpu['straight']:.2f} ms, /api/me {cpu['me']:.2f} ms, /health"
              f" {cpu['health']:.2f} ms")
    print(f"load average (1 min) over the HTTP runs: {out['load_http'][0]:.2f} →"
          f" {out['load_http'][1]:.2f}")
    return out


# ---------------------------------------------------------------------------------------------
# Position updates


def bench_positions(engine: Engine, server: Server, city: City, args: argparse.Namespace
                    ) -> dict[str, Any]:
    ids = sorted(city.statuses)
    headers = bench_headers(engine)
    with engine.begin() as conn:   # everyone on duty for this part; restored afterwards
        conn.execute(text("UPDATE responders SET status = 'available' WHERE jurisdiction_id = :j"
                          " AND status = 'off'"), {"j": city.jurisdiction_id})
        base = {int(i): (x, y) for i, x, y in conn.execute(text(
            "SELECT id, ST_X(geom), ST_Y(geom) FROM responders WHERE jurisdiction_id = :j"
            " AND geom IS NOT NULL"), {"j": city.jurisdiction_id}).all()}
    x0, y0, x1, y1 = city.bbox
    rng = np.random.default_rng(3)
    here = {i: base.get(i, (rng.uniform(x0, x1), rng.uniform(y0, y1))) for i in ids}
    out: dict[str, Any] = {}

    def moves() -> list[dict[str, Any]]:
        batch = []
        for i in ids:
            x, y = here[i]
            x, y = x + rng.normal(0, 0.0003), y + rng.normal(0, 0.0003)   # ~30 m steps
            here[i] = (min(max(x, x0), x1), min(max(y, y0), y1))
            batch.append({"id": i, "lon": round(here[i][0], 7), "lat": round(here[i][1], 7)})
        return batch

    stop = threading.Event()
    road_during: list[float] = []

    def query_load() -> None:     # dispatchers keep asking while the positions pour in
        pts = sample_points(city, 10_000, 5)
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
            for lon, lat in pts:
                if stop.is_set():
                    return
                t = time.perf_counter()
                client.get("/api/responders/nearest",
                           params={"lon": lon, "lat": lat, "k": 5, "mode": "road"})
                road_during.append(time.perf_counter() - t)
                time.sleep(max(0.0, 1 / args.query_rate - (time.perf_counter() - t)))

    try:
        with httpx.Client(base_url=server.url, timeout=120, headers=headers) as client:
            # Peer: one request per responder.
            single = []
            for p in moves()[: args.single_puts]:
                t = time.perf_counter()
                r = client.put(f"/api/responders/{p['id']}/position",
                               json={"lon": p["lon"], "lat": p["lat"]})
                single.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
            out["single_put"] = ms(single)
            per_round_single = statistics.fmean(single) * len(ids)
            lon, lat = sample_points(city, 1, 6)[0]   # the server builds its graph first
            client.get("/api/responders/nearest",
                       params={"lon": lon, "lat": lat, "k": 5, "mode": "road"})
            loader = threading.Thread(target=query_load, daemon=True)
            loader.start()
            rounds = max(1, int(args.update_seconds / args.interval))
            latencies, lags, accepted = [], [], []
            start = time.perf_counter()
            for n in range(rounds):
                tick = start + n * args.interval
                time.sleep(max(0.0, tick - time.perf_counter()))
                body = {"positions": moves()}
                t = time.perf_counter()
                r = client.put("/api/responders/positions", json=body)
                done = time.perf_counter()
                assert r.status_code == 200, r.text
                latencies.append(done - t)
                lags.append(done - tick)
                accepted.append(r.json()["accepted"])
            stop.set()
            loader.join(30)
    finally:   # put everyone back where and as they were, so runs stay comparable
        with engine.begin() as conn:
            off = [i for i, s in city.statuses.items() if s == "off"]
            conn.execute(text("UPDATE responders SET status = 'off', geom = NULL,"
                              " position_at = NULL WHERE id = ANY(CAST(:ids AS bigint[]))"),
                         {"ids": off})
            back = sorted(base)
            conn.execute(text(
                "UPDATE responders r SET geom = ST_SetSRID(ST_MakePoint(v.x, v.y), 4326)"
                " FROM unnest(CAST(:ids AS bigint[]), CAST(:xs AS float8[]),"
                " CAST(:ys AS float8[])) AS v(id, x, y) WHERE r.id = v.id"),
                {"ids": back, "xs": [base[i][0] for i in back], "ys": [base[i][1] for i in back]})
    out["batch"] = ms(latencies)
    out["rounds"] = len(latencies)
    out["positions_per_round"] = len(ids)
    out["accepted_per_round"] = min(accepted) if accepted else 0
    out["max_lag_s"] = round(max(lags), 3)
    out["throughput_per_s"] = round(len(ids) / statistics.fmean(latencies))
    out["backlog"] = any(lat > args.interval for lat in latencies)
    out["single_put_round_s"] = round(per_round_single, 1)
    out["road_http_during_updates"] = ms(road_during)
    print(f"\nposition updates: {len(ids)} responders every {args.interval:g} s, "
          f"{len(latencies)} rounds")
    print(f"  one PUT per responder: {out['single_put']['mean']:.2f} ms each → "
          f"{per_round_single:.1f} s per round of {len(ids)}")
    print(f"  batch PUT: p50 {out['batch']['p50']:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"per round → {out['throughput_per_s']} positions/s; max lag {out['max_lag_s']} s; "
          f"backlog: {'YES' if out['backlog'] else 'no'}")
    print(f"  ratio (round time, single PUTs / batch): "
          f"{per_round_single / statistics.fmean(latencies):.1f}×")
    show("road mode over HTTP while the updates run", None, out["road_http_during_updates"])
    return out


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=os.environ.get("GRIDGOV_BENCH_DB", "gridgov_bench_dispatch"))
    ap.add_argument("--grids", type=int, default=20_000)
    ap.add_argument("--responders", type=int, default=5_000)
    ap.add_argument("--queries", type=int, default=300, help="road-mode queries (ours)")
    ap.add_argument("--pgr-queries", type=int, default=20, help="queries for each pgr peer")
    ap.add_argument("--box-km", type=float, default=2.5, help="half-width of the clipped box")
    ap.add_argument("--http-requests", type=int, default=3000)
    ap.add_argument("--update-seconds", type=float, default=60)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--single-puts", type=int, default=500)
    ap.add_argument("--query-rate", type=float, default=5, help="road queries/s during updates")
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--quick", action="store_true", help="small samples (smoke run)")
    ap.add_argument("--parts", default="road,http,positions",
                    help="comma list of the sections to run (default: all)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.pgr_queries, args.http_requests = 60, 5, 500
        args.update_seconds, args.single_puts = 20, 100

    settings = DatabaseSettings(db_name=args.db)
    db.start_cluster(settings)
    db.ensure_database(settings, args.db)
    schema.upgrade(dbname=args.db)
    engine = db.make_engine(settings)
    load = os.getloadavg()
    print(f"database {args.db}; {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    results: dict[str, Any] = {"load_average_start": round(load[0], 1)}
    server = None
    try:
        city = ensure_city(engine, args)
        results["city"] = {"edges": city.edges, "responders": city.responders}
        print(f"city: {city.edges} road edges, {city.responders} responders")
        parts = set(args.parts.split(","))
        if "road" in parts:
            results["road"] = bench_road(engine, city, args)
        if parts & {"http", "positions"}:
            server = Server(settings, args.port or free_port())
        if "http" in parts and server is not None:
            results["http"] = bench_http(engine, server, city, args)
        if "positions" in parts and server is not None:
            results["positions"] = bench_positions(engine, server, city, args)
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
    results["load_average_end"] = round(os.getloadavg()[0], 1)

    if not {"road", "http", "positions"} <= set(results):
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str))
        return 0
    r, h, p = results["road"], results["http"], results["positions"]
    rows = [
        ("road k=5 p95 (in process)", f"{r['peer_whole']['p95']:.0f} ms (pgr whole)",
         f"{r['ours']['p95']:.1f} ms", f"{r['ratio_whole']:.0f}×", "< 50 ms, ≥ 10×"),
        ("road k=5 p95 vs pgr_dijkstraCost", f"{r['peer_whole_cost']['p95']:.0f} ms",
         f"{r['ours']['p95']:.1f} ms", f"{r['ratio_whole_cost']:.0f}×", ""),
        (f"road k=5 p95 vs pgr box ±{args.box_km} km", f"{r['peer_box']['p95']:.0f} ms",
         f"{r['ours']['p95']:.1f} ms", f"{r['ratio_box']:.1f}×", ""),
        ("road k=5 p95 over HTTP", "", f"{h['road_http']['p95']:.1f} ms", "", ""),
        ("straight k=5 p99 over HTTP", f"{h['health_http']['p99']:.2f} ms (GET /health)",
         f"{h['straight_http']['p99']:.2f} ms", "", "< 5 ms"),
        ("straight k=5 p50 over HTTP", f"{h['health_http']['p50']:.2f} ms (GET /health)",
         f"{h['straight_http']['p50']:.2f} ms", "", ""),
        ("straight k=5 p99 (in process) vs naive", f"{h['straight_naive']['p99']:.1f} ms",
         f"{h['straight_inproc']['p99']:.2f} ms", f"{h['ratio_straight']:.1f}×", ""),
        (f"positions: {p['positions_per_round']} every {args.interval:g} s",
         f"{p['single_put_round_s']:.0f} s/round (single PUTs)",
         f"{p['batch']['p50'] / 1000:.2f} s/round, lag ≤ {p['max_lag_s']} s",
         f"{p['single_put_round_s'] / (p['batch']['mean'] / 1000):.0f}×",
         "no backlog" + (" ✗" if p["backlog"] else " ✓")),
    ]
    print("\n| measure | peer | ours | ratio | target |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average {results['load_average_start']} → {results['load_average_end']} "
          f"on {os.cpu_count()} CPUs")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

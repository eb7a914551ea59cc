"""Loading the synthetic city: stage times of ``build_synth`` (COPY) and the row-by-row peers.

    .venv/bin/python bench/bench_synth.py --grids 20000 --cases 1000000

Rebuilds the benchmark database from scratch and prints the seconds of every stage. Then, in a
transaction that is rolled back, it loads the same street network and the same grids again with
the project's generic inserters (``gis.roads.insert_network`` and ``gis.areas.insert_areas``,
parameterised INSERT executemany) and with the COPY path of ``gis.synth``, for the ratio.
Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench.common import DEFAULT_DB, ensure_city, machine, save, table  # noqa: E402
from gis.areas import AreaRow, LevelSpec, create_jurisdiction, insert_areas  # noqa: E402
from gis.roads import EdgeRow, insert_network  # noqa: E402
from gis.synth import _Builder  # noqa: E402
from gis.synth.city import CitySpec, plan_city, street_network  # noqa: E402


def peers(engine, grids: int, seed: int, edges_limit: int) -> list[list[object]]:  # type: ignore[no-untyped-def]
    """Row-by-row inserters vs COPY for the same rows, inside one rolled-back transaction."""
    import shapely

    city = plan_city(CitySpec(grids=grids, seed=seed))
    net = street_network(city)
    n_edges = min(edges_limit, len(net.source))
    rows: list[list[object]] = []
    with engine.connect() as conn:
        base = int(conn.execute(text("SELECT COALESCE(max(id), 0) + 1000000 FROM road_nodes")
                                ).scalar_one())
        jid = create_jurisdiction(conn, code="BENCH-PEER", name="peer", local_srid=4548,
                                  levels=(LevelSpec("grid", 14),))
        used = sorted(set(net.source[:n_edges].tolist()) | set(net.target[:n_edges].tolist()))
        nodes = {base + i: (float(net.node_lon[i]), float(net.node_lat[i])) for i in used}
        edges = [EdgeRow(base + int(s), base + int(t),
                         shapely.LineString([(net.node_lon[s], net.node_lat[s]),
                                             (net.node_lon[t], net.node_lat[t])]),
                         highway=str(h), maxspeed_kmh=float(v), oneway=bool(o), name=str(nm))
                 for s, t, h, v, o, nm in zip(net.source[:n_edges], net.target[:n_edges],
                                             net.highway[:n_edges], net.speed_kmh[:n_edges],
                                             net.oneway[:n_edges], net.name[:n_edges],
                                             strict=True)]
        sp = conn.begin_nested()
        started = time.perf_counter()
        insert_network(conn, jid, nodes, edges)
        peer_roads = time.perf_counter() - started
        sp.rollback()
        polys = city.grid_polygons
        areas = [AreaRow(code, code, 0, poly) for code, poly in zip(city.grids.codes, polys,
                                                                  strict=True)]
        sp = conn.begin_nested()
        started = time.perf_counter()
        insert_areas(conn, jid, areas)
        peer_areas = time.perf_counter() - started
        sp.rollback()
        conn.rollback()
    # The COPY path for the same stages, in a throwaway jurisdiction, rolled back.
    builder = _Builder(grids=grids, seed=seed, cases=0, responders=0, progress=False,
                       code="BENCH-COPY", as_of=None, buildings_per_grid=1)
    with engine.connect() as conn:
        builder._plan(conn)
        started = time.perf_counter()
        builder._areas(conn)
        copy_areas = time.perf_counter() - started
        started = time.perf_counter()
        builder._roads(conn)
        copy_roads = (time.perf_counter() - started) * n_edges / len(net.source)
        conn.rollback()
    n_areas = sum(len(lv) for lv in city.levels)
    rows.append([f"{grids:,} grids, insert_areas (executemany)", peer_areas, grids / peer_areas,
                 peer_areas / (copy_areas * grids / n_areas)])
    rows.append([f"{n_areas:,} areas, all 4 levels, synth COPY", copy_areas,
                 n_areas / copy_areas, 1.0])
    rows.append([f"{n_edges:,} edges, insert_network (executemany)", peer_roads,
                 n_edges / peer_roads, peer_roads / copy_roads])
    rows.append([f"{n_edges:,} edges + nodes, synth COPY (pro rata)", copy_roads,
                 n_edges / copy_roads, 1.0])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=None, help="default 50 per grid")
    parser.add_argument("--peer-edges", type=int, default=40000,
                        help="edges loaded by the row-by-row peer (it is slow)")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--no-rebuild", action="store_true",
                        help="keep an existing city (only the peer comparison runs)")
    parser.add_argument("--skip-peers", action="store_true",
                        help="only rebuild and time the stages")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    city = ensure_city(args.db, grids=args.grids, seed=args.seed, cases=args.cases,
                       rebuild=not args.no_rebuild)
    wall = time.perf_counter() - started
    info = machine(city.engine)
    with city.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("areas", "area_parts", "buildings", "facilities", "road_nodes",
                            "road_edges", "responders", "cases")}
    if city.build_seconds:
        stage_rows = [[name, seconds] for name, seconds in city.build_seconds.items()]
        print(table(f"build_synth stages, {args.grids:,} grids (wall {wall:.0f} s incl. "
                    f"database creation and migrations)", ["stage", "seconds"], stage_rows))
    print(f"\nrows: {counts}")
    rows = [] if args.skip_peers else peers(city.engine, args.grids, args.seed, args.peer_edges)
    if rows:
        print(table("COPY vs the generic row-by-row inserters (same rows, rolled back)",
                    ["load", "seconds", "rows/s", "× COPY time"], rows))
    print(f"machine: {info}")
    path = save("bench_synth", {"machine": info, "args": vars(args), "wall_s": wall,
                                "stages": city.build_seconds, "counts": counts, "peers": rows})
    print(f"results saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``gridgov`` command line. It lives in ``api`` because it sits on top of everything:
it drives ``gis`` (database, demo, import) and serves the web app."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gis import db
from gis.errors import GridgovError
from gis.settings import CitySettings, DatabaseSettings, ServerSettings


def _print(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def cmd_db(args: argparse.Namespace) -> int:
    settings = DatabaseSettings()
    if args.action == "start":
        st = db.start_cluster(settings)
    elif args.action == "stop":
        st = db.stop_cluster(settings)
    else:
        st = db.status(settings)
    _print(st.__dict__)
    return 0 if (st.running or args.action == "stop") else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from gis import schema

    settings = DatabaseSettings()
    db.start_cluster(settings)
    if args.revision.startswith("-") or args.downgrade:
        schema.downgrade(revision=args.revision)
    else:
        schema.upgrade(revision=args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gis import auth, demo, schema

    settings = DatabaseSettings()
    db.start_cluster(settings)
    schema.upgrade()
    engine = db.make_engine(settings)
    tokens = settings.data_dir / "demo-tokens.json"
    try:
        with engine.begin() as conn:
            summary = demo.load_demo(conn, city=CitySettings(), progress=True,
                                     reload=args.reload)
            if summary.get("status") == "loaded" or not tokens.exists():
                auth.create_demo_accounts(conn, tokens,
                                          jurisdiction_id=demo.jurisdiction_id(conn))
    finally:
        engine.dispose()
    _print(summary)
    print(f"demo accounts (one per role): tokens in {tokens}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from gis import schema, synth

    settings = DatabaseSettings()
    db.start_cluster(settings)
    schema.upgrade()
    engine = db.make_engine(settings)
    try:
        summary = synth.build_synth(engine, grids=args.grids, seed=args.seed, cases=args.cases,
                                    responders=args.responders, progress=True)
    finally:
        engine.dispose()
    _print(summary)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.kind == "cases":
        from api import cli_cases

        return cli_cases.cmd_import_cases(args)
    from gis import io

    settings = DatabaseSettings()
    db.start_cluster(settings)
    engine = db.make_engine(settings)
    try:
        with engine.begin() as conn:
            report = io.import_areas(
                conn, Path(args.file), layer=args.layer, code_field=args.code_field,
                name_field=args.name_field, level_field=args.level_field,
                parent_field=args.parent_field, source_crs=args.crs,
                jurisdiction=args.jurisdiction, level=args.level, progress=True,
            )
    finally:
        engine.dispose()
    _print(report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gis import io

    settings = DatabaseSettings()
    db.start_cluster(settings)
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            count = io.export_layer(conn, args.layer, Path(args.file), level=args.level,
                                    at=args.at, driver=args.driver)
    finally:
        engine.dispose()
    print(f"wrote {count} features to {args.file}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    server = ServerSettings()
    settings = DatabaseSettings()
    db.start_cluster(settings)
    host = args.host or server.host
    port = args.port or server.port
    os.environ["GRIDGOV_HOST"] = host  # the app's start-up checks warn about 0.0.0.0
    print(f"gridgov serving on http://{host}:{port}", flush=True)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port,
                workers=args.workers or server.workers, log_level="info",
                access_log=False)  # the app writes its own access line (gridgov.access)
    return 0


def cmd_responders(args: argparse.Namespace) -> int:
    from gis.dispatch import DispatchSettings, prune_positions

    settings = DatabaseSettings()
    db.start_cluster(settings)
    engine = db.make_engine(settings)
    try:
        if args.action == "simulate":
            return _simulate(engine, args)
        with engine.begin() as conn:
            deleted = prune_positions(conn, settings=DispatchSettings())
    finally:
        engine.dispose()
    _print({"pruned_positions": deleted})
    return 0


def _simulate(engine: db.Engine, args: argparse.Namespace) -> int:
    """``gridgov responders simulate``: demo patrols until Ctrl-C, ``--duration`` or ``--once``."""
    import time

    from sqlalchemy import text

    from gis.dispatch import DispatchSettings, PatrolSimulator, jurisdiction_id
    from gis.errors import InvalidInput, NotFound

    settings = DispatchSettings()

    if args.interval <= 0 or args.interval > settings.stale_after_s:
        raise InvalidInput(f"--interval must be between 0 and {settings.stale_after_s:g} s"
                           f" (the staleness limit), got {args.interval:g}", field="interval")
    with engine.begin() as conn:
        if args.jurisdiction:
            jids = [jurisdiction_id(conn, args.jurisdiction)]
        else:  # every jurisdiction with responders on duty
            jids = list(conn.execute(text(
                "SELECT DISTINCT jurisdiction_id FROM responders"
                " WHERE status IN ('available', 'busy') ORDER BY 1")).scalars())
        sims = []
        for j in jids:
            if j is None:
                continue
            try:
                sims.append(PatrolSimulator(conn, int(j), seed=args.seed,
                                            staff_kmh=args.staff_kmh))
            except NotFound as exc:
                if args.jurisdiction:
                    raise
                print(f"skipped: {exc.detail}", flush=True)  # no roads: nothing to patrol
    if not sims:
        print("no responders on duty: nothing to simulate (set some to available or busy)")
        return 1
    started = time.monotonic()
    ticks = 0
    print(f"simulating {len(sims)} jurisdiction(s) every {args.interval:g} s"
          + ("" if args.once else " — Ctrl-C to stop"), flush=True)
    try:
        while True:
            tick_at = time.monotonic()
            with engine.begin() as conn:
                totals: dict[str, int] = {}
                for sim in sims:
                    for key, n in sim.tick(conn, dt_s=args.interval, settings=settings).items():
                        totals[key] = totals.get(key, 0) + int(n)
            ticks += 1
            print(f"tick {ticks}: {totals.get('moved', 0)} patrolling, {totals.get('held', 0)}"
                  f" busy holding position, {totals.get('rejected', 0)} refused", flush=True)
            elapsed = time.monotonic() - started
            if args.once or (args.duration is not None and elapsed + args.interval > args.duration):
                break
            time.sleep(max(0.0, args.interval - (time.monotonic() - tick_at)))
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridgov", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="the embedded PostGIS cluster")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("migrate", help="apply Alembic migrations")
    p.add_argument("revision", nargs="?", default="heads")
    p.add_argument("--downgrade", action="store_true")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="load the Helsinki demo city (skipped if loaded)")
    p.add_argument("--reload", action="store_true", help="drop and rebuild the demo city")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="build a deterministic synthetic city")
    p.add_argument("--grids", type=int, default=1300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=None, help="default: 50 per grid")
    p.add_argument("--responders", type=int, default=None,
                   help="default: 4 per grid, at most 5,000")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("import", help="import areas (GeoJSON, GeoPackage, Shapefile) or cases"
                       " (CSV, GeoJSON)")
    p.add_argument("kind", choices=["areas", "cases"])
    p.add_argument("file")
    p.add_argument("--layer", default=None)
    p.add_argument("--code-field", default="code")
    p.add_argument("--name-field", default="name")
    p.add_argument("--level-field", default="level")
    p.add_argument("--parent-field", default="parent_code")
    p.add_argument("--level", default=None, help="level of every feature (overrides field)")
    p.add_argument("--crs", default=None, help="source EPSG code when the file has none")
    p.add_argument("--jurisdiction", default=None, help="jurisdiction code (default: first)")
    p.add_argument("--strict", action="store_true",
                   help="cases: all or nothing (default: valid rows in, invalid rows reported)")
    p.add_argument("--triggers", dest="fast", action="store_const", const=False, default=None,
                   help="cases: load through the row triggers even where the fast set-based"
                   " path is allowed (docs/cases.md, Bulk import)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export a layer to GeoJSON, GeoPackage, Shapefile, CSV")
    p.add_argument("layer", help="areas, buildings, facilities, components, road_edges, ...")
    p.add_argument("file")
    p.add_argument("--level", default=None)
    p.add_argument("--at", default=None)
    p.add_argument("--driver", default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="serve the API and web UI")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("responders", help="responders: `prune` the position history to the"
                       " retention and per-responder cap (GRIDGOV_DISPATCH_*); `simulate` demo"
                       " patrols so on-duty responders stay live")
    p.add_argument("action", choices=["prune", "simulate"])
    p.add_argument("--interval", type=float, default=10.0,
                   help="simulate: seconds between position reports (default 10)")
    p.add_argument("--duration", type=float, default=None,
                   help="simulate: stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--once", action="store_true",
                   help="simulate: one round of fresh positions, then exit")
    p.add_argument("--jurisdiction", default=None,
                   help="simulate: jurisdiction code (default: all with responders on duty)")
    p.add_argument("--seed", type=int, default=1, help="simulate: random seed of the turns")
    p.add_argument("--staff-kmh", type=float, default=12.0,
                   help="simulate: patrol speed of staff on foot or bike (vehicles: the road's)")
    p.set_defaults(func=cmd_responders)

    from api import cli_cases

    cli_cases.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GridgovError as exc:
        print(f"gridgov: {exc.detail}", file=sys.stderr)
        if exc.extra.get("problems"):
            for problem in exc.extra["problems"][:50]:
                print(f"  - {json.dumps(problem, ensure_ascii=False, default=str)}",
                      file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

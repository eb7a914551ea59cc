"""Deterministic synthetic cities at any scale, for demos, tests and benchmarks.

``build_synth(engine, grids=20_000, seed=1)`` builds, around 116.3–116.6 E / 39.8–40.0 N:
a four-level hierarchy (district → street → community → grid, 14-digit codes, exact cover)
cut along a street lattice that is also loaded as a routable network (``road_nodes`` /
``road_edges``, one-way lanes, speeds by class); buildings with household and resident counts;
facilities of eight types; responders (staff and vehicles); and a year of cases with hotspots, a
daily rhythm, a category mix and realistic outcomes. Same seed and parameters → same rows
(surrogate ids aside); ``as_of`` anchors the timeline (default: now, to the hour).

Everything is generated with numpy and loaded with ``COPY``; each stage commits on its own
(``build_synth``) or everything runs inside the caller's transaction (``build_synth_in``, for
tests). See ``docs/benchmarks.md`` for load times.

>>> from gis.synth.city import CitySpec, plan_city
>>> city = plan_city(CitySpec(grids=20, seed=1))
>>> len(city.grids), city.grids.codes[0]
(20, '99010100100101')
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, text
from tqdm import tqdm

from gis.synth import copy as cp
from gis.synth.cases import (
    CHANNEL_ZH,
    CHANNELS,
    CHUNK,
    CaseContext,
    Categories,
    WorkClock,
    case_chunks,
)
from gis.synth.city import (
    LEVEL_NAMES,
    LOCAL_SRID,
    TIMEZONE,
    City,
    CitySpec,
    plan_city,
    street_network,
)
from gis.synth.population import Buildings, make_buildings, make_facilities, make_responders

__all__ = ["build_synth", "build_synth_in", "default_code", "drop_synth", "plan_city",
           "CitySpec", "City"]

BUILDINGS_PER_GRID = 50
CASES_PER_GRID = 50
RESPONDERS_PER_GRID = 4
MAX_DEFAULT_RESPONDERS = 5000  # a district's grid workforce (DOMAIN.md)
AREAS_VALID_DAYS = 730  # boundaries in force since two years before as_of
_BUILDING_CHUNK = 100_000


def default_code(grids: int, seed: int) -> str:
    """``SYN-<grids>-<seed>``, or a hash of it when that exceeds ``jurisdictions.code``'s 12."""
    code = f"SYN-{grids}-{seed}"
    if len(code) <= 12:
        return code
    return "SYN-" + hashlib.sha1(code.encode()).hexdigest()[:8].upper()


def build_synth(
    engine: Engine,
    *,
    grids: int,
    seed: int,
    cases: int | None = None,
    responders: int | None = None,
    progress: bool = False,
    jurisdiction_code: str | None = None,
    as_of: datetime | None = None,
    buildings_per_grid: int = BUILDINGS_PER_GRID,
) -> dict[str, Any]:
    """Build a synthetic city of ``grids`` grids, committing stage by stage; ANALYZE at the end.

    Defaults: 50 cases and 50 buildings per grid, 4 responders per grid up to 5,000. If a stage
    fails, the stages already committed are removed again. Returns a summary with counts and the
    seconds each stage took.
    """
    builder = _Builder(grids=grids, seed=seed, cases=cases, responders=responders,
                       progress=progress, code=jurisdiction_code, as_of=as_of,
                       buildings_per_grid=buildings_per_grid)
    try:
        for name, stage in builder.stages():
            with engine.begin() as conn:
                builder.run(name, stage, conn)
    except BaseException:
        if builder.jurisdiction_id is not None and builder.code:
            with contextlib.suppress(Exception):  # keep the original error
                drop_synth(engine, builder.code)
        raise
    started = time.perf_counter()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in _TABLES:
            conn.execute(text(f"ANALYZE {table}"))
    builder.timings["analyze"] = round(time.perf_counter() - started, 2)
    return builder.summary()


def build_synth_in(
    conn: Connection,
    *,
    grids: int,
    seed: int,
    cases: int | None = None,
    responders: int | None = None,
    progress: bool = False,
    jurisdiction_code: str | None = None,
    as_of: datetime | None = None,
    buildings_per_grid: int = BUILDINGS_PER_GRID,
) -> dict[str, Any]:
    """Like :func:`build_synth`, entirely inside ``conn``'s transaction (nothing committed)."""
    builder = _Builder(grids=grids, seed=seed, cases=cases, responders=responders,
                       progress=progress, code=jurisdiction_code, as_of=as_of,
                       buildings_per_grid=buildings_per_grid)
    for name, stage in builder.stages():
        builder.run(name, stage, conn)
    return builder.summary()


_TABLES = ("areas", "area_parts", "buildings", "facilities", "road_nodes", "road_edges",
           "responders", "cases")


def drop_synth(engine: Engine, code: str) -> bool:
    """Delete a jurisdiction built by this module and everything in it. False if absent.

    Cases that have case_events cannot be deleted (the history is append-only): drop the
    database instead.
    """
    with engine.begin() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": code}).scalar()
        if jid is None:
            return False
        params = {"j": jid}
        for sql in (
            "DELETE FROM cases WHERE jurisdiction_id = :j",
            "DELETE FROM responders WHERE jurisdiction_id = :j",
            "DELETE FROM facilities WHERE jurisdiction_id = :j",
            "DELETE FROM buildings WHERE jurisdiction_id = :j",
            "DELETE FROM road_edges WHERE jurisdiction_id = :j",
            "DELETE FROM road_nodes WHERE jurisdiction_id = :j",
        ):
            conn.execute(text(sql), params)
        for level in range(len(LEVEL_NAMES) - 1, -1, -1):
            conn.execute(text("DELETE FROM areas WHERE jurisdiction_id = :j AND level = :l"),
                         {"j": jid, "l": level})
        conn.execute(text("DELETE FROM area_levels WHERE jurisdiction_id = :j"), params)
        conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), params)
    return True


# ---------------------------------------------------------------------- the build


@dataclass
class _Builder:
    grids: int
    seed: int
    cases: int | None
    responders: int | None
    progress: bool
    code: str | None
    as_of: datetime | None
    buildings_per_grid: int
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    jurisdiction_id: int | None = None

    def __post_init__(self) -> None:
        if self.grids < 1:
            raise ValueError(f"grids must be at least 1, not {self.grids}")
        self.code = self.code or default_code(self.grids, self.seed)
        if len(self.code) > 12:
            raise ValueError(f"jurisdiction code {self.code!r} is longer than 12 characters")
        moment = self.as_of or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("as_of must carry a time zone")
        self.as_of = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0) \
            if self.as_of is None else moment.astimezone(UTC)
        self.n_cases = CASES_PER_GRID * self.grids if self.cases is None else int(self.cases)
        self.n_responders = (min(RESPONDERS_PER_GRID * self.grids, MAX_DEFAULT_RESPONDERS)
                             if self.responders is None else int(self.responders))
        if self.n_cases < 0 or self.n_responders < 0:
            raise ValueError("cases and responders must not be negative")
        self.grid_ids: NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    @property
    def as_of_utc(self) -> datetime:
        assert self.as_of is not None
        return self.as_of

    def stages(self) -> list[tuple[str, Callable[[Connection], None]]]:
        return [("plan", self._plan), ("areas", self._areas), ("buildings", self._buildings),
                ("facilities", self._facilities), ("roads", self._roads),
                ("responders", self._responders), ("cases", self._cases)]

    def run(self, name: str, stage: Callable[[Connection], None], conn: Connection) -> None:
        started = time.perf_counter()
        stage(conn)
        self.timings[name] = round(time.perf_counter() - started, 2)

    def _bar(self, desc: str, total: int) -> tqdm:
        return tqdm(total=total, desc=f"synth {desc}", unit="rows", disable=not self.progress,
                    unit_scale=True, leave=True)

    def _copy(self, conn: Connection, table: str, columns: tuple[str, ...], total: int,
              chunks: Iterator[bytes]) -> None:
        with self._bar(table, total) as bar:
            cp.copy_in(conn, table, columns, chunks,
                       on_chunk=lambda chunk: bar.update(chunk.count(b"\n")))

    # ------------------------------------------------------------------ stages

    def _plan(self, conn: Connection) -> None:
        """The geometry and the buildings, in memory (no database work)."""
        self.city: City = plan_city(CitySpec(grids=self.grids, seed=self.seed))
        total = self.buildings_per_grid * self.grids
        self.buildings: Buildings = make_buildings(self.city, total)

    def _areas(self, conn: Connection) -> None:
        from gis.areas import DEFAULT_LEVELS, create_jurisdiction

        if conn.execute(text("SELECT 1 FROM jurisdictions WHERE code = :c"),
                        {"c": self.code}).scalar():
            from gis.errors import Conflict

            raise Conflict(f"jurisdiction {self.code!r} exists already: drop it "
                           "(gis.synth.drop_synth) or choose another code", field="code")
        assert self.code is not None
        self.jurisdiction_id = create_jurisdiction(
            conn, code=self.code, name=f"合成城市 Synthetic city ({self.grids} grids, "
            f"seed {self.seed})", local_srid=LOCAL_SRID, levels=DEFAULT_LEVELS,
            timezone=TIMEZONE)
        city, b = self.city, self.buildings
        n_levels = len(city.levels)
        hh = [np.zeros(0, dtype=np.int64)] * n_levels
        pop = [np.zeros(0, dtype=np.int64)] * n_levels
        hh[-1] = np.bincount(b.grid, weights=b.households, minlength=len(city.grids)
                             ).astype(np.int64)
        pop[-1] = np.bincount(b.grid, weights=b.residents, minlength=len(city.grids)
                              ).astype(np.int64)
        for level in range(n_levels - 2, -1, -1):
            up = city.levels[level + 1].parent
            size = len(city.levels[level])
            hh[level] = np.bincount(up, weights=hh[level + 1], minlength=size).astype(np.int64)
            pop[level] = np.bincount(up, weights=pop[level + 1], minlength=size).astype(np.int64)
        valid_from = cp.times(np.array([int(self.as_of_utc.timestamp())
                                        - AREAS_VALID_DAYS * 86400]))[0]
        ids_above = np.zeros(0, dtype=np.int64)
        total = sum(len(lv) for lv in city.levels)
        with self._bar("areas", total) as bar:
            for level, lv in enumerate(city.levels):
                polys = shapely.set_srid(shapely.multipolygons(city.polygons(level)[:, None]),
                                         4326)
                wkb = shapely.to_wkb(polys, hex=True, include_srid=True).tolist()
                n = len(lv)
                parent = (cp.const(None, n) if level == 0 else cp.ints(ids_above[lv.parent]))
                grid_types = lv.grid_types if lv.grid_types else [None] * n
                rows = cp.tsv([cp.const(self.jurisdiction_id, n), cp.const(level, n),
                               lv.codes, cp.texts(lv.names), parent, cp.texts(grid_types),
                               cp.const(valid_from, n), cp.ints(hh[level]),
                               cp.ints(pop[level]), wkb])
                cp.copy_in(conn, "areas", ("jurisdiction_id", "level", "code", "name",
                                           "parent_id", "grid_type", "valid_from",
                                           "households", "population", "geom"), [rows])
                found: dict[str, int] = dict(conn.execute(  # type: ignore[arg-type]
                    text("SELECT code, id FROM areas WHERE jurisdiction_id = :j"
                         " AND level = :l AND valid_to IS NULL"),
                    {"j": self.jurisdiction_id, "l": level}).all())
                ids_above = np.array([found[c] for c in lv.codes], dtype=np.int64)
                bar.update(n)
        self.grid_ids = ids_above
        self.counts["areas"] = {name: len(lv) for name, lv in zip(LEVEL_NAMES, city.levels,
                                                                   strict=True)}
        self.counts["households"] = int(hh[0].sum())
        self.counts["population"] = int(pop[0].sum())

    def _buildings(self, conn: Connection) -> None:
        from gis.synth.population import footprints

        b, j = self.buildings, self.jurisdiction_id

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(b), _BUILDING_CHUNK):
                sl = slice(start, start + _BUILDING_CHUNK)
                n = len(b.block[sl])
                yield cp.tsv([cp.const(j, n), cp.texts(b.use[sl]), cp.ints(b.levels[sl]),
                              cp.ints(b.households[sl]), cp.ints(b.residents[sl]),
                              cp.ewkb_quads(footprints(self.city, b, sl)),
                              cp.ewkb_points(b.lon[sl], b.lat[sl])])

        self._copy(conn, "buildings", ("jurisdiction_id", "use", "levels", "households",
                                       "residents", "geom", "pt"), len(b), chunks())
        self.counts["buildings"] = len(b)

    def _facilities(self, conn: Connection) -> None:
        f = make_facilities(self.city, self.buildings)
        n = len(f)
        rows = cp.tsv([cp.const(self.jurisdiction_id, n), cp.texts(f.type), cp.texts(f.name),
                       cp.ints(f.capacity), cp.texts(f.hours), cp.floats(f.radius_m),
                       cp.floats(f.minutes), [f"synth:{i + 1}" for i in range(n)],
                       cp.const('{"synthetic": true}', n), cp.ewkb_points(f.lon, f.lat)])
        self._copy(conn, "facilities", ("jurisdiction_id", "type", "name", "capacity", "hours",
                                        "service_radius_m", "service_minutes", "source_id",
                                        "attributes", "geom"), n, iter([rows]))
        kinds, counts = np.unique(f.type.astype(str), return_counts=True)
        self.counts["facilities"] = {str(k): int(c) for k, c in zip(kinds, counts, strict=True)}

    def _roads(self, conn: Connection) -> None:
        net = street_network(self.city)
        j = self.jurisdiction_id
        n_nodes = len(net.node_lon)
        first = int(conn.execute(text(
            "SELECT GREATEST(COALESCE((SELECT max(id) FROM road_nodes), 0),"
            " (SELECT last_value FROM road_nodes_id_seq)) + 1")).scalar_one())
        node_id = first + np.arange(n_nodes, dtype=np.int64)
        self._copy(conn, "road_nodes", ("id", "jurisdiction_id", "geom"), n_nodes, iter([
            cp.tsv([cp.ints(node_id), cp.const(j, n_nodes),
                    cp.ewkb_points(net.node_lon, net.node_lat)])]))
        conn.execute(text("SELECT setval('road_nodes_id_seq', :v)"),
                     {"v": int(node_id[-1])})
        cost = np.maximum(net.length_m / (net.speed_kmh / 3.6), 0.01)  # as gis.roads does
        reverse = np.where(net.oneway, -1.0, cost)
        n = len(net.source)
        step = 200_000

        def chunks() -> Iterator[bytes]:
            for s in range(0, n, step):
                sl = slice(s, s + step)
                m = len(net.source[sl])
                src, dst = net.source[sl], net.target[sl]
                yield cp.tsv([cp.const(j, m), cp.ints(node_id[src]), cp.ints(node_id[dst]),
                              cp.floats(cost[sl]), cp.floats(reverse[sl]),
                              cp.floats(net.length_m[sl]), cp.floats(net.speed_kmh[sl]),
                              ["t" if o else "f" for o in net.oneway[sl].tolist()],
                              cp.texts(net.highway[sl]), cp.texts(net.name[sl]),
                              cp.const(0, m),
                              cp.ewkb_segments(net.node_lon[src], net.node_lat[src],
                                               net.node_lon[dst], net.node_lat[dst])])

        # The lattice is one connected graph: every edge is in component 0 (the largest).
        self._copy(conn, "road_edges", ("jurisdiction_id", "source", "target", "cost",
                                        "reverse_cost", "length_m", "maxspeed_kmh", "oneway",
                                        "highway", "name", "component", "geom"), n, chunks())
        self.counts["road_nodes"] = n_nodes
        self.counts["road_edges"] = n
        self.counts["oneway_edges"] = int(net.oneway.sum())

    def _responders(self, conn: Connection) -> None:
        from gis.categories import seed_defaults

        seed_defaults(conn)
        depts = conn.execute(text("SELECT id, code FROM departments ORDER BY code")).all()
        codes = [str(r[1]) for r in depts]
        dept_ids = np.array([int(r[0]) for r in depts] + [-1], dtype=np.int64)
        r = make_responders(self.city, self.buildings, self.n_responders, codes, self.as_of_utc)
        n = len(r)
        rows = cp.tsv([cp.const(self.jurisdiction_id, n), cp.texts(r.name), cp.texts(r.kind),
                       cp.ints(dept_ids[r.department], null=-1), list(r.skills),
                       cp.texts(r.status), cp.ints(self.grid_ids[r.home_grid]),
                       cp.times(r.position_at, null=-1), cp.ewkb_points(r.lon, r.lat)])
        if n:
            self._copy(conn, "responders", ("jurisdiction_id", "name", "kind", "department_id",
                                            "skills", "status", "home_area_id", "position_at",
                                            "geom"), n, iter([rows]))
        ids = conn.execute(text("SELECT id, home_area_id FROM responders"
                                " WHERE jurisdiction_id = :j ORDER BY id"),
                           {"j": self.jurisdiction_id}).all()
        grid_pos = {int(g): i for i, g in enumerate(self.grid_ids.tolist())}
        resp_id = np.array([int(i) for i, _ in ids], dtype=np.int64)
        home = np.array([grid_pos[int(g)] for _, g in ids], dtype=np.int64)
        order = np.argsort(home, kind="stable")
        self.responder_id, self.responder_home = resp_id[order], home[order]
        statuses, counts = np.unique(r.status.astype(str), return_counts=True)
        self.counts["responders"] = {str(s): int(c) for s, c in zip(statuses, counts,
                                                                    strict=True)}

    def _cases(self, conn: Connection) -> None:
        from gis.calendar import load_calendar
        from gis.index import AreaIndex

        rows = [dict(r) for r in conn.execute(text(
            "SELECT id, code, kind, name, name_zh, department_id, deadline_value, deadline_unit,"
            " urgency FROM categories WHERE depth = 2 AND active ORDER BY code")).mappings()]
        assert self.jurisdiction_id is not None
        calendar = load_calendar(conn, self.jurisdiction_id)
        cats = Categories.from_rows(rows, calendar)
        as_of_s = int(self.as_of_utc.timestamp())
        first_day = (self.as_of_utc - timedelta(days=400)).date()
        clock = WorkClock(calendar, first_day, 400 + 400)
        index = AreaIndex.load(conn, jurisdiction_id=self.jurisdiction_id)
        position = {int(i): n for n, i in enumerate(self.grid_ids.tolist())}
        grid_position = np.array([position.get(int(i), -1) for i in index.ids], dtype=np.int64)
        ctx = CaseContext(self.city, self.buildings, cats, index, grid_position,
                          self.responder_id, self.responder_home, as_of_s, clock)
        j = self.jurisdiction_id
        labels = np.array([[f"{CHANNEL_ZH[c]}：{label}" for c in range(len(CHANNELS))]
                           for label in cats.label.tolist()], dtype=object)
        channels = np.asarray(CHANNELS, dtype=object)
        stats = {"open": 0, "overdue_open": 0, "closed": 0, "rated": 0}

        def chunks() -> Iterator[bytes]:
            for c in case_chunks(ctx, self.n_cases):
                n = len(c["lon"])
                open_ = ~np.isin(c["status"], ("closed", "rejected", "redirected"))
                stats["open"] += int(open_.sum())
                stats["overdue_open"] += int((open_ & (c["due_at"] < as_of_s)).sum())
                stats["closed"] += int((c["status"] == "closed").sum())
                stats["rated"] += int((c["satisfaction"] > 0).sum())
                yield cp.tsv([
                    cp.const(j, n), cp.ints(c["category_id"]), cp.texts(channels[c["channel"]]),
                    cp.ints(c["urgency"]), cp.texts(labels[c["category"], c["channel"]]),
                    cp.ints(c["area_id"], null=-1), cp.ints(c["department_id"], null=-1),
                    cp.ints(c["responder_id"], null=-1), cp.texts(c["status"]),
                    cp.times(c["reported_at"]), cp.times(c["due_at"], null=-1),
                    cp.times(c["closed_at"], null=-1), cp.ints(c["escalation_level"]),
                    cp.ints(c["satisfaction"], null=-1), cp.ewkb_points(c["lon"], c["lat"]),
                ])

        if self.n_cases:
            self._copy(conn, "cases", ("jurisdiction_id", "category_id", "channel", "urgency",
                                       "description", "area_id", "department_id",
                                       "responder_id", "status", "reported_at", "due_at",
                                       "closed_at", "escalation_level", "satisfaction", "geom"),
                       self.n_cases, chunks())
        self.counts["cases"] = {"total": self.n_cases, **stats}

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        city = self.city
        return {
            "jurisdiction_id": self.jurisdiction_id, "code": self.code, "grids": self.grids,
            "seed": self.seed, "local_srid": LOCAL_SRID, "timezone": TIMEZONE,
            "as_of": self.as_of_utc.isoformat(),
            "bbox": [round(v, 6) for v in city.bbox],
            "blocks": city.nx * city.ny, "chunk_rows": CHUNK, **self.counts,
            "seconds": {**self.timings, "total": round(sum(self.timings.values()), 2)},
        }

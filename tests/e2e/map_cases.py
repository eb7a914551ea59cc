"""Committed cases for the browser tests of the map viewer and the command screen.

The server under test reads on its own connections, so these cases are committed (and deleted
by the fixture that made them). They are written straight into ``cases`` (no intake, no events):
the pages only read them, and the rows carry what the tiles and counts use — category, status,
grid, point, reported/due/closed times.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

OPEN = ("reported", "accepted", "filed", "dispatched", "in_progress", "handled", "verified")


@dataclass(frozen=True)
class CaseSpec:
    """One case: in ``grid`` (at ``lon``/``lat``, or a seeded random point of the grid),
    reported ``age`` ago, due ``due_in`` from now (negative: overdue), closed ``closed_ago``
    ago when its status is ``closed``."""

    grid: str
    status: str = "reported"
    age: timedelta = timedelta(hours=6)
    due_in: timedelta = timedelta(days=2)
    closed_ago: timedelta | None = None
    category: str = "E010101"
    channel: str = "patrol"
    lon: float | None = None
    lat: float | None = None
    seed: int = 1

    @property
    def open(self) -> bool:
        return self.status not in ("closed", "rejected")

    @property
    def overdue(self) -> bool:
        return self.open and self.due_in < timedelta(0)


_INSERT = text("""
    INSERT INTO cases (jurisdiction_id, category_id, channel, status, urgency, reported_at,
                       due_at, closed_at, area_id, department_id, geom)
    SELECT a.jurisdiction_id, k.id, :channel, :status, k.urgency, :reported, :due, :closed,
           a.id, k.department_id,
           COALESCE(ST_SetSRID(ST_MakePoint(CAST(:lon AS float8), CAST(:lat AS float8)), 4326),
                    ST_GeometryN(ST_GeneratePoints(ST_Buffer(a.geom, -0.00004), 1, :seed), 1))
      FROM areas a, categories k
     WHERE a.code = :grid AND a.valid_to IS NULL AND k.code = :category
     ORDER BY a.jurisdiction_id
     LIMIT 1
    RETURNING id
""")


def insert_cases(engine: Engine, specs: Iterable[CaseSpec],
                 now: datetime | None = None) -> list[int]:
    """Insert and commit the cases; returns their ids in order."""
    now = now or datetime.now(UTC)
    ids: list[int] = []
    with engine.begin() as conn:
        for spec in specs:
            closed = now - spec.closed_ago if spec.closed_ago is not None else None
            row = conn.execute(_INSERT, {
                "channel": spec.channel, "status": spec.status, "reported": now - spec.age,
                "due": now + spec.due_in, "closed": closed, "grid": spec.grid,
                "category": spec.category, "lon": spec.lon, "lat": spec.lat,
                "seed": spec.seed}).first()
            if row is None:
                raise LookupError(f"no grid {spec.grid} in force or no category {spec.category}")
            ids.append(int(row[0]))
    return ids


def delete_cases(engine: Engine, ids: Sequence[int]) -> None:
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM case_events WHERE case_id = ANY(:ids)"), {"ids": list(ids)})
        conn.execute(text("DELETE FROM cases WHERE id = ANY(:ids)"), {"ids": list(ids)})


def city_cases(engine: Engine, jurisdiction: str, *, n: int = 140, seed: int = 7
               ) -> list[CaseSpec]:
    """A plausible day in a city: ``n`` cases over its grids with a few hotspots, about half
    closed (some today), the rest open, some of them overdue. Deterministic for a seed."""
    with engine.connect() as conn:
        grids = conn.execute(text(
            "SELECT a.code FROM areas a JOIN jurisdictions j ON j.id = a.jurisdiction_id"
            " WHERE j.code = :j AND a.valid_to IS NULL AND a.level ="
            " (SELECT max(rank) FROM area_levels l WHERE l.jurisdiction_id = j.id)"
            " ORDER BY a.code"), {"j": jurisdiction}).scalars().all()
        categories = conn.execute(text(
            "SELECT code FROM categories WHERE depth = 2 AND active ORDER BY code"
        )).scalars().all()
    rng = random.Random(seed)
    hot = rng.sample(list(grids), k=max(1, len(grids) // 6))
    common = [c for c in categories if c.startswith(("E0101", "E0301", "C0201", "C0301"))]
    specs = []
    for i in range(n):
        grid = rng.choice(hot) if rng.random() < 0.45 else rng.choice(grids)
        category = rng.choice(common) if common and rng.random() < 0.6 else rng.choice(categories)
        age = timedelta(hours=rng.uniform(0.5, 24 * 20))
        roll = rng.random()
        if roll < 0.45:
            closed_ago = timedelta(hours=rng.uniform(0.1, min(age.total_seconds() / 3600, 24 * 5)))
            status, due_in = "closed", timedelta(days=1)
        elif roll < 0.65:
            closed_ago, status = None, rng.choice(OPEN)
            due_in = -timedelta(hours=rng.uniform(1, 24 * 6))
        else:
            closed_ago, status = None, rng.choice(OPEN)
            due_in = timedelta(hours=rng.uniform(1, 24 * 4))
        specs.append(CaseSpec(grid, status, age, due_in, closed_ago, category,
                              rng.choice(("patrol", "hotline", "app", "video")), seed=i + 1))
    return specs


# --- the e2e city's cases, facility and component ---------------------------------------------

@dataclass
class CityCases:
    """What ``seed_city`` committed: case ids by name, their lon/lat, the facility and the
    component ids and positions."""

    ids: dict[str, int]
    specs: dict[str, CaseSpec]
    points: dict[int, tuple[float, float]]
    facility: tuple[int, float, float]
    component: tuple[int, float, float]

    def in_grid(self, grid: str) -> list[int]:
        return sorted(self.ids[k] for k, s in self.specs.items() if s.grid == grid)

    def named(self, *names: str) -> list[int]:
        return sorted(self.ids[n] for n in names)

    def where(self, pred) -> list[int]:
        return sorted(self.ids[k] for k, s in self.specs.items() if pred(s))


def city_specs(centres: dict[str, tuple[float, float]], now: datetime) -> dict[str, CaseSpec]:
    """Eleven cases over the e2e city (grids by code → centre). Ages keep clear of the time
    filter's boundaries (≤ 3, 15, ≥ 40 days); 'closed today' closes half-way between midnight
    UTC (the test city's time zone) and now."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = (now - midnight) / 2 or timedelta(seconds=1)

    def at(grid: str, dx: float, dy: float) -> dict[str, float]:
        x, y = centres[grid]
        return {"lon": round(x + dx, 7), "lat": round(y + dy, 7)}

    g = "99010100200203"  # East Gate Street → Hillview Community 2 → Grid 2-2-3
    w1, w2, w3 = "99010100100101", "99010100100204", "99010100100103"
    e1 = "99010100200101"
    day = timedelta(days=1)
    return {
        "recent": CaseSpec(g, "reported", timedelta(hours=2), 2 * day, None, "E010101",
                           **at(g, -0.0012, 0.0006)),
        "overdue": CaseSpec(g, "dispatched", 3 * day, -day, None, "E030101",
                            **at(g, 0.0012, 0.0006)),
        "closed_today": CaseSpec(g, "closed", 2 * day, day, today, "C020101",
                                 **at(g, -0.0012, -0.0006)),
        "old_open": CaseSpec(g, "filed", 40 * day, 3 * day, None, "E010102",
                             **at(g, 0.0012, -0.0006)),
        "old_closed": CaseSpec(g, "closed", 60 * day, -50 * day, 50 * day, "E010103",
                               **at(g, 0.0, 0.0)),
        "west_open": CaseSpec(w1, "accepted", timedelta(hours=5), day, None, "E010104",
                              **at(w1, -0.001, 0.0)),
        "west_overdue": CaseSpec(w1, "in_progress", 2 * day, -timedelta(hours=3), None,
                                 "E020101", **at(w1, 0.001, 0.0)),
        "west_open_2": CaseSpec(w2, "filed", day, 2 * day, None, "E010201", **at(w2, 0, 0)),
        "mid_open": CaseSpec(w2, "accepted", 15 * day, 2 * day, None, "E010202",
                             **at(w2, 0.001, 0.0006)),
        "west_closed_today": CaseSpec(w3, "closed", day, day, today, "E010101",
                                      **at(w3, 0, 0)),
        "east_open": CaseSpec(e1, "reported", timedelta(hours=10), day, None, "E010105",
                              **at(e1, 0, 0)),
    }


def seed_city(engine: Engine, jurisdiction: str, centres: dict[str, tuple[float, float]]
              ) -> CityCases:
    now = datetime.now(UTC)
    specs = city_specs(centres, now)
    ids = dict(zip(specs, insert_cases(engine, specs.values(), now=now), strict=True))
    points = {ids[k]: (s.lon, s.lat) for k, s in specs.items()
              if s.lon is not None and s.lat is not None}
    fx, fy = centres["99010100100202"]
    cx, cy = centres["99010100200102"]
    with engine.begin() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": jurisdiction}).scalar_one()
        fid = conn.execute(text(
            "INSERT INTO facilities (jurisdiction_id, type, name, capacity, hours, geom)"
            " VALUES (:j, 'clinic', 'Riverside Health Clinic', 40, 'Mo-Fr 08:00-18:00',"
            " ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"),
            {"j": jid, "x": fx, "y": fy}).scalar_one()
        cid = conn.execute(text(
            "INSERT INTO components (jurisdiction_id, code, category_id, kind, state, geom)"
            " VALUES (:j, 'E2E-LIGHT-0001', (SELECT id FROM categories WHERE code = 'C020101'),"
            " 'street_light', 'damaged', ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"),
            {"j": jid, "x": cx, "y": cy}).scalar_one()
    return CityCases(ids, specs, points, (int(fid), fx, fy), (int(cid), cx, cy))


def unseed_city(engine: Engine, seeded: CityCases) -> None:
    delete_cases(engine, list(seeded.ids.values()))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM facilities WHERE id = :i"), {"i": seeded.facility[0]})
        conn.execute(text("DELETE FROM components WHERE id = :i"), {"i": seeded.component[0]})


def staff_token(engine: Engine, role: str = "dispatcher") -> tuple[int, str]:
    """A committed staff account and its bearer token: ``(user_id, token)``."""
    import secrets

    from gis.auth import create_user, issue_token

    with engine.begin() as conn:
        uid = create_user(conn, f"e2e-{role}-{secrets.token_hex(4)}", role)
        token = issue_token(conn, uid)
    return uid, token


def drop_user(engine: Engine, user_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})

"""A year of demo cases for the Helsinki demo city, with complete lifecycles.

``generate_demo_cases`` writes a few thousand cases (about ten a day) and their ``case_events``
into the caller's transaction, deterministically from ``seed`` and ``as_of``:

- **where**: about half around a dozen hotspots (each with its favourite categories; some
  active all year, some only in the last weeks, one fading out), the rest near where people
  live (buildings weighted by residents). Points fall inside a grid in force (the grid is
  assigned like intake does: ``ST_Covers`` on the subdivided parts).
- **when**: a seasonal year with quieter weekends and a daily rhythm (mid-morning and
  mid-afternoon peaks); channels by time of day (patrols by day, hotline and video at night).
- **what**: a Zipf mix over the minor categories of ``gis.categories`` (about 70 % events).
- **routing**: responsibility zones first (as intake), else the category's department.
- **lifecycle**: report → accept → file → dispatch (to the department, and a responder of it
  when there is one) → start → handle → verify (a grid worker or supervisor, never the
  handler; about 8 % fail and are reopened, dispatched and handled again) → close → rate
  (about 45 % of closed cases). Some are rejected, some redirected to another department
  first, some reopened after closing; cases still open at ``as_of`` stop where their history
  stops, and overdue ones have ``escalate`` events up the hierarchy.
- **actors**: demo staff accounts ``demo-ops-*`` (call takers, dispatchers, supervisors, grid
  workers, one handler per department), created here without tokens; public ratings have no
  actor.

Everything is generated in Python and written with two set-based statements (cases, events).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Connection, text

from gis.calendar import load_calendar

SEED = 20241123
CASES_PER_DAY = 14.0
# The live feed's trigger sends one NOTIFY per 25 changed cases (at most 8000 bytes each, which 25
# full case items can exceed) and a single "bulk" note above 5000 rows: a load either goes in
# one statement of more than 5000 rows or in statements small enough for one NOTIFY each.
_LIVE_BULK = 5000
_SMALL_STATEMENT = 20
DAYS = 365
HOUR_WEIGHTS = np.array([0.20, 0.12, 0.10, 0.10, 0.15, 0.30, 0.70, 1.50, 2.80, 3.60, 3.80, 3.50,
                         2.60, 2.80, 3.40, 3.50, 3.20, 2.60, 1.90, 1.50, 1.20, 0.90, 0.60, 0.35])
CHANNELS = ("patrol", "hotline", "app", "video", "sensor", "open311", "walk-in")
_CHANNELS_DAY = np.array([0.45, 0.22, 0.13, 0.10, 0.03, 0.03, 0.04])
_CHANNELS_NIGHT = np.array([0.08, 0.45, 0.15, 0.24, 0.06, 0.02, 0.00])
_SAT_ON_TIME = np.array([0.04, 0.06, 0.15, 0.30, 0.45])
_SAT_LATE = np.array([0.12, 0.15, 0.25, 0.28, 0.20])
STAFF = (("call_taker", 3), ("dispatcher", 2), ("supervisor", 2), ("grid_worker", 6))
MIN = 60
HOUR = 3600
DAY = 86400


@dataclass
class _Case:
    i: int
    lon: float
    lat: float
    cat: int
    channel: str
    reported: int  # epoch seconds
    events: list[tuple[int, str, str | None, str, str | None, dict[str, Any], int | None]] = \
        field(default_factory=list)  # (at, action, from, to, note, data, actor)
    status: str = "reported"
    closed_at: int | None = None
    satisfaction: int | None = None
    responder: int | None = None
    department: int | None = None
    escalation: int = 0
    u: np.ndarray = field(default_factory=lambda: np.zeros(12))  # uniforms for the lifecycle
    ratio: float = 1.0  # time to handle as a share of the deadline


def _staff(conn: Connection, departments: dict[str, int]) -> dict[str, list[tuple[int, str]]]:
    """The demo staff accounts (created once, no tokens): {role or handler:<dept>: [(id, name)]}."""
    rows = []
    for role, count in STAFF:
        for k in range(1, count + 1):
            rows.append({"name": f"demo-ops-{role.replace('_', '-')}-{k}", "role": role,
                         "dep": None})
    for code in sorted(departments):
        rows.append({"name": f"demo-ops-handler-{code.lower()}", "role": "handler", "dep": code})
    conn.execute(text(
        "INSERT INTO users (name, role, department_id) SELECT t.name, t.role, d.id"
        " FROM unnest(CAST(:names AS text[]), CAST(:roles AS text[]), CAST(:deps AS text[]))"
        " AS t(name, role, dep) LEFT JOIN departments d ON d.code = t.dep"
        " ON CONFLICT (name) DO NOTHING"),
        {"names": [r["name"] for r in rows], "roles": [r["role"] for r in rows],
         "deps": [r["dep"] for r in rows]})
    found = conn.execute(text(
        "SELECT u.id, u.name, u.role, d.code FROM users u LEFT JOIN departments d"
        " ON d.id = u.department_id WHERE u.name LIKE 'demo-ops-%' ORDER BY u.name")).all()
    staff: dict[str, list[tuple[int, str]]] = {}
    for uid, name, role, dep in found:
        key = f"handler:{dep}" if role == "handler" else str(role)
        staff.setdefault(key, []).append((int(uid), str(name)))
    return staff


def _hotspots(rng: np.random.Generator, blon: np.ndarray, blat: np.ndarray, weights: np.ndarray,
              n_cat: int, cat_w: np.ndarray) -> dict[str, np.ndarray]:
    k = 12
    at = rng.choice(len(blon), size=k, replace=False, p=weights)
    strength = rng.pareto(1.5, k) + 1.0
    # Activity window in days back from as_of: most all year; three new, one fading out.
    start = np.full(k, DAYS)
    end = np.zeros(k)
    start[:3] = (30, 45, 60)
    end[3] = 200
    strength[:3] *= 2.5  # an emerging hotspot is busy while it lasts
    return {"lon": blon[at], "lat": blat[at], "sigma": rng.uniform(25, 90, k),
            "w": strength, "start": start, "end": end,
            "prefer": rng.choice(n_cat, size=(k, 2), p=cat_w)}


def _point_in(tree: shapely.STRtree, lon: float, lat: float) -> int:
    hits = tree.query(shapely.Point(lon, lat), predicate="covered_by")
    return int(hits.min()) if len(hits) else -1


def generate_demo_cases(conn: Connection, jurisdiction_id: int, *, as_of: datetime | None = None,
                        seed: int = SEED, per_day: float = CASES_PER_DAY) -> dict[str, Any]:
    """Write a year of cases ending at ``as_of`` (default: now, to the hour) with their events.

    Deterministic for a given ``seed``, ``as_of`` and city. Runs in the caller's transaction.
    Returns counts.
    """
    as_of = (as_of or datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    as_of = as_of.astimezone(UTC)
    end_s = int(as_of.timestamp())
    rng = np.random.default_rng(seed)
    calendar = load_calendar(conn, jurisdiction_id)
    zone = calendar.zone

    grids = conn.execute(text(
        "SELECT a.id, a.code, a.name, ST_AsBinary(a.geom) FROM areas a WHERE a.jurisdiction_id"
        " = :j AND a.valid_to IS NULL AND a.level = (SELECT max(level) FROM areas WHERE"
        " jurisdiction_id = :j AND valid_to IS NULL) ORDER BY a.code"),
        {"j": jurisdiction_id}).all()
    if not grids:
        return {"cases": 0, "events": 0}
    grid_ids = [int(g[0]) for g in grids]
    tree = shapely.STRtree(shapely.from_wkb([bytes(g[3]) for g in grids]))
    ancestors = _ancestors(conn, grid_ids)
    b = conn.execute(text(
        "SELECT ST_X(pt), ST_Y(pt), residents FROM buildings WHERE jurisdiction_id = :j"
        " ORDER BY id"), {"j": jurisdiction_id}).all()
    blon = np.array([r[0] for r in b])
    blat = np.array([r[1] for r in b])
    bw = np.array([r[2] for r in b], dtype=float) + 1.0
    bw /= bw.sum()
    cats = [dict(r) for r in conn.execute(text(
        "SELECT c.id, c.code, c.kind, c.name, c.name_zh, c.urgency, c.deadline_value,"
        " c.deadline_unit, d.code AS department FROM categories c LEFT JOIN departments d"
        " ON d.id = c.department_id WHERE c.depth = 2 AND c.active ORDER BY c.code")).mappings()]
    departments = {str(c): int(i) for c, i in conn.execute(
        text("SELECT code, id FROM departments")).all()}
    staff = _staff(conn, departments)
    responders: dict[int, list[int]] = {}
    for rid, dep in conn.execute(text(
            "SELECT id, department_id FROM responders WHERE jurisdiction_id = :j ORDER BY id"),
            {"j": jurisdiction_id}).all():
        if dep is not None:
            responders.setdefault(int(dep), []).append(int(rid))

    # --- category mix: Zipf over a fixed permutation, events weighted up
    n_cat = len(cats)
    zipf = 1.0 / (1.0 + rng.permutation(n_cat)) ** 0.9
    zipf *= np.where(np.array([c["kind"] for c in cats]) == "event", 2.3, 1.0)
    cat_w = zipf / zipf.sum()
    hot = _hotspots(rng, blon, blat, bw, n_cat, cat_w)

    # --- when: days back with season, weekends and slight growth; hours by the daily rhythm
    n_total = int(round(per_day * DAYS))
    back = np.arange(DAYS)
    day0 = (as_of.astimezone(zone).date())
    weekday = np.array([(day0 - timedelta(days=int(d))).isoweekday() for d in back])
    doy = np.array([(day0 - timedelta(days=int(d))).timetuple().tm_yday for d in back])
    day_w = ((1 + 0.3 * np.sin(2 * np.pi * (doy - 105) / 365.25))
             * np.where(weekday >= 6, 0.6, 1.0) * (1 + 0.2 * (DAYS - back) / DAYS))
    days_back = rng.choice(DAYS, size=n_total, p=day_w / day_w.sum())
    hours = rng.choice(24, size=n_total, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    minutes = rng.integers(0, 3600, n_total)
    from_hot = rng.random(n_total) < 0.5
    spot = rng.choice(len(hot["w"]), size=n_total, p=hot["w"] / hot["w"].sum())
    active = (days_back < hot["start"][spot]) & (days_back >= hot["end"][spot])
    from_hot &= active
    home = rng.choice(len(blon), size=n_total, p=bw)
    noise = rng.normal(0.0, 1.0, (n_total, 2))
    sigma = np.where(from_hot, hot["sigma"][spot], 15.0)
    base_lon = np.where(from_hot, hot["lon"][spot], blon[home])
    base_lat = np.where(from_hot, hot["lat"][spot], blat[home])
    lat = base_lat + noise[:, 1] * sigma / 111_320.0
    lon = base_lon + noise[:, 0] * sigma / (111_320.0 * np.cos(np.radians(base_lat)))
    cat = rng.choice(n_cat, size=n_total, p=cat_w)
    preferred = from_hot & (rng.random(n_total) < 0.75)
    cat[preferred] = hot["prefer"][spot[preferred], rng.integers(0, 2, int(preferred.sum()))]
    night = (hours < 7) | (hours >= 20)
    ch_day = rng.choice(len(CHANNELS), size=n_total, p=_CHANNELS_DAY)
    ch_night = rng.choice(len(CHANNELS), size=n_total, p=_CHANNELS_NIGHT / _CHANNELS_NIGHT.sum())
    channel = np.where(night, ch_night, ch_day)
    u = rng.random((n_total, 12))  # per-case uniforms for the lifecycle
    ratio = rng.lognormal(math.log(0.35), 0.7, n_total)

    cases: list[_Case] = []
    area_of: list[int] = []
    for i in range(n_total):
        local_midnight = datetime.combine(day0 - timedelta(days=int(days_back[i])),
                                          datetime.min.time(), tzinfo=zone)
        reported = int(local_midnight.timestamp()) + int(hours[i]) * HOUR + int(minutes[i])
        if reported >= end_s:
            reported -= DAY
        x, y = float(lon[i]), float(lat[i])
        g = _point_in(tree, x, y)
        if g < 0:  # off the grids (water, the edge): report at the building itself
            x, y = float(blon[home[i]]), float(blat[home[i]])
            g = _point_in(tree, x, y)
            if g < 0:
                continue
        cases.append(_Case(len(cases), x, y, int(cat[i]), CHANNELS[int(channel[i])], reported,
                           u=u[i], ratio=float(ratio[i])))
        area_of.append(g)
    if not cases:
        return {"cases": 0, "events": 0}

    # --- routing (zones first, as intake), all cases in one query
    routed = conn.execute(text(
        """
        SELECT t.i, COALESCE(z.dep, cd.id) AS dep,
               COALESCE(z.how, 'category:' || t.code) AS how
          FROM unnest(CAST(:i AS integer[]), CAST(:lon AS float8[]), CAST(:lat AS float8[]),
                      CAST(:code AS text[])) AS t(i, lon, lat, code)
          JOIN categories c ON c.code = t.code
          LEFT JOIN departments cd ON cd.id = c.department_id
          LEFT JOIN LATERAL (
              SELECT z.department_id AS dep, 'zone:' || z.kind || ':' || z.code AS how
                FROM responsibility_zones z
               WHERE z.jurisdiction_id = :j AND z.department_id IS NOT NULL
                 AND ST_Covers(z.geom, ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326))
                 AND z.valid_to IS NULL
                 AND (z.category_codes IS NULL OR z.category_codes &&
                      ARRAY[left(t.code, 3), left(t.code, 5), t.code])
               ORDER BY COALESCE((SELECT max(array_position(ARRAY[left(t.code, 3),
                        left(t.code, 5), t.code], cc)) FROM unnest(z.category_codes) cc), 0) DESC,
                        ST_Area(z.geom), z.code
               LIMIT 1) z ON true
         ORDER BY t.i
        """),
        {"j": jurisdiction_id, "i": [c.i for c in cases], "lon": [c.lon for c in cases],
         "lat": [c.lat for c in cases], "code": [cats[c.cat]["code"] for c in cases]}).all()
    dep_of = {int(r[0]): (int(r[1]) if r[1] is not None else None, str(r[2])) for r in routed}
    dep_code = {v: k for k, v in departments.items()}

    due: list[int] = []
    for c in cases:
        spec = cats[c.cat]
        value, unit = spec["deadline_value"], spec["deadline_unit"]
        if value is None or unit is None:
            value, unit = 3.0, "working_days"
        start = datetime.fromtimestamp(c.reported, UTC)
        due.append(int(calendar.add(start, float(value), str(unit)).timestamp()))

    for c, d in zip(cases, due, strict=True):
        _lifecycle(c, d, dep_of[c.i][0], staff, responders, dep_code, departments,
                   ancestors[grid_ids[area_of[c.i]]], end_s)

    ids = [int(v) for v in conn.execute(text(
        "SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, :n)"),
        {"n": len(cases)}).scalars()]
    insert_cases = text(
        """
        INSERT INTO cases (id, jurisdiction_id, category_id, channel, urgency, description,
                           area_id, department_id, responder_id, status, reported_at, due_at,
                           closed_at, escalation_level, satisfaction, routed_by, geom)
        SELECT t.id, :j, t.cat, t.channel, t.urgency, t.description, t.area, t.dep, t.resp,
               t.status, to_timestamp(t.reported), to_timestamp(t.due),
               to_timestamp(t.closed), t.esc, t.sat, t.how,
               ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326)
          FROM unnest(CAST(:id AS bigint[]), CAST(:cat AS integer[]), CAST(:channel AS text[]),
                      CAST(:urgency AS smallint[]), CAST(:description AS text[]),
                      CAST(:area AS bigint[]), CAST(:dep AS integer[]), CAST(:resp AS bigint[]),
                      CAST(:status AS text[]), CAST(:reported AS float8[]),
                      CAST(:due AS float8[]), CAST(:closed AS float8[]),
                      CAST(:esc AS smallint[]), CAST(:sat AS smallint[]), CAST(:how AS text[]),
                      CAST(:lon AS float8[]), CAST(:lat AS float8[]))
            AS t(id, cat, channel, urgency, description, area, dep, resp, status, reported, due,
                 closed, esc, sat, how, lon, lat)
         ORDER BY t.id
        """)
    columns: dict[str, list[Any]] = {"id": ids,
         "cat": [int(cats[c.cat]["id"]) for c in cases],
         "channel": [c.channel for c in cases],
         "urgency": [int(cats[c.cat]["urgency"] or 2) for c in cases],
         "description": [_description(cats[c.cat], c) for c in cases],
         "area": [grid_ids[a] for a in area_of],
         "dep": [c.department for c in cases],
         "resp": [c.responder for c in cases],
         "status": [c.status for c in cases],
         "reported": [float(c.reported) for c in cases],
         "due": [float(d) for d in due],
         "closed": [float(c.closed_at) if c.closed_at is not None else None for c in cases],
         "esc": [c.escalation for c in cases],
         "sat": [c.satisfaction for c in cases],
         "how": [dep_of[c.i][1] for c in cases],
         "lon": [c.lon for c in cases], "lat": [c.lat for c in cases]}
    step = len(cases) if len(cases) > _LIVE_BULK else _SMALL_STATEMENT
    for first in range(0, len(cases), step):
        conn.execute(insert_cases, {"j": jurisdiction_id, **{k: v[first:first + step]
                                                             for k, v in columns.items()}})
    ev_case, ev_actor, ev_action, ev_from, ev_to, ev_note, ev_data, ev_at = \
        [], [], [], [], [], [], [], []
    for c, cid in zip(cases, ids, strict=True):
        for at, action, src, dst, note, data, actor in c.events:
            ev_case.append(cid)
            ev_actor.append(actor)
            ev_action.append(action)
            ev_from.append(src)
            ev_to.append(dst)
            ev_note.append(note)
            ev_data.append(json.dumps(data, ensure_ascii=False))
            ev_at.append(float(at))
    conn.execute(text(
        """
        INSERT INTO case_events (case_id, actor_id, action, from_state, to_state, note, data, at)
        SELECT t.c, t.actor, t.action, t.src, t.dst, t.note, CAST(t.data AS jsonb),
               to_timestamp(t.at)
          FROM unnest(CAST(:c AS bigint[]), CAST(:actor AS integer[]), CAST(:action AS text[]),
                      CAST(:src AS text[]), CAST(:dst AS text[]), CAST(:note AS text[]),
                      CAST(:data AS text[]), CAST(:at AS float8[]))
            AS t(c, actor, action, src, dst, note, data, at)
         ORDER BY t.c, t.at
        """),
        {"c": ev_case, "actor": ev_actor, "action": ev_action, "src": ev_from, "dst": ev_to,
         "note": ev_note, "data": ev_data, "at": ev_at})
    statuses: dict[str, int] = {}
    for c in cases:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    return {"cases": len(cases), "events": len(ev_case), "by_status": statuses,
            "as_of": as_of.isoformat()}


def _ancestors(conn: Connection, grid_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """For each grid: [(code, name)] of its parent, grandparent... (escalation targets)."""
    rows = conn.execute(text(
        """
        WITH RECURSIVE up AS (
            SELECT a.id AS grid, a.parent_id, 0 AS k FROM areas a WHERE a.id = ANY(:ids)
            UNION ALL
            SELECT up.grid, p.parent_id, up.k + 1 FROM up JOIN areas p ON p.id = up.parent_id
        )
        SELECT up.grid, p.code, p.name FROM up JOIN areas p ON p.id = up.parent_id
         ORDER BY up.grid, up.k
        """), {"ids": grid_ids}).all()
    out: dict[int, list[tuple[str, str]]] = {g: [] for g in grid_ids}
    for grid, code, name in rows:
        out[int(grid)].append((str(code), str(name)))
    return out


def _description(cat: dict[str, Any], c: _Case) -> str:
    zh = cat.get("name_zh") or ""
    return f"{cat['name']} ({zh}) — demo report via {c.channel}"


def _actor(staff: dict[str, list[tuple[int, str]]], key: str, u: float,
           role: str | None = None) -> tuple[int | None, dict[str, Any]]:
    people = staff.get(key) or []
    if not people:
        return None, {"actor": {"role": role or key.split(":")[0], "name": "demo"}}
    uid, name = people[int(u * len(people)) % len(people)]
    return uid, {"actor": {"role": role or key.split(":")[0], "name": name}}


def _lifecycle(c: _Case, due: int, department: int | None,
               staff: dict[str, list[tuple[int, str]]], responders: dict[int, list[int]],
               dep_code: dict[int, str], departments: dict[str, int],
               ancestors: list[tuple[str, str]], end_s: int) -> None:
    """The case's history up to ``end_s``: events, final status and the columns that go with it."""
    u, ratio = c.u, c.ratio
    t = c.reported
    ev: list[tuple[int, str, str | None, str, str | None, dict[str, Any], int | None]] = []
    state = "reported"

    def add(at: int, action: str, to: str | None, actor: tuple[int | None, dict[str, Any]],
            note: str | None = None, **data: Any) -> None:
        nonlocal state
        ev.append((at, action, state if action != "report" else None, to or state, note,
                   {**actor[1], **data}, actor[0]))
        if to:
            state = to

    reporter_role = {"patrol": "grid_worker", "hotline": "call_taker", "walk-in": "call_taker",
                     "video": "call_taker", "sensor": "call_taker"}.get(c.channel)
    if reporter_role:
        add(t, "report", "reported", _actor(staff, reporter_role, u[0]))
    else:
        add(t, "report", "reported", (None, {"actor": {"role": "public", "name": "public"}}))
    t += int(5 * MIN + u[1] * 55 * MIN)
    add(t, "accept", "accepted", _actor(staff, "call_taker", u[2]))
    if u[3] < 0.03:
        t += int(10 * MIN + u[4] * 2 * HOUR)
        add(t, "reject", "rejected", _actor(staff, "supervisor", u[4]),
            note="not a case for the city: private property")
        _finish(c, ev, end_s, None)
        return
    t += int(5 * MIN + u[4] * 25 * MIN)
    add(t, "file", "filed", _actor(staff, "call_taker", u[2]))
    span = max(due - c.reported, HOUR)
    stuck = u[5] < 0.07
    handle_at = c.reported + int(max(20 * MIN, ratio * span))
    if stuck:
        handle_at = due + int(DAY + u[6] * 60 * DAY)
    dep = department
    if u[7] < 0.05 and len(departments) > 1:  # sent to the wrong department first
        wrong = sorted(departments.values())[int(u[8] * len(departments)) % len(departments)]
        if wrong != dep:
            t += int(10 * MIN + u[6] * HOUR)
            add(t, "dispatch", "dispatched", _actor(staff, "dispatcher", u[6]),
                department=dep_code.get(wrong))
            t += int(30 * MIN + u[8] * 3 * HOUR)
            add(t, "redirect", "redirected",
                _actor(staff, f"handler:{dep_code.get(wrong)}", 0.0, role="handler"),
                note="not ours", department=dep_code.get(dep) if dep else None)
    t += int(10 * MIN + u[9] * 2 * HOUR)
    c.department = dep
    team = responders.get(dep or -1, [])
    responder = team[int(u[10] * len(team)) % len(team)] if team else None
    extra: dict[str, Any] = {"department": dep_code.get(dep)} if dep is not None else {}
    if responder is not None:
        extra["responder_id"] = responder
    add(t, "dispatch", "dispatched", _actor(staff, "dispatcher", u[9]), **extra)
    c.responder = responder
    handler = _actor(staff, f"handler:{dep_code.get(dep or -1)}", 0.0, role="handler")
    handle_at = max(handle_at, t + 15 * MIN)
    add(t + int((handle_at - t) * 0.3), "start", "in_progress", handler)
    rounds = 2 if u[11] < 0.06 else 1
    for r in range(rounds):
        add(handle_at, "handle", "handled", handler, note="done, photo attached")
        t = handle_at + int(20 * MIN + u[1] * 2 * HOUR)
        verifier = _actor(staff, "grid_worker" if u[2] < 0.6 else "supervisor", u[3])
        if r < rounds - 1:
            add(t, "verify", "reopened", verifier, note="not fixed on site", result="fail")
            t += int(30 * MIN + u[4] * 2 * HOUR)
            add(t, "dispatch", "dispatched", _actor(staff, "dispatcher", u[9]), **extra)
            handle_at = t + int(2 * HOUR + u[5] * 2 * DAY)
        else:
            add(t, "verify", "verified", verifier, result="pass")
    t += int(10 * MIN + u[6] * HOUR)
    closer = _actor(staff, "supervisor", u[7])
    add(t, "close", "closed", closer)
    closed_at = t
    if u[8] < 0.02:  # the problem came back
        t += int(DAY + u[9] * 10 * DAY)
        add(t, "reopen", "reopened", closer, note="reported again: the problem is back")
        t += int(HOUR + u[10] * 5 * HOUR)
        add(t, "dispatch", "dispatched", _actor(staff, "dispatcher", u[9]), **extra)
        t += int(4 * HOUR + u[11] * 3 * DAY)
        add(t, "handle", "handled", handler, note="fixed again")
        t += int(2 * HOUR)
        add(t, "verify", "verified", _actor(staff, "supervisor", u[3]), result="pass")
        t += int(HOUR)
        add(t, "close", "closed", closer)
        closed_at = t
    if u[10] < 0.45:
        late = closed_at > due
        p = _SAT_LATE if late else _SAT_ON_TIME
        stars = 1 + int(np.searchsorted(np.cumsum(p), u[0] * 0.999999))
        add(closed_at + int(HOUR + u[11] * 2 * DAY), "rate", None,
            (None, {"actor": {"role": "public", "name": "public"}}), satisfaction=stars)
    _finish(c, ev, end_s, due, ancestors)


def _finish(c: _Case, ev: list, end_s: int, due: int | None,
            ancestors: list[tuple[str, str]] | None = None) -> None:
    """Keep what happened before ``end_s``; set status, closure, rating and escalation."""
    kept = [e for e in ev if e[0] < end_s]
    status = "reported"
    closed_at = None
    satisfaction = None
    for at, action, _src, dst, _note, data, _actor in kept:
        status = dst
        if action == "close":
            closed_at = at
        elif action == "reopen":
            closed_at = None
        elif action == "rate":
            satisfaction = int(data["satisfaction"])
    if status != "closed":
        closed_at = None
    if status not in ("dispatched", "in_progress", "handled", "verified", "closed", "reopened"):
        c.responder = None
    escalation = 0
    if due is not None and ancestors and status not in ("closed", "rejected"):
        period = max(due - c.reported, HOUR)
        for level, (code, name) in enumerate(ancestors, start=1):
            at = due + (level - 1) * period
            if at >= end_s:
                break
            kept.append((at, "escalate", status, status, f"overdue: escalated to {name} ({code})",
                         {"level": level, "area_code": code, "area_name": name,
                          "actor": {"role": "system", "name": "escalation"}}, None))
            escalation = level
    kept.sort(key=lambda e: e[0])
    # the from/to states of escalations follow the state at their time
    state = None
    fixed = []
    for at, action, src, dst, note, data, actor in kept:
        if action == "escalate":
            src = dst = state
        elif action != "report":
            src = state
        fixed.append((at, action, src, dst, note, data, actor))
        state = dst
    c.events = fixed
    c.status = status
    c.closed_at = closed_at
    c.satisfaction = satisfaction
    c.escalation = escalation

"""Synthetic cases: hotspots plus background, a daily and weekly rhythm over the past year, a
category mix, and a lifecycle outcome (closed on time or late, still open, overdue, rejected),
generated chunk by chunk so that 10⁷ cases need no more memory than 2.5·10⁵.

Each chunk has its own random stream (seed, stream, chunk number): the rows do not depend on how
many chunks are generated, only on the seed, the parameters and ``as_of``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gis.calendar import WorkingCalendar
from gis.index import AreaIndex
from gis.synth.city import STREAM_CASES, STREAM_HOTSPOTS, City, rng_for
from gis.synth.population import Buildings

CHUNK = 250_000
DAY = 86_400

CHANNELS = ("patrol", "hotline", "app", "video", "sensor", "open311", "walk-in")
CHANNEL_ZH = ("巡查上报", "热线来电", "市民APP", "视频发现", "传感器告警", "Open311", "窗口来访")
_CHANNELS_DAY = (0.45, 0.22, 0.13, 0.10, 0.03, 0.03, 0.04)
_CHANNELS_NIGHT = (0.08, 0.45, 0.15, 0.24, 0.06, 0.02, 0.00)
# Reports by local hour of day: quiet at night, peaks mid-morning and mid-afternoon.
HOUR_WEIGHTS = np.array([0.20, 0.12, 0.10, 0.10, 0.15, 0.30, 0.70, 1.50, 2.80, 3.60, 3.80, 3.50,
                         2.60, 2.80, 3.40, 3.50, 3.20, 2.60, 1.90, 1.50, 1.20, 0.90, 0.60, 0.35])
_OPEN_STAGES = ((0.03, "reported"), (0.08, "accepted"), (0.15, "filed"), (0.30, "dispatched"),
                (0.70, "in_progress"), (0.90, "handled"), (math.inf, "verified"))
_HANDLED = ("dispatched", "in_progress", "handled", "verified", "reopened", "closed")
_SAT_ON_TIME = (0.04, 0.06, 0.15, 0.30, 0.45)
_SAT_LATE = (0.12, 0.15, 0.25, 0.28, 0.20)


@dataclass
class Categories:
    """Minor categories (depth 2) as parallel arrays, in code order."""

    id: NDArray[np.int64]
    kind: NDArray[np.object_]
    department: NDArray[np.int64]  # -1 none
    urgency: NDArray[np.int64]
    deadline_s: NDArray[np.int64]  # seconds of working time (working units) or calendar time
    working: NDArray[np.bool_]
    label: NDArray[np.object_]

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], calendar: WorkingCalendar) -> Categories:
        """Rows of ``categories``; a category without a deadline gets 3 working days."""
        if not rows:
            raise ValueError("no minor categories (depth 2): seed the category tree first")
        ids, kinds, depts, urg, secs, working, labels = [], [], [], [], [], [], []
        for r in rows:
            value, unit = r.get("deadline_value"), r.get("deadline_unit")
            if value is None or unit is None:
                value, unit = 3.0, "working_days"
            per_unit = {"working_hours": 3600, "working_days": calendar.day_seconds,
                        "hours": 3600, "days": DAY}[unit]
            ids.append(int(r["id"]))
            kinds.append(r["kind"])
            depts.append(-1 if r.get("department_id") is None else int(r["department_id"]))
            urg.append(int(r.get("urgency") or 2))
            secs.append(max(round(per_unit * float(value)), 600))
            working.append(unit.startswith("working"))
            labels.append(r.get("name_zh") or r.get("name") or str(r.get("code")))
        return cls(np.array(ids), np.array(kinds, dtype=object), np.array(depts),
                   np.array(urg), np.array(secs), np.array(working),
                   np.array(labels, dtype=object))

    def __len__(self) -> int:
        return len(self.id)


class WorkClock:
    """``WorkingCalendar.add_working_seconds`` for whole arrays of start times.

    Working seconds are counted from the first day of a window: ``cum[d]`` is the working time
    before local day d. A start's position is ``cum[d]`` plus the working time already past on
    its day; the deadline is where position + duration is reached, staying at the end of a
    working period when it lands exactly there, as the calendar does. Holidays and make-up days
    of the calendar count; the zone must keep one UTC offset over the window (Asia/Shanghai
    does).
    """

    def __init__(self, calendar: WorkingCalendar, first: date, days: int) -> None:
        zone = calendar.zone
        offsets = {datetime(d.year, d.month, d.day, 12, tzinfo=zone).utcoffset()
                   for d in (first, first + timedelta(days=days // 2),
                             first + timedelta(days=days))}
        if len(offsets) != 1 or None in offsets:
            raise ValueError(f"{calendar.tz} changes its UTC offset; WorkClock needs a fixed one")
        offset = offsets.pop()
        assert offset is not None
        self.offset = int(offset.total_seconds())
        self.first_day = int(datetime(first.year, first.month, first.day,
                                      tzinfo=UTC).timestamp()) // DAY
        self.starts = np.array([a.hour * 3600 + a.minute * 60 + a.second
                                for a, _ in calendar.periods], dtype=np.int64)
        self.ends = np.array([b.hour * 3600 + b.minute * 60 + b.second
                              for _, b in calendar.periods], dtype=np.int64)
        lengths = self.ends - self.starts
        self.period_cum = np.r_[0, np.cumsum(lengths)]
        self.working = np.array([calendar.is_working_day(first + timedelta(days=k))
                                 for k in range(days)])
        self.cum = np.r_[0, np.cumsum(self.working * int(lengths.sum()))]

    def add(self, start_s: NDArray[np.int64], seconds: NDArray[np.int64]) -> NDArray[np.int64]:
        """Epoch seconds of ``start_s + seconds`` of working time."""
        local = np.asarray(start_s, dtype=np.int64) + self.offset
        day = local // DAY - self.first_day
        if len(day) and (day.min() < 0 or day.max() >= len(self.working)):
            raise ValueError("start time outside the WorkClock window")
        clock = local % DAY
        done = np.clip(clock[:, None] - self.starts[None, :], 0,
                       (self.ends - self.starts)[None, :]).sum(axis=1)
        target = self.cum[day] + np.where(self.working[day], done, 0) + seconds
        day2 = np.searchsorted(self.cum, target, side="left") - 1
        if len(day2) and day2.max() >= len(self.working):
            raise ValueError("deadline beyond the WorkClock window")
        rest = target - self.cum[day2]
        k = np.searchsorted(self.period_cum, rest, side="left") - 1
        wall = self.starts[k] + rest - self.period_cum[k]
        result: NDArray[np.int64] = (day2 + self.first_day) * DAY + wall - self.offset
        return result


@dataclass
class CaseContext:
    city: City
    buildings: Buildings
    categories: Categories
    index: AreaIndex  # grids of this city, from the database
    grid_position: NDArray[np.int64]  # index position → grid position (code order)
    responder_id: NDArray[np.int64]  # database ids, sorted by home grid
    responder_home: NDArray[np.int64]  # home grid position, sorted
    as_of: int  # epoch seconds
    clock: WorkClock


@dataclass
class _Hotspots:
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    sigma_m: NDArray[np.float64]
    cdf: NDArray[np.float64]
    prefer: NDArray[np.int64]  # (k, 3) preferred category positions


def _category_weights(ctx: CaseContext) -> NDArray[np.float64]:
    rng = rng_for(ctx.city.spec.seed, STREAM_HOTSPOTS, 1)
    n = len(ctx.categories)
    zipf = 1.0 / (1.0 + rng.permutation(n)) ** 0.8
    zipf *= np.where(ctx.categories.kind == "event", 2.3, 1.0)  # ~70 % events
    weights: NDArray[np.float64] = zipf / zipf.sum()
    return weights


def _hotspots(ctx: CaseContext, cat_w: NDArray[np.float64]) -> _Hotspots:
    rng = rng_for(ctx.city.spec.seed, STREAM_HOTSPOTS)
    b = ctx.buildings
    k = max(3, len(ctx.city.grids) // 20)
    w = (b.residents + 1.0) / (b.residents + 1.0).sum()
    at = rng.choice(len(b), size=k, p=w)
    strength = rng.pareto(1.2, k) + 1.0
    prefer = rng.choice(len(cat_w), size=(k, 3), p=cat_w)
    return _Hotspots(b.lon[at], b.lat[at], rng.uniform(30, 250, k),
                     np.cumsum(strength) / strength.sum(), prefer)


def case_chunks(ctx: CaseContext, total: int) -> Iterator[dict[str, NDArray[Any]]]:
    """Columns of ``total`` cases, ``CHUNK`` rows at a time."""
    cat_w = _category_weights(ctx)
    cat_cdf = np.cumsum(cat_w)
    hot = _hotspots(ctx, cat_w)
    b = ctx.buildings
    bg_cdf = np.cumsum(b.residents + 1.0)
    bg_cdf /= bg_cdf[-1]
    for number, start in enumerate(range(0, total, CHUNK)):
        n = min(CHUNK, total - start)
        rng = rng_for(ctx.city.spec.seed, STREAM_CASES, number)
        yield _chunk(ctx, rng, n, hot, cat_cdf, bg_cdf)


def _pick(cdf: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.int64]:
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _chunk(ctx: CaseContext, rng: np.random.Generator, n: int, hot: _Hotspots,
           cat_cdf: NDArray[np.float64], bg_cdf: NDArray[np.float64]) -> dict[str, NDArray[Any]]:
    b = ctx.buildings
    cats = ctx.categories
    # --- where: 60 % around hotspots, 40 % near where people live
    from_hot = rng.random(n) < 0.6
    spot = _pick(hot.cdf, rng.random(n))
    home = _pick(bg_cdf, rng.random(n))
    metres = rng.normal(0.0, 1.0, (n, 2)) * np.where(from_hot, hot.sigma_m[spot], 20.0)[:, None]
    base_lon = np.where(from_hot, hot.lon[spot], b.lon[home])
    base_lat = np.where(from_hot, hot.lat[spot], b.lat[home])
    lat = base_lat + metres[:, 1] / 111_320.0
    lon = base_lon + metres[:, 0] / (111_320.0 * np.cos(np.radians(base_lat)))
    pos = ctx.index.assign_index(lon, lat)
    out = pos < 0  # fell outside the city: report at the building itself
    lon[out], lat[out] = b.lon[home[out]], b.lat[home[out]]
    if out.any():
        pos[out] = ctx.index.assign_index(lon[out], lat[out])
    area_id = np.where(pos >= 0, ctx.index.ids[np.maximum(pos, 0)], -1)
    # --- what
    cat = _pick(cat_cdf, rng.random(n))
    preferred = from_hot & (rng.random(n) < 0.7)
    cat[preferred] = hot.prefer[spot[preferred], rng.integers(0, 3, int(preferred.sum()))]
    # --- when: a day in the past year (seasonal, quieter weekends), an hour by the daily rhythm
    as_of_day = (ctx.as_of + ctx.clock.offset) // DAY
    back = np.arange(366)
    day_index = as_of_day - back
    weekend = ((day_index + 3) % 7) >= 5
    day_w = ((1 + 0.25 * np.sin(2 * np.pi * (day_index % 365.25 - 105) / 365.25))
             * np.where(weekend, 0.75, 1.0) * (1 + 0.15 * (365 - back) / 365))
    days_back = _pick(np.cumsum(day_w) / day_w.sum(), rng.random(n))
    hour = _pick(np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum(), rng.random(n))
    reported = ((as_of_day - days_back) * DAY + hour * 3600 + rng.integers(0, 3600, n)
                - ctx.clock.offset)
    reported = np.where(reported >= ctx.as_of, reported - DAY, reported)
    night = (hour < 7) | (hour >= 20)
    channel = np.where(night, _pick(np.cumsum(_CHANNELS_NIGHT), rng.random(n)),
                       _pick(np.cumsum(_CHANNELS_DAY), rng.random(n)))
    # --- outcome
    secs = cats.deadline_s[cat]
    due = np.where(cats.working[cat], ctx.clock.add(reported, secs), reported + secs)
    ratio = rng.lognormal(np.log(0.55), 0.7, n)
    closes = reported + np.maximum(600, (ratio * (due - reported)).astype(np.int64))
    # A long tail: 4 % get stuck (missing parts, disputes, waiting on another department) and
    # stay open up to three months past their deadline.
    stuck = rng.random(n) < 0.04
    closes = np.where(stuck, due + rng.integers(DAY, 90 * DAY, n), closes)
    status = np.full(n, "closed", dtype=object)
    closed = closes <= ctx.as_of
    progress = (ctx.as_of - reported) / np.maximum(closes - reported, 1)
    for bound, name in reversed(_OPEN_STAGES):
        status[~closed & (progress < bound)] = name
    status[~closed & (progress >= 0.3) & (rng.random(n) < 0.05)] = "reopened"
    fate = rng.random(n)
    rejected = fate < 0.025
    redirected = (fate >= 0.025) & (fate < 0.035)
    status[rejected] = "rejected"
    status[redirected] = "redirected"
    terminal = rejected | redirected
    closed &= ~terminal
    due = np.where(terminal, -1, due)
    closed_at = np.where(closed, closes, -1)
    late = closed & (closes > due)
    overdue = ~closed & ~terminal & (due < ctx.as_of)
    escalation = np.where(overdue, 1 + (ctx.as_of - due > 3 * DAY), 0)
    escalation = np.where(late & (rng.random(n) < 0.3), 1, escalation)
    rated = closed & (rng.random(n) < 0.45)
    stars = np.where(late, _pick(np.cumsum(_SAT_LATE), rng.random(n)),
                     _pick(np.cumsum(_SAT_ON_TIME), rng.random(n))) + 1
    satisfaction = np.where(rated, stars, -1)
    # --- who: a responder homed in the case's grid when there is one
    handled = np.isin(status, _HANDLED)
    responder = np.full(n, -1, dtype=np.int64)
    if len(ctx.responder_id):
        grid = ctx.grid_position[np.maximum(pos, 0)]
        lo = np.searchsorted(ctx.responder_home, grid)
        count = np.searchsorted(ctx.responder_home, grid, side="right") - lo
        local = lo + (rng.random(n) * np.maximum(count, 1)).astype(np.int64)
        anyone = rng.integers(0, len(ctx.responder_id), n)
        pick = np.where(count > 0, np.minimum(local, len(ctx.responder_id) - 1), anyone)
        responder = np.where(handled, ctx.responder_id[pick], -1)
    return {
        "lon": lon, "lat": lat, "area_id": area_id, "category_id": cats.id[cat],
        "department_id": cats.department[cat], "channel": channel, "category": cat,
        "urgency": cats.urgency[cat], "status": status, "reported_at": reported,
        "due_at": due, "closed_at": closed_at, "escalation_level": escalation,
        "satisfaction": satisfaction, "responder_id": responder,
    }

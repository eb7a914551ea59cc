"""Hot spots and recurrence of cases (DOMAIN.md: "recurrence after campaigns").

- **Hot spots**: Getis-Ord Gi* over the current grids (``esda.G_Local`` with ``star=True`` on
  queen-contiguity weights built by libpysal from the grid polygons), for a category and a
  period: z-score, p-values (normal and permutation) and a class as in ArcGIS's hot spot
  analysis (hot/cold spot with 99/95/90 % confidence, or not significant).
- **Space-time hot spots**: Gi* per week (or month) of the period, then each grid classed like
  an emerging hot spot analysis: *new* (hot only in the last step), *consecutive* (an
  uninterrupted run of hot steps ending in the last one), *intensifying* / *diminishing* (hot
  in at least 90 % of the steps with a rising / falling Mann-Kendall trend of z), *persistent*
  (hot in at least 90 % of the steps, no trend), *sporadic* (hot on and off, never cold),
  *oscillating* (hot last step, cold in some earlier step); the same for cold spots.
- **Recurrence**: links from a case to earlier *closed* cases of the same category within a
  radius (default 50 m) and a window before it was reported (default 180 days); per area, the
  share of a period's cases that are recurrences.

Case counts per grid come from ``gis.kpis`` (the daily rollup), cases grouped by the current
grid containing them (``basis="current"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound
from gis.kpis import KpiQuery, _aggregate, _resolve

CLASSES = ((0.01, "99"), (0.05, "95"), (0.10, "90"))
MAX_STEPS = 120


@dataclass(frozen=True)
class HotspotQuery:
    category: str | None = None
    period: str | None = None
    since: date | None = None
    until: date | None = None
    level: str | int | None = None
    permutations: int = 999
    per_1000: bool = False
    jurisdiction_id: int | None = None


def _grids(conn: Connection, jid: int, rank: int) -> tuple[list[dict[str, Any]], Any]:
    """Current areas of the level as rows and a GeoDataFrame (for the weights)."""
    import geopandas as gpd
    import shapely

    rows = [dict(r) for r in conn.execute(text(
        "SELECT code, name, population, ST_AsBinary(geom) AS wkb FROM areas"
        " WHERE jurisdiction_id = :j AND level = :l AND valid_to IS NULL ORDER BY code"),
        {"j": jid, "l": rank}).mappings()]
    gdf = gpd.GeoDataFrame({"code": [r["code"] for r in rows]},
                           geometry=shapely.from_wkb([bytes(r["wkb"]) for r in rows]),
                           crs=4326)
    return rows, gdf


def weights(gdf: Any) -> Any:
    """Queen contiguity of the polygons (row-standardised); islands keep only themselves."""
    import warnings

    from libpysal.weights import Queen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = Queen.from_dataframe(gdf, use_index=False)
    w.transform = "B"
    return w


def gi_star(values: np.ndarray, w: Any, *, permutations: int = 999, seed: int = 12345
            ) -> dict[str, np.ndarray]:
    """Getis-Ord Gi*: z, normal p (two-sided) and permutation p per unit."""
    import warnings

    from esda.getisord import G_Local

    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 3 or np.allclose(y, y[0]):
        zeros = np.zeros(n)
        return {"z": zeros, "p": np.ones(n), "p_sim": np.ones(n)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = G_Local(y, w, star=True, permutations=permutations, seed=seed, transform="B")
    z = np.nan_to_num(np.asarray(g.Zs, dtype=float))
    p = 2 * (1 - _norm_cdf(np.abs(z)))
    p_sim = np.asarray(g.p_sim, dtype=float) if permutations else np.full(n, np.nan)
    return {"z": z, "p": p, "p_sim": p_sim}


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def classify(z: float, p: float) -> str:
    """'hot 99', 'cold 95', ... or 'not significant' (two-sided p of the Gi* z-score)."""
    for alpha, label in CLASSES:
        if p <= alpha:
            return f"{'hot' if z > 0 else 'cold'} {label}"
    return "not significant"


def _counts(conn: Connection, q: HotspotQuery, since: date | None = None,
            until: date | None = None, interval: str | None = None
            ) -> tuple[KpiQuery, date, date, list[dict[str, Any]]]:
    kq = KpiQuery(level=q.level, category=q.category, period=None if since else q.period,
                  since=since or q.since, until=until or q.until, basis="current",
                  jurisdiction_id=q.jurisdiction_id)
    now = datetime.now(UTC)
    kq, _jid, s, u = _resolve(conn, kq, now)
    raw = _aggregate(conn, kq, s, u, now, interval=interval)
    return kq, s, u, raw


def hotspots(conn: Connection, q: HotspotQuery) -> dict[str, Any]:
    """Gi* of case counts per area of the level (default: grids) for a category and period."""
    if not 0 <= q.permutations <= 9999:
        raise InvalidInput("permutations must be between 0 and 9999", field="permutations")
    kq, since, until, raw = _counts(conn, q)
    rows, gdf = _grids(conn, int(kq.jurisdiction_id or 0), int(kq.level or 0))
    counts = {str(r["gkey"]): int(r["n"]) for r in raw if r["gkey"] is not None}
    n = np.array([counts.get(r["code"], 0) for r in rows], dtype=float)
    pop = np.array([r["population"] or 0 for r in rows], dtype=float)
    y = np.where(pop > 0, 1000 * n / np.maximum(pop, 1), 0.0) if q.per_1000 else n
    stats = gi_star(y, weights(gdf), permutations=q.permutations) if len(rows) else \
        {"z": np.zeros(0), "p": np.zeros(0), "p_sim": np.zeros(0)}
    out = []
    for i, r in enumerate(rows):
        z, p = float(stats["z"][i]), float(stats["p"][i])
        ps = float(stats["p_sim"][i])
        out.append({"code": r["code"], "name": r["name"], "n": int(n[i]),
                    "value": round(float(y[i]), 3), "z": round(z, 3), "p": round(p, 4),
                    "p_sim": None if math.isnan(ps) else round(ps, 4),
                    "class": classify(z, p)})
    return {"category": q.category, "since": since.isoformat(), "until": until.isoformat(),
            "variable": "cases per 1,000 residents" if q.per_1000 else "cases",
            "permutations": q.permutations, "areas": out,
            "hot": sum(1 for o in out if o["class"].startswith("hot")),
            "cold": sum(1 for o in out if o["class"].startswith("cold"))}


def mann_kendall(series: np.ndarray) -> tuple[float, float]:
    """Mann-Kendall trend test: (z, two-sided p)."""
    x = np.asarray(series, dtype=float)
    n = len(x)
    if n < 3:
        return 0.0, 1.0
    s = float(np.sign(x[None, :] - x[:, None])[np.triu_indices(n, 1)].sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if var <= 0:
        return 0.0, 1.0
    z = (s - np.sign(s)) / math.sqrt(var)
    p = 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))
    return z, p


def emerging_class(z: np.ndarray, p: np.ndarray, alpha: float = 0.10) -> str:
    """Emerging-hot-spot category of one location from its per-step Gi* z and p."""
    steps = len(z)
    hot = (p <= alpha) & (z > 0)
    cold = (p <= alpha) & (z < 0)
    for sig, opp, kind in ((hot, cold, "hot"), (cold, hot, "cold")):
        if not sig.any():
            continue
        if not sig[-1] and kind == "hot" and cold[-1]:
            continue
        share = sig.mean()
        trend_z, trend_p = mann_kendall(z if kind == "hot" else -z)
        if sig[-1] and sig[:-1].sum() == 0:
            return f"new {kind} spot"
        if sig[-1]:
            run = 0
            for v in sig[::-1]:
                if not v:
                    break
                run += 1
            if share >= 0.9:
                if trend_p <= 0.05 and trend_z > 0:
                    return f"intensifying {kind} spot"
                if trend_p <= 0.05 and trend_z < 0:
                    return f"diminishing {kind} spot"
                return f"persistent {kind} spot"
            if opp.any():
                return f"oscillating {kind} spot"
            if run == int(sig.sum()) and run >= 2:
                return f"consecutive {kind} spot"
            return f"sporadic {kind} spot"
        if share >= 0.9 and trend_p <= 0.05 and trend_z < 0:
            return f"diminishing {kind} spot"
        if not opp.any() and steps >= 2 and sig.sum() >= 1:
            return f"historical {kind} spot"
    return "no pattern"


def space_time(conn: Connection, q: HotspotQuery, *, interval: str = "week") -> dict[str, Any]:
    """Gi* per ``interval`` (week or month) over the period and an emerging-hot-spot class per
    area."""
    if interval not in ("week", "month"):
        raise InvalidInput("interval must be week or month", field="interval")
    kq0 = KpiQuery(level=q.level, category=q.category, period=q.period, since=q.since,
                   until=q.until, basis="current", jurisdiction_id=q.jurisdiction_id)
    kq, _jid, since, until = _resolve(conn, kq0, datetime.now(UTC))
    rows, gdf = _grids(conn, int(kq.jurisdiction_id or 0), int(kq.level or 0))
    w = weights(gdf)
    codes = [r["code"] for r in rows]
    # One aggregate per step (keyed by area): the rollup answers each in milliseconds.
    starts: list[date] = []
    d = since if interval == "month" else since - timedelta(days=since.weekday())
    if interval == "month":
        d = d.replace(day=1)
    while d < until:
        starts.append(d)
        d = (d + timedelta(days=7)) if interval == "week" else \
            (d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1))
    if len(starts) > MAX_STEPS:
        raise InvalidInput(f"{len(starts)} {interval}s is more than {MAX_STEPS} steps",
                           field="period")
    if len(starts) < 2:
        raise InvalidInput("a space-time analysis needs at least two steps", field="period")
    matrix = np.zeros((len(starts), len(rows)))
    for t, s in enumerate(starts):
        e = starts[t + 1] if t + 1 < len(starts) else until
        _, _, _, raw = _counts(conn, replace(q, period=None, since=None, until=None),
                               since=max(s, since), until=e)
        counts = {str(r["gkey"]): int(r["n"]) for r in raw if r["gkey"] is not None}
        matrix[t] = [counts.get(c, 0) for c in codes]
    zs = np.zeros_like(matrix)
    ps = np.ones_like(matrix)
    for t in range(len(starts)):
        st = gi_star(matrix[t], w, permutations=0)
        zs[t], ps[t] = st["z"], st["p"]
    out = []
    for i, r in enumerate(rows):
        trend_z, trend_p = mann_kendall(zs[:, i])
        out.append({"code": r["code"], "name": r["name"], "n": int(matrix[:, i].sum()),
                    "class": emerging_class(zs[:, i], ps[:, i]),
                    "last_z": round(float(zs[-1, i]), 3), "trend_z": round(trend_z, 3),
                    "trend_p": round(trend_p, 4),
                    "hot_steps": int(((ps[:, i] <= 0.1) & (zs[:, i] > 0)).sum())})
    return {"category": q.category, "interval": interval, "since": since.isoformat(),
            "until": until.isoformat(), "steps": [s.isoformat() for s in starts],
            "areas": out}


# --------------------------------------------------------------------------- recurrence

_RECURRENCE_SQL = """
SELECT p.id, k.code AS category, p.status, p.reported_at, p.closed_at,
       ST_Distance(CAST(p.geom AS geography), CAST(c.geom AS geography)) AS distance_m,
       EXTRACT(EPOCH FROM c.reported_at - p.closed_at) / 86400.0 AS days_after_close,
       ST_X(ST_PointOnSurface(p.geom)) AS lon, ST_Y(ST_PointOnSurface(p.geom)) AS lat
  FROM cases c
  JOIN cases p ON p.category_id = c.category_id AND p.id <> c.id
   AND p.jurisdiction_id = c.jurisdiction_id
   AND p.geom && ST_Expand(c.geom, :deg)
   AND p.status = 'closed' AND p.closed_at <= c.reported_at
   AND p.closed_at > c.reported_at - make_interval(days => :days)
   AND ST_DWithin(CAST(p.geom AS geography), CAST(c.geom AS geography), :radius)
  JOIN categories k ON k.id = p.category_id
 WHERE c.id = :id
 ORDER BY p.closed_at DESC, p.id
"""


def _check_recurrence(radius_m: float, window_days: int) -> None:
    if not math.isfinite(radius_m) or radius_m <= 0 or radius_m > 5000:
        raise InvalidInput(f"radius_m must be in (0, 5000], not {radius_m}", field="radius_m")
    if not 1 <= window_days <= 3650:
        raise InvalidInput(f"window_days must be 1 … 3650, not {window_days}",
                           field="window_days")


def _degrees(radius_m: float) -> float:
    # A box in degrees surely holding the radius at latitudes up to ~80°.
    return radius_m / 111_320.0 / math.cos(math.radians(80))


def recurrence(conn: Connection, case_id: int, *, radius_m: float = 50.0,
               window_days: int = 180) -> dict[str, Any]:
    """Closed cases of the same category within ``radius_m`` that were closed in the
    ``window_days`` before this case was reported: the problem came back."""
    _check_recurrence(radius_m, window_days)
    found = conn.execute(text(
        "SELECT c.id, k.code, c.reported_at FROM cases c JOIN categories k"
        " ON k.id = c.category_id WHERE c.id = :id"), {"id": case_id}).first()
    if found is None:
        raise NotFound(f"no case {case_id}", field="id")
    rows = conn.execute(text(_RECURRENCE_SQL), {
        "id": case_id, "radius": radius_m, "days": window_days, "deg": _degrees(radius_m)}
    ).mappings().all()
    links = [{"id": int(r["id"]), "category": r["category"], "status": r["status"],
              "reported_at": r["reported_at"].isoformat(),
              "closed_at": r["closed_at"].isoformat(),
              "distance_m": round(float(r["distance_m"]), 1),
              "days_after_close": round(float(r["days_after_close"]), 1),
              "lon": round(float(r["lon"]), 7), "lat": round(float(r["lat"]), 7)}
             for r in rows]
    return {"case": int(found[0]), "category": found[1],
            "reported_at": found[2].isoformat(), "radius_m": radius_m,
            "window_days": window_days, "recurrence": bool(links), "links": links}


def recurrence_by_area(conn: Connection, *, level: str | int | None = None,
                       period: str | None = None, since: date | None = None,
                       until: date | None = None, category: str | None = None,
                       radius_m: float = 50.0, window_days: int = 180,
                       jurisdiction_id: int | None = None) -> dict[str, Any]:
    """Per area of the level: cases reported in the period and how many of them recur."""
    _check_recurrence(radius_m, window_days)
    kq, jid, s, u = _resolve(conn, KpiQuery(level=level, period=period, since=since,
                                            until=until, category=category,
                                            jurisdiction_id=jurisdiction_id),
                             datetime.now(UTC))
    cat_filter = ("AND c.category_id IN (SELECT id FROM categories WHERE code LIKE"
                  " CAST(:category AS text) || '%')") if category else ""
    rows = conn.execute(text(f"""
        WITH RECURSIVE chain AS (
            SELECT a.id AS start_id, a.id, a.parent_id, a.level, a.code
              FROM areas a WHERE a.jurisdiction_id = :j
            UNION ALL
            SELECT ch.start_id, p.id, p.parent_id, p.level, p.code
              FROM chain ch JOIN areas p ON p.id = ch.parent_id
        ), picked AS (
            SELECT c.id, c.geom, c.category_id, c.reported_at, c.jurisdiction_id, g.code
              FROM cases c JOIN jurisdictions j ON j.id = c.jurisdiction_id
              JOIN chain g ON g.start_id = c.area_id AND g.level = :level
             WHERE c.jurisdiction_id = :j
               AND c.reported_at >= CAST(:since AS timestamp) AT TIME ZONE j.timezone
               AND c.reported_at < CAST(:until AS timestamp) AT TIME ZONE j.timezone
               {cat_filter}
        )
        SELECT code, count(*) AS n,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM cases p WHERE p.category_id = c.category_id
                      AND p.jurisdiction_id = c.jurisdiction_id AND p.id <> c.id
                      AND p.geom && ST_Expand(c.geom, :deg) AND p.status = 'closed'
                      AND p.closed_at <= c.reported_at
                      AND p.closed_at > c.reported_at - make_interval(days => :days)
                      AND ST_DWithin(CAST(p.geom AS geography), CAST(c.geom AS geography),
                                     :radius))) AS recurring
          FROM picked c GROUP BY code ORDER BY code
        """), {"j": jid, "level": kq.level, "since": s, "until": u, "category": category,
               "deg": _degrees(radius_m), "days": window_days, "radius": radius_m}).all()
    areas: list[dict[str, Any]] = [{"code": str(c), "n": int(n), "recurring": int(r),
              "recurrence_rate": round(r / n, 4) if n else None} for c, n, r in rows]
    total = sum(a["n"] for a in areas)
    rec = sum(a["recurring"] for a in areas)
    return {"since": s.isoformat(), "until": u.isoformat(), "category": category,
            "radius_m": radius_m, "window_days": window_days, "n": total, "recurring": rec,
            "recurrence_rate": round(rec / total, 4) if total else None, "areas": areas}


__all__ = ["HotspotQuery", "classify", "emerging_class", "gi_star", "hotspots", "mann_kendall",
           "recurrence", "recurrence_by_area", "space_time", "weights"]

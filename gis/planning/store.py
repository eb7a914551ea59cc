"""Plans in the database: loading and writing plan areas, the operation log, undo and redo.

Every change to a plan goes through ``apply``: it takes the rows an operation read
(``before``) and the rows it wants (``after``, new rows without a key), checks the versions the
caller saw, writes the difference, recomputes the cached counts of the changed rows from the
buildings, bumps every changed row's ``version`` and logs both snapshots in ``plan_ops`` so
the operation can be undone and redone. Versions only ever grow (an undo is a change too), so
an edit carrying a version it saw before an undo is refused like any other stale edit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.crs import WGS84, transformer
from gis.errors import Conflict, InvalidInput, NotFound

OPEN_CASE_SQL = "c.status NOT IN ('closed', 'rejected')"


@dataclass
class PArea:
    """One plan area (``key`` is ``plan_areas.id``; None for a row not written yet)."""

    key: int | None
    parent_key: int | None
    level: int
    code: str | None
    name: str
    geom: BaseGeometry  # WGS84
    grid_type: str | None = None
    locked: bool = False
    version: int = 1
    households: int = 0
    population: int = 0
    area_m2: float = 0.0
    source_area_id: int | None = None

    def label(self) -> str:
        return self.code or (f"new area #{self.key}" if self.key else "new area")

    def snapshot(self) -> dict[str, Any]:
        return {
            "key": self.key, "parent_key": self.parent_key, "level": self.level,
            "code": self.code, "name": self.name, "grid_type": self.grid_type,
            "locked": self.locked, "version": self.version, "households": self.households,
            "population": self.population, "area_m2": self.area_m2,
            "source_area_id": self.source_area_id, "wkb": shapely.to_wkb(self.geom, hex=True),
        }

    @classmethod
    def from_snapshot(cls, row: Mapping[str, Any]) -> PArea:
        data = dict(row)
        geom = shapely.from_wkb(data.pop("wkb"))
        return cls(geom=geom, **data)


@dataclass(frozen=True)
class Level:
    rank: int
    name: str
    code_digits: int
    target_households: int | None
    target_population: int | None
    target_area_m2: float | None
    tolerance: float

    def targets(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.target_households:
            out["households"] = float(self.target_households)
        if self.target_population:
            out["population"] = float(self.target_population)
        if self.target_area_m2:
            out["area_m2"] = float(self.target_area_m2)
        return out


@dataclass
class PlanInfo:
    id: int
    jurisdiction_id: int
    local_srid: int
    name: str
    root_area_id: int | None
    root_code: str | None
    status: str
    version: int
    created_at: datetime
    published_at: datetime | None
    levels: list[Level] = field(default_factory=list)

    @property
    def bottom(self) -> int:
        return max(lv.rank for lv in self.levels) if self.levels else 0

    def level(self, rank: int) -> Level:
        for lv in self.levels:
            if lv.rank == rank:
                return lv
        raise InvalidInput(f"level {rank} does not exist in this jurisdiction", field="level")

    def metric(self) -> Metric:
        return Metric(self.local_srid)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "status": self.status, "version": self.version,
            "root": self.root_code, "jurisdiction_id": self.jurisdiction_id,
            "created_at": self.created_at.isoformat(),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "levels": [{"rank": lv.rank, "name": lv.name, **{f"target_{k}": v for k, v in
                                                              lv.targets().items()},
                        "tolerance": lv.tolerance} for lv in self.levels],
        }


class Metric:
    """WGS84 ↔ the jurisdiction's metric CRS, for measuring (areas, lengths, tolerances).

    Edits are computed in WGS84 so that untouched neighbours keep their exact coordinates;
    everything measured is measured here.
    """

    def __init__(self, srid: int):
        self.srid = srid
        self._fwd: Transformer = transformer(WGS84, srid)
        self._back: Transformer = transformer(srid, WGS84)

    def _apply(self, tr: Transformer, geoms: Any) -> Any:
        def fn(xy: np.ndarray) -> np.ndarray:
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])
        return shapely.transform(geoms, fn)

    def to_m(self, geoms: Any) -> Any:
        return self._apply(self._fwd, geoms)

    def to_wgs(self, geoms: Any) -> Any:
        return self._apply(self._back, geoms)


# --- reading ---------------------------------------------------------------------------------

_PLAN_SQL = """
SELECT p.id, p.jurisdiction_id, j.local_srid, p.name, p.root_area_id, a.code AS root_code,
       p.status, p.version, p.created_at, p.published_at
  FROM plans p JOIN jurisdictions j ON j.id = p.jurisdiction_id
  LEFT JOIN areas a ON a.id = p.root_area_id
 WHERE p.id = :p
"""


def get_plan(conn: Connection, plan_id: int, *, lock: bool = False,
             draft: bool = False) -> PlanInfo:
    """The plan (404 if unknown). ``lock`` serialises writers on the plan row; ``draft``
    refuses plans that are already published or discarded (409)."""
    if lock:
        found = conn.execute(text("SELECT id FROM plans WHERE id = :p FOR UPDATE"),
                             {"p": plan_id}).scalar()
        if found is None:
            raise NotFound(f"no plan {plan_id}", field="plan")
    row = conn.execute(text(_PLAN_SQL), {"p": plan_id}).mappings().first()
    if row is None:
        raise NotFound(f"no plan {plan_id}", field="plan")
    levels = [
        Level(int(r["rank"]), str(r["name"]), int(r["code_digits"]), r["target_households"],
              r["target_population"], r["target_area_m2"], float(r["tolerance"]))
        for r in conn.execute(text(
            "SELECT rank, name, code_digits, target_households, target_population,"
            " target_area_m2, tolerance FROM area_levels WHERE jurisdiction_id = :j"
            " ORDER BY rank"), {"j": row["jurisdiction_id"]}).mappings()
    ]
    plan = PlanInfo(
        id=int(row["id"]), jurisdiction_id=int(row["jurisdiction_id"]),
        local_srid=int(row["local_srid"]), name=str(row["name"]),
        root_area_id=row["root_area_id"], root_code=row["root_code"], status=str(row["status"]),
        version=int(row["version"]), created_at=row["created_at"],
        published_at=row["published_at"], levels=levels,
    )
    if draft and plan.status != "draft":
        raise Conflict(f"plan {plan_id} is {plan.status}; only draft plans can be changed",
                       field="plan", extra={"status": plan.status})
    return plan


_AREA_COLUMNS = ("id, parent_key, level, code, name, grid_type, locked, version, households,"
                 " population, area_m2, source_area_id, ST_AsBinary(geom) AS wkb")


def _rows_to_areas(rows: Iterable[Any]) -> list[PArea]:
    rows = list(rows)
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else []
    return [
        PArea(key=int(r.id), parent_key=r.parent_key, level=int(r.level), code=r.code,
              name=r.name, geom=g, grid_type=r.grid_type, locked=bool(r.locked),
              version=int(r.version), households=int(r.households),
              population=int(r.population), area_m2=float(r.area_m2),
              source_area_id=r.source_area_id)
        for r, g in zip(rows, geoms, strict=True)
    ]


def load(conn: Connection, plan_id: int, *, keys: Sequence[int] | None = None,
         parents: Sequence[int] | None = None, level: int | None = None) -> list[PArea]:
    """Plan areas, ordered by level and code; filtered by key, parent key and/or level."""
    where = ["plan_id = :p"]
    params: dict[str, Any] = {"p": plan_id}
    if keys is not None:
        where.append("id = ANY(:keys)")
        params["keys"] = list(keys)
    if parents is not None:
        where.append("parent_key = ANY(:parents)")
        params["parents"] = list(parents)
    if level is not None:
        where.append("level = :level")
        params["level"] = level
    rows = conn.execute(text(
        f"SELECT {_AREA_COLUMNS} FROM plan_areas WHERE {' AND '.join(where)}"
        " ORDER BY level, code NULLS LAST, id"), params)
    return _rows_to_areas(rows)


def load_one(conn: Connection, plan_id: int, key: int) -> PArea:
    found = load(conn, plan_id, keys=[key])
    if not found:
        raise NotFound(f"plan {plan_id} has no area {key}", field="key")
    return found[0]


def find_by_code(conn: Connection, plan_id: int, code: str) -> PArea:
    rows = conn.execute(text(f"SELECT {_AREA_COLUMNS} FROM plan_areas WHERE plan_id = :p"
                             " AND code = :c ORDER BY level LIMIT 1"), {"p": plan_id, "c": code})
    found = _rows_to_areas(rows)
    if not found:
        raise NotFound(f"plan {plan_id} has no area with code {code!r}", field="code")
    return found[0]


def check_versions(areas: Iterable[PArea], seen: Mapping[int, int] | None) -> None:
    """409 when the caller saw an older version of any area it names (nothing is changed).

    The body carries the current version and geometry of every stale area, so the client can
    show the other planner's edit and re-apply its own: nothing is lost.
    """
    if not seen:
        return
    by_key = {a.key: a for a in areas}
    stale = []
    for key, version in seen.items():
        area = by_key.get(int(key))
        if area is not None and int(version) != area.version:
            stale.append(area)
    if stale:
        first = stale[0]
        raise Conflict(
            f"{first.label()} was changed by someone else: you saw version"
            f" {int(seen[first.key]) if first.key is not None else '?'}, it is now at version"
            f" {first.version}; reload it and apply your edit again",
            field="version",
            extra={"key": first.key, "current_version": first.version,
                   "current": [feature(a) for a in stale]},
        )


# --- writing ---------------------------------------------------------------------------------

@dataclass
class Applied:
    """What an operation changed: keys created, updated (with their new versions), deleted."""

    op: int
    plan_version: int
    created: list[int]
    updated: list[int]
    deleted: list[int]
    versions: dict[int, int]
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "plan_version": self.plan_version, "created": self.created,
                "updated": self.updated, "deleted": self.deleted,
                "versions": {str(k): v for k, v in self.versions.items()}, **self.summary}


def _same(a: PArea, b: PArea) -> bool:
    return (a.parent_key == b.parent_key and a.level == b.level and a.code == b.code
            and a.name == b.name and a.grid_type == b.grid_type and a.locked == b.locked
            and a.source_area_id == b.source_area_id
            and shapely.equals_exact(a.geom, b.geom, tolerance=0.0))


def _multi(geom: BaseGeometry) -> bytes:
    if geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    return shapely.to_wkb(geom, include_srid=False)  # type: ignore[no-any-return]


def _write_rows(conn: Connection, plan_id: int, rows: Sequence[PArea], *, insert: bool) -> None:
    if not rows:
        return
    params = {
        "p": plan_id,
        "keys": [r.key for r in rows], "parents": [r.parent_key for r in rows],
        "levels": [r.level for r in rows], "codes": [r.code for r in rows],
        "names": [r.name for r in rows], "types": [r.grid_type for r in rows],
        "locked": [r.locked for r in rows], "versions": [r.version for r in rows],
        "sources": [r.source_area_id for r in rows], "wkbs": [_multi(r.geom) for r in rows],
    }
    arrays = ("unnest(CAST(:keys AS bigint[]), CAST(:parents AS bigint[]),"
              " CAST(:levels AS smallint[]), CAST(:codes AS text[]), CAST(:names AS text[]),"
              " CAST(:types AS text[]), CAST(:locked AS boolean[]), CAST(:versions AS integer[]),"
              " CAST(:sources AS bigint[]), CAST(:wkbs AS bytea[]))"
              " AS t(key, parent, level, code, name, gtype, locked, version, source, wkb)")
    if insert:
        conn.execute(text(
            "INSERT INTO plan_areas (id, plan_id, parent_key, level, code, name, grid_type,"
            " locked, version, source_area_id, geom)"
            " SELECT t.key, :p, t.parent, t.level, t.code, t.name, t.gtype, t.locked, t.version,"
            f" t.source, ST_SetSRID(ST_GeomFromWKB(t.wkb), 4326) FROM {arrays}"), params)
    else:
        conn.execute(text(
            "UPDATE plan_areas pa SET parent_key = t.parent, level = t.level, code = t.code,"
            " name = t.name, grid_type = t.gtype, locked = t.locked, version = t.version,"
            " source_area_id = t.source, geom = ST_SetSRID(ST_GeomFromWKB(t.wkb), 4326)"
            f" FROM {arrays} WHERE pa.id = t.key AND pa.plan_id = :p"), params)


def new_keys(conn: Connection, n: int) -> list[int]:
    if n <= 0:
        return []
    return [int(k) for k in conn.execute(text(
        "SELECT nextval(pg_get_serial_sequence('plan_areas', 'id')) FROM generate_series(1, :n)"),
        {"n": n}).scalars()]


def refresh_counts(conn: Connection, plan: PlanInfo, keys: Sequence[int]) -> None:
    """Households, population and area of the given plan areas, from the buildings inside.

    A building counts once per level: in the area covering its point with the smallest code
    (new areas, without a code, after every coded one; then by key), as ``gis.areas`` does for
    published grids.
    """
    if not keys:
        return
    conn.execute(text(
        """
        WITH changed AS (SELECT id, level, geom FROM plan_areas WHERE id = ANY(:keys)),
        hits AS (
            SELECT DISTINCT ON (b.id, c.level) b.id, c.level, own.id AS key,
                   b.households, b.residents
              FROM changed c
              JOIN buildings b ON b.jurisdiction_id = :j AND ST_Covers(c.geom, b.pt)
              JOIN plan_areas own ON own.plan_id = :p AND own.level = c.level
                                 AND ST_Covers(own.geom, b.pt)
             ORDER BY b.id, c.level, own.code NULLS LAST, own.id
        ), sums AS (
            SELECT key, sum(households) AS hh, sum(residents) AS pop FROM hits
             WHERE key = ANY(:keys) GROUP BY key
        )
        UPDATE plan_areas pa SET households = COALESCE(s.hh, 0), population = COALESCE(s.pop, 0),
               area_m2 = ST_Area(pa.geom::geography)
          FROM plan_areas x LEFT JOIN sums s ON s.key = x.id
         WHERE pa.id = x.id AND x.id = ANY(:keys)
        """), {"keys": list(keys), "j": plan.jurisdiction_id, "p": plan.id})


def _store(conn: Connection, plan: PlanInfo, before: Sequence[PArea], after: Sequence[PArea]
           ) -> tuple[list[PArea], list[PArea], list[int]]:
    """Write ``after`` over ``before`` (assigning keys to new rows); returns (the old rows
    that changed or went, the rows written, the deleted keys)."""
    old = {a.key: a for a in before if a.key is not None}
    fresh = [a for a in after if a.key is None]
    for area, key in zip(fresh, new_keys(conn, len(fresh)), strict=True):
        area.key = key
        area.version = 1
    kept = {a.key: a for a in after}
    deleted = sorted(k for k in old if k not in kept)
    changed = [a for a in after if a.key in old and not _same(old[a.key], a)]
    for a in changed:
        a.version = old[a.key].version + 1  # type: ignore[index]
    if deleted:
        conn.execute(text("DELETE FROM plan_areas WHERE plan_id = :p AND id = ANY(:keys)"),
                     {"p": plan.id, "keys": deleted})
    _write_rows(conn, plan.id, changed, insert=False)
    _write_rows(conn, plan.id, fresh, insert=True)
    written = changed + fresh
    touched = set(deleted) | {a.key for a in changed}
    return [old[k] for k in sorted(old) if k in touched], written, deleted


def apply(conn: Connection, plan: PlanInfo, kind: str, before: Sequence[PArea],
          after: Sequence[PArea], *, params: Mapping[str, Any] | None = None,
          summary: Mapping[str, Any] | None = None, actor_id: int | None = None,
          seen: Mapping[int, int] | None = None) -> Applied:
    """Apply an operation: ``after`` replaces ``before`` (rows of ``before`` missing from
    ``after`` are deleted; rows of ``after`` without a key are created). Logged for undo."""
    check_versions(before, seen)
    after = [replace(a) for a in after]
    logged_before, written, deleted = _store(conn, plan, before, after)
    created = [a.key for a in after if a.key not in {b.key for b in before}]
    refresh_counts(conn, plan, [a.key for a in written if a.key is not None])
    fresh: dict[int, PArea] = {
        a.key: a for a in load(conn, plan.id, keys=[a.key for a in written if a.key is not None])
        if a.key is not None}
    seq = conn.execute(text("SELECT COALESCE(max(seq), 0) + 1 FROM plan_ops WHERE plan_id = :p"
                            " AND NOT undone"), {"p": plan.id}).scalar_one()
    conn.execute(text("DELETE FROM plan_ops WHERE plan_id = :p AND undone"), {"p": plan.id})
    op_id = conn.execute(text(
        "INSERT INTO plan_ops (plan_id, seq, kind, params, summary, before, after, actor_id)"
        " VALUES (:p, :seq, :kind, CAST(:params AS jsonb), CAST(:summary AS jsonb),"
        " CAST(:before AS jsonb), CAST(:after AS jsonb), :actor) RETURNING id"),
        {"p": plan.id, "seq": seq, "kind": kind, "params": _json(params or {}),
         "summary": _json(summary or {}),
         "before": _json([a.snapshot() for a in logged_before]),
         "after": _json([fresh[k].snapshot() for k in sorted(fresh)]), "actor": actor_id},
    ).scalar_one()
    version = _bump(conn, plan.id)
    made = sorted(k for k in created if k is not None)
    keys = sorted(k for k in fresh if k is not None)
    return Applied(op=int(op_id), plan_version=version, created=made,
                   updated=[k for k in keys if k not in made], deleted=deleted,
                   versions={k: fresh[k].version for k in keys}, summary=dict(summary or {}))


def _bump(conn: Connection, plan_id: int) -> int:
    return int(conn.execute(text(
        "UPDATE plans SET version = version + 1, updated_at = now() WHERE id = :p"
        " RETURNING version"), {"p": plan_id}).scalar_one())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _restore(conn: Connection, plan: PlanInfo, remove: Sequence[PArea],
             restore: Sequence[PArea]) -> dict[int, int]:
    """Undo/redo: delete the rows of ``remove`` not in ``restore``, put ``restore`` back (with
    their keys); every touched row gets a version above any it had."""
    current = {a.key: a for a in load(conn, plan.id, keys=[a.key for a in (*remove, *restore)
                                                            if a.key is not None])}
    keep = {a.key for a in restore}
    gone = sorted(a.key for a in remove
                  if a.key is not None and a.key not in keep and a.key in current)
    if gone:
        conn.execute(text("DELETE FROM plan_areas WHERE plan_id = :p AND id = ANY(:keys)"),
                     {"p": plan.id, "keys": gone})
    updates: list[PArea] = []
    inserts: list[PArea] = []
    for snap in restore:
        row = replace(snap)
        now = current.get(row.key)
        row.version = max(row.version, now.version if now else 0) + 1
        (updates if now else inserts).append(row)
    _write_rows(conn, plan.id, updates, insert=False)
    _write_rows(conn, plan.id, inserts, insert=True)
    refresh_counts(conn, plan, [r.key for r in (*updates, *inserts) if r.key is not None])
    return {r.key: r.version for r in (*updates, *inserts) if r.key is not None}


def undo(conn: Connection, plan: PlanInfo, *, expected_op: int | None = None) -> dict[str, Any]:
    """Undo the last operation still in force (409 if there is none, or if ``expected_op`` is
    given and another operation is last: someone else edited the plan meanwhile)."""
    row = conn.execute(text(
        "SELECT id, seq, kind, before, after FROM plan_ops WHERE plan_id = :p AND NOT undone"
        " ORDER BY seq DESC LIMIT 1"), {"p": plan.id}).mappings().first()
    if row is None:
        raise Conflict("nothing to undo", field="op")
    if expected_op is not None and int(row["id"]) != expected_op:
        raise Conflict(f"the last operation is now {row['kind']} #{row['id']}, not #{expected_op}:"
                       " someone else changed the plan; reload it", field="op",
                       extra={"last_op": int(row["id"])})
    before = [PArea.from_snapshot(r) for r in row["before"]]
    after = [PArea.from_snapshot(r) for r in row["after"]]
    versions = _restore(conn, plan, after, before)
    conn.execute(text("UPDATE plan_ops SET undone = true WHERE id = :id"), {"id": row["id"]})
    return {"undone": int(row["id"]), "kind": row["kind"], "plan_version": _bump(conn, plan.id),
            "versions": {str(k): v for k, v in versions.items()},
            "deleted": sorted({a.key for a in after} - {a.key for a in before}),  # type: ignore[type-var]
            "created": sorted({a.key for a in before} - {a.key for a in after})}  # type: ignore[type-var]


def redo(conn: Connection, plan: PlanInfo) -> dict[str, Any]:
    """Re-apply the operation undone last (409 if there is none)."""
    row = conn.execute(text(
        "SELECT id, seq, kind, before, after FROM plan_ops WHERE plan_id = :p AND undone"
        " ORDER BY seq LIMIT 1"), {"p": plan.id}).mappings().first()
    if row is None:
        raise Conflict("nothing to redo", field="op")
    before = [PArea.from_snapshot(r) for r in row["before"]]
    after = [PArea.from_snapshot(r) for r in row["after"]]
    versions = _restore(conn, plan, before, after)
    conn.execute(text("UPDATE plan_ops SET undone = false WHERE id = :id"), {"id": row["id"]})
    return {"redone": int(row["id"]), "kind": row["kind"], "plan_version": _bump(conn, plan.id),
            "versions": {str(k): v for k, v in versions.items()},
            "deleted": sorted({a.key for a in before} - {a.key for a in after}),  # type: ignore[type-var]
            "created": sorted({a.key for a in after} - {a.key for a in before})}  # type: ignore[type-var]


def history(conn: Connection, plan_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(text(
        "SELECT o.id, o.seq, o.kind, o.params, o.summary, o.undone, o.at, u.name AS actor"
        " FROM plan_ops o LEFT JOIN users u ON u.id = o.actor_id WHERE o.plan_id = :p"
        " ORDER BY o.seq"), {"p": plan_id}).mappings()
    return [{**dict(r), "at": r["at"].isoformat()} for r in rows]


# --- GeoJSON ---------------------------------------------------------------------------------

def geojson(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """GeoJSON of a geometry at full precision (a client may send it back as an edit)."""
    if geom is None or geom.is_empty:
        return None
    return json.loads(shapely.to_geojson(geom))  # type: ignore[no-any-return]


def feature(area: PArea, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Feature", "id": area.key, "geometry": geojson(area.geom),
        "properties": {"key": area.key, "code": area.code, "name": area.name,
                       "level": area.level, "parent_key": area.parent_key,
                       "grid_type": area.grid_type, "locked": area.locked,
                       "version": area.version, "households": area.households,
                       "population": area.population, "area_m2": round(area.area_m2, 1),
                       "source_area_id": area.source_area_id, **extra},
    }


def deg2_to_m2(lat: float) -> float:
    """Square metres per square degree at latitude ``lat`` (for quick thresholds)."""
    return 111_320.0 * math.cos(math.radians(lat)) * 110_574.0

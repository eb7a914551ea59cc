"""Small, hand-checkable test cities built inside the test's transaction.

``tiny_city`` is one district (0.04° × 0.02° near 10°E 50°N) cut into 2 streets, each with one
community of 2 grids, so every shared edge and vertex is known exactly:

    lat 50.02 +---------+---------+---------+---------+
              |  grid   |  grid   |  grid   |  grid   |
              | ...0101 | ...0102 | ...0101 | ...0102 |
    lat 50.00 +---------+---------+---------+---------+
           lon 10.00   10.01     10.02     10.03     10.04
              \\____ street 001 ___/ \\____ street 002 ___/
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.areas import AreaRow, LevelSpec, create_jurisdiction, insert_areas
from gis.auth import Principal, authenticate, create_user, issue_token

DISTRICT = "990101"
X0, Y0, STEP, HEIGHT = 10.0, 50.0, 0.01, 0.02


@dataclass
class TinyCity:
    jurisdiction_id: int
    ids: dict[str, int]

    @staticmethod
    def grid_code(street: int, grid: int) -> str:
        return f"{DISTRICT}{street:03d}001{grid:02d}"


def tiny_city(conn: Connection, *, code: str = "TEST-TINY") -> TinyCity:
    jid = create_jurisdiction(
        conn, code=code, name="Tiny test city", local_srid=25832,
        levels=(LevelSpec("district", 6), LevelSpec("street", 3), LevelSpec("community", 3),
                LevelSpec("grid", 2, target_households=200)),
    )
    rows = [AreaRow(DISTRICT, "Tiny district", 0, box(X0, Y0, X0 + 4 * STEP, Y0 + HEIGHT))]
    for s in (1, 2):
        street = f"{DISTRICT}{s:03d}"
        sx = X0 + (s - 1) * 2 * STEP
        outline = box(sx, Y0, sx + 2 * STEP, Y0 + HEIGHT)
        rows.append(AreaRow(street, f"Street {s}", 1, outline, parent_code=DISTRICT))
        rows.append(AreaRow(f"{street}001", f"Community {s}-1", 2, outline, parent_code=street))
        for g in (1, 2):
            gx = sx + (g - 1) * STEP
            rows.append(AreaRow(f"{street}001{g:02d}", f"Grid {s}-{g}", 3,
                                box(gx, Y0, gx + STEP, Y0 + HEIGHT),
                                parent_code=f"{street}001", grid_type="residential"))
    return TinyCity(jid, insert_areas(conn, jid, rows))


# --- cases (issue 3) --------------------------------------------------------------------------

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def tiny_city_at(conn: Connection, *, code: str = "TEST-TINY", x0: float = X0, y0: float = Y0,
                 district: str = DISTRICT, valid_from: datetime | None = LONG_AGO,
                 timezone: str = "UTC") -> TinyCity:
    """``tiny_city`` anywhere, with boundaries in force since ``valid_from`` (default 2000), so
    cases can be reported at fixed past times."""
    jid = create_jurisdiction(
        conn, code=code, name="Tiny test city", local_srid=25832, timezone=timezone,
        levels=(LevelSpec("district", 6), LevelSpec("street", 3), LevelSpec("community", 3),
                LevelSpec("grid", 2, target_households=200)),
    )
    rows = [AreaRow(district, "Tiny district", 0, box(x0, y0, x0 + 4 * STEP, y0 + HEIGHT))]
    for s in (1, 2):
        street = f"{district}{s:03d}"
        sx = x0 + (s - 1) * 2 * STEP
        outline = box(sx, y0, sx + 2 * STEP, y0 + HEIGHT)
        rows.append(AreaRow(street, f"Street {s}", 1, outline, parent_code=district))
        rows.append(AreaRow(f"{street}001", f"Community {s}-1", 2, outline, parent_code=street))
        for g in (1, 2):
            gx = sx + (g - 1) * STEP
            rows.append(AreaRow(f"{street}001{g:02d}", f"Grid {s}-{g}", 3,
                                box(gx, y0, gx + STEP, y0 + HEIGHT),
                                parent_code=f"{street}001", grid_type="residential"))
    return TinyCity(jid, insert_areas(conn, jid, rows, valid_from=valid_from))


def account(conn: Connection, role: str, *, name: str | None = None, areas: tuple[str, ...] = (),
            department: str | None = None, expires_in: timedelta | None = None
            ) -> tuple[Principal, str]:
    """A new account of ``role`` and its bearer token, as ``(principal, token)``."""
    uid = create_user(conn, name or f"test-{role}-{secrets.token_hex(4)}", role,
                      area_codes=areas, department=department)
    token = issue_token(conn, uid, expires_in=expires_in)
    return authenticate(conn, token), token


@dataclass
class CaseWorld:
    """A tiny city with the default categories and departments, ready for cases."""

    city: TinyCity
    x0: float = X0
    y0: float = Y0

    def point(self, street: int = 1, grid: int = 1) -> tuple[float, float]:
        """The centre of grid ``street``-``grid`` (lon, lat)."""
        return (self.x0 + ((street - 1) * 2 + grid - 1) * STEP + STEP / 2, self.y0 + HEIGHT / 2)


def case_world(conn: Connection, *, code: str = "TEST-TINY", x0: float = X0, y0: float = Y0,
               timezone: str = "UTC") -> CaseWorld:
    """``seed_defaults`` + ``tiny_city_at`` (boundaries since 2000) in the test's transaction."""
    from gis.categories import seed_defaults

    seed_defaults(conn)
    return CaseWorld(tiny_city_at(conn, code=code, x0=x0, y0=y0, timezone=timezone), x0, y0)


def add_zone(conn: Connection, jurisdiction_id: int, code: str, geom: BaseGeometry,
             department: str, categories: list[str] | None = None,
             kind: str = "duty") -> None:
    """A responsibility zone (in force since 2000) handing ``categories`` to ``department``."""
    conn.execute(text(
        "INSERT INTO responsibility_zones (jurisdiction_id, kind, code, name, department_id,"
        " category_codes, valid_from, geom) VALUES (:j, :kind, :code, :code,"
        " (SELECT id FROM departments WHERE code = :dep), :cats, :vf,"
        " ST_SetSRID(ST_GeomFromText(:wkt), 4326))"),
        {"j": jurisdiction_id, "kind": kind, "code": code, "dep": department,
         "cats": categories, "vf": LONG_AGO, "wkt": geom.wkt})


def add_component(conn: Connection, jurisdiction_id: int, lon: float, lat: float, *,
                  category: str | None, department: str | None, kind: str = "asset") -> int:
    """A component (部件) at a point, owned by ``department``; returns its id."""
    return int(conn.execute(text(
        "INSERT INTO components (jurisdiction_id, category_id, kind, department_id, geom)"
        " VALUES (:j, (SELECT id FROM categories WHERE code = :cat), :kind,"
        " (SELECT id FROM departments WHERE code = :dep),"
        " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"),
        {"j": jurisdiction_id, "cat": category, "kind": kind, "dep": department,
         "lon": lon, "lat": lat}).scalar_one())


def add_responder(conn: Connection, jurisdiction_id: int, name: str, *,
                  department: str | None = None, status: str = "available") -> int:
    return int(conn.execute(text(
        "INSERT INTO responders (jurisdiction_id, name, department_id, status)"
        " VALUES (:j, :n, (SELECT id FROM departments WHERE code = :dep), :s) RETURNING id"),
        {"j": jurisdiction_id, "n": name, "dep": department, "s": status}).scalar_one())


def purge_jurisdiction(conn: Connection, jurisdiction_id: int) -> None:
    """Remove a committed test city and its cases (case_events is append-only: the trigger is
    bypassed with replica mode, which only a superuser test session can set)."""
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    conn.execute(text("DELETE FROM case_events WHERE case_id IN"
                      " (SELECT id FROM cases WHERE jurisdiction_id = :j)"), {"j": jurisdiction_id})
    # Every other trigger (counters kept by other modules) must see the deletes.
    conn.execute(text("SET LOCAL session_replication_role = origin"))
    conn.execute(text("DELETE FROM case_summons WHERE case_id IN"
                      " (SELECT id FROM cases WHERE jurisdiction_id = :j)"), {"j": jurisdiction_id})
    conn.execute(text("DELETE FROM cases WHERE jurisdiction_id = :j"), {"j": jurisdiction_id})
    conn.execute(text("DELETE FROM area_parts WHERE area_id IN"
                      " (SELECT id FROM areas WHERE jurisdiction_id = :j)"), {"j": jurisdiction_id})
    conn.execute(text("DELETE FROM areas WHERE jurisdiction_id = :j"), {"j": jurisdiction_id})
    conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), {"j": jurisdiction_id})

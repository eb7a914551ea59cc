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

from dataclasses import dataclass

from shapely.geometry import box
from sqlalchemy import Connection

from gis.areas import AreaRow, LevelSpec, create_jurisdiction, insert_areas

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

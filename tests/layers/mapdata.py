"""Map test data on top of ``tiny_city`` (10°E 50°N): cases, facilities, a responder, a zone.

Tiles used by the map tests (all hand-checkable with mercantile):

- ``GRID_TILE``: z14 tile over the west half of the tiny city (grids 1-1, 1-2, 2-1);
- ``FAR_TILE``: a z14 tile a few kilometres east, which no fixture feature touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import mercantile
from sqlalchemy import Connection, text

from tests.factories import X0, Y0, TinyCity, tiny_city

CASE_POINTS = [  # lon, lat, status, category code
    (X0 + 0.002, Y0 + 0.012, "reported", "E990101"),
    (X0 + 0.004, Y0 + 0.013, "dispatched", "E990101"),
    (X0 + 0.012, Y0 + 0.014, "closed", "E990102"),
    (X0 + 0.018, Y0 + 0.015, "in_progress", "C990101"),
    (X0 + 0.031, Y0 + 0.011, "rejected", "E990102"),
]
GRID_TILE = mercantile.tile(X0 + 0.005, Y0 + 0.01, 14)
FAR_TILE = mercantile.Tile(GRID_TILE.x + 6, GRID_TILE.y, 14)
REPORTED_AT = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@dataclass
class MapCity:
    city: TinyCity
    categories: dict[str, int]
    case_ids: list[int]
    facility_ids: list[int]


def add_categories(conn: Connection) -> dict[str, int]:
    ids = {}
    for code, kind, name in (("E990101", "event", "Test litter"),
                             ("E990102", "event", "Test occupation"),
                             ("C990101", "component", "Test manhole")):
        ids[code] = conn.execute(
            text("INSERT INTO categories (code, kind, depth, name) VALUES (:c, :k, 2, :n)"
                 " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id"),
            {"c": code, "k": kind, "n": name}).scalar_one()
    return ids


def add_case(conn: Connection, jurisdiction_id: int, category_id: int, lon: float, lat: float,
             *, status: str = "reported", reported_at: datetime = REPORTED_AT,
             contact: str | None = None) -> int:
    return int(conn.execute(
        text("INSERT INTO cases (jurisdiction_id, category_id, channel, status, reported_at,"
             " description, reporter_contact, idempotency_key, geom)"
             " VALUES (:j, :c, 'patrol', :s, :at, 'private description',"
             " CAST(:contact AS jsonb), :key, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"
             " RETURNING id"),
        {"j": jurisdiction_id, "c": category_id, "s": status, "at": reported_at,
         "contact": contact, "key": None, "lon": lon, "lat": lat}).scalar_one())


def map_city(conn: Connection, *, code: str = "TEST-TINY") -> MapCity:
    city = tiny_city(conn, code=code)
    cats = add_categories(conn)
    case_ids = [
        add_case(conn, city.jurisdiction_id, cats[cat], lon, lat, status=status,
                 reported_at=REPORTED_AT + timedelta(days=i),
                 contact='{"phone": "+86 555 0100"}')
        for i, (lon, lat, status, cat) in enumerate(CASE_POINTS)
    ]
    facility_ids = [int(conn.execute(
        text("INSERT INTO facilities (jurisdiction_id, type, name, capacity, geom) VALUES"
             " (:j, :t, :n, 10, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) RETURNING id"),
        {"j": city.jurisdiction_id, "t": t, "n": f"Test {t}", "lon": lon, "lat": lat},
    ).scalar_one()) for t, lon, lat in (("police", X0 + 0.003, Y0 + 0.011),
                                         ("clinic", X0 + 0.025, Y0 + 0.012))]
    conn.execute(
        text("INSERT INTO responders (jurisdiction_id, name, kind, status, position_at, geom)"
             " VALUES (:j, 'Officer Private Name', 'staff', 'available', now(),"
             " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)),"
             " (:j, 'Off Duty Name', 'staff', 'off', now(),"
             " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)),"
             " (:j, 'Stale Name', 'vehicle', 'busy', now() - interval '2 hours',"
             " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
        {"j": city.jurisdiction_id, "lon": X0 + 0.006, "lat": Y0 + 0.012})
    return MapCity(city, cats, case_ids, facility_ids)

"""A world for the trust tests, built in one transaction on the demo city.

Every staff account of the authorization matrix is scoped to one street (``IN_STREET``) and
one department (``IN_DEPT``); the reporter's scope is its own reports. Targets:

- ``in``: inside both scopes (and, for cases, reported by the matrix's reporter account);
- ``out_area``: the right department but another street (``OUT_STREET``);
- ``out_dept``: the right street but another department (``OUT_DEPT``).

Cases exist in every state a lifecycle action starts from, for every target, each with its own
reporter contact (``Contact.values``) and tracking token, so the privacy checks know exactly
which strings must never appear in a public answer.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis import intake, lifecycle, media
from gis.auth import PUBLIC, Principal
from gis.caseconfig import CaseSettings
from gis.models import ROLES
from gis.planning import plans as gplans
from gis.planning import store as gstore
from gis.settings import DatabaseSettings
from tests.factories import account

IN_STREET, OUT_STREET = "910102002", "910101002"
IN_COMMUNITY, OUT_COMMUNITY = "910102002002", "910101002001"
IN_DEPT, OUT_DEPT = "SANITATION", "WATER"
CATEGORY = "E010101"
TARGETS = ("in", "out_area", "out_dept")
# The states lifecycle actions start from (see docs/cases.md).
STATES = ("reported", "filed", "dispatched", "handled", "verified", "closed")


def png_bytes(seed: int = 0) -> bytes:
    """A valid 1×1 PNG (its colour depends on ``seed``, so each has its own SHA-256)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"\x00" + bytes([seed % 256, (seed * 7) % 256, (seed * 13) % 256])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@dataclass
class TrustCase:
    id: int
    target: str
    state: str
    contact: dict[str, str]
    tracking_token: str
    media_sha: list[str] = field(default_factory=list)


@dataclass
class World:
    tokens: dict[str, str]                      # role → bearer token (scoped accounts)
    principals: dict[str, Principal]
    cases: dict[tuple[str, str], TrustCase]     # (target, state) → case
    photo_cases: dict[str, TrustCase]           # target → a reported case with a photo
    plans: dict[str, dict[str, Any]]            # "in"/"out_area" → plan info + grid features
    responders: dict[str, int]                  # "in"/"out_dept" → responder id
    points: dict[str, tuple[float, float]]      # target → (lon, lat)
    jurisdiction_code: str
    helper_admin: Principal
    secrets: set[str] = field(default_factory=set)  # strings no public answer may contain

    def headers(self, role: str) -> dict[str, str]:
        return {} if role == "public" else {"Authorization": f"Bearer {self.tokens[role]}"}

    def case(self, target: str, state: str = "reported") -> TrustCase:
        return self.cases[(target, state)]


def _point_in(conn: Connection, community: str, n: int = 0) -> tuple[float, float]:
    row = conn.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(g.geom) AS p FROM areas g"
        " JOIN areas c ON g.parent_id = c.id WHERE c.code = :c AND c.valid_to IS NULL"
        " AND g.valid_to IS NULL ORDER BY g.code OFFSET :n LIMIT 1) s"),
        {"c": community, "n": n}).one()
    return float(row[0]), float(row[1])


def _new_case(conn: Connection, reporter: Principal, lon: float, lat: float, serial: int,
              dept: str, photo: bool = False) -> TrustCase:
    contact = {"name": f"Reporter Name {serial:04d}zq", "phone": f"+358 40 555 {serial:04d}",
               "email": f"reporter{serial:04d}@private.example"}
    refs: list[dict[str, Any]] = []
    if photo:
        up = media.Upload(f"p{serial}.png", "image/png", png_bytes(serial))
        refs = media.check_uploads([up], media.MediaSettings())
        media.store([up], refs, media.media_dir(media.MediaSettings(),
                                                DatabaseSettings().data_dir))
    # Cases a metre apart (duplicate links are cleared below: every case stands alone).
    report = intake.Report(category=CATEGORY, channel="app", lon=lon + (serial % 7) * 0.00001,
                           lat=lat, description=f"trust case {serial}", contact=contact,
                           media=refs)
    result = intake.create_case(conn, report, principal=reporter, settings=CaseSettings())
    cid = int(result.body["id"])
    conn.execute(text("UPDATE cases SET department_id = (SELECT id FROM departments"
                      " WHERE code = :d), duplicate_of = NULL WHERE id = :c"),
                 {"d": dept, "c": cid})
    return TrustCase(cid, "", "reported", contact, result.body["tracking_token"],
                     [r["sha256"] for r in refs])


def _advance(conn: Connection, case_id: int, state: str, admin: Principal,
             admin2: Principal) -> None:
    steps = {"filed": ["file"], "dispatched": ["file", "dispatch"],
             "handled": ["file", "dispatch", "handle"],
             "verified": ["file", "dispatch", "handle", "verify"],
             "closed": ["file", "dispatch", "handle", "verify", "close"]}[state]
    for action in steps:
        req = lifecycle.ActionRequest(action=action, note="step", result="pass")
        actor = admin2 if action in lifecycle.SUPERVISION_ACTIONS else admin
        lifecycle.apply_action(conn, case_id, req, actor)


def build_world(conn: Connection) -> World:
    tokens: dict[str, str] = {}
    principals: dict[str, Principal] = {}
    for role in ROLES:
        if role == "reporter":
            p, tok = account(conn, role)
        else:
            p, tok = account(conn, role, areas=(IN_STREET,), department=IN_DEPT)
        tokens[role], principals[role] = tok, p
    admin, _ = account(conn, "admin", name="trust-helper-admin")
    admin2, _ = account(conn, "admin", name="trust-helper-admin2")
    other_reporter, _ = account(conn, "reporter", name="trust-other-reporter")
    planner, _ = account(conn, "planner", name="trust-helper-planner")

    base = {"in": _point_in(conn, IN_COMMUNITY), "out_area": _point_in(conn, OUT_COMMUNITY),
            "out_dept": _point_in(conn, IN_COMMUNITY, 1)}
    world_secrets: set[str] = set()
    cases: dict[tuple[str, str], TrustCase] = {}
    photo_cases: dict[str, TrustCase] = {}
    serial = 0
    for target in TARGETS:
        lon, lat = base[target]
        dept = OUT_DEPT if target == "out_dept" else IN_DEPT
        reporter = principals["reporter"] if target == "in" else other_reporter
        for state in (*STATES, "photo"):
            serial += 1
            c = _new_case(conn, reporter, lon, lat, serial, dept, photo=state == "photo")
            c.target = target
            world_secrets |= set(c.contact.values()) | {c.tracking_token, *c.media_sha}
            if state == "photo":
                photo_cases[target] = c
                continue
            if state != "reported":
                _advance(conn, c.id, state, admin, admin2)
            c.state = state
            cases[(target, state)] = c
    # The summoned department may report in (报到) on the reported in-scope case.
    lifecycle.apply_action(conn, cases[("in", "reported")].id,
                           lifecycle.ActionRequest(action="summon", department=IN_DEPT), admin)

    plans_: dict[str, dict[str, Any]] = {}
    for target, community in (("in", IN_COMMUNITY), ("out_area", OUT_COMMUNITY)):
        info = gplans.create_plan(conn, root=community, name=f"trust {target}",
                                  actor_id=planner.user_id)
        feats = gplans.features(conn, info.id, level=3)["features"]
        plans_[target] = {"id": info.id, "community": community, "grids": feats,
                          "parent": next(f for f in gplans.features(conn, info.id, level=2)
                                         ["features"] if f["properties"]["code"] == community)}

    responders: dict[str, int] = {}
    for target, dept in (("in", IN_DEPT), ("out_dept", OUT_DEPT)):
        lon, lat = base["in"]
        responders[target] = int(conn.execute(text(
            "INSERT INTO responders (jurisdiction_id, name, kind, department_id, status,"
            " position_at, geom) SELECT a.jurisdiction_id, :n, 'staff', d.id, 'available',"
            " now(), ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) FROM areas a, departments d"
            " WHERE a.code = :area AND a.valid_to IS NULL AND d.code = :dept RETURNING id"),
            {"n": f"trust responder {target}", "lon": lon, "lat": lat, "area": IN_STREET,
             "dept": dept}).scalar_one())
    jcode = conn.execute(text("SELECT j.code FROM jurisdictions j JOIN areas a"
                              " ON a.jurisdiction_id = j.id WHERE a.code = :c LIMIT 1"),
                         {"c": IN_STREET}).scalar_one()
    world_secrets |= set(tokens.values())
    return World(tokens, principals, cases, photo_cases, plans_, responders, base, jcode,
                 admin, world_secrets)


def split_line(feature: dict[str, Any]) -> dict[str, Any]:
    """A north–south line across a plan grid (through a point inside it)."""
    from shapely.geometry import shape

    g = shape(feature["geometry"])
    _, y0, _, y1 = g.bounds
    c = g.representative_point()
    return {"type": "LineString", "coordinates": [[c.x, y0 - 0.001], [c.x, y1 + 0.001]]}


def undo_last(conn: Connection, plan_id: int) -> None:
    """Undo the plan's last operation (so that ``redo`` has something to redo)."""
    gstore.undo(conn, gstore.get_plan(conn, plan_id, lock=True, draft=True))


def split_first(conn: Connection, world: World, target: str) -> None:
    plan = world.plans[target]
    g = plan["grids"][0]
    from shapely.geometry import shape

    gplans.split(conn, plan["id"], int(g["id"]), shape(split_line(g)),
                 version=g["properties"]["version"], actor_id=None)


NOW = datetime.now(UTC)
STALE = NOW - timedelta(days=3)
PUBLIC_PRINCIPAL = PUBLIC

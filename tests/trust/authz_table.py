"""The authorization matrix: ONE table of every API route × role × scope → expected outcome.

Each ``Entry`` names a route (method + path template, exactly as the app declares it), an
optional variant (one route may need several probes: each lifecycle action, each intake
channel, each tile layer…), the scope targets it is probed on, how to build a valid request,
and the expected outcome per (role, target). ``test_authz_matrix.py`` runs every cell and
fails when a route of the app has no entry here.

Accounts (``tests/trust/world.py``): every staff role is scoped to one street and one
department; the reporter's scope is its own reports. Targets: ``in`` (inside both), ``out_area``
(other street), ``out_dept`` (other department), ``any`` (the route has no scoped target).

Outcomes:
- ``allow``: 2xx;
- ``private``: 2xx and the target case's reporter contact is in the answer;
- ``public``: 2xx and the answer is the public view: no contact value, tracking token, photo
  hash, account token, and no private key (``reporter_contact``, ``media``, ``actor``,
  ``note``, ``data``…; for the public also no staff key: ``routed_by``, ``responder_id``…);
- ``pass``: the access check lets the request through (not 401/403, never 5xx), used only
  where the request's own validity depends on data the matrix does not control;
- ``401`` / ``403`` / ``404``: refused with that status.

Policy decisions written down here (docs/cases.md, the route modules):
- Reading a case outside one's scope answers the public view (200), never private fields: it is
  what the public may see anyway, and staff need the map of all cases.
- Photos (``/media/{sha256}``) of the reporter: staff in scope whose role needs contacts
  (call_taker, dispatcher, handler, supervisor, admin) and the reporter's own account; a
  handler's feedback photos (in events) also to any staff in scope (the verifier needs them).
- Intake is not limited by area scope (a grid worker reports what it sees, anywhere).
- Plans: reading is not scoped; writing a plan whose root lies outside the planner's area scope
  is refused (403), as creating one is.
- Responders: reading is not scoped (dispatch crosses lines); a department-scoped account may
  change and report positions only for its own department's responders (403; a batch of
  positions lists another department's responders among its refused items, see
  ``batch_rule``).
- Non-public tile layers (responders) and their TileJSON (its bounds reveal where on-duty staff
  are) need a staff token.

``known_bug`` marks cells where the code does not (yet) do what the table says; the test reports
them as expected failures and fails loudly once the code is fixed (remove the mark then). None
is marked at present.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from gis.models import ROLES
from tests.trust.world import (
    CATEGORY,
    IN_COMMUNITY,
    IN_DEPT,
    IN_STREET,
    OUT_COMMUNITY,
    OUT_DEPT,
    OUT_STREET,
    World,
    split_first,
    split_line,
    undo_last,
)

ALLOW, PRIVATE, PUBLIC, PASS = "allow", "private", "public", "pass"
D401, D403, D404 = "401", "403", "404"
ALL_ROLES = ("public", *ROLES)
CONTACT_ROLES = ("call_taker", "dispatcher", "handler", "supervisor", "admin")
STAFF = tuple(r for r in ROLES if r != "reporter")
CASE_TARGETS = ("in", "out_area", "out_dept")
PLAN_TARGETS = ("in", "out_area")
RESPONDER_TARGETS = ("in", "out_dept")
ANY = ("any",)


@dataclass
class Req:
    url: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Runs inside the cell's savepoint before the request (e.g. an operation to redo).
    setup: Callable[[Connection, World], None] | None = None
    stream: bool = False


Rule = Callable[[str, str], str]
Build = Callable[[World, str, str], Req]


@dataclass
class Entry:
    method: str
    path: str
    build: Build
    expect: Rule
    targets: tuple[str, ...] = ANY
    variant: str = ""
    known_bug: Callable[[str, str], str | None] = lambda role, target: None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")


# --- rules ----------------------------------------------------------------------------------

def anyone(outcome: str = ALLOW) -> Rule:
    return lambda role, target: outcome


def only(*allowed: str, scoped: bool = False, public: str = D401) -> Rule:
    """``allowed`` roles pass (inside their scope when ``scoped``); the public gets ``public``,
    every other role 403."""
    def rule(role: str, target: str) -> str:
        if role in allowed:
            return D403 if scoped and target not in ("in", "any") else ALLOW
        return public if role == "public" else D403
    return rule


def case_view(role: str, target: str) -> str:
    """Private fields for staff in scope who need them and for the reporter's own case."""
    if target == "in" and role in (*CONTACT_ROLES, "reporter"):
        return PRIVATE
    return PUBLIC


def events_view(role: str, target: str) -> str:
    return ALLOW if target == "in" and role in STAFF else PUBLIC


def media_rule(role: str, target: str) -> str:
    if role == "public":
        return D401
    return ALLOW if target == "in" and role in (*CONTACT_ROLES, "reporter") else D403


def action_rule(*roles: str) -> Rule:
    """A lifecycle action: the listed roles inside their scope; everyone else is refused."""
    return only(*roles, scoped=True)


def rate_rule(role: str, target: str) -> str:
    # The public rates with the tracking token of the "in" case: right case → allowed,
    # another case → 403. The reporter rates its own case; staff on a return call in scope.
    if role in ("public", "reporter", "call_taker", "supervisor", "admin"):
        return ALLOW if target == "in" else D403
    return D403


def batch_rule(role: str, target: str) -> str:
    """Batch positions answer per item (as for unknown or off-duty ids): another department's
    responder is listed as refused in a 200, not a 403 of the whole batch. That the item is
    refused and not stored is asserted in tests/api/test_responders_api.py
    (test_batch_refuses_another_departments_responder_per_item)."""
    if role in RESPONDER_POSITION:
        return ALLOW
    return D401 if role == "public" else D403


# --- request builders -----------------------------------------------------------------------

def get(url: str, **params: Any) -> Build:
    return lambda w, role, target: Req(url, params=params or None)


def case_url(suffix: str = "", state: str = "reported") -> Build:
    return lambda w, role, target: Req(f"/api/cases/{w.case(target, state).id}{suffix}")


def action(name: str, state: str, **body: Any) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        return Req(f"/api/cases/{w.case(target, state).id}/actions",
                   json={"action": name, **body})
    return build


def rate(w: World, role: str, target: str) -> Req:
    body: dict[str, Any] = {"action": "rate", "satisfaction": 4}
    if role == "public":
        body["tracking_token"] = w.case("in", "closed").tracking_token
    return Req(f"/api/cases/{w.case(target, 'closed').id}/actions", json=body)


def media(w: World, role: str, target: str) -> Req:
    c = w.photo_cases[target]
    return Req(f"/api/cases/{c.id}/media/{c.media_sha[0]}")


def report(channel: str) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        lon, lat = w.points["in"]
        return Req("/api/cases", json={"category": CATEGORY, "channel": channel, "lon": lon,
                                       "lat": lat, "description": f"matrix {channel}"})
    return build


def case_list(w: World, role: str, target: str) -> Req:
    params = {"area": OUT_STREET if target == "out_area" else IN_STREET, "limit": 1000,
              "category": CATEGORY}
    if target == "out_dept":
        params["department"] = OUT_DEPT
    return Req("/api/cases", params=params)


def nearby(w: World, role: str, target: str) -> Req:
    lon, lat = w.points[target]
    return Req("/api/cases/nearby", params={"lon": lon, "lat": lat, "radius_m": 100})


def bulk(w: World, role: str, target: str) -> Req:
    lon, lat = w.points["in"]
    return Req("/api/cases:bulk", json={"rows": [{"lon": lon, "lat": lat, "category": CATEGORY,
                                                  "id": "matrix-bulk-1"}]})


def plan(suffix: str = "", **kw: Any) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        return Req(f"/api/plans/{w.plans[target]['id']}{suffix}", **kw)
    return build


def plan_grid(suffix: str, body: Callable[[dict[str, Any]], Any]) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        p = w.plans[target]
        g = p["grids"][0]
        return Req(f"/api/plans/{p['id']}/areas/{g['id']}{suffix}", json=body(g))
    return build


def carve(w: World, role: str, target: str) -> Req:
    from shapely.geometry import mapping, shape

    p = w.plans[target]
    inner = shape(p["grids"][0]["geometry"]).representative_point().buffer(0.0004, 4)
    return Req(f"/api/plans/{p['id']}/areas",
               json={"parent": p["parent"]["id"], "geometry": mapping(inner), "name": "carved"})


def merge(w: World, role: str, target: str) -> Req:
    from shapely.geometry import shape

    p = w.plans[target]
    grids = p["grids"]
    a = grids[0]
    b = next(g for g in grids[1:]
             if shape(a["geometry"]).intersection(shape(g["geometry"])).length > 0)
    return Req(f"/api/plans/{p['id']}/merge", json={"keys": [a["id"], b["id"]]})


def move(w: World, role: str, target: str) -> Req:
    from shapely.geometry import shape

    p = w.plans[target]
    grids = p["grids"]
    a = grids[0]
    b = next(g for g in grids[1:]
             if shape(a["geometry"]).intersection(shape(g["geometry"])).length > 0)
    pt = shape(a["geometry"]).representative_point()
    return Req(f"/api/plans/{p['id']}/move", json={"to": b["id"], "blocks": [[pt.x, pt.y]]})


def partition(w: World, role: str, target: str) -> Req:
    p = w.plans[target]
    return Req(f"/api/plans/{p['id']}/partition", json={"parent_code": p["community"], "n": 2})


def plan_import(w: World, role: str, target: str) -> Req:
    p = w.plans[target]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": g["geometry"],
         "properties": {"code": g["properties"]["code"], "name": g["properties"].get("name")}}
        for g in p["grids"]]}
    return Req(f"/api/plans/{p['id']}/import",
               files={"file": ("grids.geojson", json.dumps(doc).encode(),
                               "application/geo+json")})


def with_setup(build: Build, setup: Callable[[Connection, World, str], None]) -> Build:
    def wrapped(w: World, role: str, target: str) -> Req:
        req = build(w, role, target)
        req.setup = lambda conn, world: setup(conn, world, target)
        return req
    return wrapped


def redo_setup(conn: Connection, w: World, target: str) -> None:
    split_first(conn, w, target)
    undo_last(conn, w.plans[target]["id"])


def responder(suffix: str = "", **kw: Any) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        rid = w.responders["in" if target == "any" else target]
        return Req(f"/api/responders/{rid}{suffix}", **kw)
    return build


def position_body(w: World) -> dict[str, Any]:
    lon, lat = w.points["in"]
    return {"lon": lon, "lat": lat}


def put_position(w: World, role: str, target: str) -> Req:
    return Req(f"/api/responders/{w.responders[target]}/position", json=position_body(w))


def put_positions(w: World, role: str, target: str) -> Req:
    return Req("/api/responders/positions",
               json={"positions": [{"id": w.responders[target], **position_body(w)}]})


def near(url: str, **params: Any) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        lon, lat = w.points["in"]
        return Req(url, params={"lon": lon, "lat": lat, **params})
    return build


def open311_post(w: World, role: str, target: str) -> Req:
    lon, lat = w.points["in"]
    return Req("/open311/v2/requests.json",
               data={"service_code": CATEGORY, "lat": str(lat), "long": str(lon),
                     "description": "matrix open311"})


def open311_one(w: World, role: str, target: str) -> Req:
    return Req(f"/open311/v2/requests/{w.case('in').id}.json")


def open311_token(w: World, role: str, target: str) -> Req:
    return Req(f"/open311/v2/tokens/{w.case('in').tracking_token}.json")


TILE = (15, 18653, 9486)   # central Helsinki, inside every layer's zoom range
LAYERS = ("districts", "streets", "communities", "grids", "cases", "facilities", "components",
          "responders", "responsibility_zones", "road_edges")
OGC_COLLECTIONS = tuple(name for name in LAYERS if name != "responders")


def layer_rule(layer: str) -> Rule:
    return only(*STAFF) if layer == "responders" else anyone()


def ogc_item(collection: str) -> Build:
    def build(w: World, role: str, target: str) -> Req:
        return Req(f"/ogc/collections/{collection}/items", params={"limit": 1})
    return build


# --- the table ------------------------------------------------------------------------------

LIFECYCLE: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = [
    ("accept", "reported", ("call_taker", "supervisor", "dispatcher", "admin"), {}),
    ("file", "reported", ("call_taker", "supervisor", "dispatcher", "admin"), {}),
    ("reject", "reported", ("call_taker", "supervisor", "admin"), {"note": "not a case"}),
    ("redirect", "reported", ("call_taker", "dispatcher", "handler", "admin"),
     {"department": "PARKS"}),
    ("dispatch", "filed", ("dispatcher", "admin"), {"department": IN_DEPT}),
    ("start", "dispatched", ("handler", "admin"), {}),
    ("handle", "dispatched", ("handler", "admin"), {"note": "done"}),
    ("verify", "handled", ("grid_worker", "supervisor", "admin"), {"result": "pass"}),
    ("close", "verified", ("supervisor", "admin"), {}),
    ("reopen", "closed", ("supervisor", "admin"), {"note": "back again"}),
    ("summon", "reported", ("supervisor", "dispatcher", "admin"), {"department": "ROADS"}),
    ("respond", "reported", ("handler", "dispatcher", "admin"), {}),
]

CHANNELS: dict[str, tuple[str, ...]] = {
    "app": ALL_ROLES,
    "patrol": ("grid_worker", "supervisor", "admin"),
    "hotline": ("call_taker", "dispatcher", "supervisor", "admin"),
    "walk-in": ("call_taker", "supervisor", "admin"),
    "video": ("call_taker", "dispatcher", "supervisor", "admin"),
    "sensor": ("call_taker", "dispatcher", "supervisor", "admin"),
    "open311": ("public", "reporter", "call_taker", "dispatcher", "supervisor", "admin"),
}
PLAN_READ = ("planner", "admin", "analyst")
RESPONDER_MANAGE = ("dispatcher", "supervisor", "admin")
RESPONDER_POSITION = ("grid_worker", "handler", "dispatcher", "admin")
PLAN_WRITE = ("planner", "admin")


def _entries() -> list[Entry]:
    e: list[Entry] = [
        Entry("GET", "/health", get("/health"), anyone()),
        # areas
        Entry("GET", "/api/areas", get("/api/areas", parent=IN_STREET), anyone()),
        Entry("GET", "/api/areas/{code}", get(f"/api/areas/{IN_COMMUNITY}"), anyone()),
        Entry("GET", "/api/locate", near("/api/locate"), anyone()),
        Entry("GET", "/api/search", get("/api/search", q="9101"), anyone()),
        Entry("GET", "/api/stats/areas", get("/api/stats/areas", level="street"), anyone(PUBLIC)),
        Entry("GET", "/api/stats/levels", get("/api/stats/levels"), anyone()),
        # cases: reading
        Entry("GET", "/api/cases", case_list, case_view, CASE_TARGETS),
        Entry("GET", "/api/cases/nearby", nearby, anyone(PUBLIC), CASE_TARGETS),
        Entry("GET", "/api/cases/workflow", get("/api/cases/workflow"), anyone()),
        Entry("GET", "/api/cases/{case_id}", case_url(), case_view, CASE_TARGETS),
        Entry("GET", "/api/cases/{case_id}/events", case_url("/events", "closed"), events_view,
              CASE_TARGETS),
        Entry("GET", "/api/cases/{case_id}/summons", case_url("/summons"), anyone(PUBLIC),
              CASE_TARGETS),
        Entry("GET", "/api/cases/{case_id}/media/{sha256}", media, media_rule, CASE_TARGETS),
        Entry("GET", "/api/cases/{case_id}/recurrence", case_url("/recurrence"),
              anyone(PUBLIC), CASE_TARGETS),
        # cases: writing
        Entry("POST", "/api/cases:escalate", lambda w, r, t: Req("/api/cases:escalate"),
              only("admin")),
        Entry("POST", "/api/cases:bulk", bulk, only("admin", "call_taker")),
        Entry("POST", "/api/cases/{case_id}/actions", rate, rate_rule, CASE_TARGETS,
              variant="rate"),
    ]
    for channel, roles in CHANNELS.items():
        e.append(Entry("POST", "/api/cases", report(channel),
                       anyone() if channel == "app" else only(*roles), variant=channel))
    for name, state, roles, body in LIFECYCLE:
        e.append(Entry("POST", "/api/cases/{case_id}/actions", action(name, state, **body),
                       action_rule(*roles), CASE_TARGETS, variant=name))
    e += [
        # configuration
        Entry("GET", "/api/categories", get("/api/categories", leaves=True), anyone()),
        Entry("GET", "/api/categories/{code}", get(f"/api/categories/{CATEGORY}"), anyone()),
        Entry("PATCH", "/api/categories/{code}",
              lambda w, r, t: Req(f"/api/categories/{CATEGORY}", json={"urgency": 3}),
              only("admin")),
        Entry("POST", "/api/categories",
              lambda w, r, t: Req("/api/categories", json={
                  "code": "E010199", "parent": "E0101", "name": "Matrix category",
                  "department": IN_DEPT, "deadline": 2, "unit": "working_days"}),
              only("admin")),
        Entry("GET", "/api/routing-rules", get("/api/routing-rules"), only("admin")),
        Entry("POST", "/api/routing-rules",
              lambda w, r, t: Req("/api/routing-rules", json={
                  "area": IN_STREET, "category": "E01", "department": "PARKS"}),
              only("admin")),
        Entry("DELETE", "/api/routing-rules/{rule_id}",
              lambda w, r, t: Req("/api/routing-rules/987654321"),
              _delete_rule_rule),
        Entry("GET", "/api/calendar/days", get("/api/calendar/days"), anyone()),
        Entry("PUT", "/api/calendar/days/{day}",
              lambda w, r, t: Req("/api/calendar/days/2030-10-01",
                                  json={"working": False, "name": "matrix holiday"}),
              only("admin")),
        Entry("DELETE", "/api/calendar/days/{day}",
              lambda w, r, t: Req("/api/calendar/days/2030-10-01"), only("admin")),
        # accounts and operations
        Entry("GET", "/api/me", get("/api/me"), anyone()),
        Entry("GET", "/api/audit", get("/api/audit"), only("admin")),
        # Scrapes are allowed by network (loopback) or GRIDGOV_METRICS_TOKEN, never by an
        # account token: the test client's address ("testclient") is refused whoever asks.
        Entry("GET", "/metrics", get("/metrics"), anyone(D403)),
        Entry("GET", "/api/users", get("/api/users"), only("admin")),
        Entry("POST", "/api/users",
              lambda w, r, t: Req("/api/users", json={"name": "matrix-new-user",
                                                      "role": "analyst"}),
              only("admin")),
        Entry("POST", "/api/users/{name}/tokens",
              lambda w, r, t: Req(f"/api/users/{w.principals['analyst'].name}/tokens",
                                  json={"expires_days": 1}),
              only("admin")),
        Entry("DELETE", "/api/users/{name}/tokens",
              lambda w, r, t: Req("/api/users/trust-other-reporter/tokens"), only("admin")),
        Entry("PATCH", "/api/users/{name}",
              lambda w, r, t: Req("/api/users/trust-other-reporter", json={"active": False}),
              only("admin")),
        # maps
        Entry("GET", "/tiles", get("/tiles"), anyone()),
        Entry("GET", "/ogc", get("/ogc"), anyone()),
        Entry("GET", "/ogc/conformance", get("/ogc/conformance"), anyone()),
        Entry("GET", "/ogc/collections", get("/ogc/collections"), anyone(PUBLIC)),
        Entry("GET", "/ogc/collections/{collectionId}", get("/ogc/collections/cases"),
              anyone()),
        Entry("GET", "/ogc/collections/{collectionId}", get("/ogc/collections/responders"),
              anyone(D404), variant="responders"),
        Entry("GET", "/ogc/collections/{collectionId}/items",
              get("/ogc/collections/responders/items"), anyone(D404), variant="responders"),
        Entry("GET", "/ogc/collections/{collectionId}/items/{featureId}",
              lambda w, r, t: Req(f"/ogc/collections/cases/items/{w.case('in').id}"),
              anyone(PUBLIC)),
        Entry("GET", "/ogc/collections/{collectionId}/items/{featureId}",
              lambda w, r, t: Req(f"/ogc/collections/responders/items/{w.responders['in']}"),
              anyone(D404), variant="responders"),
    ]
    for layer in LAYERS:
        z, x, y = TILE
        e.append(Entry("GET", "/tiles/{layer}/{z}/{x}/{y}.mvt",
                       get(f"/tiles/{layer}/{z}/{x}/{y}.mvt"), layer_rule(layer), variant=layer))
        e.append(Entry("GET", "/tiles/{layer}.json", get(f"/tiles/{layer}.json"),
                       layer_rule(layer), variant=layer))
    for collection in OGC_COLLECTIONS:
        e.append(Entry("GET", "/ogc/collections/{collectionId}/items", ogc_item(collection),
                       anyone(PUBLIC), variant=collection))
    for style in ("default", "public", "command"):
        e.append(Entry("GET", "/styles/{name}.json", get(f"/styles/{style}.json"), anyone(),
                       variant=style))
    e += [
        # responders and facilities
        Entry("GET", "/api/responders", get("/api/responders"),
              only("call_taker", "dispatcher", "supervisor", "analyst", "admin")),
        Entry("POST", "/api/responders",
              lambda w, r, t: Req("/api/responders", json={"name": "matrix responder",
                                                           "department": IN_DEPT}),
              only("dispatcher", "supervisor", "admin")),
        Entry("GET", "/api/responders/nearest", near("/api/responders/nearest"),
              only("call_taker", "dispatcher", "supervisor", "analyst", "admin")),
        Entry("GET", "/api/responders/{responder_id}", responder(),
              only("call_taker", "dispatcher", "supervisor", "analyst", "admin")),
        Entry("PATCH", "/api/responders/{responder_id}",
              responder(json={"status": "busy"}),
              only(*RESPONDER_MANAGE, scoped=True), RESPONDER_TARGETS),
        Entry("PUT", "/api/responders/{responder_id}/position", put_position,
              only(*RESPONDER_POSITION, scoped=True), RESPONDER_TARGETS),
        Entry("PUT", "/api/responders/positions", put_positions, batch_rule,
              RESPONDER_TARGETS),
        Entry("GET", "/api/responders/{responder_id}/positions", responder("/positions"),
              only("dispatcher", "supervisor", "admin")),
        Entry("GET", "/api/facilities", get("/api/facilities", limit=5), anyone()),
        Entry("GET", "/api/facilities/types", get("/api/facilities/types"), anyone()),
        Entry("GET", "/api/facilities/nearest", near("/api/facilities/nearest"), anyone()),
        Entry("GET", "/api/live", lambda w, r, t: Req("/api/live", stream=True), anyone(PUBLIC)),
        # analysis
        Entry("GET", "/api/kpis", get("/api/kpis", level="street", period="2026"), anyone()),
        Entry("GET", "/api/kpis", get("/api/kpis", by="responder", period="2026"),
              only("analyst", "supervisor", "dispatcher", "admin"),
              variant="by responder"),
        Entry("GET", "/api/kpis/series", get("/api/kpis/series", period="2026"), anyone()),
        Entry("GET", "/api/kpis/targets", get("/api/kpis/targets"), anyone()),
        Entry("PUT", "/api/kpis/targets/{kpi}",
              lambda w, r, t: Req("/api/kpis/targets/closure_rate", json={"target": 0.9}),
              only("admin")),
        Entry("GET", "/api/coverage",
              get("/api/coverage", facility_type="clinic", radius_m=500, level="street",
                  gaps=False), anyone()),
        Entry("GET", "/api/coverage/roads", get("/api/coverage/roads", level="street",
                                                gaps=False), anyone()),
        Entry("GET", "/api/analysis/hotspots",
              get("/api/analysis/hotspots", level="community", permutations=0), anyone()),
        Entry("GET", "/api/analysis/hotspots/space-time",
              get("/api/analysis/hotspots/space-time", level="street", period="2026"),
              anyone()),
        Entry("GET", "/api/analysis/recurrence",
              get("/api/analysis/recurrence", level="street", period="2026"), anyone()),
        Entry("GET", "/api/analysis/siting",
              get("/api/analysis/siting", facility_type="clinic", k=1, max_candidates=20,
                  radius_m=500), only("planner", "analyst", "supervisor", "admin")),
        # Open311
        Entry("GET", "/open311/v2/discovery.{fmt}", get("/open311/v2/discovery.json"),
              anyone()),
        Entry("GET", "/open311/v2/services.{fmt}", get("/open311/v2/services.json"), anyone()),
        Entry("GET", "/open311/v2/services/{service_code}.{fmt}",
              get(f"/open311/v2/services/{CATEGORY}.json"), anyone()),
        Entry("GET", "/open311/v2/requests.{fmt}", get("/open311/v2/requests.json"),
              anyone(PUBLIC)),
        Entry("POST", "/open311/v2/requests.{fmt}", open311_post,
              only("reporter", "call_taker", "dispatcher", "supervisor", "admin",
                   public=D403)),
        Entry("GET", "/open311/v2/requests/{request_id}.{fmt}", open311_one, anyone(PUBLIC)),
        Entry("GET", "/open311/v2/tokens/{token}.{fmt}", open311_token, anyone()),
        Entry("GET", "/open311/v2/{rest:path}", get("/open311/v2/nothing.json"), anyone(D404)),
        Entry("POST", "/open311/v2/{rest:path}",
              lambda w, r, t: Req("/open311/v2/nothing.json", data={"a": "b"}), anyone(D404)),
        # plans
        Entry("POST", "/api/plans",
              lambda w, r, t: Req("/api/plans", json={
                  "root": IN_COMMUNITY if t == "in" else OUT_COMMUNITY, "name": "matrix"}),
              only(*PLAN_WRITE, scoped=True), PLAN_TARGETS),
        Entry("GET", "/api/plans", get("/api/plans"), only(*PLAN_READ)),
        Entry("GET", "/api/plans/{plan_id}", plan(), only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/areas", plan("/areas", params={"level": 3}),
              only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/areas/{key}",
              lambda w, r, t: Req(f"/api/plans/{w.plans[t]['id']}/areas/"
                                  f"{w.plans[t]['grids'][0]['id']}"),
              only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/blocks",
              lambda w, r, t: Req(f"/api/plans/{w.plans[t]['id']}/blocks",
                                  params={"parent": w.plans[t]["grids"][0]["id"]}),
              only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/buildings",
              lambda w, r, t: Req(f"/api/plans/{w.plans[t]['id']}/buildings",
                                  params={"parent": w.plans[t]["grids"][0]["id"]}),
              only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/ops", plan("/ops"), only(*PLAN_READ), PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/check", plan("/check"), only(*PLAN_READ),
              PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/diff", plan("/diff"), only(*PLAN_READ),
              PLAN_TARGETS),
        Entry("GET", "/api/plans/{plan_id}/export", plan("/export",
                                                         params={"format": "geojson"}),
              only(*PLAN_READ), PLAN_TARGETS),
    ]
    writes: list[tuple[str, str, Build, str]] = [
        ("DELETE", "/api/plans/{plan_id}", plan(), ALLOW),
        ("POST", "/api/plans/{plan_id}/areas", carve, PASS),
        ("PATCH", "/api/plans/{plan_id}/areas/{key}",
         plan_grid("", lambda g: {"locked": True}), ALLOW),
        ("POST", "/api/plans/{plan_id}/areas/{key}/reshape",
         plan_grid("/reshape", lambda g: {"geometry": g["geometry"]}), PASS),
        ("POST", "/api/plans/{plan_id}/areas/{key}/split",
         plan_grid("/split", lambda g: {"line": split_line(g)}), ALLOW),
        ("POST", "/api/plans/{plan_id}/areas/{key}/snap",
         plan_grid("/snap", lambda g: {"tolerance_m": 15}), PASS),
        ("POST", "/api/plans/{plan_id}/merge", merge, ALLOW),
        ("POST", "/api/plans/{plan_id}/move", move, PASS),
        ("POST", "/api/plans/{plan_id}/undo",
         with_setup(plan("/undo"), lambda c, w, t: split_first(c, w, t)), ALLOW),
        ("POST", "/api/plans/{plan_id}/redo", with_setup(plan("/redo"), redo_setup), ALLOW),
        ("POST", "/api/plans/{plan_id}/partition", partition, PASS),
        ("POST", "/api/plans/{plan_id}/publish", plan("/publish"), PASS),
        ("POST", "/api/plans/{plan_id}/import", plan_import, PASS),
    ]
    for method, path, build, ok in writes:
        e.append(Entry(method, path, build, _plan_write(ok), PLAN_TARGETS))
    return e


def _delete_rule_rule(role: str, target: str) -> str:
    # The rule id does not exist: the admin gets 404 (past the access check), others refused.
    if role == "admin":
        return D404
    return D401 if role == "public" else D403


def _plan_write(ok: str) -> Rule:
    def rule(role: str, target: str) -> str:
        if role in PLAN_WRITE:
            return ok if target == "in" else D403
        return D401 if role == "public" else D403
    return rule


ENTRIES: list[Entry] = _entries()
# Routes served outside the API proper: the documentation, web pages and static files.
NOT_API = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static",
                     "/", "/dashboard", "/command", "/dispatch", "/planner", "/report",
                     "/report/track/{token}", "/cases"})

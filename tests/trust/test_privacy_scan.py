"""Every public output is scanned for what must never be in it: reporters' contacts, tracking
tokens and their SHA-256, photo hashes, account tokens and their SHA-256, idempotency keys,
and where on-duty responders are (or were, beyond the retention) and which responder works a
case. The world (``tests/trust/world.py``) plants known values; each test fetches one family of
public outputs, without a token, and decodes what it asserts on (JSON, GeoJSON, MVT, XML, SSE).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import mapbox_vector_tile
import pytest
from sqlalchemy import Connection, text

from gis import lifecycle
from gis.auth import hash_token
from gis.dispatch import DispatchSettings
from gis.intake import hash_tracking
from tests.trust.authz_table import LAYERS, OGC_COLLECTIONS
from tests.trust.test_authz_matrix import PRIVATE_KEYS, STAFF_KEYS, _keys
from tests.trust.world import CATEGORY, IN_COMMUNITY, IN_STREET, World

# Where the on-duty responder is now, and where it was beyond the retention (distinct digits).
NOW_POS = (24.9437731, 60.1697731)
OLD_POS = (24.9441993, 60.1701993)


@pytest.fixture(scope="module")
def planted(world: World, mconn: Connection, mclient: Any) -> dict[str, Any]:
    """Secrets to look for, on top of the world's: hashes, an idempotency key, responder
    positions (now and beyond retention) and the responder working an in-scope case."""
    conn = mconn
    rid = world.responders["in"]
    conn.execute(text("UPDATE responders SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326),"
                      " position_at = now(), status = 'available' WHERE id = :r"),
                 {"x": NOW_POS[0], "y": NOW_POS[1], "r": rid})
    retention = DispatchSettings().retention_h
    conn.execute(text("INSERT INTO responder_positions (responder_id, recorded_at, geom)"
                      " VALUES (:r, :at, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                 {"r": rid, "at": datetime.now(UTC) - timedelta(hours=retention + 5),
                  "x": OLD_POS[0], "y": OLD_POS[1]})
    busy = world.case("in", "filed")
    lifecycle.apply_action(conn, busy.id, lifecycle.ActionRequest(
        action="dispatch", responder_id=rid), world.helper_admin)
    lon, lat = world.points["in"]
    key = "privacy-idem-key-7f3c9a"
    r = mclient.post("/api/cases", headers={"Idempotency-Key": key}, json={
        "category": CATEGORY, "lon": lon + 0.0002, "lat": lat, "description": "keyed",
        "contact": {"name": "Keyed Reporter Qx", "phone": "+358 40 999 0001"}})
    assert r.status_code == 201, r.text
    secrets = set(world.secrets) | {key, r.json()["tracking_token"], "Keyed Reporter Qx",
                                    "+358 40 999 0001"}
    secrets |= {hash_tracking(c.tracking_token) for c in world.cases.values()}
    secrets |= {hash_token(t) for t in world.tokens.values()}
    return {"secrets": secrets, "responder": rid, "busy_case": busy.id,
            "keyed_case": r.json()["id"],
            "positions": [_position_re(x, y) for x, y in (NOW_POS, OLD_POS)]}


def _position_re(x: float, y: float) -> re.Pattern[str]:
    """A position written with 6 or more decimals, lon then lat (GeoJSON, JSON, CSV, SSE)."""
    return re.compile(rf"{x:.6f}\d*\D{{1,30}}{y:.6f}")


def scan(text_: str, planted: dict[str, Any], *, where: str) -> None:
    """No planted secret, no responder position, no private or staff key in a public answer."""
    found = [s[:16] for s in planted["secrets"] if s in text_]
    found += [f"position {p.pattern}" for p in planted["positions"] if p.search(text_)]
    assert not found, f"{where} leaks {found}"
    for body in _documents(text_):
        bad = set(_keys(body)) & (PRIVATE_KEYS | STAFF_KEYS)
        assert not bad, f"{where} has private keys {sorted(bad)}"


def _documents(text_: str) -> Iterator[Any]:
    if text_.lstrip().startswith(("{", "[")):
        yield json.loads(text_)
    for line in text_.splitlines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def fetch(client: Any, url: str, **params: Any) -> str:
    r = client.get(url, params=params or None)
    assert r.status_code in (200, 204), f"{url}: {r.status_code} {r.text[:300]}"
    return r.text


def all_cases(world: World, planted: dict[str, Any]) -> list[int]:
    ids = [c.id for c in world.cases.values()] + [c.id for c in world.photo_cases.values()]
    return [*ids, planted["keyed_case"]]


def test_case_lists_and_details_hold_no_private_field(mclient: Any, world: World,
                                                      planted: dict[str, Any]) -> None:
    scan(fetch(mclient, "/api/cases", area=IN_STREET, limit=1000), planted, where="/api/cases")
    scan(fetch(mclient, "/api/cases", limit=1000), planted, where="/api/cases (all)")
    lon, lat = world.points["in"]
    scan(fetch(mclient, "/api/cases/nearby", lon=lon, lat=lat, radius_m=500, limit=100),
         planted, where="/api/cases/nearby")
    for cid in all_cases(world, planted):
        for suffix in ("", "/events", "/summons", "/recurrence"):
            scan(fetch(mclient, f"/api/cases/{cid}{suffix}"), planted,
                 where=f"/api/cases/{cid}{suffix}")


def test_the_busy_case_hides_its_responder_from_the_public(mclient: Any, world: World,
                                                           planted: dict[str, Any]) -> None:
    props = mclient.get(f"/api/cases/{planted['busy_case']}").json()["properties"]
    assert props["status"] == "dispatched" and "responder_id" not in props
    staff = mclient.get(f"/api/cases/{planted['busy_case']}",
                        headers=world.headers("dispatcher")).json()["properties"]
    assert staff["responder_id"] == planted["responder"]  # the check above can fail


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


def test_tiles_of_every_layer_hold_no_private_value(mclient: Any, world: World,
                                                    planted: dict[str, Any]) -> None:
    lon, lat = world.points["in"]
    seen_cases = 0
    for layer in LAYERS:
        for z in (12, 15):
            zz, x, y = tile_of(lon, lat, z)
            r = mclient.get(f"/tiles/{layer}/{zz}/{x}/{y}.mvt")
            if layer == "responders":
                assert r.status_code == 401
                continue
            assert r.status_code in (200, 204), (layer, z, r.text[:200])
            decoded = mapbox_vector_tile.decode(r.content) if r.status_code == 200 else {}
            for name, content in decoded.items():
                values = json.dumps([f["properties"] for f in content["features"]],
                                    default=str)
                scan(values, planted, where=f"tile {layer} {zz}/{x}/{y}")
                keys = {k for f in content["features"] for k in f["properties"]}
                assert not keys & (PRIVATE_KEYS | STAFF_KEYS), (layer, keys)
                if name == "cases":
                    seen_cases += len(content["features"])
        scan(fetch(mclient, f"/tiles/{layer}.json") if layer != "responders" else "{}",
             planted, where=f"TileJSON {layer}")
    assert seen_cases > 0  # the scan looked at the planted cases
    assert mclient.get("/tiles/responders.json").status_code == 401


def test_ogc_collections_and_items_hold_no_private_value(mclient: Any, world: World,
                                                         planted: dict[str, Any]) -> None:
    scan(fetch(mclient, "/ogc/collections"), planted, where="/ogc/collections")
    lon, lat = world.points["in"]
    bbox = f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}"
    for cid in OGC_COLLECTIONS:
        scan(fetch(mclient, f"/ogc/collections/{cid}"), planted, where=f"/ogc {cid}")
        scan(fetch(mclient, f"/ogc/collections/{cid}/items", bbox=bbox, limit=10000),
             planted, where=f"/ogc {cid} items")
    for case_id in all_cases(world, planted):
        scan(fetch(mclient, f"/ogc/collections/cases/items/{case_id}"), planted,
             where=f"/ogc cases item {case_id}")


def test_open311_outputs_hold_no_private_value(mclient: Any, world: World,
                                               planted: dict[str, Any]) -> None:
    ids = ",".join(str(i) for i in all_cases(world, planted))
    for fmt in ("json", "xml"):
        scan(fetch(mclient, f"/open311/v2/services.{fmt}"), planted, where="services")
        found = fetch(mclient, f"/open311/v2/requests.{fmt}", service_request_id=ids)
        assert str(planted["keyed_case"]) in found  # the scan covers the planted cases
        # The contact fields of Open311 (email, phone, first_name…) never come back.
        for tag in ("email", "phone", "first_name", "last_name", "device_id"):
            assert f'"{tag}"' not in found and f"<{tag}>" not in found, (fmt, tag)
        scan(found, planted, where=f"requests.{fmt}")
        for cid in all_cases(world, planted):
            scan(fetch(mclient, f"/open311/v2/requests/{cid}.{fmt}"), planted,
                 where=f"request {cid}.{fmt}")
    token = world.case("in").tracking_token
    body = mclient.get(f"/open311/v2/tokens/{token}.json").text
    planted_wo_token = {**planted, "secrets": planted["secrets"] - {token}}
    scan(body, planted_wo_token, where="tokens")


def test_maps_search_stats_and_analysis_hold_no_private_value(
        mclient: Any, world: World, planted: dict[str, Any]) -> None:
    lon, lat = world.points["in"]
    urls: list[tuple[str, dict[str, Any]]] = [
        ("/tiles", {}), ("/styles/default.json", {}), ("/styles/public.json", {}),
        ("/styles/command.json", {}), ("/api/search", {"q": "910102"}),
        ("/api/stats/areas", {"level": "street", "overdue_limit": 100}),
        ("/api/stats/areas", {"parent": IN_STREET, "overdue_limit": 100}),
        ("/api/stats/levels", {}), ("/api/areas", {"parent": IN_COMMUNITY}),
        ("/api/locate", {"lon": lon, "lat": lat}),
        ("/api/facilities", {"limit": 100000}), ("/api/facilities/nearest", {"lon": lon,
                                                                          "lat": lat}),
        ("/api/kpis", {"level": "street"}), ("/api/kpis/series", {}),
        ("/api/analysis/recurrence", {"level": "street"}),
        ("/api/analysis/hotspots", {"level": "community", "permutations": 0}),
        ("/api/categories", {}), ("/api/cases/workflow", {}), ("/api/me", {}),
        ("/health", {}),
    ]
    for url, params in urls:
        scan(fetch(mclient, url, **params), planted, where=url)


def test_the_public_live_feed_shows_cases_without_responders(
        mclient: Any, mconn: Connection, world: World, planted: dict[str, Any]) -> None:
    from api.routes import live as live_routes
    from gis.live import expand

    feed = live_routes.listener(mclient.app, 2000)
    start = feed.last_seq
    # The events the triggers would send on commit, built by the same SQL functions.
    cases = mconn.execute(text(
        "SELECT json_agg(gridgov_case_item(c, 'update'))::text FROM cases c"
        " WHERE id = ANY(:ids)"), {"ids": all_cases(world, planted)}).scalar_one()
    responders = mconn.execute(text(
        "SELECT json_agg(gridgov_responder_item(r, 'update', ARRAY['position']))::text"
        " FROM responders r WHERE id = :r"), {"r": planted["responder"]}).scalar_one()
    events = expand(f'{{"type":"case","items":{cases}}}')
    events += expand(f'{{"type":"responder","items":{responders}}}')
    assert any(e.get("responder_id") == planted["responder"] for e in events)
    for event in events:
        feed._publish(event)
    body = mclient.get("/api/live", headers={"Last-Event-ID": str(start)}).text
    got = [d for d in _documents(body) if d.get("id") in set(all_cases(world, planted))]
    assert len(got) == len(all_cases(world, planted))  # every case event came through
    assert "event: responder" not in body
    scan(body, planted, where="/api/live")
    staff = mclient.get("/api/live", headers={"Last-Event-ID": str(start),
                                              **world.headers("dispatcher")}).text
    assert "event: responder" in staff and f'"responder_id":{planted["responder"]}' in staff


def test_position_history_keeps_nothing_beyond_retention(
        mclient: Any, world: World, planted: dict[str, Any]) -> None:
    r = mclient.get(f"/api/responders/{planted['responder']}/positions",
                    headers=world.headers("dispatcher"))
    assert r.status_code == 200
    assert not planted["positions"][1].search(r.text), "a point older than retention_h"

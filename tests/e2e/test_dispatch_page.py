"""The dispatch console at ``/dispatch`` in a real browser: a dispatcher signs in, open cases
and on-duty responders render on the map (overdue cases first in the list and haloed on the
map), selecting a case ranks responders by road ETA with the route drawn, one click dispatches
(checked in the database: case dispatched, responder busy, ETA in the timeline), and responder
moves arrive over the live feed.

The e2e city (tests/e2e/conftest.py) gets a committed street lattice and responders for this
module; everything is deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from shapely.geometry import LineString, Point
from sqlalchemy import Engine, text

from gis.roads import EdgeRow, insert_network, label_components
from tests.dispatch_factories import add_responder
from tests.e2e.conftest import CITY_CODE, X0, Y0, E2ECity, screen_point
from tests.e2e.map_cases import CaseSpec, drop_user, insert_cases, staff_token

pytestmark = pytest.mark.e2e

# Street lattice: 9 north-south streets 0.006° apart, 7 east-west streets 0.004° apart
# (≈ 490 m × 445 m blocks at 42.4°N), all two-way.
SX, SY, NX, NY = 0.006, 0.004, 9, 7


def node_at(i: int, j: int) -> tuple[float, float]:
    return round(X0 + i * SX, 7), round(Y0 + j * SY, 7)


@dataclass
class Scene:
    token: str
    user_id: int
    jurisdiction_id: int
    cases: dict[str, int] = field(default_factory=dict)
    at: dict[str, tuple[float, float]] = field(default_factory=dict)
    responders: dict[str, int] = field(default_factory=dict)


def _grid_of(city: E2ECity, lon: float, lat: float) -> str:
    return next(code for code in city.codes("grid") if city.areas[code][1].covers(Point(lon, lat)))


def _cleanup(engine: Engine, jid: int, user_id: int | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM case_events WHERE case_id IN"
                          " (SELECT id FROM cases WHERE jurisdiction_id = :j)"), {"j": jid})
        conn.execute(text("SET LOCAL session_replication_role = origin"))
        for (cid,) in conn.execute(text("SELECT id FROM cases WHERE jurisdiction_id = :j"),
                                   {"j": jid}).all():
            conn.execute(text("DELETE FROM cases WHERE id = :c"), {"c": cid})
        conn.execute(text("DELETE FROM responder_positions WHERE responder_id IN"
                          " (SELECT id FROM responders WHERE jurisdiction_id = :j)"), {"j": jid})
        conn.execute(text("DELETE FROM responders WHERE jurisdiction_id = :j"), {"j": jid})
        conn.execute(text("DELETE FROM road_edges WHERE jurisdiction_id = :j"), {"j": jid})
        conn.execute(text("DELETE FROM road_nodes WHERE jurisdiction_id = :j"), {"j": jid})
        if user_id is not None:
            conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": user_id})
    if user_id is not None:
        drop_user(engine, user_id)


@pytest.fixture(scope="module")
def scene(engine: Engine, e2e_city: E2ECity) -> Iterator[Scene]:
    with engine.connect() as conn:
        jid = int(conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                               {"c": CITY_CODE}).scalar_one())
    _cleanup(engine, jid)
    with engine.begin() as conn:
        base = int(conn.execute(text("SELECT COALESCE(max(id), 0) FROM road_nodes")).scalar_one())
        nid = {(i, j): base + 1 + j * NX + i for i in range(NX) for j in range(NY)}
        edges = [EdgeRow(nid[i, j], nid[i + 1, j], LineString([node_at(i, j), node_at(i + 1, j)]),
                         highway="residential", name=f"Street {j}")
                 for i in range(NX - 1) for j in range(NY)]
        edges += [EdgeRow(nid[i, j], nid[i, j + 1], LineString([node_at(i, j), node_at(i, j + 1)]),
                          highway="residential", name=f"Avenue {i}")
                  for i in range(NX) for j in range(NY - 1)]
        insert_network(conn, jid, {n: node_at(*ij) for ij, n in nid.items()}, edges)
        label_components(conn, jid)
    uid, token = staff_token(engine, "dispatcher")
    s = Scene(token, uid, jid)
    # The overdue case sits mid-block on street 3; "North" is one block up the avenue, "East"
    # two blocks along the street, "Far" at the corner of the city. The busy and the stale
    # responder are nearer than all of them and must not be offered.
    s.at = {
        "overdue": (X0 + 3.5 * SX, Y0 + 3 * SY), "waiting": (X0 + 6.5 * SX, Y0 + 1 * SY),
        "inwork": (X0 + 1.5 * SX, Y0 + 5 * SY),
        "North": node_at(4, 4), "East": node_at(6, 3), "Far": node_at(0, 0),
        "Busy": (X0 + 3.6 * SX, Y0 + 3 * SY), "Stale": (X0 + 3.4 * SX, Y0 + 3 * SY),
    }
    specs = {
        "overdue": CaseSpec("", status="filed", due_in=-timedelta(hours=3)),
        "waiting": CaseSpec("", status="filed", due_in=timedelta(days=1)),
        "inwork": CaseSpec("", status="dispatched", due_in=timedelta(days=2)),
    }
    names = list(specs)
    ids = insert_cases(engine, [CaseSpec(_grid_of(e2e_city, *s.at[n]), status=specs[n].status,
                                         due_in=specs[n].due_in, lon=s.at[n][0], lat=s.at[n][1])
                                for n in names])
    s.cases = dict(zip(names, ids, strict=True))
    with engine.begin() as conn:
        for name in ("North", "East", "Far"):
            s.responders[name] = add_responder(conn, jid, f"e2e {name}", s.at[name], age_s=20)
        s.responders["Busy"] = add_responder(conn, jid, "e2e Busy", s.at["Busy"], status="busy")
        s.responders["Stale"] = add_responder(conn, jid, "e2e Stale", s.at["Stale"], age_s=3600)
    yield s
    _cleanup(engine, jid, uid)


def sign_in(page, server: str, scene: Scene) -> None:
    page.goto(server + "/dispatch")
    page.evaluate("() => window.gridgov.ready")
    page.fill("#token", scene.token)
    page.click("#login-form button[type=submit]")
    page.wait_for_function("(n) => window.gridgov.state.cases.size >= n"
                           " && window.gridgov.state.responders.size >= 5", arg=3,
                           timeout=15_000)


def fit_scene(page) -> None:
    page.evaluate("""async ([x0, y0, x1, y1]) => {
        const g = window.gridgov;
        g.map.fitBounds([[x0, y0], [x1, y1]], {padding: 30, duration: 0});
        await g.whenIdle();
    }""", [X0, Y0, X0 + (NX - 1) * SX, Y0 + (NY - 1) * SY])


def rendered_ids(page, layer: str) -> dict[int, dict]:
    return {f["id"]: f for f in page.evaluate("(l) => window.gridgov.rendered([l])", layer)}


@pytest.fixture
def console(page_log, server: str, scene: Scene) -> Iterator:
    page, log = page_log
    sign_in(page, server, scene)
    fit_scene(page)
    yield page, log
    assert log.page_errors == []


def test_cases_and_responders_render_with_the_overdue_case_first(console, scene: Scene) -> None:
    page, log = console
    ours = set(scene.cases.values())
    listed = [int(x) for x in page.eval_on_selector_all(
        "#case-list .case-item", "els => els.map(e => e.dataset.caseId)") if int(x) in ours]
    assert listed[0] == scene.cases["overdue"]
    first = page.locator(f"#case-list .case-item[data-case-id='{scene.cases['overdue']}']")
    assert first.get_attribute("data-kind") == "overdue"
    assert "Overdue" in first.inner_text()

    cases = rendered_ids(page, "dsp-cases")
    assert ours <= set(cases)
    assert cases[scene.cases["overdue"]]["overdue"] is True
    assert set(rendered_ids(page, "dsp-cases-overdue-halo")) & ours == {scene.cases["overdue"]}
    responders = rendered_ids(page, "dsp-responders")
    assert set(scene.responders.values()) <= set(responders)
    assert responders[scene.responders["Busy"]]["status"] == "busy"
    assert responders[scene.responders["Stale"]]["stale"] is True
    assert responders[scene.responders["North"]]["stale"] is False
    assert log.console_errors == []


def test_selecting_a_case_ranks_responders_by_road_and_draws_the_route(
        console, scene: Scene) -> None:
    page, _ = console
    page.mouse.click(*screen_point(page, *scene.at["overdue"]))   # a click on the map
    page.wait_for_selector("#ranking .candidate", timeout=15_000)
    assert page.get_attribute("#case-card", "data-case-id") == str(scene.cases["overdue"])
    assert page.get_attribute("#case-card", "data-kind") == "overdue"
    rows = page.eval_on_selector_all("#ranking .candidate", """els => els.map(e => ({
        id: Number(e.dataset.responderId), name: e.querySelector('.name').textContent,
        eta: e.querySelector('.eta-value').textContent}))""")
    ids = [r["id"] for r in rows]
    assert ids[:3] == [scene.responders[n] for n in ("North", "East", "Far")]
    assert scene.responders["Busy"] not in ids and scene.responders["Stale"] not in ids
    ranking = page.evaluate("() => window.gridgov.state.ranking")
    etas = [r["eta_s"] for r in ranking]
    assert etas == sorted(etas) and etas[0] > 0
    assert all(r["eta"].endswith(" s") for r in rows)
    # The highlighted (first) responder's route is on the map, from it to the case.
    page.evaluate("() => window.gridgov.whenIdle()")
    assert page.evaluate("() => window.gridgov.state.highlighted") == ids[0]
    route = page.evaluate("() => window.gridgov.map.queryRenderedFeatures("
                          "{layers: ['dsp-route']}).map(f => f.properties.responder)")
    assert route and set(route) == {ids[0]}
    page.click(f"#ranking .candidate[data-responder-id='{ids[1]}'] .pick")
    page.evaluate("() => window.gridgov.whenIdle()")
    route = page.evaluate("() => window.gridgov.map.queryRenderedFeatures("
                          "{layers: ['dsp-route']}).map(f => f.properties.responder)")
    assert set(route) == {ids[1]}


def test_dispatch_with_one_click_makes_the_case_dispatched_and_the_responder_busy(
        console, scene: Scene, engine: Engine) -> None:
    page, _ = console
    cid = scene.cases["waiting"]
    page.click(f"#case-list .case-item[data-case-id='{cid}']")
    page.wait_for_selector("#ranking .candidate", timeout=15_000)
    first = int(page.get_attribute("#ranking .candidate", "data-responder-id"))
    page.click("#ranking .candidate:first-child .dispatch")
    page.wait_for_selector("#dispatch-message.ok", timeout=15_000)
    assert "Dispatched" in page.inner_text("#dispatch-message")
    assert "ETA" in page.inner_text("#dispatch-message")
    with engine.connect() as conn:
        case = conn.execute(text("SELECT status, responder_id FROM cases WHERE id = :c"),
                            {"c": cid}).one()
        status = conn.execute(text("SELECT status FROM responders WHERE id = :r"),
                              {"r": first}).scalar()
        eta = conn.execute(text("SELECT data -> 'eta' FROM case_events WHERE case_id = :c"
                                " AND action = 'dispatch'"), {"c": cid}).scalar()
    assert (case.status, case.responder_id, status) == ("dispatched", first, "busy")
    assert eta["eta_s"] > 0 and eta["position_age_s"] is not None
    # The page shows it too: the case is in work, the responder busy on the map.
    page.wait_for_function("([c, r]) => window.gridgov.state.cases.get(c)?.status === 'dispatched'"
                           " && window.gridgov.state.responders.get(r)?.status === 'busy'",
                           arg=[cid, first], timeout=10_000)
    page.evaluate("() => window.gridgov.whenIdle()")
    assert rendered_ids(page, "dsp-responders")[first]["status"] == "busy"
    assert page.get_attribute("#case-card", "data-kind") == "inwork"
    # Give the responder back for the other tests.
    with engine.begin() as conn:
        conn.execute(text("UPDATE responders SET status = 'available' WHERE id = :r"),
                     {"r": first})


def test_no_responder_of_the_department_says_so(console, scene: Scene) -> None:
    page, _ = console
    page.click(f"#case-list .case-item[data-case-id='{scene.cases['overdue']}']")
    page.wait_for_selector("#ranking .candidate", timeout=15_000)
    page.check("#same-department")
    page.wait_for_function("() => document.querySelectorAll('#ranking .candidate').length === 0"
                           " && /No responder to send/.test("
                           "document.querySelector('#ranking-message').textContent)",
                           timeout=15_000)
    assert "department" in page.inner_text("#ranking-message")


def test_responder_moves_arrive_over_the_live_feed(console, scene: Scene,
                                                   engine: Engine) -> None:
    page, _ = console
    page.wait_for_function("() => window.gridgov.state.live === true", timeout=15_000)
    rid = scene.responders["Far"]
    lon, lat = node_at(1, 0)
    with engine.begin() as conn:
        conn.execute(text("UPDATE responders SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326),"
                          " position_at = now() WHERE id = :r"), {"x": lon, "y": lat, "r": rid})
    page.wait_for_function("([r, x]) => Math.abs(window.gridgov.state.responders.get(r).lon - x)"
                           " < 1e-9", arg=[rid, lon], timeout=15_000)


def test_without_a_token_the_console_asks_to_sign_in(page_log, server: str, scene: Scene) -> None:
    page, log = page_log
    page.goto(server + "/dispatch")
    page.evaluate("() => window.gridgov.ready")
    assert "Sign in" in page.inner_text("#message")
    assert page.evaluate("() => window.gridgov.state.responders.size") == 0
    page.fill("#token", "ggt_not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#message.error", timeout=10_000)
    assert "Sign-in failed" in page.inner_text("#message")

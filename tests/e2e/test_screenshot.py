"""``pytest tests/e2e --screenshot`` writes docs/screenshot.png (the map viewer) and
docs/command-screen.png (the command screen): the demo city when it is loaded, else the e2e
test city, each with a day of cases committed for the shot and deleted afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import CITY_CODE, SCREENSHOT, E2ECity, open_page
from tests.e2e.map_cases import city_cases, delete_cases, insert_cases

pytestmark = pytest.mark.e2e

COMMAND_SCREENSHOT = SCREENSHOT.parent / "command-screen.png"

# Page coordinates of the open overdue case nearest the middle of the map.
_NEAREST_OVERDUE = """async () => {
    const m = window.gridgov.map;
    await window.gridgov.whenIdle();
    const c = m.getCanvas(), r = c.getBoundingClientRect();
    const mid = [r.width / 2, r.height / 2];
    let best = null, bestD = Infinity;
    for (const f of m.queryRenderedFeatures({layers: ['cases-point']})) {
        if (!f.properties.overdue) continue;
        const p = m.project(f.geometry.coordinates);
        const d = Math.hypot(p.x - mid[0], p.y - mid[1]);
        if (d < bestD) { bestD = d; best = [r.left + p.x, r.top + p.y]; }
    }
    return best;
}"""


def _demo_jurisdiction(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT j.code FROM jurisdictions j WHERE j.code <> :ours AND EXISTS (SELECT 1 FROM"
            " areas a WHERE a.jurisdiction_id = j.id AND a.valid_to IS NULL) ORDER BY j.id"
            " LIMIT 1"), {"ours": CITY_CODE}).scalar()


def test_screenshots_of_the_map_and_command_screen(request: pytest.FixtureRequest, browser,
                                                   server: str, engine: Engine):
    if not request.config.getoption("--screenshot"):
        pytest.skip("pass --screenshot to write docs/screenshot.png and docs/command-screen.png")
    jurisdiction = _demo_jurisdiction(engine)
    if jurisdiction is None:
        city: E2ECity = request.getfixturevalue("e2e_city")
        assert city.areas
        jurisdiction = CITY_CODE
    ids = insert_cases(engine, city_cases(engine, jurisdiction))
    logs = []
    try:
        context, page, log = open_page(browser, viewport={"width": 1440, "height": 900},
                                       device_scale_factor=1)
        logs.append(log)
        try:
            page.goto(server + "/")
            page.evaluate("() => window.gridgov.ready")
            # Show what the page does: an overdue case's popup and the chain of its place.
            target = page.evaluate(_NEAREST_OVERDUE)
            assert target is not None
            page.mouse.click(*target)
            page.locator(".popup-cases-point[data-loaded='true']").wait_for()
            page.locator("#locate ol.chain li").last.wait_for()
            page.mouse.move(5, 5)
            page.evaluate("() => window.gridgov.whenIdle()")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            context.close()
        context, page, log = open_page(browser, viewport={"width": 1920, "height": 1080},
                                       device_scale_factor=1)
        logs.append(log)
        try:
            page.goto(server + "/command")
            page.evaluate("() => window.gridgov.ready")
            page.evaluate("() => window.gridgov.whenIdle()")
            page.screenshot(path=str(COMMAND_SCREENSHOT))
        finally:
            context.close()
    finally:
        delete_cases(engine, ids)
    for log in logs:
        assert log.console_errors == [] and log.external_requests == []
    assert SCREENSHOT.stat().st_size > 10_000
    assert COMMAND_SCREENSHOT.stat().st_size > 10_000

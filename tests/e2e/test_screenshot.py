"""``pytest tests/e2e --screenshot`` writes docs/screenshot.png: the map page with the demo
city when it is loaded, else with the e2e test city."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import CITY_CODE, SCREENSHOT, E2ECity, open_page, screen_point

pytestmark = pytest.mark.e2e


def _demo_loaded(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT EXISTS (SELECT 1 FROM areas a JOIN jurisdictions j ON j.id = a.jurisdiction_id"
            " WHERE j.code <> :ours AND a.valid_to IS NULL)"), {"ours": CITY_CODE}).scalar())


def test_screenshot_of_the_map_page(request: pytest.FixtureRequest, browser, server: str,
                                    engine: Engine):
    if not request.config.getoption("--screenshot"):
        pytest.skip("pass --screenshot to write docs/screenshot.png")
    city: E2ECity | None = None
    if not _demo_loaded(engine):
        city = request.getfixturevalue("e2e_city")
    context, page, log = open_page(browser, viewport={"width": 1440, "height": 900},
                                   device_scale_factor=1)
    try:
        page.goto(server + "/")
        page.evaluate("() => window.gridgov.ready")
        # Show what the page does: a point in the middle located, its chain and a popup.
        if city is not None:
            target = city.inside(city.codes("grid")[9])
        else:
            target = page.evaluate("() => window.gridgov.map.getCenter().toArray()")
        page.mouse.click(*screen_point(page, *target))
        page.locator("#locate ol.chain li").last.wait_for()
        page.locator(".maplibregl-popup").wait_for()
        page.mouse.move(5, 5)
        page.evaluate("() => window.gridgov.whenIdle()")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    finally:
        context.close()
    assert log.console_errors == [] and log.external_requests == []
    assert SCREENSHOT.stat().st_size > 10_000

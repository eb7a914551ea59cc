"""The map viewer at ``/`` in a real browser: areas rendered by MapLibre, levels, popup,
search and the locate panel, all with no request leaving the loopback server."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DISTRICT, E2ECity, fit_to, open_page, rendered, screen_point

pytestmark = pytest.mark.e2e

GRID = f"{DISTRICT}00200203"  # East Gate Street → Hillview Community 2 → Grid 2-2-3


def wait_rendered(page, code: str, layer: str = "areas-fill") -> None:
    page.wait_for_function(
        """([code, layer]) => {
            const m = window.gridgov.map;
            return !m.isMoving() && m.loaded() && m.queryRenderedFeatures({layers: [layer]})
                .some((f) => f.properties.code === code);
        }""",
        arg=[code, layer],
        timeout=10_000,
    )


def test_page_loads_with_no_console_errors_and_only_local_requests(map_page):
    page, log = map_page
    assert page.title().startswith("gridgov")
    assert page.locator("h1").inner_text() == "gridgov"
    assert log.console_errors == []
    assert log.page_errors == []
    assert log.external_requests == []


def test_map_renders_area_features(map_page, e2e_city: E2ECity):
    page, _ = map_page
    codes = {f["code"] for f in rendered(page)}
    assert set(e2e_city.codes("grid")) <= codes
    assert page.locator("#legend li").count() > 1  # households classes


def test_levels_come_from_the_data(map_page):
    page, _ = map_page
    labels = page.locator("#levels label").all_inner_texts()
    assert [t.split()[0].lower() for t in labels] == ["district", "street", "community", "grid"]
    assert page.get_by_role("radio", name="grid").is_checked()


@pytest.mark.parametrize(("level", "count"), [("district", 1), ("street", 2), ("community", 4)])
def test_switching_level_changes_what_is_rendered(map_page, e2e_city: E2ECity, level, count):
    page, _ = map_page
    page.get_by_role("radio", name=level).check()
    wait_rendered(page, e2e_city.codes(level)[0])
    ours = [f for f in rendered(page) if f["code"].startswith(DISTRICT)]
    assert {f["level_name"] for f in ours} == {level}
    assert sorted(f["code"] for f in ours) == e2e_city.codes(level)
    assert len(ours) == count


def test_clicking_an_area_opens_a_popup_with_its_code(map_page, e2e_city: E2ECity):
    page, log = map_page
    page.mouse.click(*screen_point(page, *e2e_city.inside(GRID)))
    popup = page.locator(".maplibregl-popup")
    popup.wait_for()
    assert popup.locator("dd.code").inner_text() == GRID
    assert "Grid 2-2-3" in popup.inner_text()
    assert "ha" in popup.inner_text()
    assert log.console_errors == []


def test_search_by_code_zooms_to_and_highlights_the_grid(map_page, e2e_city: E2ECity):
    page, _ = map_page
    zoom_before = page.evaluate("() => window.gridgov.map.getZoom()")
    box = page.get_by_role("combobox", name="Find an area by code or name")
    box.fill(GRID)
    page.get_by_role("option").filter(has_text=GRID).first.wait_for()
    box.press("Enter")
    wait_rendered(page, GRID, layer="areas-highlight")
    assert [f["code"] for f in rendered(page, "areas-highlight")] == [GRID]
    assert page.evaluate("() => window.gridgov.map.getZoom()") > zoom_before
    lon, lat = page.evaluate("() => window.gridgov.map.getCenter().toArray()")
    x0, y0, x1, y1 = e2e_city.bounds(GRID)
    assert x0 < lon < x1 and y0 < lat < y1
    assert GRID in page.locator("#selected").inner_text()


def test_search_by_name_finds_a_community(map_page, e2e_city: E2ECity):
    page, _ = map_page
    box = page.get_by_role("combobox", name="Find an area by code or name")
    box.fill("hillview community 2")
    box.press("Enter")
    code = f"{DISTRICT}002002"
    wait_rendered(page, code, layer="areas-highlight")
    assert page.get_by_role("radio", name="community").is_checked()


def test_clicking_the_map_shows_the_chain_from_district_to_grid(map_page, e2e_city: E2ECity):
    page, log = map_page
    page.mouse.click(*screen_point(page, *e2e_city.inside(GRID)))
    chain = page.locator("#locate ol.chain li")
    chain.nth(3).wait_for()
    assert chain.evaluate_all("els => els.map(e => e.dataset.level)") == [
        "district", "street", "community", "grid"]
    assert chain.evaluate_all("els => els.map(e => e.dataset.code)") == [
        DISTRICT, GRID[:9], GRID[:12], GRID]
    assert log.console_errors == []


def test_chain_entries_zoom_to_their_area(map_page, e2e_city: E2ECity):
    page, _ = map_page
    page.mouse.click(*screen_point(page, *e2e_city.inside(GRID)))
    page.get_by_role("button", name=f"Show street East Gate Street ({GRID[:9]}) on the map").click()
    wait_rendered(page, GRID[:9], layer="areas-highlight")
    assert page.get_by_role("radio", name="street").is_checked()


def test_external_requests_are_blocked_and_recorded(browser, server: str):
    """The guard the other tests rely on: a request off the loopback is aborted and logged."""
    context, page, log = open_page(browser)
    try:
        page.goto(server + "/health")
        outcome = page.evaluate(
            "() => fetch('https://tile.openstreetmap.org/0/0/0.png').then(() => 'loaded',"
            " () => 'blocked')")
    finally:
        context.close()
    assert outcome == "blocked"
    assert any("tile.openstreetmap.org" in url for url in log.external_requests)


def test_fit_button_returns_to_all_areas(map_page, e2e_city: E2ECity):
    page, _ = map_page
    fit_to(page, e2e_city.bounds(GRID))
    page.get_by_role("button", name="Zoom to all areas").click()
    page.wait_for_function("() => !window.gridgov.map.isMoving()")
    bounds = page.evaluate("() => window.gridgov.map.getBounds().toArray()")
    (west, south), (east, north) = bounds
    x0, y0, x1, y1 = e2e_city.bounds()
    assert west <= x0 and south <= y0 and east >= x1 and north >= y1

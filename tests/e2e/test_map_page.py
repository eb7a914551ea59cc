"""The map viewer at ``/`` in a real browser: every registry layer as vector tiles with the
server's style, the level switcher and its choropleth, the layer switcher, a legend read from the
style, popups on areas/cases/facilities/components, the time filter for cases, search and the
locate panel — all with no request leaving the loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shapely import unary_union
from shapely.geometry import Point
from sqlalchemy import Engine

from tests.e2e.conftest import DISTRICT, E2ECity, fit_to, open_page, screen_point
from tests.e2e.map_cases import CityCases, drop_user, seed_city, staff_token, unseed_city

pytestmark = pytest.mark.e2e

GRID = f"{DISTRICT}00200203"  # East Gate Street → Hillview Community 2 → Grid 2-2-3


def last_30_days(spec) -> bool:
    """The page's default case filter (since local midnight 29 days ago)."""
    return spec.age.days < 29


@pytest.fixture(scope="module")
def city_cases(engine: Engine, e2e_city: E2ECity) -> Iterator[CityCases]:
    centres = {code: e2e_city.areas[code][1].centroid.coords[0]
               for code in e2e_city.codes("grid")}
    seeded = seed_city(engine, "e2e-city", centres)
    yield seeded
    unseed_city(engine, seeded)


@pytest.fixture
def viewer(page_log, server: str, e2e_city: E2ECity, city_cases: CityCases) -> Iterator:
    """The map page, loaded, zoomed to the test city, with its requests recorded."""
    page, log = page_log
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    x0, y0, x1, y1 = e2e_city.bounds()
    # The view in the URL (#map=zoom/lat/lon): the whole city at z13.5 in the 1280 × 800 page.
    page.goto(f"{server}/#map=13.5/{(y0 + y1) / 2:.6f}/{(x0 + x1) / 2:.6f}")
    page.evaluate("() => window.gridgov.ready")
    yield page, log, requests


def rendered(page, layer: str) -> list[dict]:
    """Distinct rendered features of a style layer: [{id, code, level}]."""
    return page.evaluate(
        """(layer) => {
            const seen = new Map();
            for (const f of window.gridgov.map.queryRenderedFeatures({layers: [layer]})) {
                seen.set(f.id ?? f.properties.code, {id: f.id, code: f.properties.code,
                                                    level: f.properties.level});
            }
            return [...seen.values()];
        }""",
        layer,
    )


def rendered_case_ids(page, ours: CityCases) -> list[int]:
    wanted = set(ours.ids.values())
    return sorted(f["id"] for f in rendered(page, "cases-point") if f["id"] in wanted)


def clear_point(city: E2ECity, ours: CityCases, code: str) -> tuple[float, float]:
    """A point well inside an area and away from every case (a click there hits the area)."""
    cases = unary_union([Point(p).buffer(0.0005) for p in ours.points.values()])
    return city.areas[code][1].buffer(-0.0004).difference(cases).representative_point().coords[0]


def wait_idle(page) -> None:
    page.evaluate("() => window.gridgov.whenIdle()")


def wait_codes(page, layer: str, codes: list[str]) -> None:
    page.wait_for_function(
        """([layer, codes]) => {
            const m = window.gridgov.map;
            if (m.isMoving() || !m.loaded()) return false;
            const got = new Set(m.queryRenderedFeatures({layers: [layer]})
                .map((f) => f.properties.code));
            return codes.every((c) => got.has(c));
        }""",
        arg=[layer, codes], timeout=10_000,
    )


def style_paint(page, layer: str, prop: str):
    return page.evaluate("([l, p]) => window.gridgov.map.getPaintProperty(l, p)", [layer, prop])


# --- loading -----------------------------------------------------------------------------------

def test_page_loads_with_no_console_errors_and_only_local_requests(viewer):
    page, log, _ = viewer
    assert page.title().startswith("gridgov")
    assert page.locator("h1").inner_text() == "gridgov"
    assert log.console_errors == []
    assert log.page_errors == []
    assert log.external_requests == []


def test_map_uses_the_server_style_and_vector_tiles(viewer):
    page, _, requests = viewer
    assert any("/styles/default.json" in u for u in requests)
    assert any("/tiles/grids/" in u and u.split("?")[0].endswith(".mvt") for u in requests)
    assert any("/tiles/cases/" in u for u in requests)
    assert not any("/api/areas?" in u for u in requests)  # no GeoJSON of whole levels
    sources = page.evaluate("() => Object.keys(window.gridgov.map.getStyle().sources)")
    assert {"districts", "streets", "communities", "grids", "cases", "facilities",
            "components", "responsibility_zones", "road_edges"} <= set(sources)


def test_grid_tiles_render_every_grid_of_the_city(viewer, e2e_city: E2ECity):
    page, _, _ = viewer
    codes = {f["code"] for f in rendered(page, "grids-fill")}
    assert set(e2e_city.codes("grid")) <= codes
    assert page.locator("#legend [data-layer='grids-fill'] li").count() >= 2


def test_case_tiles_render_every_case_of_the_last_30_days(viewer, city_cases: CityCases):
    page, _, _ = viewer
    assert page.evaluate("() => window.gridgov.map.getZoom()") >= 13  # single cases
    assert page.get_by_role("radio", name="30 days").is_checked()
    recent = city_cases.where(last_30_days)
    assert rendered_case_ids(page, city_cases) == recent
    assert f"{len(recent)} cases in view" in page.locator("#case-summary").inner_text()


def test_levels_come_from_the_data(viewer):
    page, _, _ = viewer
    labels = page.locator("#levels label").all_inner_texts()
    assert [t.split()[0].lower() for t in labels] == ["district", "street", "community", "grid"]
    assert page.get_by_role("radio", name="grid").is_checked()


@pytest.mark.parametrize(("level", "source", "count"), [
    ("district", "districts", 1), ("street", "streets", 2), ("community", "communities", 4)])
def test_switching_level_colours_that_level(viewer, e2e_city: E2ECity, level, source, count):
    page, _, _ = viewer
    page.get_by_role("radio", name=level).check()
    wait_codes(page, f"{source}-fill", e2e_city.codes(level))
    ours = sorted(f["code"] for f in rendered(page, f"{source}-fill")
                  if f["code"].startswith(DISTRICT))
    assert ours == e2e_city.codes(level) and len(ours) == count
    assert rendered(page, "grids-fill") == []  # one choropleth at a time
    assert page.locator(f"#legend [data-layer='{source}-fill'] h3").inner_text() == (
        f"Households per {level}")


# --- layer switcher and legend -------------------------------------------------------------

def test_layer_switcher_lists_every_public_layer_of_the_registry(viewer, server: str):
    page, _, requests = viewer
    layers = page.locator("#layers li").evaluate_all("els => els.map(e => e.dataset.layer)")
    public = [layer["name"] for layer in page.evaluate(
        "() => fetch('/tiles').then(r => r.json())")["layers"] if layer["name"] != "responders"]
    assert layers == public
    assert not any("/tiles/responders" in u for u in requests)


def test_layer_switcher_hides_and_shows_cases(viewer, city_cases: CityCases):
    page, _, _ = viewer
    page.locator("#layer-cases").uncheck()
    wait_idle(page)
    assert rendered_case_ids(page, city_cases) == []
    assert page.locator("#legend [data-layer='cases']").count() == 0
    page.locator("#layer-cases").check()
    wait_idle(page)
    assert rendered_case_ids(page, city_cases) == city_cases.where(last_30_days)
    assert page.locator("#legend [data-layer='cases']").count() == 1


def test_layer_switcher_hides_grids(viewer, e2e_city: E2ECity):
    page, _, _ = viewer
    page.locator("#layer-grids").uncheck()
    wait_idle(page)
    assert rendered(page, "grids-fill") == [] and rendered(page, "grids-line") == []
    page.locator("#layer-grids").check()
    wait_codes(page, "grids-fill", e2e_city.codes("grid"))


def test_legend_colours_are_the_styles(viewer):
    page, _, _ = viewer
    paint = style_paint(page, "cases-point", "circle-color")  # ["case", overdue, c, open, c, c]
    expected = [paint[2], paint[4], paint[5]]
    swatches = page.locator("#legend [data-layer='cases'] li [data-colour]").evaluate_all(
        "els => els.map(e => e.dataset.colour)")
    assert swatches[:3] == expected
    boundary = page.locator("#legend [data-layer='boundaries'] li [data-colour]").evaluate_all(
        "els => els.map(e => e.dataset.colour)")
    assert boundary == [style_paint(page, f"{s}-line", "line-color")
                        for s in ("districts", "streets", "communities", "grids")]


def test_showing_facilities_adds_their_legend(viewer):
    page, _, _ = viewer
    assert page.locator("#legend [data-layer='facilities']").count() == 0
    page.locator("#layer-facilities").check()
    section = page.locator("#legend [data-layer='facilities']")
    section.wait_for()
    colours = section.locator("[data-colour]").evaluate_all("els => els.map(e => e.dataset.colour)")
    paint = style_paint(page, "facilities", "circle-color")
    assert set(colours) == set(paint[3::2]) | {paint[-1]}  # ["match", input, v, c, …, default]


# --- popups ------------------------------------------------------------------------------------

def test_clicking_a_grid_opens_a_popup_with_its_code(viewer, e2e_city: E2ECity,
                                                      city_cases: CityCases):
    page, log, _ = viewer
    page.mouse.click(*screen_point(page, *clear_point(e2e_city, city_cases, GRID)))
    popup = page.locator(".maplibregl-popup")
    popup.wait_for()
    assert popup.locator("dd.code").inner_text() == GRID
    assert "Grid 2-2-3" in popup.inner_text() and "ha" in popup.inner_text()
    assert log.console_errors == []


def test_clicking_a_case_opens_its_details(viewer, city_cases: CityCases):
    page, log, _ = viewer
    case_id = city_cases.ids["overdue"]
    page.mouse.click(*screen_point(page, *city_cases.points[case_id]))
    popup = page.locator(f".popup-cases-point[data-case-id='{case_id}'][data-loaded='true']")
    popup.wait_for()
    text = popup.inner_text()
    assert f"Case #{case_id}" in text and "Illegal construction" in text and "Overdue" in text
    assert popup.locator("dd.code").inner_text() == GRID
    assert log.console_errors == []


@pytest.mark.parametrize(("layer", "title"), [("facilities", "Riverside Health Clinic"),
                                              ("components", "Street light")])
def test_clicking_a_facility_or_component_opens_a_popup(viewer, city_cases: CityCases, layer,
                                                        title):
    page, _, _ = viewer
    _, lon, lat = city_cases.facility if layer == "facilities" else city_cases.component
    page.evaluate("(n) => window.gridgov.setLayerVisible(n, true)", layer)
    page.evaluate("""async ([lon, lat]) => {
        window.gridgov.map.jumpTo({center: [lon, lat], zoom: 16.5});
        await window.gridgov.whenIdle();
    }""", [lon, lat])
    page.mouse.click(*screen_point(page, lon, lat))
    popup = page.locator(f".maplibregl-popup .popup-{layer}")
    popup.wait_for()
    assert title in popup.inner_text()
    if layer == "components":
        assert "E2E-LIGHT-0001" in popup.inner_text() and "Damaged" in popup.inner_text()


# --- the time filter ------------------------------------------------------------------------

def test_time_filter_changes_the_rendered_cases(viewer, city_cases: CityCases):
    page, _, requests = viewer

    def choose(name: str, pred) -> None:
        page.get_by_role("radio", name=name, exact=True).check()
        expected = city_cases.where(pred)
        page.wait_for_function("(n) => window.gridgov.casesInView().total === n",
                               arg=len(expected), timeout=10_000)
        assert rendered_case_ids(page, city_cases) == expected

    assert rendered_case_ids(page, city_cases) == city_cases.where(last_30_days)
    choose("7 days", lambda s: s.age.days < 6)
    assert any("/tiles/cases/" in u and "since=" in u for u in requests)
    choose("All", lambda s: True)
    assert len(rendered_case_ids(page, city_cases)) == len(city_cases.ids)
    choose("30 days", last_30_days)


def test_status_filter_keeps_open_cases(viewer, city_cases: CityCases):
    page, _, _ = viewer
    page.get_by_label("Status").select_option("open")
    opened = city_cases.where(lambda s: s.open and last_30_days(s))
    page.wait_for_function("(n) => window.gridgov.casesInView().total === n",
                           arg=len(opened), timeout=10_000)
    assert rendered_case_ids(page, city_cases) == opened


def test_custom_range_selects_old_cases(viewer, city_cases: CityCases):
    page, _, _ = viewer
    page.evaluate("""() => {
        const d = (days) => { const t = new Date(); t.setDate(t.getDate() - days);
            return t.toISOString().slice(0, 10); };
        return window.gridgov.setTimeFilter({preset: 'custom', since: d(70), until: d(30)});
    }""")
    old = city_cases.where(lambda s: s.age.days >= 30)
    page.wait_for_function("(n) => window.gridgov.casesInView().total === n",
                           arg=len(old), timeout=10_000)
    assert rendered_case_ids(page, city_cases) == old
    assert page.locator("#custom-range").is_visible()


# --- search and locate ---------------------------------------------------------------------

def test_search_by_code_zooms_to_and_highlights_the_grid(viewer, e2e_city: E2ECity):
    page, _, _ = viewer
    zoom_before = page.evaluate("() => window.gridgov.map.getZoom()")
    box = page.get_by_role("combobox", name="Find an area by code or name")
    box.fill(GRID)
    page.get_by_role("option").filter(has_text=GRID).first.wait_for()
    box.press("Enter")
    wait_codes(page, "grids-highlight", [GRID])
    assert [f["code"] for f in rendered(page, "grids-highlight")] == [GRID]
    assert page.evaluate("() => window.gridgov.map.getZoom()") > zoom_before
    lon, lat = page.evaluate("() => window.gridgov.map.getCenter().toArray()")
    x0, y0, x1, y1 = e2e_city.bounds(GRID)
    assert x0 < lon < x1 and y0 < lat < y1
    assert GRID in page.locator("#selected").inner_text()


def test_search_by_name_finds_a_community(viewer):
    page, _, _ = viewer
    box = page.get_by_role("combobox", name="Find an area by code or name")
    box.fill("hillview community 2")
    page.get_by_role("option").first.wait_for()
    box.press("Enter")
    code = f"{DISTRICT}002002"
    wait_codes(page, "communities-highlight", [code])
    assert page.get_by_role("radio", name="community").is_checked()


def test_clicking_the_map_shows_the_chain_from_district_to_grid(viewer, e2e_city: E2ECity,
                                                                  city_cases: CityCases):
    page, log, _ = viewer
    page.mouse.click(*screen_point(page, *clear_point(e2e_city, city_cases, GRID)))
    chain = page.locator("#locate ol.chain li")
    chain.nth(3).wait_for()
    assert chain.evaluate_all("els => els.map(e => e.dataset.level)") == [
        "district", "street", "community", "grid"]
    assert chain.evaluate_all("els => els.map(e => e.dataset.code)") == [
        DISTRICT, GRID[:9], GRID[:12], GRID]
    assert log.console_errors == []


def test_chain_entries_zoom_to_their_area(viewer, e2e_city: E2ECity, city_cases: CityCases):
    page, _, _ = viewer
    page.mouse.click(*screen_point(page, *clear_point(e2e_city, city_cases, GRID)))
    page.get_by_role("button", name=f"Show street East Gate Street ({GRID[:9]}) on the map").click()
    wait_codes(page, "streets-highlight", [GRID[:9]])
    assert page.get_by_role("radio", name="street").is_checked()


def test_view_is_kept_in_the_url(viewer):
    page, _, _ = viewer
    page.evaluate("""async () => {
        window.gridgov.map.jumpTo({center: [13.39, 42.43], zoom: 15.25});
        await window.gridgov.whenIdle();
    }""")
    page.wait_for_function("() => window.location.hash.startsWith('#map=15.25/42.43/13.39')")


def test_fit_button_returns_to_all_areas(viewer, e2e_city: E2ECity):
    page, _, _ = viewer
    fit_to(page, e2e_city.bounds(GRID))
    page.get_by_role("button", name="Zoom to all areas").click()
    page.wait_for_function("() => !window.gridgov.map.isMoving()")
    (west, south), (east, north) = page.evaluate(
        "() => window.gridgov.map.getBounds().toArray()")
    x0, y0, x1, y1 = e2e_city.bounds()
    assert west <= x0 and south <= y0 and east >= x1 and north >= y1


# --- who may see responders, and the network guard ----------------------------------------

def test_staff_see_the_responders_layer(browser, server: str, engine: Engine, e2e_city):
    user_id, token = staff_token(engine, "dispatcher")
    context, page, log = open_page(browser)
    try:
        context.add_init_script(f"localStorage.setItem('gridgov.token', {token!r});")
        page.goto(server + "/")
        page.evaluate("() => window.gridgov.ready")
        assert page.locator("#layers li[data-layer='responders']").count() == 1
        assert page.evaluate("() => window.gridgov.state.me.role") == "dispatcher"
        assert log.console_errors == [] and log.external_requests == []
    finally:
        context.close()
        drop_user(engine, user_id)


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

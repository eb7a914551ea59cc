"""The command screen at ``/command`` in a real browser: live counts per street and community
(compared with the database), the choropleth and circles on the map, overdue cases highlighted,
the drill-down district → street → community → grid → case, and counts that refresh by
themselves when a case is added."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shapely import unary_union
from shapely.geometry import Point
from sqlalchemy import Engine, text

from tests.e2e.conftest import DISTRICT, E2ECity, screen_point
from tests.e2e.map_cases import (
    CaseSpec,
    CityCases,
    delete_cases,
    insert_cases,
    seed_city,
    unseed_city,
)

pytestmark = pytest.mark.e2e

EAST = f"{DISTRICT}002"            # East Gate Street
HILLVIEW = f"{EAST}002"           # Hillview Community 2
GRID = f"{HILLVIEW}03"            # Grid 2-2-3


@pytest.fixture(scope="module")
def city_cases(engine: Engine, e2e_city: E2ECity) -> Iterator[CityCases]:
    centres = {code: e2e_city.areas[code][1].centroid.coords[0]
               for code in e2e_city.codes("grid")}
    seeded = seed_city(engine, "e2e-city", centres)
    yield seeded
    unseed_city(engine, seeded)


def open_command(page, server: str, code: str | None = None) -> None:
    page.goto(f"{server}/command?refresh=2" + (f"#{code}" if code else ""))
    page.evaluate("() => window.gridgov.ready")
    wait_view(page, code)


@pytest.fixture
def command(page_log, server: str, city_cases: CityCases) -> Iterator:
    page, log = page_log
    open_command(page, server, DISTRICT)
    yield page, log


def wait_view(page, code: str | None) -> None:
    page.wait_for_function("(c) => window.gridgov.state.view?.code === c", arg=code,
                           timeout=15_000)
    page.evaluate("() => window.gridgov.whenIdle()")


def db_counts(engine: Engine, prefix_len: int) -> dict[str, tuple[int, int, int]]:
    """(open, overdue, closed today) per area of the e2e city, grouped by code prefix — the
    codes are structured, so this does not share the server's subtree walk."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT left(a.code, :n) AS code,
                   count(*) FILTER (WHERE c.status NOT IN ('closed', 'rejected')),
                   count(*) FILTER (WHERE c.status NOT IN ('closed', 'rejected')
                                      AND c.due_at < now()),
                   count(*) FILTER (WHERE c.status = 'closed'
                                      AND c.closed_at >= date_trunc('day', now() AT TIME ZONE 'UTC')
                                                         AT TIME ZONE 'UTC')
              FROM cases c JOIN areas a ON a.id = c.area_id
              JOIN jurisdictions j ON j.id = c.jurisdiction_id
             WHERE j.code = 'e2e-city'
             GROUP BY 1
        """), {"n": prefix_len}).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def row_counts(page, code: str) -> tuple[int, int, int]:
    row = page.locator(f"#areas-body tr[data-code='{code}']")
    return tuple(int(row.locator(f"td.{k}").inner_text().replace(",", ""))
                 for k in ("open", "overdue", "closed"))  # type: ignore[return-value]


def listed_codes(page) -> list[str]:
    return page.locator("#areas-body tr").evaluate_all("els => els.map(e => e.dataset.code)")


def kpis(page) -> tuple[int, int, int]:
    return tuple(int(page.locator(f"#kpi-{k}").inner_text().replace(",", ""))
                 for k in ("open", "overdue", "closed"))  # type: ignore[return-value]


def open_row(page, code: str) -> None:
    page.locator(f"#areas-body tr[data-code='{code}'] .area-name").click()
    wait_view(page, code)


# --- counts --------------------------------------------------------------------------------

def test_command_screen_loads_with_no_console_errors_and_only_local_requests(
        page_log, server: str, city_cases: CityCases):
    page, log = page_log
    open_command(page, server)
    assert page.title().startswith("gridgov")
    assert page.locator("#scope-title").inner_text() == "City overview"
    assert DISTRICT in listed_codes(page)  # districts with their streets
    assert {EAST, f"{DISTRICT}001"} <= set(listed_codes(page))
    assert log.console_errors == [] and log.page_errors == [] and log.external_requests == []


def test_counts_per_street_match_the_database(page_log, server: str, engine: Engine,
                                              city_cases: CityCases):
    page, _ = page_log
    open_command(page, server)
    expected = db_counts(engine, 9)
    for street in (f"{DISTRICT}001", EAST):
        assert row_counts(page, street) == expected.get(street, (0, 0, 0)), street
    district = db_counts(engine, 6)[DISTRICT]
    assert row_counts(page, DISTRICT) == district


def test_counts_per_community_match_the_database(command, engine: Engine):
    page, _ = command
    open_row(page, EAST)
    expected = db_counts(engine, 12)
    assert listed_codes(page) == [f"{EAST}001", HILLVIEW]
    for code in listed_codes(page):
        assert row_counts(page, code) == expected.get(code, (0, 0, 0)), code
    assert kpis(page) == db_counts(engine, 9)[EAST]


def test_the_map_shows_each_street_with_its_counts(command, engine: Engine):
    page, _ = command
    fills = page.evaluate("() => window.gridgov.rendered(['streets-cmd-fill'])")
    assert {f["code"] for f in fills} == {f"{DISTRICT}001", EAST}
    states = page.evaluate("""() => Object.fromEntries(window.gridgov.state.view.children.map(
        (a) => [a.code, window.gridgov.map.getFeatureState(
            {source: 'streets', sourceLayer: 'streets', id: a.id}).open]))""")
    expected = db_counts(engine, 9)
    assert states == {code: expected.get(code, (0, 0, 0))[0] for code in states}
    bubbles = page.evaluate("() => window.gridgov.rendered(['cmd-bubble'])")
    assert {b["code"] for b in bubbles} == {c for c, v in expected.items() if v[0] > 0}


def test_most_overdue_lists_the_overdue_cases_oldest_deadline_first(command,
                                                                     city_cases: CityCases):
    page, _ = command
    listed = page.locator("#overdue-list [data-case-id]").evaluate_all(
        "els => els.map(e => Number(e.dataset.caseId))")
    assert listed == [city_cases.ids["overdue"], city_cases.ids["west_overdue"]]


# --- drill-down ----------------------------------------------------------------------------

def test_drill_down_from_the_district_to_a_case(command, engine: Engine, city_cases: CityCases):
    page, log = command
    open_row(page, EAST)
    open_row(page, HILLVIEW)
    assert listed_codes(page) == [f"{HILLVIEW}0{g}" for g in range(1, 5)]
    expected = db_counts(engine, 14)
    assert row_counts(page, GRID) == expected[GRID]
    open_row(page, GRID)
    # A grid lists its cases: open ones (overdue first) and those closed today.
    shown = page.locator("#case-list [data-case-id]").evaluate_all(
        "els => els.map(e => Number(e.dataset.caseId))")
    assert shown[0] == city_cases.ids["overdue"]
    assert sorted(shown) == city_cases.named("recent", "overdue", "old_open", "closed_today")
    page.locator(f"#case-list [data-case-id='{city_cases.ids['overdue']}']").click()
    detail = page.locator(f"#case-detail[data-case-id='{city_cases.ids['overdue']}']")
    detail.wait_for()
    assert "Illegal construction" in detail.inner_text()
    assert detail.get_attribute("data-kind") == "overdue"
    crumbs = page.locator("#crumbs").inner_text().replace("\n", " ")
    assert crumbs.split(" › ") == ["City", "Riverside District", "East Gate Street",
                                   "Hillview Community 2", "Grid 2-2-3",
                                   f"Case #{city_cases.ids['overdue']}"]
    page.locator("#crumbs").get_by_role("button", name="East Gate Street").click()
    wait_view(page, EAST)
    assert listed_codes(page) == [f"{EAST}001", HILLVIEW]
    assert page.locator("#case-section").is_hidden()
    assert log.console_errors == []


def test_clicking_a_street_on_the_map_drills_into_it(command, e2e_city: E2ECity,
                                                     city_cases: CityCases):
    page, _ = command
    cases = unary_union([Point(p).buffer(0.0008) for p in city_cases.points.values()])
    lon, lat = e2e_city.areas[EAST][1].buffer(-0.001).difference(cases) \
        .representative_point().coords[0]
    page.mouse.click(*screen_point(page, lon, lat))
    wait_view(page, EAST)
    assert page.locator("#scope-title").inner_text() == "East Gate Street"


def test_clicking_a_case_on_the_map_shows_its_details(page_log, server: str,
                                                      city_cases: CityCases):
    page, _ = page_log
    open_command(page, server, GRID)
    case_id = city_cases.ids["recent"]
    page.mouse.click(*screen_point(page, *city_cases.points[case_id]))
    detail = page.locator(f"#case-detail[data-case-id='{case_id}']")
    detail.wait_for()
    assert "Garbage pile-up" in detail.inner_text()


def test_overdue_cases_are_highlighted_on_the_map(page_log, server: str, city_cases: CityCases):
    page, _ = page_log
    open_command(page, server, GRID)
    halos = {f["id"] for f in page.evaluate("() => window.gridgov.rendered(['cmd-overdue-halo'])")}
    points = page.evaluate("() => window.gridgov.rendered(['cases-point'])")
    assert city_cases.ids["overdue"] in halos
    assert halos == {f["id"] for f in points if f["overdue"]}
    assert city_cases.ids["recent"] not in halos


# --- live ----------------------------------------------------------------------------------

def test_counts_refresh_by_themselves_when_a_case_is_added(command, engine: Engine,
                                                           e2e_city: E2ECity):
    page, log = command
    before = row_counts(page, EAST)
    x, y = e2e_city.inside(f"{EAST}00101")
    ids = insert_cases(engine, [CaseSpec(f"{EAST}00101", "reported", lon=x, lat=y)])
    try:
        page.wait_for_function(
            """([code, n]) => {
                const row = document.querySelector(`#areas-body tr[data-code='${code}'] td.open`);
                return row && Number(row.textContent) === n;
            }""", arg=[EAST, before[0] + 1], timeout=15_000)
        assert kpis(page)[0] == sum(row_counts(page, c)[0] for c in (f"{DISTRICT}001", EAST))
    finally:
        delete_cases(engine, ids)
    page.wait_for_function(
        """([code, n]) => Number(document.querySelector(
            `#areas-body tr[data-code='${code}'] td.open`).textContent) === n""",
        arg=[EAST, before[0]], timeout=15_000)
    assert log.console_errors == []

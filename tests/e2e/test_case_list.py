"""The staff case list at ``/cases`` in headless Chromium against a real server: token sign-in
(sessionStorage), filters, paging, the timeline, and only the lifecycle steps the state machine
allows this role from the case's state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from gis import intake
from gis.categories import seed_defaults
from tests.e2e.case_fixtures import Accounts, purge_cases
from tests.e2e.conftest import DISTRICT, E2ECity, open_page

pytestmark = pytest.mark.e2e

STREET = f"{DISTRICT}002"          # East Gate Street
GRID = f"{DISTRICT}00200101"       # a grid in it
NOISE = "E010201"                  # City appearance › Pollution › Noise (ENVIRON)


@pytest.fixture(scope="module")
def world(engine: Engine, e2e_city: E2ECity) -> Iterator[tuple[E2ECity, Accounts, list[int]]]:
    """Accounts, and 30 committed noise cases in one grid (newest last), none a duplicate."""
    accounts = Accounts()
    lon, lat = e2e_city.inside(GRID)
    with engine.begin() as conn:
        seed_defaults(conn)
        accounts.add(conn, "call_taker")
        accounts.add(conn, "supervisor")
        ids = [intake.create_case(conn, intake.Report(
            # 70 m apart: none is a duplicate of another
            category=NOISE, channel="hotline", lon=lon + (i % 6 - 2.5) * 8e-4,
            lat=lat + (i // 6 - 2) * 6e-4,
            description=f"loud music {i}", contact={"phone": "+86 555 0000"}),
            principal=accounts.principal(conn, "call_taker")).body["id"] for i in range(30)]
    yield e2e_city, accounts, ids
    purge_cases(engine, accounts)


@pytest.fixture
def staff(browser, server: str, world) -> Iterator:
    context, page, log = open_page(browser)
    page.goto(server + "/cases")
    page.evaluate("() => window.gridgov.ready")
    yield page, log
    context.close()
    assert log.external_requests == []


def sign_in(page, token: str) -> None:
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#whoami").wait_for()


def filter_noise(page) -> None:
    page.get_by_label("Category").select_option(NOISE)
    page.get_by_label("Area code").fill(STREET)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function("() => document.querySelector('#page-info').textContent"
                           ".includes('25 cases')")


def row_ids(page) -> list[int]:
    return [int(i) for i in page.locator("#cases tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")]


def test_sign_in_filter_and_page(staff, world) -> None:
    page, log = staff
    _, accounts, ids = world
    assert "Sign in with your account token" in page.locator("#list-message").inner_text()
    sign_in(page, accounts.tokens["call_taker"])
    assert "call_taker" in page.locator("#who").inner_text()
    filter_noise(page)
    first = row_ids(page)
    assert first == sorted(ids, reverse=True)[:25]
    page.get_by_role("button", name="Older →").click()
    page.wait_for_function("() => document.querySelector('#page-info').textContent"
                           ".startsWith('page 2')")
    assert row_ids(page) == sorted(ids, reverse=True)[25:]
    page.get_by_role("button", name="← Newer").click()
    page.wait_for_function("() => document.querySelector('#page-info').textContent"
                           ".startsWith('page 1')")
    assert row_ids(page) == first
    page.reload()  # the token lives in sessionStorage: still signed in
    page.locator("#whoami").wait_for()
    assert log.console_errors == []


def test_a_late_answer_to_an_older_list_request_does_not_replace_the_newer(staff, world
                                                                          ) -> None:
    """The filtered first page answers only after the user has already paged on: the page
    keeps page 2. Before, the late answer drew page 1's rows under the label "page 2" (seen
    in CI when the sign-in list had drawn "25 cases" before the filtered one came back)."""
    page, log = staff
    _, accounts, _ = world
    held = []

    def hold_the_first_filtered_page(route) -> None:
        url = route.request.url
        if "category=" in url and "cursor=" not in url and not held:
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/cases?**", hold_the_first_filtered_page)
    sign_in(page, accounts.tokens["call_taker"])
    page.wait_for_function("() => document.querySelector('#page-info').textContent"
                           ".includes('25 cases')")  # the list loaded at sign-in
    page.get_by_label("Category").select_option(NOISE)
    page.get_by_label("Area code").fill(STREET)
    page.get_by_role("button", name="Apply").click()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    page.get_by_role("button", name="Older →").click()
    page.wait_for_function("() => document.querySelector('#page-info').textContent"
                           ".startsWith('page 2')")
    second = row_ids(page)
    with page.expect_response(lambda r: r.url == held[0].request.url):
        held[0].continue_()
    page.wait_for_timeout(300)  # the stale answer's JSON is parsed (and dropped)
    assert row_ids(page) == second
    assert page.locator("#page-info").inner_text().startswith("page 2")
    assert log.console_errors == []


def test_timeline_and_legal_actions_accept_then_file(staff, world, engine: Engine) -> None:
    page, log = staff
    _, accounts, ids = world
    sign_in(page, accounts.tokens["call_taker"])
    filter_noise(page)
    case_id = ids[-1]
    page.locator(f'#cases tbody tr[data-id="{case_id}"]').click()
    page.locator("#timeline li").first.wait_for()
    assert page.locator("#timeline li").first.inner_text().startswith("report → reported")
    assert "+86 555 0000" in page.locator("#detail-facts").inner_text()  # staff in scope

    def offered() -> set[str]:
        return set(page.locator("#actions button").evaluate_all(
            "bs => bs.map(b => b.dataset.action)"))

    assert offered() == {"accept", "file", "reject", "redirect"}  # call_taker, from reported
    page.get_by_role("button", name="Accept (受理)").click()
    page.locator("#action-message").filter(has_text="Done: accept → accepted").wait_for()
    assert offered() == {"file", "reject", "redirect"}
    page.get_by_role("button", name="File (立案)").click()
    page.locator("#action-message").filter(has_text="Done: file → filed").wait_for()
    assert offered() == {"reject", "redirect"}  # dispatch and close are not a call taker's
    assert page.locator(f'#cases tbody tr[data-id="{case_id}"] .badge').inner_text() == "filed"
    assert [e.split(" →")[0] for e in page.locator("#timeline li .what").all_inner_texts()] == [
        "report", "accept", "file"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM cases WHERE id = :i"),
                            {"i": case_id}).scalar() == "filed"
    assert log.console_errors == []


def test_action_that_needs_a_note_asks_for_it(staff, world, engine: Engine) -> None:
    page, log = staff
    _, accounts, ids = world
    sign_in(page, accounts.tokens["supervisor"])
    filter_noise(page)
    case_id = ids[-2]
    page.locator(f'#cases tbody tr[data-id="{case_id}"]').click()
    page.get_by_role("button", name="Reject").click()
    confirm = page.get_by_role("button", name="Confirm: Reject")
    confirm.click()
    assert "needs: note" in page.locator("#action-message").inner_text()
    note = f"not a city matter {uuid.uuid4().hex[:6]}"
    page.get_by_label("note").fill(note)
    confirm.click()
    page.locator("#action-message").filter(has_text="Done: reject → rejected").wait_for()
    assert note in page.locator("#timeline").inner_text()
    assert page.locator("#actions button").count() == 0  # rejected is final
    assert "Nothing for a supervisor to do" in page.locator("#actions").inner_text()
    assert log.console_errors == []


def test_bad_token_is_refused_with_the_reason(staff) -> None:
    page, log = staff
    page.get_by_label("Bearer token").fill("ggt_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#login-message").filter(has_text="Sign-in failed").wait_for()
    assert "unknown token" in page.locator("#login-message").inner_text()
    assert page.locator("#whoami").is_hidden()
    assert all("status of 401" in e for e in log.console_errors)


def test_public_visitor_without_token_sees_no_cases(browser, server: str, world) -> None:
    context, page, log = open_page(browser)
    try:
        page.goto(server + "/cases")
        page.evaluate("() => window.gridgov.ready")
        assert page.locator("#cases tbody tr").count() == 0
        assert page.locator("#login-form").is_visible()
    finally:
        context.close()
    assert log.console_errors == []

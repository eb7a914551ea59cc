"""The public report page at ``/report`` and its tracking page, in headless Chromium against a
real server: pin, category, photo, private contact, duplicates nearby, retry-safe sending,
the tracking link (status and history, no private data) and the rating after close."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, text

from gis.categories import seed_defaults
from gis.lifecycle import ActionRequest, apply_action
from tests.e2e.case_fixtures import Accounts, purge_cases
from tests.e2e.conftest import DISTRICT, E2ECity, fit_to, open_page, screen_point

pytestmark = pytest.mark.e2e

GRID = f"{DISTRICT}00100102"   # West Gate Street → Lakeside Community 1 → grid 2
GARBAGE = "E010101"             # City appearance › Cleanliness › Garbage pile-up
CONTACT_NAME, CONTACT_PHONE = "Zhang Secretname", "+86 139 5550 1234"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def world(engine: Engine, e2e_city: E2ECity) -> Iterator[tuple[E2ECity, Accounts]]:
    accounts = Accounts()
    with engine.begin() as conn:
        seed_defaults(conn)
        accounts.add(conn, "admin")
        accounts.add(conn, "handler", department="SANITATION")
    yield e2e_city, accounts
    purge_cases(engine, accounts)


@pytest.fixture
def report(browser, server: str, world) -> Iterator:
    """The report page, loaded and zoomed to the test city; yields (page, log, city)."""
    city, _ = world
    context, page, log = open_page(browser)
    page.goto(server + "/report")
    page.evaluate("() => window.gridgov.ready")
    fit_to(page, city.bounds())
    yield page, log, city
    context.close()
    assert log.external_requests == []


_SPOTS = itertools.count()


def pin(page, city: E2ECity, code: str = GRID) -> None:
    """Click the map inside ``code``, each time at another spot within 250 m of its centre, so
    the dot of an earlier report (which opens a popup) is never under the click."""
    k = next(_SPOTS)
    lon, lat = city.inside(code)
    dx, dy = (k % 4 - 1.5) * 0.0015, (k // 4 % 3 - 1) * 0.001
    page.mouse.click(*screen_point(page, lon + dx, lat + dy))
    page.locator("#place strong").wait_for()
    assert code in page.locator("#place").inner_text()


def choose(page, category: str = GARBAGE) -> None:
    page.get_by_label("Kind of problem").select_option(category[:3])
    page.get_by_label("Problem · 小类").select_option(category)


def cases_with(engine: Engine, description: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT c.id, c.channel, c.reporter_contact, c.media, a.code AS grid, k.code AS cat"
            " FROM cases c JOIN areas a ON a.id = c.area_id JOIN categories k"
            " ON k.id = c.category_id WHERE c.description = :d ORDER BY c.id"),
            {"d": description}).mappings()]


def test_report_with_pin_category_photo_and_contact_gives_a_tracking_link(
        report, engine: Engine) -> None:
    page, log, city = report
    pin(page, city)
    choose(page)
    description = f"Bags piled at the corner {uuid.uuid4().hex[:8]}"
    page.get_by_label("Description").fill(description)
    page.get_by_label("Photo").set_input_files(
        {"name": "corner.png", "mimeType": "image/png", "buffer": PNG})
    page.get_by_text("Contact details (optional)").click()
    assert "never appear on the public map" in page.locator("#private-note").inner_text()
    page.get_by_label("Name").fill(CONTACT_NAME)
    page.get_by_label("Phone").fill(CONTACT_PHONE)
    page.get_by_role("button", name="Send report").click()
    page.locator("#sent").wait_for()
    (case,) = cases_with(engine, description)
    assert (case["channel"], case["grid"], case["cat"]) == ("app", GRID, GARBAGE)
    assert case["reporter_contact"] == {"name": CONTACT_NAME, "phone": CONTACT_PHONE}
    assert len(case["media"]) == 1
    assert f"Report #{case['id']}" in page.locator("#sent-summary").inner_text()
    assert re.search(r"/report/track/gtr_[\w-]+$", page.locator("#track-url").input_value())
    assert log.console_errors == [] and log.page_errors == []


def test_tracking_page_shows_status_and_history_without_private_data(
        report, engine: Engine) -> None:
    page, log, city = report
    pin(page, city)
    choose(page)
    description = f"Overflowing {uuid.uuid4().hex[:8]}"
    page.get_by_label("Description").fill(description)
    page.get_by_text("Contact details (optional)").click()
    page.get_by_label("Name").fill(CONTACT_NAME)
    page.get_by_label("Phone").fill(CONTACT_PHONE)
    page.get_by_role("button", name="Send report").click()
    page.locator("#sent").wait_for()
    bodies: list[str] = []
    page.on("response", lambda r: bodies.append(r.text()) if "/api/" in r.url
            or "/open311/" in r.url else None)
    page.get_by_role("link", name="Open the tracking page").click()
    page.locator("#track-status").wait_for()
    assert page.locator("#track-status").get_attribute("data-status") == "reported"
    assert page.locator("#history li").first.inner_text().startswith("Reported")
    assert description in page.locator("#track-facts").inner_text()
    page.wait_for_load_state("networkidle")
    for text_ in [page.content(), *bodies]:
        assert CONTACT_NAME not in text_ and "5550" not in text_
    assert log.console_errors == [] and log.page_errors == []


def test_a_lost_answer_then_retry_creates_one_case(report, engine: Engine) -> None:
    page, log, city = report
    pin(page, city)
    choose(page)
    description = f"Retry {uuid.uuid4().hex[:8]}"
    page.get_by_label("Description").fill(description)
    lost: list[int] = []

    def lose_first_answer(route) -> None:
        if lost:
            route.continue_()
            return
        response = route.fetch()  # the server stores the case...
        lost.append(response.status)
        route.abort("connectionreset")  # ...but the answer never reaches the page

    page.route("**/api/cases", lose_first_answer)
    page.get_by_role("button", name="Send report").click()
    page.locator("#form-message").filter(has_text="Could not reach the server").wait_for()
    assert lost == [201] and len(cases_with(engine, description)) == 1
    page.get_by_role("button", name="Send report").click()
    page.locator("#sent").wait_for()
    (case,) = cases_with(engine, description)
    assert f"Report #{case['id']}" in page.locator("#sent-summary").inner_text()
    assert all("net::ERR" in e for e in log.console_errors), log.console_errors


def test_double_click_sends_one_report(report, engine: Engine) -> None:
    page, log, city = report
    pin(page, city)
    choose(page)
    description = f"Double {uuid.uuid4().hex[:8]}"
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Send report").dblclick()
    page.locator("#sent").wait_for()
    page.wait_for_load_state("networkidle")
    assert len(cases_with(engine, description)) == 1
    assert log.console_errors == []


def test_bad_input_shows_a_clear_message(report, engine: Engine) -> None:
    page, log, city = report
    send = page.get_by_role("button", name="Send report")
    message = page.locator("#form-message")
    send.click()
    assert message.inner_text() == "Put a pin on the map where the problem is."
    pin(page, city)
    send.click()
    assert message.inner_text() == "Choose what kind of problem it is."
    choose(page)
    photo = page.get_by_label("Photo")
    photo.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    send.click()
    assert "must be a JPEG, PNG or WebP image" in message.inner_text()
    assert photo.get_attribute("aria-invalid") == "true"
    # Declared PNG, but not a PNG: only the server can tell, and says so.
    photo.set_input_files({"name": "fake.png", "mimeType": "image/png", "buffer": b"GIF89a" * 20})
    send.click()
    message.filter(has_text="photos[0]").wait_for()
    assert photo.get_attribute("aria-invalid") == "true"
    # Outside every grid: the page says so and refuses to send.
    x0, y0, x1, y1 = city.bounds()
    page.evaluate("([lon, lat]) => window.gridgov.setPin(lon, lat)", [x1 + 0.002, y0 - 0.002])
    assert "outside the area we serve" in page.locator("#place").inner_text()
    send.click()
    assert "outside the area we serve" in message.inner_text()
    assert all(re.search(r"status of (404|415)", e) for e in log.console_errors), log.console_errors


def test_nearby_open_reports_are_shown_before_submitting(report, server: str) -> None:
    page, log, city = report
    lon, lat = city.inside(GRID)
    earlier = httpx.post(f"{server}/api/cases", json={
        "category": GARBAGE, "lon": lon, "lat": lat, "description": "earlier report"}).json()
    page.evaluate("() => window.gridgov.map.fire('moveend')")
    pin(page, city)
    choose(page)
    dups = page.locator("#duplicates .dups li")
    dups.first.wait_for()
    assert "Already reported nearby?" in page.locator("#duplicates").inner_text()
    assert "earlier report" in page.locator("#duplicates").inner_text()
    page.locator("#kpi-open").filter(has_text=re.compile(r"^[1-9]")).wait_for()
    assert earlier["id"] > 0 and log.console_errors == []


def test_rating_after_close_on_the_tracking_page(browser, server: str, engine: Engine,
                                                  world) -> None:
    city, accounts = world
    lon, lat = city.inside(GRID)
    case = httpx.post(f"{server}/api/cases", json={
        "category": "E010102", "lon": lon, "lat": lat, "description": "to be rated"}).json()
    with engine.begin() as conn:
        admin, handler = accounts.principal(conn, "admin"), accounts.principal(conn, "handler")
        for who, step in [(admin, ActionRequest("file")), (admin, ActionRequest("dispatch")),
                          (handler, ActionRequest("handle", note="emptied")),
                          (admin, ActionRequest("verify", result="pass")),
                          (admin, ActionRequest("close"))]:
            apply_action(conn, case["id"], step, who)
    context, page, log = open_page(browser)
    try:
        page.goto(f"{server}/report/track/{case['tracking_token']}")
        page.locator("#rate-card").wait_for()
        assert page.locator("#track-status").get_attribute("data-status") == "closed"
        assert page.locator("#history li").count() == 6
        assert "emptied" not in page.content()  # staff notes stay private
        page.get_by_text("4 good").click()
        page.get_by_role("button", name="Send rating").click()
        page.locator("#rate-message").filter(has_text="Thank you").wait_for()
    finally:
        context.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT satisfaction FROM cases WHERE id = :i"),
                            {"i": case["id"]}).scalar() == 4
    assert log.console_errors == [] and log.external_requests == []


def test_unknown_tracking_link_says_so(browser, server: str, world) -> None:
    context, page, log = open_page(browser)
    try:
        page.goto(f"{server}/report/track/gtr_doesnotexist")
        page.locator("#track-body .message").wait_for()
        assert "could not find a report" in page.locator("#track-body").inner_text()
    finally:
        context.close()
    assert all("status of 404" in e for e in log.console_errors)

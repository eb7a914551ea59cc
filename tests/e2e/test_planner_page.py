"""The planner workbench at ``/planner`` in headless Chromium: sign in, create a plan, split a
grid by drawing a line with the mouse, see the metrics update, partition, check, diff and
publish, with no request leaving the loopback server.

It works on a community of the demo city (which every test database holds: real roads and
buildings) and publishes for real, so the fixture puts the boundaries back afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import Engine, text

from gis.auth import create_user, issue_token

pytestmark = pytest.mark.e2e

COMMUNITY = "910102002002"  # 3 grids, 675 households


@pytest.fixture
def planner_token(engine: Engine) -> Iterator[str]:
    """A committed planner account; afterwards every boundary version, plan and account this
    test made is removed again, so later tests see the demo city as it was."""
    with engine.begin() as conn:
        start: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        uid = create_user(conn, f"e2e-planner-{secrets.token_hex(4)}", "planner")
        token = issue_token(conn, uid)
    try:
        yield token
    finally:
        with engine.begin() as conn:
            # Open cases the publish moved (the demo city has cases) go back to their grid,
            # and their regrid events go (append-only: bypassed as purge_jurisdiction does).
            conn.execute(text(
                "UPDATE cases c SET area_id = a.id FROM case_events e, areas a"
                " WHERE e.case_id = c.id AND e.action = 'regrid' AND e.at >= :t"
                " AND a.code = e.data->>'from_area_code' AND a.valid_to >= :t"), {"t": start})
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("DELETE FROM case_events WHERE action = 'regrid' AND at >= :t"),
                         {"t": start})
            conn.execute(text("SET LOCAL session_replication_role = origin"))
            conn.execute(text("DELETE FROM plans WHERE created_at >= :t"), {"t": start})
            for level in (3, 2, 1, 0):
                conn.execute(text("DELETE FROM areas WHERE valid_from >= :t AND level = :l"),
                             {"t": start, "l": level})
            conn.execute(text("UPDATE areas SET valid_to = NULL WHERE valid_to >= :t"),
                         {"t": start})
            conn.execute(text("DELETE FROM api_tokens WHERE user_id = :u"), {"u": uid})
            conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": uid})


def screen(page, lon: float, lat: float) -> tuple[float, float]:
    return tuple(page.evaluate(
        """([lon, lat]) => {
            const m = window.planner.map;
            const p = m.project([lon, lat]);
            const r = m.getCanvas().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""", [lon, lat]))


def rows(page) -> int:
    return page.locator("#grid-table tbody tr").count()


def test_plan_split_partition_check_diff_publish(page_log, server, planner_token, engine):
    page, log = page_log
    page.goto(server + "/planner")
    page.evaluate("() => window.planner.ready")
    page.fill("#token-input", planner_token)
    page.click("#token-form button")
    page.fill("#root-input", COMMUNITY)
    page.click("#new-plan button")
    page.wait_for_function("() => document.querySelectorAll('#grid-table tbody tr').length === 3")
    page.wait_for_selector("#check-result .ok")

    # Select a grid by clicking it, then draw a line across it with the Split tool.
    grid = page.evaluate("() => window.planner.state.grids[0]")
    g = shape(grid["geometry"])
    x0, y0, x1, y1 = g.bounds
    c = g.representative_point()
    page.evaluate("() => window.planner.whenIdle()")
    page.mouse.click(*screen(page, c.x, c.y))
    page.wait_for_selector(f"#grid-table tr.selected[data-key='{grid['id']}']")
    page.get_by_role("button", name="Split").click()
    dy = (y1 - y0) * 0.15
    page.mouse.click(*screen(page, c.x, y1 + dy))
    page.mouse.dblclick(*screen(page, c.x, y0 - dy))
    page.wait_for_function("() => document.querySelectorAll('#grid-table tbody tr').length === 4")
    grids = page.evaluate("() => window.planner.grids()")
    assert sum(r["households"] for r in grids) == 675
    assert sum(1 for r in grids if r["code"] is None) == 1
    pieces = [shape(f["geometry"]) for f in page.evaluate("() => window.planner.state.grids")]
    frame = shape(page.evaluate(
        "() => window.planner.state.features.find((f) => f.properties.parent_key === null)"
    )["geometry"])
    assert shapely.union_all(pieces).symmetric_difference(frame).area < 1e-10 * frame.area
    assert page.locator("#grid-table .dev").count() == 4  # live deviation per grid

    # Automatic partition into 3 grids.
    page.fill("#n-input", "3")
    page.click("#partition-btn")
    page.wait_for_function("() => /grids in/.test(document.querySelector('#partition-result')"
                           ".textContent)")
    page.wait_for_function("() => document.querySelectorAll('#grid-table tbody tr').length === 3")

    page.click("#check-btn")
    page.wait_for_selector("#check-result .ok")
    page.click("#diff-btn")
    page.wait_for_function("() => /changed/.test(document.querySelector('#diff-result')"
                           ".textContent)")
    assert page.evaluate("() => window.planner.state.diff.features.features.length") > 0

    page.click("#publish-btn")
    page.click("#publish-btn")
    page.wait_for_function("() => /Published/.test(document.querySelector('#status')"
                           ".textContent)")
    with engine.connect() as conn:
        current = conn.execute(text(
            "SELECT count(*) FROM areas WHERE code LIKE :c AND valid_to IS NULL AND level = 3"
            " AND valid_from > now() - interval '5 minutes'"), {"c": COMMUNITY + "%"}).scalar()
    assert current >= 1
    assert log.console_errors == [] and log.page_errors == []


def test_a_line_that_misses_the_grid_shows_the_problem(page_log, server, planner_token):
    page, log = page_log
    page.goto(server + "/planner")
    page.evaluate("() => window.planner.ready")
    page.evaluate("(t) => window.planner.signIn(t)", planner_token)
    page.evaluate("(c) => window.planner.createPlan(c)", COMMUNITY)
    grid = page.evaluate("() => window.planner.state.grids[0]")
    c = shape(grid["geometry"]).representative_point()
    message = page.evaluate(
        """([key, line]) => window.planner.split(key, line).then(() => 'ok', (e) => e.message)""",
        [grid["id"], [[c.x, c.y], [c.x + 1e-6, c.y + 1e-6]]])
    assert "does not cut" in message
    assert page.locator("#status.error").count() == 1
    n = page.evaluate("() => window.planner.state.problems.length")
    assert n == 1
    assert log.page_errors == []

"""The planner workbench at ``/planner`` in headless Chromium: sign in, create a plan, split a
grid by drawing a line with the mouse, redraw a grid's outline and drag its vertices, draw a
new grid, move a building into another grid, download the plan and import a file (and see its
check on the map), meet another planner's edit (409) without losing ours, see the metrics
update, partition, check, diff and publish, with no request leaving the loopback server.
Results are asserted through the API and the database, not only on the page.

It works on a community of the demo city (which every test database holds: real roads and
buildings) and publishes for real, so the fixture puts the boundaries back afterwards.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pyogrio
import pytest
import shapely
from shapely.geometry import Point, box, mapping, shape
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


# --- drawing, editing, moving, files, conflicts --------------------------------------------------

def open_plan(page, server: str, token: str) -> int:
    """The planner page with a new plan of COMMUNITY open (3 grids); returns the plan id."""
    page.goto(server + "/planner")
    page.evaluate("() => window.planner.ready")
    page.fill("#token-input", token)
    page.click("#token-form button")
    page.fill("#root-input", COMMUNITY)
    page.click("#new-plan button")
    page.wait_for_function("() => document.querySelectorAll('#grid-table tbody tr').length === 3")
    page.wait_for_selector("#check-result .ok")
    page.evaluate("() => window.planner.whenIdle()")
    return int(page.evaluate("() => window.planner.state.plan.id"))


def api(server: str, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server + path, headers={"Authorization": f"Bearer {token}"},
                         timeout=60, **kwargs)


def plan_grids(server: str, token: str, plan_id: int) -> dict[int, dict]:
    """The plan's grids as the API has them now: key → {geom, households, version, code}."""
    fc = api(server, token, "GET", f"/api/plans/{plan_id}/areas?level=3").json()
    return {f["id"]: {**f["properties"], "geom": shape(f["geometry"])} for f in fc["features"]}


def frame_of(server: str, token: str, plan_id: int):
    fc = api(server, token, "GET", f"/api/plans/{plan_id}/areas?level=2").json()
    return shape(fc["features"][0]["geometry"])


def assert_tiles_frame(grids: dict[int, dict], frame) -> None:
    pieces = shapely.union_all([g["geom"] for g in grids.values()])
    assert pieces.symmetric_difference(frame).area < 1e-9 * frame.area
    assert sum(g["households"] for g in grids.values()) == 675


def click_at(page, lon: float, lat: float) -> None:
    page.mouse.click(*screen(page, lon, lat))


def pick_tool(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def draw_polygon(page, coords: list[tuple[float, float]]) -> None:
    """Click the corners, then click the first one again to close the shape."""
    for lon, lat in coords:
        click_at(page, lon, lat)
    click_at(page, *coords[0])


def _rectangle_for(grid, others: list, frame):
    """A rectangle about ``grid`` (its bounds, shrunk) that leaves every other grid in one piece
    and is one polygon inside the frame, so the reshape it asks for is well defined."""
    c = grid.centroid
    for f in (0.85, 0.7, 0.6, 0.5, 0.4):
        x0, y0, x1, y1 = grid.bounds
        r = box(c.x + (x0 - c.x) * f, c.y + (y0 - c.y) * f, c.x + (x1 - c.x) * f,
                c.y + (y1 - c.y) * f)
        inside = r.intersection(frame)
        rest_ok = all(o.difference(r).geom_type == "Polygon" for o in others)
        if inside.geom_type == "Polygon" and rest_ok:
            return r
    raise AssertionError("no rectangle leaves the neighbours whole")


def test_draw_a_new_outline_and_a_new_grid_with_the_mouse(page_log, server, planner_token):
    page, log = page_log
    plan_id = open_plan(page, server, planner_token)
    before = plan_grids(server, planner_token, plan_id)
    frame = frame_of(server, planner_token, plan_id)
    key = max(before, key=lambda k: before[k]["households"])
    grid = before[key]["geom"]
    rect = _rectangle_for(grid, [g["geom"] for k, g in before.items() if k != key], frame)

    # Reshape: click the grid, pick the tool, click four corners and the first again.
    click_at(page, *grid.representative_point().coords[0])
    page.wait_for_selector(f"#grid-table tr.selected[data-key='{key}']")
    pick_tool(page, "Reshape")
    with page.expect_request(lambda r: r.url.endswith(f"/areas/{key}/reshape")) as req:
        draw_polygon(page, list(rect.exterior.coords)[:4])
    sent = shape(json.loads(req.value.post_data)["geometry"])
    page.wait_for_function("() => /Reshaping: done/.test(document.querySelector('#status')"
                           ".textContent)")
    # The clicks arrived where they were aimed (a snap to a vertex moves a corner < 10 px).
    for corner in list(rect.exterior.coords)[:4]:
        assert min(Point(corner).distance(Point(q)) for q in sent.exterior.coords) < 5e-5
    after = plan_grids(server, planner_token, plan_id)
    assert after[key]["version"] > before[key]["version"]
    expected = sent.intersection(frame)
    # The grid now covers what was drawn (inside the community); of the ground it held outside
    # the drawing it keeps only pieces no neighbour touches (the rest went to the neighbours).
    assert expected.difference(after[key]["geom"]).area < 0.01 * expected.area
    others = [g["geom"] for k, g in after.items() if k != key]
    for piece in shapely.get_parts(after[key]["geom"].difference(expected)):
        # Beyond the slivers of snapping to a neighbour's vertex (< ~30 m²), a piece kept
        # outside the drawing is one no neighbour shares an edge with.
        if piece.area > 5e-9:
            assert all(piece.boundary.intersection(o.boundary).length < 1e-5 for o in others)
    assert_tiles_frame(after, frame)

    # A new grid: a square drawn inside another grid takes its ground from it.
    other = next(k for k in after if k != key)
    host = after[other]["geom"]
    c = host.representative_point()
    side = 0.0004
    while not box(c.x - side, c.y - side / 2, c.x + side, c.y + side / 2).within(host):
        side /= 2
    square = box(c.x - side, c.y - side / 2, c.x + side, c.y + side / 2)
    pick_tool(page, "New grid")
    draw_polygon(page, list(square.exterior.coords)[:4])
    page.wait_for_function("() => document.querySelectorAll('#grid-table tbody tr').length === 4")
    grids = plan_grids(server, planner_token, plan_id)
    new = [g for k, g in grids.items() if k not in after]
    assert len(new) == 1 and new[0]["code"] is None
    assert new[0]["geom"].symmetric_difference(square).area < 0.05 * square.area
    assert grids[other]["geom"].intersection(square).area < 0.05 * square.area
    assert_tiles_frame(grids, frame)
    assert log.console_errors == [] and log.page_errors == []


def test_drag_a_shared_vertex_to_reshape_two_grids(page_log, server, planner_token):
    page, log = page_log
    plan_id = open_plan(page, server, planner_token)
    before = plan_grids(server, planner_token, plan_id)
    frame = frame_of(server, planner_token, plan_id)
    # A vertex two grids share, away from the community's outline, and a drop point towards
    # the neighbour's inside that no other vertex is near (so the drop does not snap).
    vertices = page.evaluate("""() => window.planner.state.features.flatMap((f) => {
        const out = [];
        const walk = (c) => typeof c[0] === 'number' ? out.push(c) : c.forEach(walk);
        walk(f.geometry.coordinates); return out; })""")
    pixels = [screen(page, *c) for c in vertices]

    def candidates():
        for a, ga in before.items():
            ring = list(shapely.get_parts(ga["geom"])[0].exterior.coords)[:-1]
            for b, gb in before.items():
                for n, (x, y) in enumerate(ring):
                    v = Point(x, y)
                    if (a == b or gb["geom"].boundary.distance(v) > 1e-9
                            or frame.boundary.distance(v) < 1e-4):
                        continue
                    inner = gb["geom"].representative_point()
                    for f in (0.1, 0.15, 0.2):
                        d = Point(x + (inner.x - x) * f, y + (inner.y - y) * f)
                        moved = shapely.Polygon(ring[:n] + [(d.x, d.y)] + ring[n + 1:])
                        yield a, b, (x, y), d, moved

    choice = None
    for a, b, (x, y), d, moved in candidates():
        px, start = screen(page, d.x, d.y), screen(page, x, y)
        near = min(((px[0] - q[0]) ** 2 + (px[1] - q[1]) ** 2) ** 0.5 for q in pixels)
        far = ((px[0] - start[0]) ** 2 + (px[1] - start[1]) ** 2) ** 0.5
        if (near > 14 and far > 20 and moved.is_valid and before[b]["geom"].contains(d)
                and before[b]["geom"].difference(moved).geom_type == "Polygon"):
            choice = (a, b, (x, y), d)
            break
    assert choice, "no shared vertex to drag"
    a, b, (x, y), d = choice
    click_at(page, *before[a]["geom"].representative_point().coords[0])
    pick_tool(page, "Edit vertices")
    page.evaluate("() => window.planner.whenIdle()")
    page.mouse.move(*screen(page, x, y))
    page.mouse.down()
    page.mouse.move(*screen(page, d.x, d.y), steps=8)
    page.mouse.up()
    page.click("#hint-apply")
    page.wait_for_function("() => /Reshaping: done/.test(document.querySelector('#status')"
                           ".textContent)")
    after = plan_grids(server, planner_token, plan_id)
    assert after[a]["geom"].area > before[a]["geom"].area
    assert after[b]["geom"].area < before[b]["geom"].area
    assert after[a]["geom"].boundary.distance(d) < 1e-5  # where it was dropped (± 2 px)
    assert_tiles_frame(after, frame)
    assert log.page_errors == []


def test_move_a_building_into_the_neighbouring_grid(page_log, server, planner_token, engine):
    page, log = page_log
    plan_id = open_plan(page, server, planner_token)
    before = plan_grids(server, planner_token, plan_id)
    pick_tool(page, "Move")
    page.wait_for_function("() => window.planner.state.move.buildings.features.length > 0")
    buildings = page.evaluate("() => window.planner.state.move.buildings.features")
    assert all(f["properties"]["grid"] in before for f in buildings)
    # The building nearest to another grid, and that grid.
    _, bid, to = min((shape(f["geometry"]).distance(g["geom"]), f["id"], k)
                     for f in buildings for k, g in before.items()
                     if k != f["properties"]["grid"])
    b = next(f for f in buildings if f["id"] == bid)
    src = b["properties"]["grid"]
    foot = shape(b["geometry"])
    x0, y0, x1, y1 = foot.bounds
    page.evaluate("""async ([x0, y0, x1, y1]) => {
        window.planner.map.fitBounds([[x0, y0], [x1, y1]], {padding: 200, maxZoom: 19,
                                                              duration: 0});
        await window.planner.whenIdle(); }""", [x0, y0, x1, y1])
    click_at(page, *foot.representative_point().coords[0])
    page.wait_for_function("() => /1 building/.test(document.querySelector('#move-picked')"
                           ".textContent)")
    page.select_option("#move-to", str(to))
    assert "households" in page.text_content("#move-preview")
    page.click("#move-btn")
    page.wait_for_function("() => /Moving buildings: done/.test(document.querySelector('#status')"
                           ".textContent)")
    after = plan_grids(server, planner_token, plan_id)
    hh = b["properties"]["households"]
    assert after[to]["households"] == before[to]["households"] + hh
    assert after[src]["households"] == before[src]["households"] - hh
    assert_tiles_frame(after, frame_of(server, planner_token, plan_id))
    with engine.connect() as conn:  # the building's point now lies in the receiving grid
        inside = conn.execute(text(
            "SELECT ST_Covers(pa.geom, b.pt) FROM plan_areas pa, buildings b"
            " WHERE pa.id = :k AND b.id = :b"), {"k": to, "b": bid}).scalar()
    assert inside is True
    # The live table shows the new count; the building list knows its new grid.
    row = page.locator(f"#grid-table tr[data-key='{to}'] td").nth(1).text_content()
    assert row.replace(",", "") == str(after[to]["households"])
    page.wait_for_function(f"""() => window.planner.state.move.buildings.features
        .find((f) => f.id === {bid}).properties.grid === {to}""")

    # Shift-drag a box: every building it touches is picked.
    corner0, corner1 = screen(page, x0, y1), screen(page, x1, y0)
    page.keyboard.down("Shift")
    page.mouse.move(corner0[0] - 6, corner0[1] - 6)
    page.mouse.down()
    page.mouse.move(corner1[0] + 6, corner1[1] + 6, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert bid in page.evaluate("() => [...window.planner.state.move.picked]")
    assert log.page_errors == []


def test_export_then_import_shows_the_check_on_the_map(page_log, server, planner_token,
                                                       tmp_path: Path):
    page, log = page_log
    plan_id = open_plan(page, server, planner_token)
    grids = plan_grids(server, planner_token, plan_id)
    files = {}
    for fmt in ("gpkg", "geojson", "shp"):
        page.select_option("#export-format", fmt)
        with page.expect_download() as dl:
            page.click("#export-btn")
        path = tmp_path / dl.value.suggested_filename
        dl.value.save_as(path)
        files[fmt] = path
        frame = pyogrio.read_dataframe(path if fmt != "shp" else f"/vsizip/{path}")
        assert sorted(int(k) for k in frame["key"] if int(k) in grids) == sorted(grids)
        assert len(frame) == 4  # the community and its 3 grids
    assert files["shp"].suffix == ".zip" and files["gpkg"].suffix == ".gpkg"

    # Shrink one grid in the GeoJSON and import it: the plan now has a gap, drawn on the map.
    data = json.loads(files["geojson"].read_text())
    key = max(grids, key=lambda k: grids[k]["geom"].area)
    for f in data["features"]:
        if f["properties"]["key"] == key:
            f["geometry"] = mapping(shape(f["geometry"]).buffer(-0.00005))
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(data))
    page.set_input_files("#import-file", str(edited))
    page.click("#import-btn")
    page.wait_for_selector("#import-result p.bad")
    check = api(server, planner_token, "GET", f"/api/plans/{plan_id}/check").json()
    gaps = [p for p in check["problems"] if p["kind"] == "gap"]
    assert not check["ok"] and gaps
    ring = grids[key]["geom"].difference(grids[key]["geom"].buffer(-0.00005))
    assert shape(gaps[0]["geometry"]).intersection(ring).area > 0.5 * shape(
        gaps[0]["geometry"]).area
    ops = api(server, planner_token, "GET", f"/api/plans/{plan_id}/ops").json()["ops"]
    assert ops[-1]["kind"] == "import" and ops[-1]["params"]["file"] == "upload.geojson"
    page.wait_for_selector("#check-result .bad")
    assert page.locator("#check-result li[data-kind='gap']").count() >= 1
    page.evaluate("() => window.planner.whenIdle()")
    drawn = page.evaluate("""() => window.planner.map.queryRenderedFeatures(
        {layers: ['problems-fill']}).map((f) => f.properties.kind)""")
    assert "gap" in drawn

    # A file with a bow-tie is refused whole, its problem placed on the map; nothing changes.
    versions = {k: g["version"] for k, g in plan_grids(server, planner_token, plan_id).items()}
    c = grids[key]["geom"].centroid
    d = 0.0003
    for f in data["features"]:
        if f["properties"]["key"] == key:
            f["geometry"] = {"type": "Polygon", "coordinates": [[
                [c.x - d, c.y - d], [c.x + d, c.y + d], [c.x + d, c.y - d], [c.x - d, c.y + d],
                [c.x - d, c.y - d]]]}
    broken = tmp_path / "broken.geojson"
    broken.write_text(json.dumps(data))
    page.set_input_files("#import-file", str(broken))
    page.click("#import-btn")
    page.wait_for_selector("#import-result .import-problems li")
    assert "nothing was imported" in page.text_content("#import-result")
    where = page.evaluate("() => window.planner.state.problems.map((f) => f.geometry)")
    assert any(Point(p["coordinates"]).distance(c) < 1e-6 for p in where)
    now = {k: g["version"] for k, g in plan_grids(server, planner_token, plan_id).items()}
    assert now == versions
    assert log.page_errors == []


def test_another_planners_edit_gives_409_and_ours_is_kept(page_log, server, planner_token):
    page, log = page_log
    plan_id = open_plan(page, server, planner_token)
    before = plan_grids(server, planner_token, plan_id)
    frame = frame_of(server, planner_token, plan_id)
    key = max(before, key=lambda k: before[k]["households"])
    rect = _rectangle_for(before[key]["geom"], [g["geom"] for k, g in before.items()
                                                if k != key], frame)
    click_at(page, *before[key]["geom"].representative_point().coords[0])
    page.wait_for_selector(f"#grid-table tr.selected[data-key='{key}']")
    # Someone else renames the grid meanwhile (its version moves on).
    other = api(server, planner_token, "PATCH", f"/api/plans/{plan_id}/areas/{key}",
                json={"name": "renamed elsewhere", "version": before[key]["version"]})
    assert other.status_code == 200
    pick_tool(page, "Reshape")
    draw_polygon(page, list(rect.exterior.coords)[:4])
    page.wait_for_selector("#conflict:not([hidden])")
    assert "changed by someone else" in page.text_content("#conflict-text")
    assert page.evaluate("() => window.planner.state.pending.geometry.type") == "Polygon"
    mid = plan_grids(server, planner_token, plan_id)
    assert mid[key]["geom"].equals(before[key]["geom"])  # nothing was written
    assert mid[key]["name"] == "renamed elsewhere"
    # Apply ours again, on top of theirs.
    page.click("#conflict-retry")
    page.wait_for_function("() => /Reshaping: done/.test(document.querySelector('#status')"
                           ".textContent)")
    assert page.locator("#conflict").is_hidden()
    after = plan_grids(server, planner_token, plan_id)
    assert after[key]["name"] == "renamed elsewhere"
    assert after[key]["version"] > mid[key]["version"]
    expected = rect.intersection(frame)
    assert after[key]["geom"].symmetric_difference(expected).area < 0.05 * expected.area
    assert_tiles_frame(after, frame)
    assert log.page_errors == []

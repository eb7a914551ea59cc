"""Browser tests: the real app under uvicorn, Debian's Chromium driven by Playwright.

Every request the page makes to anything but this loopback server is aborted and recorded; each
test fails if one was even attempted (the UI must work with no internet). The map data is a
small jurisdiction of our own (1 district → 2 streets → 4 communities → 16 grids), committed
for the module and deleted afterwards, placed far from the demo city so the tests do not depend
on whether the demo is loaded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from shapely import unary_union
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, text

from gis import areas
from gis.settings import DatabaseSettings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"

# The test city: a 0.048° × 0.024° district at (13.37, 42.42), far from the demo city and from
# the round coordinates other tests like to use.
CITY_CODE = "e2e-city"
X0, Y0, DX, DY = 13.37, 42.42, 0.048, 0.024
DISTRICT = "990101"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--screenshot", action="store_true",
                     help=f"write a screenshot of the map page to {SCREENSHOT}")


@dataclass(frozen=True)
class E2ECity:
    """The areas the e2e tests inserted: {code: (level name, geometry)}."""

    areas: dict[str, tuple[str, BaseGeometry]]

    def codes(self, level: str) -> list[str]:
        return sorted(c for c, (lv, _) in self.areas.items() if lv == level)

    def bounds(self, code: str = DISTRICT) -> tuple[float, float, float, float]:
        return self.areas[code][1].bounds

    def inside(self, code: str) -> tuple[float, float]:
        """A lon/lat well inside the area (not near any edge)."""
        pt = self.areas[code][1].representative_point()
        return pt.x, pt.y


def _lattice() -> list[list[tuple[float, float]]]:
    """A 5 × 5 lattice of corners, interior ones nudged so the grids look drawn, not ruled.

    Neighbours share the very same corner coordinates, so the grids tile their parents exactly.
    """
    nudges = [0.18, -0.22, 0.11, -0.07, 0.24, -0.15, 0.05, -0.2, 0.16]
    pts = []
    for j in range(5):
        row = []
        for i in range(5):
            x, y = X0 + i * DX / 4, Y0 + j * DY / 4
            if 0 < i < 4 and 0 < j < 4:
                k = (j - 1) * 3 + (i - 1)
                x += nudges[k] * DX / 4
                y += nudges[(k + 4) % 9] * DY / 4
            row.append((round(x, 7), round(y, 7)))
        pts.append(row)
    return pts


def _test_city_rows() -> list[areas.AreaRow]:
    lattice = _lattice()

    def cell(i: int, j: int) -> Polygon:
        return Polygon([lattice[j][i], lattice[j][i + 1], lattice[j + 1][i + 1],
                        lattice[j + 1][i]])

    rows: list[areas.AreaRow] = []
    for s, street_name in enumerate(("West Gate Street", "East Gate Street")):
        street = f"{DISTRICT}{s + 1:03d}"
        for c, community_name in enumerate(("Lakeside", "Hillview")):
            community = f"{street}{c + 1:03d}"
            for g in range(4):
                i, j = s * 2 + g % 2, c * 2 + g // 2
                hh = 60 + 45 * ((s * 8 + c * 4 + g) * 7 % 16)  # 60 … 735, well spread
                rows.append(areas.AreaRow(
                    f"{community}{g + 1:02d}", f"Grid {s + 1}-{c + 1}-{g + 1}", 3, cell(i, j),
                    parent_code=community, grid_type="residential" if g != 3 else "mixed",
                    households=hh, population=int(hh * 2.4)))
            rows.append(areas.AreaRow(community, f"{community_name} Community {s + 1}", 2,
                                      box(0, 0, 1, 1), parent_code=street))
        rows.append(areas.AreaRow(street, street_name, 1, box(0, 0, 1, 1),
                                  parent_code=DISTRICT))
    rows.append(areas.AreaRow(DISTRICT, "Riverside District", 0, box(0, 0, 1, 1)))
    # Parents are the union of their children and sum their counts (as refresh_counts does).
    for level in (2, 1, 0):
        for row in rows:
            if row.level == level:
                kids = [r for r in rows if r.parent_code == row.code]
                row.geom = unary_union([k.geom for k in kids])
                row.households = sum(k.households for k in kids)
                row.population = sum(k.population for k in kids)
    return rows


def _delete_city(engine: Engine) -> None:
    with engine.begin() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": CITY_CODE}).scalar()
        if jid is not None:
            conn.execute(text("DELETE FROM areas WHERE jurisdiction_id = :j"), {"j": jid})
            conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), {"j": jid})


@pytest.fixture(scope="module")
def e2e_city(engine: Engine) -> Iterator[E2ECity]:
    """Our small jurisdiction, committed (the server reads it on its own connections)."""
    _delete_city(engine)
    rows = _test_city_rows()
    with engine.begin() as conn:
        jid = areas.create_jurisdiction(conn, code=CITY_CODE, name="E2E test city",
                                        local_srid=25833)
        areas.insert_areas(conn, jid, rows)
    level_names = [lv.name for lv in areas.DEFAULT_LEVELS]
    yield E2ECity({r.code: (level_names[r.level], r.geom) for r in rows})
    _delete_city(engine)


@pytest.fixture(scope="session")
def server(db_settings: DatabaseSettings, db_name: str) -> Iterator[str]:
    """The real app (its own engine and pool) under uvicorn on a free loopback port."""
    import uvicorn

    from api.app import create_app
    from gis.settings import LimitSettings

    # Intake rate limits have their own tests (tests/api/test_limits.py); pages here report
    # many cases from one address.
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}),
                     limit_settings=LimitSettings(enabled=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What the page did that a test may assert on."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return (parts.hostname or "") in LOOPBACK


def open_page(browser, *, viewport: dict[str, int] | None = None, **context_args):
    """A new context whose non-loopback requests are aborted and logged."""
    log = PageLog()
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800},
                                  reduced_motion="reduce", **context_args)

    def guard(route) -> None:
        if _is_loopback(route.request.url):
            route.continue_()
        else:
            log.external_requests.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    # Also watch requests that bypass routing (e.g. from workers), belt and braces.
    context.on("request", lambda r: None if _is_loopback(r.url)
               else log.external_requests.append(r.url))
    page = context.new_page()
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    return context, page, log


@pytest.fixture
def page_log(browser) -> Iterator[tuple]:
    context, page, log = open_page(browser)
    yield page, log
    context.close()
    assert log.external_requests == [], f"non-loopback requests: {log.external_requests}"


@pytest.fixture
def map_page(page_log, server: str, e2e_city: E2ECity) -> Iterator:
    """The map page, loaded, zoomed to the test city."""
    page, log = page_log
    page.goto(server + "/")
    page.evaluate("() => window.gridgov.ready")
    fit_to(page, e2e_city.bounds())
    yield page, log


def fit_to(page, bounds: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = bounds
    page.evaluate(
        """async ([x0, y0, x1, y1]) => {
            const g = window.gridgov;
            g.map.fitBounds([[x0, y0], [x1, y1]], {padding: 40, duration: 0});
            await g.whenIdle();
        }""",
        [x0, y0, x1, y1],
    )


def rendered(page, layer: str = "areas-fill") -> list[dict]:
    """Distinct rendered features of a layer: [{code, level_name}]."""
    return page.evaluate(
        """(layer) => {
            const seen = new Map();
            for (const f of window.gridgov.map.queryRenderedFeatures({layers: [layer]})) {
                seen.set(f.properties.code, {code: f.properties.code,
                                             level_name: f.properties.level_name});
            }
            return [...seen.values()];
        }""",
        layer,
    )


def screen_point(page, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates of a lon/lat on the map canvas."""
    return tuple(page.evaluate(
        """([lon, lat]) => {
            const m = window.gridgov.map;
            const p = m.project([lon, lat]);
            const r = m.getCanvas().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lon, lat],
    ))

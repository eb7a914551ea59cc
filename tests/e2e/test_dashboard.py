"""The evaluation dashboard at ``/dashboard`` in headless Chromium, on the demo city's cases:
tiles show the API's numbers, filters change them, the CSV exports download, nothing leaves
the loopback server."""

from __future__ import annotations

import csv
import io
from urllib.request import urlopen

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def dashboard(page_log, server: str):
    page, log = page_log
    page.goto(server + "/dashboard")
    page.evaluate("() => window.gridgovDashboard.ready")
    yield page, log


def _api(server: str, path: str) -> bytes:
    with urlopen(server + path) as r:  # noqa: S310 (loopback test server)
        return r.read()


def _tiles(page) -> dict[str, str]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.tile')]
        .map((t) => [t.dataset.kpi, t.dataset.value]))""")


def test_tiles_show_the_api_numbers(dashboard, server: str) -> None:
    import json

    page, log = dashboard
    api = json.loads(_api(server, "/api/kpis?period=365d&basis=reported&level=3"))["total"]
    tiles = _tiles(page)
    assert int(tiles["n"]) == api["n"] > 0
    for key in ("closure_rate", "on_time_rate", "p90_ttc_h", "satisfaction", "score"):
        assert float(tiles[key]) == pytest.approx(api[key])
    assert page.locator("#ranking tbody tr").count() == 39
    assert page.locator("#series .bar").count() >= 12
    assert log.console_errors == [] and log.page_errors == []


def test_a_filter_changes_the_numbers(dashboard, server: str) -> None:
    import json

    page, log = dashboard
    before = _tiles(page)
    loaded = page.evaluate("() => document.body.dataset.loaded")
    page.select_option("#period", "30d")
    page.wait_for_function("(n) => document.body.dataset.loaded !== n", arg=loaded)
    after = _tiles(page)
    api = json.loads(_api(server, "/api/kpis?period=30d&basis=reported&level=3"))["total"]
    assert int(after["n"]) == api["n"] < int(before["n"])
    loaded = page.evaluate("() => document.body.dataset.loaded")
    page.select_option("#level", "1")
    page.wait_for_function("(n) => document.body.dataset.loaded !== n", arg=loaded)
    assert page.locator("#ranking tbody tr").count() == 6
    assert log.console_errors == []


def test_csv_download_has_the_header_and_the_rows(dashboard) -> None:
    page, _ = dashboard
    with page.expect_download() as info:
        page.click("#ranking-csv")
    from pathlib import Path

    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {"rank", "code", "closure_rate", "score"} <= set(rows[0])
    assert len(rows) == page.locator("#ranking tbody tr").count()
    shown = page.locator("#ranking tbody tr").first.get_attribute("data-code")
    assert rows[0]["code"] == shown


def test_the_map_draws_a_choropleth(dashboard) -> None:
    page, _ = dashboard
    page.wait_for_function("""() => { const m = window.gridgovDashboard.map;
        return m.loaded() && m.queryRenderedFeatures({layers: ['areas-fill']}).length > 0; }""")
    classes = page.evaluate("""() => new Set(window.gridgovDashboard.map
        .queryRenderedFeatures({layers: ['areas-fill']}).map((f) => f.properties.klass)).size""")
    assert classes >= 3

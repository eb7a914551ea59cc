"""The analysis notebooks run top to bottom against this worker's test database (the demo city
with a year of cases) and their results are checked. Each notebook's last cell prints
``RESULTS {json}``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

pytestmark = pytest.mark.slow


def run(name: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("GRIDGOV_DB_NAME", db_name)  # the kernel inherits the environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    last = book.cells[-1]["outputs"]
    text = "".join(o.get("text", "") for o in last if o.get("output_type") == "stream")
    line = next(t for t in text.splitlines() if t.startswith("RESULTS "))
    outputs = [o for c in book.cells if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return json.loads(line.removeprefix("RESULTS "))


def test_hotspots_notebook(db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("01-hotspots.ipynb", db_name, monkeypatch)
    assert r["grids"] == 39 and r["hot"] >= 1 and r["top_z"] > 1.64
    assert r["cases"] > 3000 and r["steps"] >= 12


def test_coverage_gaps_notebook(db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("02-coverage-gaps.ipynb", db_name, monkeypatch)
    assert 0 < r["share_walk"] <= 1 and 0 < r["share_straight"] <= 1
    assert r["sites"] == 3 and 0 < r["gained"] <= r["uncovered_walk"]
    assert 0 < r["camera_share"] < 1


def test_grid_workload_notebook(db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("03-grid-workload.ipynb", db_name, monkeypatch)
    assert r["grids"] == 39 and 0 < r["gini"] < 1 and r["cases"] > 3000


def test_kpis_notebook(db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("04-kpis.ipynb", db_name, monkeypatch)
    assert r["rollup_equals_direct"] is True and 0 < r["on_time_rate"] < r["closure_rate"] <= 1
    assert r["months"] >= 12


def test_snow_1854_notebook_broad_street_pump_has_by_far_the_most_deaths(
        db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("05-snow-1854.ipynb", db_name, monkeypatch)
    assert r["addresses"] == 324 and r["deaths"] > 300 and r["pumps"] == 13
    assert r["broad_street_deaths"] > 3 * r["second_most"]
    assert r["broad_share"] > 0.6

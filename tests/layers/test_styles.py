"""MapLibre styles: valid by MapLibre's own validator, local sources only, shared palette."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from layers.registry import REGISTRY
from layers.styles import PALETTE, STYLES, build_style

STYLE_SPEC = "@maplibre/maplibre-gl-style-spec@26.6.0"


@pytest.fixture(scope="session")
def gl_style_validate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MapLibre's ``gl-style-validate``, installed once with npm (pinned) into a cache folder
    (``GRIDGOV_NODE_TOOLS`` or ~/.cache/gridgov-node)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    folder = Path(os.environ.get("GRIDGOV_NODE_TOOLS",
                                 Path.home() / ".cache" / "gridgov-node"))
    tool = folder / "node_modules" / ".bin" / "gl-style-validate"
    if not tool.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                        "--silent", STYLE_SPEC], check=True, capture_output=True, timeout=300)
    return tool


@pytest.mark.parametrize("name", STYLES)
def test_style_passes_the_maplibre_validator(gl_style_validate: Path, tmp_path: Path,
                                             name: str) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(build_style(name, "http://127.0.0.1:8000/")))
    done = subprocess.run([str(gl_style_validate), str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_validator_catches_a_broken_style(gl_style_validate: Path, tmp_path: Path) -> None:
    style = build_style("default", "http://127.0.0.1:8000/")
    style["layers"][1]["paint"]["line-width"] = "wide"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(style))
    assert subprocess.run([str(gl_style_validate), str(path)], capture_output=True).returncode


@pytest.mark.parametrize("name", STYLES)
def test_style_fetches_nothing_outside_the_app(name: str) -> None:
    style = build_style(name, "http://127.0.0.1:8000/")
    assert "glyphs" not in style and "sprite" not in style
    assert all(layer["type"] in ("background", "fill", "line", "circle")
               for layer in style["layers"])
    urls = [s["url"] for s in style["sources"].values()]
    assert urls and all(u.startswith("http://127.0.0.1:8000/tiles/") for u in urls)


def test_default_style_draws_every_layer_and_public_hides_staff() -> None:
    default = build_style("default", "http://x/")
    drawn = {layer["source-layer"] for layer in default["layers"] if "source-layer" in layer}
    assert drawn == set(REGISTRY) | {"cases_agg"}
    public = build_style("public", "http://x/")
    assert "responders" not in public["sources"]


def test_style_colours_come_from_the_palette() -> None:
    text = json.dumps(build_style("default", "http://x/"))
    assert PALETTE["levels"]["grids"] in text and PALETTE["cases"]["overdue"] in text


def test_every_facility_type_has_its_own_colour() -> None:
    """A facility type the demo or an import can produce never falls back to the grey default."""
    from gis.demo.assets import FACILITY_TYPES

    assert set(FACILITY_TYPES) <= set(PALETTE["facilities"])
    colours = [PALETTE["facilities"][t] for t in FACILITY_TYPES]
    assert PALETTE["facility_other"] not in colours


def test_style_endpoint_uses_the_request_host(client: TestClient) -> None:
    body = client.get("/styles/command.json").json()
    assert body["sources"]["cases"]["url"] == "http://testserver/tiles/cases.json"
    assert body["layers"][0]["paint"]["background-color"] == "#0b1021"

"""The real app on a loopback port, read by independent clients: GDAL's OGC API Features
driver (ogrinfo, ogr2ogr with paging) and GDAL's MVT driver; and a committed edit reaching the
served tile within a second.

The data is committed (a separate server cannot see a test transaction) and removed after.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mapbox_vector_tile
import pytest
import uvicorn
from sqlalchemy import Engine, text

from gis.settings import DatabaseSettings
from tests.factories import X0, Y0, TinyCity
from tests.layers.mapdata import GRID_TILE, add_case, add_categories, map_city

CODE = "TEST-LIVE"
EXTRA_CASES = 18  # with the 5 of map_city: 23 cases, 5 pages of 5
SPAT = (X0 - 0.001, Y0 - 0.001, X0 + 0.041, Y0 + 0.021)

pytestmark = pytest.mark.skipif(shutil.which("ogrinfo") is None,
                                reason="GDAL command line tools (gdal-bin) not installed")


@dataclass
class Live:
    url: str
    engine: Engine
    jurisdiction_id: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cleanup(engine: Engine) -> None:
    with engine.begin() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": CODE}).scalar()
        if jid is None:
            return
        for table in ("cases", "facilities", "responders", "areas", "area_levels"):
            conn.execute(text(f"DELETE FROM {table} WHERE jurisdiction_id = :j"), {"j": jid})
        conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), {"j": jid})


@pytest.fixture(scope="module")
def live(db_settings: DatabaseSettings, db_name: str, engine: Engine) -> Iterator[Live]:
    from api.app import create_app

    _cleanup(engine)
    with engine.begin() as conn:
        city = map_city(conn, code=CODE)
        cats = add_categories(conn)
        for i in range(EXTRA_CASES):
            add_case(conn, city.city.jurisdiction_id, cats["E990101"],
                     X0 + 0.001 + i * 0.002, Y0 + 0.001 + (i % 9) * 0.002)
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}", engine, city.city.jurisdiction_id)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        _cleanup(engine)


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _count_in_spat(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), dict(zip(("x0", "y0", "x1", "y1"), SPAT,
                                                    strict=True))).scalar_one())


def test_ogrinfo_lists_the_collections(live: Live) -> None:
    out = _run("ogrinfo", "-ro", "-q", f"OAPIF:{live.url}/ogc")
    for name in ("grids", "cases", "facilities", "districts"):
        assert f": {name} " in out or f": {name}\n" in out or f" {name} (" in out, out
    assert "responders" not in out


@pytest.mark.parametrize(("collection", "page", "sql"), [
    ("cases", 5, "SELECT count(*) FROM cases WHERE ST_Intersects(geom,"
              " ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"),
    ("grids", 2, "SELECT count(*) FROM areas WHERE level = 3 AND valid_to IS NULL AND"
              " ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"),
])
def test_ogr2ogr_pulls_every_feature_page_by_page(live: Live, tmp_path: Path, collection: str,
                                                  page: int, sql: str) -> None:
    out = tmp_path / f"{collection}.geojson"
    _run("ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{live.url}/ogc", collection,
         "-oo", f"PAGE_SIZE={page}", "-spat", *map(str, SPAT), "--config", "CPL_DEBUG", "OFF")
    features = json.loads(out.read_text())["features"]
    assert len(features) == _count_in_spat(live.engine, sql) > page
    assert len({f["properties"].get("id", i) for i, f in enumerate(features)}) == len(features)
    assert all("reporter_contact" not in f["properties"] for f in features)


def test_gdal_mvt_driver_reads_a_served_tile(live: Live, tmp_path: Path) -> None:
    t = GRID_TILE
    content = httpx.get(f"{live.url}/tiles/grids/{t.z}/{t.x}/{t.y}.mvt").content
    path = tmp_path / str(t.z) / str(t.x) / f"{t.y}.mvt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    out = _run("ogrinfo", "-ro", "-al", "-so", str(path))
    assert "Layer name: grids" in out
    count = len(mapbox_vector_tile.decode(content)["grids"]["features"])
    assert f"Feature Count: {count}" in out
    extent = next(line for line in out.splitlines() if line.startswith("Extent:"))
    assert "(1113" in extent  # EPSG:3857 easting of ~10°E


def test_committed_edit_reaches_the_served_tile_within_a_second(live: Live) -> None:
    t = GRID_TILE
    url = f"{live.url}/tiles/grids/{t.z}/{t.x}/{t.y}.mvt"
    etag = httpx.get(url).headers["etag"]
    with live.engine.begin() as conn:
        conn.execute(text("UPDATE areas SET name = 'Live edit' WHERE jurisdiction_id = :j"
                          " AND code = :c AND valid_to IS NULL"),
                     {"j": live.jurisdiction_id, "c": TinyCity.grid_code(1, 1)})
    start = time.monotonic()
    while True:
        r = httpx.get(url, headers={"If-None-Match": etag})
        if r.status_code == 200:
            names = {f["properties"]["name"] for f in
                     mapbox_vector_tile.decode(r.content)["grids"]["features"]}
            if "Live edit" in names:
                break
        assert time.monotonic() - start < 1.0, "edit not served within 1 s"
        time.sleep(0.02)


def test_head_over_real_http_gives_the_gets_headers_and_no_body(live: Live) -> None:
    t = GRID_TILE
    for path in (f"/tiles/grids/{t.z}/{t.x}/{t.y}.mvt", "/ogc/collections/grids"):
        got = httpx.get(live.url + path)
        head = httpx.head(live.url + path)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers.get("etag") == got.headers.get("etag")


def test_committed_case_reaches_the_served_feature_page_within_a_second(live: Live) -> None:
    # The page is read on the read pool and cached; the commit must evict it (change log poll).
    url = f"{live.url}/ogc/collections/cases/items"
    params = {"bbox": ",".join(map(str, SPAT)), "limit": "5"}
    before = httpx.get(url, params=params).json()
    assert httpx.get(url, params=params).json()["features"] == before["features"]  # cached
    with live.engine.begin() as conn:
        new_id = add_case(conn, live.jurisdiction_id,
                          add_categories(conn)["E990102"], X0 + 0.0305, Y0 + 0.0105)
    start = time.monotonic()
    while True:
        page = httpx.get(url, params=params).json()
        if page["numberMatched"] == before["numberMatched"] + 1:
            break
        assert time.monotonic() - start < 1.0, "new case not served within 1 s"
        time.sleep(0.02)
    last = httpx.get(url, params={**params, "offset": str(page["numberMatched"] - 1)}).json()
    assert [f["id"] for f in last["features"]] == [new_id]  # ids page in order: it is last

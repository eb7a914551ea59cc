"""``GET /metrics``: Prometheus text with request counts and latency per route template, the
intake counter, pool and tile cache figures; exposure restricted to a token or loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection

from gis.settings import DatabaseSettings, MetricsSettings
from tests.factories import CaseWorld, case_world
from tests.ops.apps import app_client

TOKEN = "a-long-random-metrics-token-0123456789"


@pytest.fixture
def scraped(conn: Connection, db_settings: DatabaseSettings) -> Iterator[TestClient]:
    with app_client(conn, db_settings, metrics_settings=MetricsSettings(token=TOKEN)) as c:
        yield c


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def value(found: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_and_status(scraped: TestClient) -> None:
    for code in ("nope1", "nope2", "nope3"):
        assert scraped.get(f"/api/areas/{code}").status_code == 404
    found = samples(scraped)
    assert value(found, "gridgov_http_requests_total", method="GET", route="/api/areas/{code}",
                 status="404") == 3
    assert not any("nope1" in str(labels) for _, labels in found)
    assert value(found, "gridgov_http_request_duration_seconds_count", method="GET",
                 route="/api/areas/{code}") == 3


def test_unknown_paths_share_one_label(scraped: TestClient) -> None:
    scraped.get("/no/such/thing")
    assert value(samples(scraped), "gridgov_http_requests_total", method="GET",
                 route="unmatched", status="404") == 1


def test_case_intake_is_counted_by_outcome(scraped: TestClient, conn: Connection) -> None:
    world: CaseWorld = case_world(conn)
    lon, lat = world.point(1, 1)
    report = {"category": "E010101", "lon": lon, "lat": lat, "description": "x"}
    assert scraped.post("/api/cases", json=report).status_code == 201
    assert scraped.post("/api/cases", json={**report, "lon": 500}).status_code == 422
    found = samples(scraped)
    assert value(found, "gridgov_cases_intake_total", endpoint="api", outcome="created") == 1
    assert value(found, "gridgov_cases_intake_total", endpoint="api", outcome="refused") == 1


def test_pool_and_tile_cache_figures_are_exposed(scraped: TestClient) -> None:
    scraped.get("/tiles/grids/12/2331/1186.mvt")
    scraped.get("/tiles/grids/12/2331/1186.mvt")
    found = samples(scraped)
    assert value(found, "gridgov_db_pool_size") >= 1
    assert value(found, "gridgov_tile_cache_hits_total") >= 1
    assert value(found, "gridgov_tile_cache_misses_total") >= 1
    assert value(found, "gridgov_http_requests_in_flight") == 1  # the scrape itself


def test_feature_page_cache_figures_are_exposed(scraped: TestClient) -> None:
    for _ in range(2):
        assert scraped.get("/ogc/collections/grids/items",
                           params={"bbox": "116.38,39.9,116.40,39.91"}).status_code == 200
    found = samples(scraped)
    assert value(found, "gridgov_page_cache_misses_total") >= 1
    assert value(found, "gridgov_page_cache_hits_total") >= 1
    assert value(found, "gridgov_page_cache_entries") >= 1
    assert value(found, "gridgov_page_cache_bytes") > 0


def test_a_wrong_token_is_refused(scraped: TestClient) -> None:
    r = scraped.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and "GRIDGOV_METRICS_TOKEN" in r.json()["detail"]


@pytest.mark.parametrize(("host", "status"), [("127.0.0.1", 200), ("::1", 200),
                                              ("203.0.113.7", 403), ("testclient", 403)])
def test_without_a_token_only_allowed_networks_may_scrape(
        conn: Connection, db_settings: DatabaseSettings, host: str, status: int) -> None:
    with app_client(conn, db_settings, client_host=host,
                    metrics_settings=MetricsSettings()) as c:
        assert c.get("/metrics").status_code == status


def test_metrics_can_be_switched_off(conn: Connection, db_settings: DatabaseSettings) -> None:
    with app_client(conn, db_settings, client_host="127.0.0.1",
                    metrics_settings=MetricsSettings(enabled=False)) as c:
        assert c.get("/metrics").status_code == 404

"""HTTP: ``/api/stats/areas``, ``/api/stats/levels`` and ``/api/search`` — content, headers,
bad input, and no private case field in what the public gets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.factories import DISTRICT, CaseWorld, case_world
from tests.gis.test_stats import add_case

S1, S2 = f"{DISTRICT}001", f"{DISTRICT}002"


@pytest.fixture
def world(conn: Connection) -> CaseWorld:
    return case_world(conn, code="TEST-STAPI")


def test_counts_per_street(client: TestClient, conn: Connection, world: CaseWorld) -> None:
    add_case(conn, world.city, world.city.grid_code(1, 1), due=-timedelta(days=400))
    add_case(conn, world.city, world.city.grid_code(2, 2), due=timedelta(days=400))
    r = client.get("/api/stats/areas", params={"level": "street",
                                               "jurisdiction": "TEST-STAPI"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert {a["code"]: (a["open"], a["overdue"]) for a in body["areas"]} == {
        S1: (1, 1), S2: (1, 0)}
    assert body["totals"]["open"] == 2
    assert [c["id"] for c in body["overdue_cases"]] != []


def test_children_of_an_area(client: TestClient, world: CaseWorld) -> None:
    r = client.get("/api/stats/areas", params={"parent": f"{S2}001"})
    assert r.status_code == 200
    body = r.json()
    assert [a["code"] for a in body["areas"]] == [world.city.grid_code(2, g) for g in (1, 2)]
    assert body["parent"]["code"] == f"{S2}001"
    assert [a["code"] for a in body["parent"]["ancestors"]] == [DISTRICT, S2]


def test_public_gets_no_private_case_field(client: TestClient, conn: Connection,
                                           world: CaseWorld) -> None:
    add_case(conn, world.city, world.city.grid_code(1, 1), due=-timedelta(days=400),
             contact="+86 10 5555 0000")
    r = client.get("/api/stats/areas", params={"parent": S1})
    assert "+86 10 5555 0000" not in r.text and "private words" not in r.text
    assert r.json()["overdue_cases"][0]["category"] == "E010101"


@pytest.mark.parametrize(("params", "field"), [
    ({"level": "ward"}, "level"),
    ({"level": "1; DROP TABLE cases"}, "level"),
    ({"parent": "no-such-area"}, "parent"),
    ({"level": "street", "parent": S1}, "level"),
    ({"overdue_limit": "101"}, "overdue_limit"),
    ({"overdue_limit": "many"}, "overdue_limit"),
    ({"jurisdiction": "NOPE"}, "jurisdiction"),
    ({"level": "x" * 41}, "level"),
])
def test_bad_input_is_422_naming_the_field(client: TestClient, world: CaseWorld, params: dict,
                                           field: str) -> None:
    r = client.get("/api/stats/areas", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_levels_summary(client: TestClient, world: CaseWorld) -> None:
    r = client.get("/api/stats/levels", params={"jurisdiction": "TEST-STAPI"})
    assert r.status_code == 200
    body = r.json()
    assert [lv["name"] for lv in body["levels"]] == ["district", "street", "community", "grid"]
    assert [lv["count"] for lv in body["levels"]] == [1, 2, 2, 4]
    assert len(body["bbox"]) == 4
    assert client.get("/api/stats/levels", params={"jurisdiction": "NOPE"}).status_code == 422


def test_search_finds_areas_by_name(client: TestClient, world: CaseWorld) -> None:
    r = client.get("/api/search", params={"q": "Grid 2-1"})
    assert r.status_code == 200
    first = r.json()["areas"][0]
    assert (first["code"], first["level_name"]) == (world.city.grid_code(2, 1), "grid")


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 101}, {"q": "a", "limit": "0"},
                                    {"q": "a", "limit": "51"}])
def test_search_bad_input_is_422(client: TestClient, params: dict) -> None:
    r = client.get("/api/search", params=params)
    assert r.status_code == 422
    assert r.json()["field"] in ("q", "limit")

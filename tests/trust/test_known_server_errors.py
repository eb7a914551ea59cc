"""Server errors the fuzzing found in modules the trust work does not own, reproduced exactly.
An open one is a strict expected failure until its module is fixed (a fix turns it into a
failure here, which says to remove the mark and the entry from
``test_schemathesis.KNOWN_SERVER_ERRORS``); a fixed one stays as a plain regression test."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection

from tests.factories import account


def _admin(conn: Connection) -> dict[str, str]:
    _, token = account(conn, "admin")
    return {"Authorization": f"Bearer {token}"}


# Fixed: create_responder inserted an unknown jurisdiction_id (FK violation → 500).
@pytest.mark.parametrize("jid", [False, 0, 987654321])
def test_new_responder_in_an_unknown_jurisdiction_is_422(client: Any, conn: Connection,
                                                         jid: Any) -> None:
    r = client.post("/api/responders", headers=_admin(conn),
                    json={"name": "fuzz", "jurisdiction_id": jid})
    assert r.status_code == 422 and r.json()["field"] == "jurisdiction_id"


# Fixed: audit `since`/`until` with offsets PostgreSQL refuses, and offsets beyond bigint.
@pytest.mark.parametrize("params", [{"since": "1270-07-30T17:50:02.8-21:03"},
                                    {"offset": str(10**30)}])
def test_audit_odd_parameters_are_answered(client: Any, conn: Connection,
                                           params: dict[str, str]) -> None:
    r = client.get("/api/audit", headers=_admin(conn), params=params)
    assert r.status_code in (200, 422)


# Fixed: a line with a non-finite coordinate reached shapely's distance() (GEOSException → 500).
def test_split_with_an_infinite_line_is_422(client: Any, conn: Connection) -> None:
    bad = float("inf")  # (NaN and -inf are refused as they should be)
    import json

    _, token = account(conn, "planner")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    plan = client.post("/api/plans", json={"root": "910102002002"}, headers=headers).json()
    grid = client.get(f"/api/plans/{plan['id']}/areas", params={"level": 3},
                      headers=headers).json()["features"][0]
    body = {"line": {"type": "LineString", "coordinates": [[0.0, 61.0], [bad, 0.0]]}}
    r = client.post(f"/api/plans/{plan['id']}/areas/{grid['id']}/split", headers=headers,
                    content=json.dumps(body))
    assert r.status_code == 422 and r.json()["field"] == "line"


# Fixed: responder ids beyond bigint reached SQL (NumericValueOutOfRange → 500).
def test_position_of_a_responder_id_beyond_bigint_is_answered(client: Any,
                                                              conn: Connection) -> None:
    r = client.put(f"/api/responders/{10**22}/position", headers=_admin(conn),
                   json={"lon": 24.94, "lat": 60.17})
    assert r.status_code in (404, 422)

"""Server errors the fuzzing found in modules the trust work does not own, reproduced exactly.
Each is an expected failure until its module is fixed (strict: a fix turns it into a failure
here, which says to remove the entry from ``test_schemathesis.KNOWN_SERVER_ERRORS``)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection

from tests.factories import account


def _admin(conn: Connection) -> dict[str, str]:
    _, token = account(conn, "admin")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.xfail(strict=True, reason="api/routes/responders.py + gis/dispatch.py:"
                   " create_responder inserts an unknown jurisdiction_id (FK violation → 500)")
@pytest.mark.parametrize("jid", [False, 0, 987654321])
def test_new_responder_in_an_unknown_jurisdiction_is_422(client: Any, conn: Connection,
                                                         jid: Any) -> None:
    r = client.post("/api/responders", headers=_admin(conn),
                    json={"name": "fuzz", "jurisdiction_id": jid})
    assert r.status_code == 422 and r.json()["field"] == "jurisdiction_id"


@pytest.mark.xfail(strict=True, reason="api/routes/audit.py: `since`/`until` with an offset"
                   " PostgreSQL refuses (-21:03) reach SQL as is (DataError → 500; convert"
                   " with api.schemas.utc(value, field) as the other routes do), and an"
                   " offset beyond bigint too (declare Query(le=...))")
@pytest.mark.parametrize("params", [{"since": "1270-07-30T17:50:02.8-21:03"},
                                    {"offset": str(10**30)}])
def test_audit_odd_parameters_are_answered(client: Any, conn: Connection,
                                           params: dict[str, str]) -> None:
    r = client.get("/api/audit", headers=_admin(conn), params=params)
    assert r.status_code in (200, 422)


@pytest.mark.xfail(strict=True, reason="gis/planning/geometry.py split/check_line: a line with"
                   " a non-finite coordinate reaches shapely's distance() (GEOSException → 500);"
                   " check_line should refuse it as field `line`")
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


@pytest.mark.xfail(strict=True, reason="api/routes/responders.py: responder ids beyond bigint"
                   " reach SQL (NumericValueOutOfRange → 500); declare Path(le=2**63 - 1)")
def test_position_of_a_responder_id_beyond_bigint_is_answered(client: Any,
                                                              conn: Connection) -> None:
    r = client.put(f"/api/responders/{10**22}/position", headers=_admin(conn),
                   json={"lon": 24.94, "lat": 60.17})
    assert r.status_code in (404, 422)

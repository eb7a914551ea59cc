"""The audit log: admin actions through the API and the CLI are recorded with actor, target,
details and request id; ``GET /api/audit`` pages and filters it; the table is append-only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gis import audit
from tests.factories import account


@pytest.fixture
def admin(conn: Connection) -> dict[str, Any]:
    principal, token = account(conn, "admin", name="audit-admin")
    return {"principal": principal, "headers": {"Authorization": f"Bearer {token}"}}


def entries(client: TestClient, admin: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/audit", params=params, headers=admin["headers"])
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def test_account_creation_and_revocation_are_recorded(client: TestClient,
                                                      admin: dict[str, Any]) -> None:
    r = client.post("/api/users", json={"name": "new-clerk", "role": "call_taker"},
                    headers={**admin["headers"], "X-Request-ID": "req-create-1"})
    assert r.status_code == 201
    assert client.delete("/api/users/new-clerk/tokens", headers=admin["headers"]).status_code == 200
    made, revoked = (entries(client, admin, action=a)[0] for a in ("user.create", "user.revoke"))
    assert made["actor_name"] == "audit-admin" and made["actor_role"] == "admin"
    assert made["target"] == "new-clerk" and made["details"]["role"] == "call_taker"
    assert made["request_id"] == "req-create-1"
    assert revoked["details"] == {"revoked": 1}


def test_configuration_edits_are_recorded(client: TestClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    assert client.patch("/api/categories/E010101", json={"urgency": 3}, headers=h).is_success
    assert client.put("/api/calendar/days/2031-05-01", json={"working": False, "name": "May"},
                      headers=h).is_success
    assert client.put("/api/kpis/targets/closure_rate", json={"target": 0.9},
                      headers=h).is_success
    found = {e["action"]: e for e in entries(client, admin)}
    assert found["category.update"]["details"] == {"urgency": 3}
    assert found["calendar.set"]["target"] == "2031-05-01"
    assert found["kpi_target.update"]["details"] == {"target": 0.9}


def test_the_log_filters_by_actor_action_prefix_and_time(client: TestClient, conn: Connection,
                                                         admin: dict[str, Any]) -> None:
    other, _ = account(conn, "admin", name="other-admin")
    audit.record(conn, other, "user.disable", target="x")
    audit.record(conn, admin["principal"], "category.update", target="E010101")
    assert {e["actor_name"] for e in entries(client, admin, actor="other-admin")} == {
        "other-admin"}
    assert {e["action"] for e in entries(client, admin, action="user.*")} == {"user.disable"}
    assert entries(client, admin, since="2999-01-01T00:00:00Z") == []
    page = client.get("/api/audit", params={"limit": 1}, headers=admin["headers"]).json()
    assert len(page["entries"]) == 1 and page["total"] >= 2


@pytest.mark.parametrize("role", ["planner", "supervisor", "analyst"])
def test_only_admins_read_the_log(client: TestClient, conn: Connection, role: str) -> None:
    _, token = account(conn, role)
    assert client.get("/api/audit", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 403
    assert client.get("/api/audit").status_code == 401


def test_bad_paging_is_a_422_naming_the_field(client: TestClient, admin: dict[str, Any]) -> None:
    r = client.get("/api/audit", params={"limit": 0}, headers=admin["headers"])
    assert r.status_code == 422 and r.json()["field"] == "limit"


def test_secrets_never_enter_the_log(conn: Connection, admin: dict[str, Any]) -> None:
    audit.record(conn, admin["principal"], "user.token", target="a",
                 details={"token": "ggt_secret", "nested": {"api_key": "k", "ok": 1}})
    details = conn.execute(text("SELECT details FROM audit_log ORDER BY id DESC LIMIT 1")
                           ).scalar_one()
    assert details == {"token": "[redacted]", "nested": {"api_key": "[redacted]", "ok": 1}}


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET action = 'user.enable'",
                                       "DELETE FROM audit_log", "TRUNCATE audit_log"])
def test_the_log_is_append_only(conn: Connection, admin: dict[str, Any], statement: str) -> None:
    audit.record(conn, admin["principal"], "user.create", target="t")
    with pytest.raises(DBAPIError, match="append-only"), conn.begin_nested():
        conn.execute(text(statement))


def test_cli_user_commands_are_recorded_as_the_cli(conn: Connection, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    import argparse
    from contextlib import contextmanager

    from api import cli_cases

    @contextmanager
    def in_test_transaction():  # type: ignore[no-untyped-def]
        yield conn

    monkeypatch.setattr(cli_cases, "_transaction", in_test_transaction)
    args = argparse.Namespace(action="add", name="cli-made", role="analyst", area=None,
                              department=None, jurisdiction=None, expires_days=None)
    assert cli_cases.cmd_users(args) == 0
    args.action = "revoke"
    assert cli_cases.cmd_users(args) == 0
    rows = conn.execute(text("SELECT actor_name, actor_role, action, target FROM audit_log"
                             " WHERE target = 'cli-made' ORDER BY id")).all()
    assert [(r.actor_role, r.action) for r in rows] == [("cli", "user.create"),
                                                        ("cli", "user.revoke")]
    assert all(r.actor_name.startswith("cli") for r in rows)


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "1270-07-30T17:50:02.8-21:03"}, None),  # offset PostgreSQL refuses: converted
    ({"offset": str(10**30)}, "offset"),
])
def test_odd_audit_parameters_are_answered_not_500(client: TestClient, conn: Connection,
                                                   params: dict[str, str],
                                                   field: str | None) -> None:
    _, token = account(conn, "admin")
    r = client.get("/api/audit", params=params, headers={"Authorization": f"Bearer {token}"})
    if field is None:
        assert r.status_code == 200
    else:
        assert r.status_code == 422 and r.json()["field"] == field

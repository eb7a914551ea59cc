"""Accounts, tokens (SHA-256 only, expiry, revocation) and scope by area subtree/department."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from gis import auth
from gis.categories import seed_departments
from gis.errors import Conflict, InvalidInput
from tests.factories import DISTRICT, TinyCity, account, tiny_city_at


@pytest.fixture
def city(conn: Connection) -> TinyCity:
    seed_departments(conn)
    return tiny_city_at(conn)


def test_token_is_stored_only_as_its_sha256(conn: Connection, city: TinyCity) -> None:
    _, token = account(conn, "dispatcher")
    stored = conn.execute(text("SELECT token_sha256 FROM api_tokens")).scalars().all()
    assert auth.hash_token(token) in stored and token not in stored
    assert token.startswith(auth.TOKEN_PREFIX)


def test_valid_token_gives_role_and_scope(conn: Connection, city: TinyCity) -> None:
    street = f"{DISTRICT}001"
    principal, token = account(conn, "grid_worker", areas=(street,))
    assert auth.authenticate(conn, token) == principal
    assert principal.role == "grid_worker" and principal.scope_codes == (street,)


def test_no_token_is_the_public(conn: Connection) -> None:
    assert auth.authenticate(conn, None) == auth.PUBLIC and auth.PUBLIC.is_public


def test_unknown_token_is_unauthorized(conn: Connection) -> None:
    with pytest.raises(auth.Unauthorized, match="unknown token"):
        auth.authenticate(conn, "ggt_not-a-real-token")


def test_expired_token_is_unauthorized_naming_the_time(conn: Connection, city: TinyCity) -> None:
    _, token = account(conn, "analyst", expires_in=timedelta(hours=1))
    auth.authenticate(conn, token)
    with pytest.raises(auth.Unauthorized, match="expired at"):
        auth.authenticate(conn, token, now=datetime.now(UTC) + timedelta(hours=2))


def test_revoked_token_and_disabled_account_are_unauthorized(conn: Connection,
                                                             city: TinyCity) -> None:
    p1, t1 = account(conn, "analyst")
    auth.revoke_tokens(conn, p1.user_id or 0)
    with pytest.raises(auth.Unauthorized, match="revoked"):
        auth.authenticate(conn, t1)
    p2, t2 = account(conn, "planner")
    auth.set_active(conn, p2.user_id or 0, False)
    with pytest.raises(auth.Unauthorized, match="disabled"):
        auth.authenticate(conn, t2)


@pytest.mark.parametrize(("role", "kwargs", "field"), [
    ("chief", {}, "role"),
    ("public", {}, "role"),
    ("grid_worker", {"area_codes": ["nope"]}, "area"),
    ("dispatcher", {"department": "NOPE"}, "department"),
    ("handler", {}, "department"),
    ("reporter", {"department": "WATER"}, "role"),
])
def test_create_user_rejects_bad_input_naming_the_field(conn: Connection, city: TinyCity,
                                                        role: str, kwargs: dict,
                                                        field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        auth.create_user(conn, "someone", role, **kwargs)
    assert info.value.field == field


def test_account_names_are_unique(conn: Connection, city: TinyCity) -> None:
    auth.create_user(conn, "same", "analyst")
    with pytest.raises(Conflict):
        auth.create_user(conn, "same", "planner")


def test_require_role_refuses_public_with_401_and_staff_with_403(conn: Connection,
                                                                city: TinyCity) -> None:
    with pytest.raises(auth.Unauthorized):
        auth.require_role(auth.PUBLIC, ("admin",), "do it")
    analyst, _ = account(conn, "analyst")
    with pytest.raises(auth.Forbidden, match="role analyst may not do it"):
        auth.require_role(analyst, ("admin",), "do it")


def test_area_scope_is_the_subtree_of_the_scope_area(conn: Connection, city: TinyCity) -> None:
    worker, _ = account(conn, "grid_worker", areas=(f"{DISTRICT}001",))
    inside = city.ids[TinyCity.grid_code(1, 2)]
    outside = city.ids[TinyCity.grid_code(2, 1)]
    assert auth.area_in_scope(conn, worker, inside)
    assert not auth.area_in_scope(conn, worker, outside)


def test_create_demo_accounts_writes_one_token_per_role_mode_0600(conn: Connection,
                                                                  city: TinyCity,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "demo-tokens.json"
    result = auth.create_demo_accounts(conn, out, jurisdiction_id=city.jurisdiction_id)
    assert result["path"] == str(out) and stat.S_IMODE(out.stat().st_mode) == 0o600
    accounts = json.loads(out.read_text())["accounts"]
    assert set(accounts) == set(auth.ROLES)
    grid_worker = auth.authenticate(conn, accounts["grid_worker"]["token"])
    assert grid_worker.scope_codes == (f"{DISTRICT}001",)
    assert auth.authenticate(conn, accounts["handler"]["token"]).department_code == "SANITATION"


def test_create_demo_accounts_again_revokes_the_old_tokens(conn: Connection, city: TinyCity,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    auth.create_demo_accounts(conn, out, jurisdiction_id=city.jurisdiction_id)
    old = json.loads(out.read_text())["accounts"]["admin"]["token"]
    auth.create_demo_accounts(conn, out, jurisdiction_id=city.jurisdiction_id)
    with pytest.raises(auth.Unauthorized, match="revoked"):
        auth.authenticate(conn, old)

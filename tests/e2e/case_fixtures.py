"""Committed data for the report-page and case-list browser tests, and its clean-up.

The browser talks to a real server on its own connections, so what it must see is committed;
everything made here is deleted again (cases before the e2e city's areas, accounts last).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from gis.auth import authenticate, create_user, issue_token
from tests.e2e.conftest import CITY_CODE


@dataclass
class Accounts:
    """Accounts made for a test module: role → (name, token)."""

    tokens: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)

    def add(self, conn: Connection, role: str, *, department: str | None = None) -> str:
        name = f"e2e-{role}-{secrets.token_hex(3)}"
        uid = create_user(conn, name, role, department=department)
        self.tokens[role], self.names[role] = issue_token(conn, uid), name
        self.ids.append(uid)
        return self.tokens[role]

    def principal(self, conn: Connection, role: str):
        return authenticate(conn, self.tokens[role])


def city_id(conn: Connection) -> int:
    return int(conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                            {"c": CITY_CODE}).scalar_one())


def purge_cases(engine: Engine, accounts: Accounts | None = None) -> None:
    """Delete the e2e city's cases (their append-only events need replica mode) and accounts."""
    with engine.begin() as conn:
        jid = conn.execute(text("SELECT id FROM jurisdictions WHERE code = :c"),
                           {"c": CITY_CODE}).scalar()
        ids = [] if accounts is None else accounts.ids
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM case_events WHERE case_id IN (SELECT id FROM cases WHERE"
                          " jurisdiction_id = :j) OR actor_id = ANY(:u)"), {"j": jid, "u": ids})
        conn.execute(text("SET LOCAL session_replication_role = origin"))
        conn.execute(text("DELETE FROM case_summons WHERE case_id IN"
                          " (SELECT id FROM cases WHERE jurisdiction_id = :j)"), {"j": jid})
        # One row per statement: the live-feed NOTIFY trigger on cases (0002_dispatch) can
        # overflow its payload limit when one DELETE removes many cases.
        for (case_id,) in conn.execute(text(
                "SELECT id FROM cases WHERE jurisdiction_id = :j OR reporter_id = ANY(:u)"
                " ORDER BY id DESC"), {"j": jid, "u": ids}).all():
            conn.execute(text("DELETE FROM cases WHERE id = :c"), {"c": case_id})
        conn.execute(text("DELETE FROM api_tokens WHERE user_id = ANY(:u)"), {"u": ids})
        conn.execute(text("DELETE FROM users WHERE id = ANY(:u)"), {"u": ids})

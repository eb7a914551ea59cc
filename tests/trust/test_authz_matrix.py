"""Every API route × every role × inside/outside the account's area and department scope →
the outcome written in ``authz_table.py`` (the one table). A route of the app without an entry
fails ``test_every_route_has_an_entry``: a new endpoint must say who may use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection

from tests.trust.authz_table import (
    ALL_ROLES,
    ALLOW,
    ENTRIES,
    NOT_API,
    PASS,
    PRIVATE,
    PUBLIC,
    STAFF,
    Entry,
)
from tests.trust.conftest import cell
from tests.trust.world import World

# Keys that only staff in scope (or the reporter's own account) may ever receive.
PRIVATE_KEYS = frozenset({"reporter_contact", "media", "actor", "actor_role", "note", "data",
                          "tracking_sha256", "token_sha256", "idempotency_key", "reporter_id",
                          "tracking_token", "fingerprint"})
# Keys for staff only (whatever the scope).
STAFF_KEYS = frozenset({"routed_by", "responder_id", "in_scope"})


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD aside."""
    from api.app import create_app

    app = create_app()
    try:
        from fastapi.routing import iter_route_contexts

        contexts: Iterator[Any] = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI: routers are flattened into app.routes
        contexts = iter(app.routes)
    found: set[tuple[str, str]] = set()
    for route in contexts:
        path = getattr(route, "path", None)
        if path is None or path in NOT_API:
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, path))
    return found


def test_every_route_has_an_entry() -> None:
    routes = app_routes()
    table = {entry.key for entry in ENTRIES}
    missing = sorted(routes - table)
    stale = sorted(table - routes)
    assert not missing, f"routes without an entry in tests/trust/authz_table.py: {missing}"
    assert not stale, f"entries for routes the app no longer has: {stale}"


def test_every_entry_covers_every_role() -> None:
    for entry in ENTRIES:
        for role in ALL_ROLES:
            for target in entry.targets:
                assert entry.expect(role, target) is not None, (entry.name, role, target)


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _body(text: str) -> Any:
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            return None
    # Server-sent events: one JSON document per data line.
    docs = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return docs or None


def leaks(text: str, world: World, role: str) -> list[str]:
    """What in an answer is not for ``role`` when it should get the public view."""
    found = [f"secret {s[:12]}…" for s in world.secrets if s in text]
    forbidden = PRIVATE_KEYS | (frozenset() if role in STAFF else STAFF_KEYS)
    found += [f"key {k!r}" for k in set(_keys(_body(text))) & forbidden]
    return found


def judge(outcome: str, status: int, text: str, world: World, role: str, target: str
          ) -> str | None:
    """None when the answer is the expected outcome, else what is wrong."""
    if status >= 500:
        return f"server error {status}"
    ok2xx = 200 <= status < 300
    if outcome == ALLOW:
        return None if ok2xx else f"expected 2xx, got {status}"
    if outcome == PASS:
        return None if status not in (401, 403) else f"expected past the access check, got {status}"
    if outcome == PRIVATE:
        if not ok2xx:
            return f"expected 2xx with private fields, got {status}"
        contacts = {v for (t, _), c in world.cases.items() if t == target
                    for v in c.contact.values()}
        return None if any(v in text for v in contacts) else "private fields are missing"
    if outcome == PUBLIC:
        if not ok2xx:
            return f"expected 2xx (public view), got {status}"
        bad = leaks(text, world, role)
        return f"public view leaks {bad}" if bad else None
    return None if str(status) == outcome else f"expected {outcome}, got {status}"


def run_cell(client: Any, conn: Connection, world: World, entry: Entry, role: str,
             target: str) -> tuple[int, str]:
    with cell(conn):
        req = entry.build(world, role, target)
        if req.setup is not None:
            req.setup(conn, world)
        headers = {**world.headers(role), **req.headers}
        resp = client.request(entry.method, req.url, params=req.params, json=req.json,
                              data=req.data, files=req.files, content=req.content,
                              headers=headers)
        text = resp.text if not resp.headers.get("content-type", "").startswith(
            ("application/vnd.mapbox", "application/x-protobuf", "image/")) else ""
        return resp.status_code, text


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_matrix(entry: Entry, mclient: Any, mconn: Connection, world: World) -> None:
    wrong: list[str] = []
    known: list[str] = []
    fixed: list[str] = []
    for role in ALL_ROLES:
        for target in entry.targets:
            outcome = entry.expect(role, target)
            status, text = run_cell(mclient, mconn, world, entry, role, target)
            problem = judge(outcome, status, text, world, role, target)
            bug = entry.known_bug(role, target)
            where = f"{role} @ {target}: "
            if problem and bug:
                known.append(where + bug)
            elif problem:
                wrong.append(where + problem + (f" — {text[:200]}" if status >= 400 else ""))
            elif bug:
                fixed.append(where + "behaves as the table says now; remove its known_bug")
    assert not wrong, f"{entry.name}:\n" + "\n".join(wrong)
    assert not fixed, f"{entry.name}:\n" + "\n".join(fixed)
    if known:
        pytest.xfail("known bugs: " + "; ".join(sorted(set(known))))

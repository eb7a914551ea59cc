"""Responder positions are staff-only, also as tiles."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Connection

from tests.factories import account

TILE = "/tiles/responders/15/18653/9486.mvt"


def test_responder_tiles_refuse_the_public(client: TestClient) -> None:
    r = client.get(TILE)
    assert r.status_code == 401 and r.json()["field"] == "Authorization"


def test_responder_tiles_refuse_a_reporter(client: TestClient, conn: Connection) -> None:
    _, token = account(conn, "reporter")
    assert client.get(TILE, headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_responder_tiles_serve_a_dispatcher(client: TestClient, conn: Connection) -> None:
    _, token = account(conn, "dispatcher")
    r = client.get(TILE, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 204)

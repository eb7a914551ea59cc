"""The live feed over a real uvicorn server on loopback, read by a real streaming HTTP client.

The live feed reads committed changes only (``live_changes``), so these tests commit their rows
(a jurisdiction of their own, removed afterwards) instead of using the rolled-back ``conn``
fixture.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from api.app import create_app
from gis.areas import create_jurisdiction
from gis.auth import create_user, issue_token
from gis.dispatch import DispatchSettings
from gis.settings import DatabaseSettings


@dataclass
class Server:
    url: str
    jurisdiction_id: int
    code: str
    category_id: int


# A dispatcher's token: responders and their positions are staff-only.
AUTH: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(db_settings: DatabaseSettings, db_name: str, engine: Engine) -> Iterator[Server]:
    code = f"LIVE-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        jid = create_jurisdiction(conn, code=code, name="Live test", local_srid=25832)
        category = conn.execute(text(
            "INSERT INTO categories (code, kind, depth, name) VALUES (:code, 'event', 0,"
            " 'live test') RETURNING id"), {"code": code[-8:]}).scalar_one()
        user = create_user(conn, f"live-dispatcher-{code}", "dispatcher")
        AUTH["Authorization"] = f"Bearer {issue_token(conn, user)}"
    app = create_app(db_settings=db_settings.model_copy(update={"db_name": db_name}))
    app.state.dispatch_settings = DispatchSettings(live_heartbeat_s=0.5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", jid, code, int(category))
    finally:
        srv.should_exit = True
        thread.join(10)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM cases WHERE jurisdiction_id = :j"), {"j": jid})
            conn.execute(text("DELETE FROM categories WHERE code = :c"), {"c": code[-8:]})
            conn.execute(text("DELETE FROM responders WHERE jurisdiction_id = :j"), {"j": jid})
            conn.execute(text("DELETE FROM jurisdictions WHERE id = :j"), {"j": jid})
            conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user})


class Stream:
    """Reads an SSE stream on a thread; ``next(event)`` waits for the next event of a kind."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, *,
                 public: bool = False):
        self.events: queue.Queue[tuple[str, str | None, dict]] = queue.Queue()
        self.seen: list[tuple[str, str | None, dict]] = []
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        sent = dict(headers or {}) if public else {**AUTH, **(headers or {})}
        self._cm = self._client.stream("GET", url, headers=sent)
        self.response = self._cm.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name, ident, data = "message", None, ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    self.events.put((name, ident, json.loads(data)))
                    name, ident, data = "message", None, ""
        except httpx.HTTPError:
            pass

    def next(self, kind: str, *, timeout: float = 15.0,
             where: dict | None = None) -> tuple[str | None, dict]:
        """The first event of ``kind`` matching ``where``, seen earlier or arriving within
        ``timeout``; events that do not match stay available for later calls."""

        def matches(item: tuple[str, str | None, dict]) -> bool:
            name, _, data = item
            return name == kind and all(data.get(k) == v for k, v in (where or {}).items())

        for item in self.seen:
            if matches(item):
                self.seen.remove(item)
                return item[1], item[2]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {where or ''} event within {timeout} s")
            try:
                item = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if matches(item):
                return item[1], item[2]
            self.seen.append(item)

    def close(self) -> None:
        self.response.close()
        self._cm.__exit__(None, None, None)
        self._client.close()


@pytest.fixture
def stream(server: Server) -> Iterator[Stream]:
    s = Stream(f"{server.url}/api/live")
    assert s.response.status_code == 200
    assert s.response.headers["content-type"].startswith("text/event-stream")
    s.next("hello")
    yield s
    s.close()


def _responder(server: Server, name: str, status: str = "available") -> int:
    r = httpx.post(f"{server.url}/api/responders", headers=AUTH, json={
        "name": name, "status": status, "jurisdiction_id": server.jurisdiction_id})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_a_position_put_reaches_a_streaming_client(server: Server, stream: Stream) -> None:
    rid = _responder(server, "walker")
    r = httpx.put(f"{server.url}/api/responders/{rid}/position", headers=AUTH,
                  json={"lon": 10.001, "lat": 50.002})
    assert r.status_code == 200
    _, event = stream.next("responder", where={"id": rid, "changes": ["position"]})
    assert (event["lon"], event["lat"], event["status"]) == (10.001, 50.002, "available")


def test_status_change_and_batch_positions_are_streamed(server: Server, stream: Stream) -> None:
    a, b = _responder(server, "a"), _responder(server, "b")
    httpx.patch(f"{server.url}/api/responders/{a}", headers=AUTH, json={"status": "busy"})
    stream.next("responder", where={"id": a, "changes": ["status"], "status": "busy"})
    r = httpx.put(f"{server.url}/api/responders/positions", headers=AUTH, json={"positions": [
        {"id": a, "lon": 10.0, "lat": 50.0}, {"id": b, "lon": 10.1, "lat": 50.1}]})
    assert r.json()["moved"] == 2, r.text
    stream.next("responder", where={"id": a, "changes": ["position"]})
    stream.next("responder", where={"id": b, "changes": ["position"]})


def test_case_changes_are_streamed(server: Server, stream: Stream, engine: Engine) -> None:
    with engine.begin() as conn:
        cid = conn.execute(text(
            "INSERT INTO cases (jurisdiction_id, category_id, channel, geom)"
            " VALUES (:j, :c, 'hotline', ST_SetSRID(ST_MakePoint(10.0, 50.0), 4326))"
            " RETURNING id"), {"j": server.jurisdiction_id, "c": server.category_id}).scalar_one()
    _, event = stream.next("case", where={"id": cid, "op": "insert"})
    assert event["status"] == "reported" and "reporter_contact" not in event
    with engine.begin() as conn:
        conn.execute(text("UPDATE cases SET status = 'accepted' WHERE id = :id"), {"id": cid})
    stream.next("case", where={"id": cid, "op": "update", "status": "accepted"})


def test_heartbeats_keep_an_idle_stream_alive(stream: Stream) -> None:
    _, beat = stream.next("heartbeat", timeout=5)
    assert beat["listening"] is True


def test_last_event_id_replays_missed_events(server: Server, stream: Stream) -> None:
    rid = _responder(server, "resumer")
    ident, _ = stream.next("responder", where={"id": rid, "op": "insert"})
    httpx.patch(f"{server.url}/api/responders/{rid}", headers=AUTH, json={"status": "busy"})
    stream.next("responder", where={"id": rid, "changes": ["status"]})
    again = Stream(f"{server.url}/api/live", headers={"Last-Event-ID": str(ident)})
    try:
        _, event = again.next("responder", where={"id": rid})
        assert event["changes"] == ["status"]      # the one after `ident`, not `ident` itself
    finally:
        again.close()


def test_types_filter_and_unknown_type(server: Server) -> None:
    r = httpx.get(f"{server.url}/api/live", params={"types": "gossip"})
    assert r.status_code == 422 and r.json()["field"] == "types"
    cases_only = Stream(f"{server.url}/api/live?types=case")
    try:
        cases_only.next("hello")
        rid = _responder(server, "unseen")
        httpx.patch(f"{server.url}/api/responders/{rid}", headers=AUTH, json={"status": "busy"})
        _, beat = cases_only.next("heartbeat", timeout=5)
        time.sleep(0.5)
        kinds = [cases_only.events.get_nowait()[0] for _ in range(cases_only.events.qsize())]
        kinds += [name for name, _, _ in cases_only.seen]
        assert "responder" not in kinds
    finally:
        cases_only.close()


def test_a_batch_of_positions_streams_one_event_per_responder(server: Server,
                                                              stream: Stream) -> None:
    ids = [_responder(server, f"crew {i}") for i in range(60)]
    r = httpx.put(f"{server.url}/api/responders/positions", headers=AUTH, json={"positions": [
        {"id": i, "lon": 10.0 + n * 1e-4, "lat": 50.0} for n, i in enumerate(ids)]})
    assert r.json()["moved"] == 60
    for n, i in enumerate(ids):
        _, event = stream.next("responder", where={"id": i, "changes": ["position"]})
        assert event["lon"] == pytest.approx(10.0 + n * 1e-4)


def test_a_bulk_load_becomes_one_resync(server: Server, stream: Stream, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cases (jurisdiction_id, category_id, channel, geom)"
            " SELECT :j, :c, 'import', ST_SetSRID(ST_MakePoint(10.0, 50.0), 4326)"
            " FROM generate_series(1, 5001)"),
            {"j": server.jurisdiction_id, "c": server.category_id})
    _, event = stream.next("resync")
    assert event["kind"] == "case" and event["reason"] == "5001 case rows changed at once"


def test_the_public_never_sees_responder_positions(server: Server) -> None:
    public = httpx.Client(timeout=10)
    assert public.put(f"{server.url}/api/responders/positions",
                      json={"positions": []}).status_code == 401
    rid = _responder(server, "private walker")
    watcher = Stream(f"{server.url}/api/live", public=True)
    try:
        httpx.put(f"{server.url}/api/responders/{rid}/position", headers=AUTH,
                  json={"lon": 10.002, "lat": 50.003})
        watcher.next("heartbeat", timeout=5)
        watcher.next("heartbeat", timeout=5)
        assert not [e for e in watcher.seen if e[0] == "responder"]
    finally:
        watcher.close()

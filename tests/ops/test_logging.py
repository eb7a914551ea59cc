"""Structured logs: one ``gridgov.access`` line per request carrying its request id, and the
JSON formatter used with ``GRIDGOV_LOG_FORMAT=json``."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.ops.accesslog import access_lines


def test_each_request_logs_one_json_access_line_with_its_request_id(client: TestClient) -> None:
    with access_lines() as lines:
        r = client.get("/api/areas/nope", params={"secret": "do-not-log"})
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == r.headers["X-Request-ID"] and line["status"] == 404
    assert line["route"] == "/api/areas/{code}" and line["path"] == "/api/areas/nope"
    assert line["ts"].endswith("Z") and line["level"] == "INFO"
    assert "do-not-log" not in json.dumps(lines)

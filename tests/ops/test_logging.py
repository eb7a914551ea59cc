"""Structured logs: one ``gridgov.access`` line per request carrying its request id, and the
JSON formatter used with ``GRIDGOV_LOG_FORMAT=json``."""

from __future__ import annotations

import io
import json
import logging

from fastapi.testclient import TestClient

from api.middleware import JsonFormatter


def test_each_request_logs_one_json_access_line_with_its_request_id(client: TestClient) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gridgov.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        r = client.get("/api/areas/nope", params={"secret": "do-not-log"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == r.headers["X-Request-ID"] and line["status"] == 404
    assert line["route"] == "/api/areas/{code}" and line["path"] == "/api/areas/nope"
    assert line["ts"].endswith("Z") and line["level"] == "INFO"
    assert "do-not-log" not in out.getvalue()

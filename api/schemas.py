"""Shared response shaping and parameter parsing."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gis.errors import InvalidInput


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """``"minlon,minlat,maxlon,maxlat"`` → a tuple; 422 naming ``bbox`` when malformed."""
    if value is None or value == "":
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise InvalidInput(f"bbox must have 4 comma-separated numbers, got {value!r}",
                           field="bbox")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidInput(f"bbox must be numbers, got {value!r}", field="bbox") from exc
    return x0, y0, x1, y1


def utc(value: datetime | None, field: str | None = None) -> datetime | None:
    """A datetime from a query string in UTC (naive ones are taken as UTC). Offsets are
    converted here: PostgreSQL refuses offsets beyond ±15:59 that Python accepts (``-21:03``).
    A time that leaves the calendar on conversion (year 1 or 9999) is a 422 naming ``field``.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput(f"{value.isoformat()} is outside the supported time range",
                           field=field) from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def feature_collection(rows: Iterable[dict[str, Any]], *, geometry: str = "geometry",
                       id_key: str = "code", drop: Iterable[str] = ("id",)) -> dict[str, Any]:
    """Rows with a GeoJSON geometry string → a FeatureCollection dict."""
    dropped = set(drop) | {geometry}
    features = []
    for row in rows:
        geom = row.get(geometry)
        features.append({
            "type": "Feature",
            "id": row.get(id_key),
            "geometry": json.loads(geom) if geom else None,
            "properties": {k: _jsonable(v) for k, v in row.items() if k not in dropped},
        })
    return {"type": "FeatureCollection", "features": features}


# The body of every error answer (``api/errors.py``): what the OpenAPI document promises for
# 4xx/5xx must be what clients get, so FastAPI's default 422 schema is replaced by it.
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"title": "Detail", "description": "what is wrong, for people"},
        "field": {"title": "Field", "anyOf": [{"type": "string"}, {"type": "null"}],
                  "description": "the input at fault (query, body or header name)"},
        "problems": {"title": "Problems", "type": "array", "items": {"type": "object"},
                     "description": "every problem found, when there are several"},
    },
    "additionalProperties": True,
}


def document_errors(app: Any) -> None:
    """Make the app's OpenAPI document describe gridgov's error body (``ERROR_SCHEMA``)
    instead of FastAPI's default validation error list."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        document: dict[str, Any] = original()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        if "HTTPValidationError" in components:
            components["HTTPValidationError"] = ERROR_SCHEMA
        return document

    app.openapi = openapi

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


def utc(value: datetime | None) -> datetime | None:
    """Naive datetimes from query strings are taken as UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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

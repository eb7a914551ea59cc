"""folium helpers: notebooks draw the registry layers with the web map's colours.

The features come through the same allow-list as the tiles and OGC API (``gis.ogc`` over a
registry ``TableSource``); the colours come from ``layers.styles.PALETTE``.

Example (in a notebook)::

    import folium
    from layers import folium as lf
    m = folium.Map(location=[60.17, 24.94], zoom_start=13, tiles=None)
    lf.add_areas(m, conn, "grids")
    lf.add_cases(m, conn, status="open")
    m
"""

from __future__ import annotations

import json
from typing import Any

import folium
from sqlalchemy import Connection

from gis.ogc import FeatureQuery, features_page
from layers.filters import parse_filters
from layers.registry import LayerSpec, get_layer
from layers.styles import PALETTE

AREA_LAYERS = ("districts", "streets", "communities", "grids")


def _collection(conn: Connection, layer: LayerSpec, *, bbox: tuple[float, ...] | None,
                limit: int, raw_filters: dict[str, str | None]) -> dict[str, Any]:
    filters = parse_filters(layer.filters, raw_filters, layer=layer.name)
    query = FeatureQuery(bbox=tuple(bbox) if bbox else None, filters=filters)  # type: ignore[arg-type]
    features, _, _ = features_page(conn, layer.source, query, limit=limit, count=False)
    return {"type": "FeatureCollection", "features": json.loads(f"[{features}]")}


def case_colour(properties: dict[str, Any]) -> str:
    """The colour the MapLibre styles give a case (overdue, open, closed)."""
    colours = PALETTE["cases"]
    if properties.get("overdue"):
        return str(colours["overdue"])
    return str(colours["open"] if properties.get("open") else colours["closed"])


def facility_colour(properties: dict[str, Any]) -> str:
    return str(PALETTE["facilities"].get(properties.get("type"), PALETTE["facility_other"]))


def add_areas(m: folium.Map, conn: Connection, level: str = "grids", *,
              bbox: tuple[float, ...] | None = None, limit: int = 5000) -> folium.GeoJson:
    """Outline the areas of one level (districts, streets, communities, grids)."""
    if level not in AREA_LAYERS:
        raise ValueError(f"level must be one of {AREA_LAYERS}, not {level!r}")
    layer = get_layer(level)
    colour = PALETTE["levels"][level]
    fill = PALETTE["grid_fill"] if level == "grids" else colour
    data = _collection(conn, layer, bbox=bbox, limit=limit, raw_filters={})
    geojson = folium.GeoJson(
        data, name=layer.title,
        style_function=lambda _f: {"color": colour, "weight": 1 if level == "grids" else 2,
                                   "fillColor": fill,
                                   "fillOpacity": 0.18 if level == "grids" else 0.0},
        tooltip=folium.GeoJsonTooltip(fields=["code", "name"]) if data["features"] else None,
    )
    geojson.add_to(m)
    return geojson


def _points(m: folium.Map, data: dict[str, Any], name: str, colour_of: Any, radius: float,
            label: str) -> folium.FeatureGroup:
    group = folium.FeatureGroup(name=name)
    for feature in data["features"]:
        lon, lat = feature["geometry"]["coordinates"][:2]
        props = feature["properties"]
        colour = colour_of(props)
        folium.CircleMarker(location=[lat, lon], radius=radius, color=colour, fill=True,
                            fill_color=colour, fill_opacity=0.85, weight=1,
                            tooltip=str(props.get(label, ""))).add_to(group)
    group.add_to(m)
    return group


def add_cases(m: folium.Map, conn: Connection, *, bbox: tuple[float, ...] | None = None,
              status: str | None = None, category: str | None = None,
              since: str | None = None, until: str | None = None,
              limit: int = 5000) -> folium.FeatureGroup:
    """Cases as circles coloured like the map (overdue, open, closed); same filters as tiles."""
    data = _collection(conn, get_layer("cases"), bbox=bbox, limit=limit,
                       raw_filters={"status": status, "category": category, "since": since,
                                    "until": until})
    return _points(m, data, "Cases", case_colour, 4, "status")


def add_facilities(m: folium.Map, conn: Connection, *, bbox: tuple[float, ...] | None = None,
                   category: str | None = None, limit: int = 5000) -> folium.FeatureGroup:
    """Facilities as circles coloured by type, like the map."""
    data = _collection(conn, get_layer("facilities"), bbox=bbox, limit=limit,
                       raw_filters={"category": category})
    return _points(m, data, "Facilities", facility_colour, 6, "name")

"""MapLibre style documents (style spec v8) for the registry layers, and the shared palette.

``PALETTE`` is the single source of the map's colours: the styles here and the folium helpers
(``layers/folium.py``) both read it, so a notebook looks like the web map. Styles use only
fill, line and circle layers, so they need no glyphs or sprites: nothing is fetched from
outside the app.

>>> style = build_style("default", "http://127.0.0.1:8000/")
>>> style["version"], style["sources"]["grids"]["url"]
(8, 'http://127.0.0.1:8000/tiles/grids.json')
"""

from __future__ import annotations

from typing import Any

from gis.errors import NotFound
from layers.registry import REGISTRY

PALETTE: dict[str, Any] = {
    "levels": {"districts": "#6a3d9a", "streets": "#1f78b4", "communities": "#33a02c",
               "grids": "#8c8c8c"},
    "grid_fill": "#b2df8a",
    "cases": {"open": "#e31a1c", "overdue": "#c51b8a", "closed": "#969696"},
    "case_counts": "#fd8d3c",
    # One colour per facility type of gis.demo.assets.FACILITY_TYPES, by family: emergency
    # (reds/blues), health (greens), education and culture (oranges/blues), social services
    # (purples), open space (light greens), surveillance (grey).
    "facilities": {"police_room": "#08519c", "police": "#08519c", "fire_station": "#cb181d",
                   "aed": "#ef3b2c", "shelter": "#8c510a",
                   "hospital": "#006d2c", "clinic": "#238b45", "dentist": "#41ab5d",
                   "pharmacy": "#74c476",
                   "school": "#fe9929", "kindergarten": "#fec44f", "library": "#3690c0",
                   "community_centre": "#ec7014", "community_service_centre": "#ec7014",
                   "service_centre": "#d94801", "post_office": "#6baed6",
                   "elderly_care": "#807dba", "social_facility": "#6a51a3",
                   "park": "#a1d99b", "playground": "#c7e9c0",
                   "camera": "#525252"},
    "facility_other": "#737373",
    "components": {"ok": "#4d4d4d", "damaged": "#d7301f", "missing": "#ff7f00"},
    "component_other": "#878787",
    "responders": {"available": "#1a9850", "busy": "#fdae61"},
    "zones": "#e7298a",
    "roads": "#bdbdbd",
}

THEMES: dict[str, dict[str, str]] = {
    "default": {"background": "#f4f1ea", "road": PALETTE["roads"], "halo": "#ffffff"},
    "public": {"background": "#f4f1ea", "road": PALETTE["roads"], "halo": "#ffffff"},
    "command": {"background": "#0b1021", "road": "#2b3350", "halo": "#0b1021"},
}

STYLES = tuple(THEMES)


def _match(prop: str, colours: dict[str, str], default: str) -> list[Any]:
    expr: list[Any] = ["match", ["get", prop]]
    for key, colour in colours.items():
        expr += [key, colour]
    return [*expr, default]


def _zoom_width(z0: float, w0: float, z1: float, w1: float) -> list[Any]:
    return ["interpolate", ["linear"], ["zoom"], z0, w0, z1, w1]


def _source(base_url: str, layer: str) -> dict[str, Any]:
    spec = REGISTRY[layer]
    return {"type": "vector", "url": f"{base_url}tiles/{layer}.json",
            "minzoom": spec.minzoom, "maxzoom": spec.maxzoom}


def _area_layers(theme: dict[str, str], dark: bool) -> list[dict[str, Any]]:
    levels = PALETTE["levels"]
    out: list[dict[str, Any]] = [
        {"id": "grids-fill", "type": "fill", "source": "grids", "source-layer": "grids",
         "paint": {"fill-color": PALETTE["grid_fill"], "fill-opacity": 0.08 if dark else 0.18}},
        {"id": "grids-line", "type": "line", "source": "grids", "source-layer": "grids",
         "paint": {"line-color": levels["grids"], "line-width": _zoom_width(12, 0.3, 16, 1.2)}},
        {"id": "communities-line", "type": "line", "source": "communities",
         "source-layer": "communities",
         "paint": {"line-color": levels["communities"], "line-width": _zoom_width(11, 0.8, 16, 2)}},
        {"id": "streets-line", "type": "line", "source": "streets", "source-layer": "streets",
         "paint": {"line-color": levels["streets"], "line-width": _zoom_width(9, 1, 16, 3)}},
        {"id": "districts-line", "type": "line", "source": "districts",
         "source-layer": "districts",
         "paint": {"line-color": levels["districts"], "line-width": _zoom_width(6, 1.5, 16, 4)}},
    ]
    return out


def _case_layers(dark: bool) -> list[dict[str, Any]]:
    colours = PALETTE["cases"]
    return [
        {"id": "cases-agg", "type": "circle", "source": "cases", "source-layer": "cases_agg",
         "maxzoom": 13,
         "paint": {
             "circle-color": PALETTE["case_counts"],
             "circle-opacity": 0.75,
             "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]],
                               1, 3, 10, 9, 100, 22],
             "circle-stroke-color": "#7f2704", "circle-stroke-width": 0.5}},
        {"id": "cases-point", "type": "circle", "source": "cases", "source-layer": "cases",
         "minzoom": 13,
         "paint": {
             "circle-color": ["case", ["get", "overdue"], colours["overdue"],
                              ["get", "open"], colours["open"], colours["closed"]],
             "circle-radius": _zoom_width(13, 2.5, 18, 7),
             "circle-stroke-color": "#000000" if not dark else "#ffffff",
             "circle-stroke-width": ["case", ["get", "overdue"], 1.5, 0.3]}},
    ]


def build_style(name: str, base_url: str) -> dict[str, Any]:
    """The style ``name`` (default, public, command) with sources under ``base_url``."""
    theme = THEMES.get(name)
    if theme is None:
        raise NotFound(f"unknown style {name[:40]!r}; styles: {', '.join(STYLES)}",
                       field="name")
    dark = name == "command"
    wanted = [layer for layer in REGISTRY.values() if name != "public" or layer.public]
    sources = {layer.name: _source(base_url, layer.name) for layer in wanted}
    layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background",
         "paint": {"background-color": theme["background"]}},
        {"id": "roads", "type": "line", "source": "road_edges", "source-layer": "road_edges",
         "layout": {"line-cap": "round", "line-join": "round"},
         "paint": {"line-color": theme["road"], "line-width": _zoom_width(12, 0.5, 16, 3)}},
        {"id": "zones-line", "type": "line", "source": "responsibility_zones",
         "source-layer": "responsibility_zones",
         "layout": {"visibility": "none" if dark else "visible"},
         "paint": {"line-color": PALETTE["zones"], "line-width": 1.5,
                   "line-dasharray": [3, 2]}},
        *_area_layers(theme, dark),
        {"id": "components", "type": "circle", "source": "components",
         "source-layer": "components",
         "paint": {"circle-color": _match("state", PALETTE["components"],
                                          PALETTE["component_other"]),
                   "circle-radius": 2.5}},
        {"id": "facilities", "type": "circle", "source": "facilities",
         "source-layer": "facilities",
         "paint": {"circle-color": _match("type", PALETTE["facilities"],
                                          PALETTE["facility_other"]),
                   "circle-radius": _zoom_width(11, 3, 18, 8),
                   "circle-stroke-color": theme["halo"], "circle-stroke-width": 1}},
        *_case_layers(dark),
    ]
    if "responders" in sources:
        layers.append(
            {"id": "responders", "type": "circle", "source": "responders",
             "source-layer": "responders",
             "paint": {"circle-color": _match("status", PALETTE["responders"], "#999999"),
                       "circle-radius": ["case", ["==", ["get", "kind"], "vehicle"], 6, 4],
                       "circle-stroke-color": theme["halo"], "circle-stroke-width": 1.5}})
    layers = [lay for lay in layers if "source" not in lay or lay["source"] in sources]
    return {
        "version": 8,
        "name": f"gridgov {name}",
        "metadata": {"gridgov:style": name},
        "center": [0, 0],
        "zoom": 1,
        "sources": sources,
        "layers": layers,
    }

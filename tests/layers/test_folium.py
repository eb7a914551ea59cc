"""folium helpers draw the registry layers with the web map's colours."""

from __future__ import annotations

import folium
import pytest
from sqlalchemy import Connection

from layers import folium as lf
from layers.styles import PALETTE
from tests.factories import X0, Y0
from tests.layers.mapdata import MapCity, map_city

BBOX = (X0 - 0.001, Y0 - 0.001, X0 + 0.041, Y0 + 0.021)


@pytest.fixture
def city(conn: Connection) -> MapCity:
    return map_city(conn)


def test_areas_layer_uses_the_level_colour(conn: Connection, city: MapCity) -> None:
    m = folium.Map(location=[Y0, X0], zoom_start=14, tiles=None)
    layer = lf.add_areas(m, conn, "streets", bbox=BBOX)
    assert len(layer.data["features"]) == 2
    html = m.get_root().render()
    assert PALETTE["levels"]["streets"] in html


def test_cases_are_coloured_like_the_map(conn: Connection, city: MapCity) -> None:
    m = folium.Map(location=[Y0, X0], zoom_start=14, tiles=None)
    group = lf.add_cases(m, conn, bbox=BBOX)
    markers = list(group._children.values())
    colours = {mk.options["color"] for mk in markers}
    assert len(markers) == 5
    assert colours == {PALETTE["cases"]["open"], PALETTE["cases"]["closed"]}
    html = m.get_root().render()
    assert "phone" not in html and "private description" not in html


def test_facilities_filter_and_colour(conn: Connection, city: MapCity) -> None:
    m = folium.Map(location=[Y0, X0], zoom_start=14, tiles=None)
    group = lf.add_facilities(m, conn, bbox=BBOX, category="police")
    [marker] = group._children.values()
    assert marker.options["color"] == PALETTE["facilities"]["police"]


def test_colour_helpers_follow_the_palette() -> None:
    assert lf.case_colour({"open": True, "overdue": True}) == PALETTE["cases"]["overdue"]
    assert lf.case_colour({"open": False}) == PALETTE["cases"]["closed"]
    assert lf.facility_colour({"type": "unheard"}) == PALETTE["facility_other"]


def test_unknown_level_is_refused(conn: Connection) -> None:
    with pytest.raises(ValueError, match="level"):
        lf.add_areas(folium.Map(), conn, "cases")

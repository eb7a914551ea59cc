"""CRS: GCJ-02 / BD-09 offsets, parse_crs, and to_wgs84 from projected systems.

Reference values come from outside gridgov: the widely used coordtransform library
(github.com/wandergis/coordtransform, test/app.js), a published Tiananmen WGS84/GCJ-02 pair, the
Web Mercator inverse in closed form, and the GRS80 meridian arc for points on a Gauss-Krüger
central meridian.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from pyproj import Transformer

from gis.crs import (
    WGS84,
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    parse_crs,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from gis.errors import InvalidInput

Convert = Callable[[float, float], tuple[float, float]]

IN_CHINA = [
    (116.391275, 39.907333),  # Tiananmen
    (121.4737, 31.2304),      # Shanghai
    (113.2644, 23.1291),      # Guangzhou
    (87.6168, 43.8256),       # Urumqi
    (126.6424, 45.7567),      # Harbin
    (91.1322, 29.6604),       # Lhasa
]
OUTSIDE_CHINA = [(24.9384, 60.1699), (-0.1276, 51.5072), (-74.006, 40.7128), (151.2093, -33.8688)]


@pytest.mark.parametrize(("lon", "lat"), IN_CHINA)
def test_gcj02_round_trip_is_within_1e_6_degree(lon: float, lat: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert back == pytest.approx((lon, lat), abs=1e-6)


@pytest.mark.parametrize(("lon", "lat"), IN_CHINA)
def test_gcj02_offset_is_hundreds_of_metres(lon: float, lat: float) -> None:
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert 1e-4 < math.hypot(glon - lon, glat - lat) < 0.01


def test_tiananmen_matches_the_published_gcj02_pair() -> None:
    assert wgs84_to_gcj02(116.391275, 39.907333) == pytest.approx((116.397520, 39.908692),
                                                                  abs=1e-4)


@pytest.mark.parametrize(("fn", "expected"), [
    (wgs84_to_gcj02, (116.41024449916938, 39.91640428150164)),
    (gcj02_to_bd09, (116.41036949371029, 39.92133699351021)),
    (bd09_to_gcj02, (116.39762729119315, 39.90865673957631)),
])
def test_matches_coordtransform_reference_values(fn: Convert,
                                                 expected: tuple[float, float]) -> None:
    tolerance = 1e-6 if fn is bd09_to_gcj02 else 1e-9
    assert fn(116.404, 39.915) == pytest.approx(expected, abs=tolerance)


def test_gcj02_inverse_agrees_with_the_one_step_reference() -> None:
    # coordtransform inverts in one step (error ~1e-6 deg); gridgov iterates to convergence.
    assert gcj02_to_wgs84(116.404, 39.915) == pytest.approx(
        (116.39775550083061, 39.91359571849836), abs=1e-5)


@pytest.mark.parametrize(("lon", "lat"), IN_CHINA)
def test_bd09_round_trip_is_within_5e_6_degree(lon: float, lat: float) -> None:
    assert bd09_to_wgs84(*wgs84_to_bd09(lon, lat)) == pytest.approx((lon, lat), abs=5e-6)


def test_bd09_round_trip_is_within_1e_6_degree() -> None:
    worst = max(max(abs(a - b) for a, b in zip(bd09_to_wgs84(*wgs84_to_bd09(lon, lat)),
                                               (lon, lat), strict=True))
                for lon in range(74, 135) for lat in range(19, 53))
    assert worst < 1e-6


@pytest.mark.parametrize(("lon", "lat"), OUTSIDE_CHINA)
def test_gcj02_is_the_identity_outside_china(lon: float, lat: float) -> None:
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


@pytest.mark.parametrize(("value", "expected"), [
    ("EPSG:4490", 4490), ("4490", 4490), (4490, 4490), ("epsg:3067", 3067), (" 4547 ", 4547),
    ("gcj-02", "GCJ02"), ("GCJ02", "GCJ02"), ("BD09", "BD09"), ("bd-09", "BD09"),
    (None, WGS84), ("", WGS84),
])
def test_parse_crs_accepts(value: str | int | None, expected: str | int) -> None:
    assert parse_crs(value) == expected


@pytest.mark.parametrize("value", ["junk", "EPSG:", "EPSG:99999999", "4326x", "GCJ-03",
                                   "WGS84 please"])
def test_parse_crs_rejects_junk_naming_crs(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_crs(value)
    assert info.value.field == "crs"


def _grs80_meridian_arc(lat: float) -> float:
    """Distance along the GRS80 meridian from the equator (Helmert's series, sub-mm)."""
    a, f = 6378137.0, 1 / 298.257222101
    n = f / (2 - f)
    big_a = a / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    phi = math.radians(lat)
    return big_a * (phi - (3 * n / 2 - 9 * n**3 / 16) * math.sin(2 * phi)
                    + (15 * n**2 / 16 - 15 * n**4 / 32) * math.sin(4 * phi)
                    - 35 * n**3 / 48 * math.sin(6 * phi) + 315 * n**4 / 512 * math.sin(8 * phi))


@pytest.mark.parametrize("lat", [0.0, 22.5, 30.0, 39.9, 45.0])
def test_to_wgs84_from_cgcs2000_gauss_kruger_cm_114e(lat: float) -> None:
    # On the central meridian (x = 500 km false easting) Gauss-Krüger northing is the arc.
    lon, back = to_wgs84(500_000.0, _grs80_meridian_arc(lat), "EPSG:4547")
    assert (lon, back) == pytest.approx((114.0, lat), abs=1e-8)


def test_to_wgs84_from_gauss_kruger_off_the_meridian_keeps_axis_order() -> None:
    x, y = Transformer.from_crs(WGS84, 4547, always_xy=True).transform(113.2644, 23.1291)
    assert 390_000 < x < 500_000 and 2_500_000 < y < 2_600_000  # easting first
    assert to_wgs84(x, y, 4547) == pytest.approx((113.2644, 23.1291), abs=1e-9)


@pytest.mark.parametrize(("x", "y"), [(12_958_000.0, 4_851_000.0), (-20_000.0, -500_000.0),
                                      (2_776_000.0, 8_437_000.0)])
def test_to_wgs84_from_web_mercator(x: float, y: float) -> None:
    r = 6378137.0
    expected = (math.degrees(x / r), math.degrees(2 * math.atan(math.exp(y / r)) - math.pi / 2))
    assert to_wgs84(x, y, "EPSG:3857") == pytest.approx(expected, abs=1e-9)


def test_to_wgs84_from_cgcs2000_geographic_is_the_identity() -> None:
    assert to_wgs84(116.391275, 39.907333, 4490) == pytest.approx((116.391275, 39.907333),
                                                                  abs=1e-12)


@pytest.mark.parametrize(("crs", "fn"), [("GCJ-02", gcj02_to_wgs84), ("BD-09", bd09_to_wgs84)])
def test_to_wgs84_handles_the_offset_systems(crs: str, fn: Convert) -> None:
    assert to_wgs84(116.404, 39.915, crs) == fn(116.404, 39.915)


def test_to_wgs84_of_wgs84_is_unchanged() -> None:
    assert to_wgs84(24.9384, 60.1699) == (24.9384, 60.1699)

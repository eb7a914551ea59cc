"""The layer registry: the one allow-list of tables and columns that reach SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from gis import tiles
from gis.errors import InvalidInput, NotFound
from layers.filters import parse_filters
from layers.registry import CLOSED_STATUSES, OPEN_STATUSES, REGISTRY, cache_policies, get_layer
from tests.layers.mapdata import GRID_TILE, map_city

PRIVATE = {"reporter_contact", "description", "media", "idempotency_key", "tracking_sha256",
           "idempotency_fingerprint", "reporter_id", "name_of_staff"}


def test_no_layer_publishes_a_private_field() -> None:
    for layer in REGISTRY.values():
        names = {p.name for p in layer.source.props}
        sql = " ".join(p.sql for p in layer.source.props)
        assert not names & PRIVATE, layer.name
        assert not any(f in sql for f in PRIVATE - {"name_of_staff"}), layer.name
    assert "name" not in {p.name for p in REGISTRY["responders"].source.props}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_layer_renders_against_the_real_schema(conn: Connection, name: str) -> None:
    map_city(conn)
    layer = REGISTRY[name]
    data = tiles.feature_tile(conn, layer.source, layer=name, z=14, x=GRID_TILE.x,
                              y=GRID_TILE.y, tolerance_m=layer.tolerance_m(14))
    assert isinstance(data, bytes)


def test_unknown_layer_names_the_known_ones() -> None:
    with pytest.raises(NotFound) as err:
        get_layer("cases_private")
    assert err.value.field == "layer" and "grids" in err.value.detail


def test_open_and_closed_cover_every_status_once() -> None:
    assert sorted(OPEN_STATUSES + CLOSED_STATUSES) == sorted(set(OPEN_STATUSES + CLOSED_STATUSES))
    assert "closed" in CLOSED_STATUSES and "reported" in OPEN_STATUSES


@pytest.mark.parametrize(("raw", "expected"), [
    ({"status": "open"}, {"status": tuple(sorted(OPEN_STATUSES))}),
    ({"status": "closed,reported"}, {"status": tuple(sorted((*CLOSED_STATUSES, "reported")))}),
    ({"category": "e01,C0101"}, {"category": ("C0101%", "E01%")}),
])
def test_filters_parse_into_bound_values(raw: dict, expected: dict) -> None:
    assert parse_filters(get_layer("cases").filters, raw, layer="cases") == expected


@pytest.mark.parametrize(("raw", "field"), [
    ({"status": "open;--"}, "status"), ({"category": "E01%"}, "category"),
    ({"category": "E01_"}, "category"), ({"since": "2026-02-30"}, "since"),
    ({"until": "soon"}, "until"), ({"category": ",".join(["E"] * 51)}, "category"),
])
def test_bad_filter_values_name_the_parameter(raw: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_filters(get_layer("cases").filters, raw, layer="cases")
    assert err.value.field == field


def test_tolerance_shrinks_with_zoom() -> None:
    grids = get_layer("grids")
    assert grids.tolerance_m(12) > grids.tolerance_m(14) > grids.tolerance_m(16) > 0
    assert get_layer("cases").tolerance_m(16) == 0


def test_aggregate_cache_margin_covers_a_cell() -> None:
    policies = cache_policies()
    assert policies["cases_agg"].margin_units >= 4096 / 16
    assert policies["cases"].tables == ("cases", "categories")


def test_case_tiles_read_from_the_copy_publish_the_layers_properties_and_filters() -> None:
    """``case_tiles`` (migration 0009) must not change what a case tile documents."""
    spec = get_layer("cases")
    assert spec.tiles_from.table == "case_tiles" and spec.source.table == "cases"
    assert [(p.name, p.type) for p in spec.tiles_from.props if p.in_tiles] == [
        (p.name, p.type) for p in spec.source.props if p.in_tiles]
    assert set(spec.tiles_from.filters) == set(spec.source.filters)

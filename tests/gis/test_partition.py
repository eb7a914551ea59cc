"""The contiguous, balanced partitioner and the sibling numbering rule (gis.partition)."""

from __future__ import annotations

import random

import pytest
from shapely.geometry import box

from gis.errors import InvalidInput
from gis.partition import (
    DisconnectedGraph,
    Partition,
    adjacency_from_polygons,
    connected_pieces,
    partition,
    reading_order,
)


def _lattice(n: int) -> tuple[list[int], dict[int, set[int]], list[tuple[float, float]]]:
    """An n × n lattice of unit squares: ids row by row, rook adjacency, centre positions."""
    squares = [box(x, y, x + 1, y + 1) for y in range(n) for x in range(n)]
    positions = [(s.centroid.x, s.centroid.y) for s in squares]
    return list(range(n * n)), adjacency_from_polygons(squares), positions


def _random_weights(count: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.choice([0, 0, 5, 10, 20, 40]) for _ in range(count)]


def _is_contiguous(result: Partition, adjacency: dict[int, set[int]]) -> bool:
    return all(len(connected_pieces(region, adjacency)) == 1 for region in result.regions)


def test_every_region_is_contiguous() -> None:
    ids, adjacency, positions = _lattice(12)
    result = partition(ids, _random_weights(len(ids)), adjacency, n_regions=9,
                       positions=positions)
    assert len(result.regions) == 9
    assert _is_contiguous(result, adjacency)


def test_every_block_lands_in_exactly_one_region_even_with_zero_weight() -> None:
    ids, adjacency, _ = _lattice(8)
    weights = [0.0 if i % 3 else 10.0 for i in ids]
    result = partition(ids, weights, adjacency, n_regions=5)
    assigned = sorted(b for region in result.regions for b in region)
    assert assigned == ids


def test_regions_have_near_equal_weight_on_uniform_blocks() -> None:
    ids, adjacency, positions = _lattice(10)
    result = partition(ids, [1.0] * len(ids), adjacency, n_regions=4, positions=positions)
    assert result.weights == pytest.approx([25.0] * 4, abs=2)
    assert result.max_deviation <= 0.08


def test_lumpy_weights_are_balanced_within_a_third() -> None:
    ids, adjacency, positions = _lattice(16)
    result = partition(ids, _random_weights(len(ids)), adjacency, target_weight=200,
                       positions=positions)
    weights = sorted(result.weights)
    assert weights[len(weights) // 2] == pytest.approx(200, rel=0.2)
    assert result.max_deviation < 0.5


def test_same_seed_gives_the_same_partition() -> None:
    ids, adjacency, positions = _lattice(10)
    weights = _random_weights(len(ids))
    first = partition(ids, weights, adjacency, n_regions=6, positions=positions, seed=3)
    again = partition(ids, weights, adjacency, n_regions=6, positions=positions, seed=3)
    assert first == again


def test_target_weight_sets_the_number_of_regions_and_max_regions_caps_it() -> None:
    ids, adjacency, _ = _lattice(10)
    assert len(partition(ids, [10.0] * 100, adjacency, target_weight=200).regions) == 5
    assert len(partition(ids, [10.0] * 100, adjacency, target_weight=200,
                         max_regions=3).regions) == 3
    assert len(partition(ids, [0.0] * 100, adjacency, target_weight=200).regions) == 1


def test_disconnected_blocks_raise_a_clear_error() -> None:
    adjacency = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}, "e": set()}
    with pytest.raises(DisconnectedGraph) as caught:
        partition(list("abcde"), [1] * 5, adjacency, n_regions=2)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == "adjacency"
    assert "3 separate pieces" in caught.value.detail
    assert caught.value.pieces[0] == ["a", "b"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_regions": 5}, "cannot cut 3 blocks into 5 regions"),
    ({"n_regions": 0}, "n_regions must be >= 1"),
    ({}, "give n_regions or a positive target_weight"),
])
def test_impossible_region_counts_are_invalid_input(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        partition([1, 2, 3], [1, 1, 1], {1: [2], 2: [3]}, **kwargs)


@pytest.mark.parametrize(("weights", "message"), [
    ([1, -1, 1], "finite and >= 0"),
    ([1, float("nan"), 1], "finite and >= 0"),
    ([1, 1], "2 weights for 3 blocks"),
])
def test_bad_weights_are_rejected_with_the_value(weights: list[float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        partition([1, 2, 3], weights, {1: [2], 2: [3]}, n_regions=2)


def test_cut_costs_keep_marked_neighbours_together() -> None:
    ids = [0, 1, 2, 3]
    adjacency = {0: [1], 1: [2], 2: [3]}
    plain = partition(ids, [10, 10, 10, 10], adjacency, n_regions=2)
    costly = partition(ids, [10, 10, 10, 10], adjacency, n_regions=2, cut_costs={(1, 2): 5.0})
    assert plain.regions == [[0, 1], [2, 3]]
    assert all({1, 2} <= set(r) or not {1, 2} & set(r) for r in costly.regions)


def test_adjacency_needs_a_shared_edge_not_a_corner() -> None:
    squares = [box(0, 0, 1, 1), box(1, 0, 2, 1), box(2, 1, 3, 2), box(0, 1, 1, 2)]
    adjacency = adjacency_from_polygons(squares)
    assert adjacency[0] == {1, 3}
    assert adjacency[2] == set()  # touches square 1 only at the point (2, 1)


def test_reading_order_runs_rows_north_to_south_and_west_to_east() -> None:
    rng = random.Random(1)
    # A 3 × 3 lattice with jitter; indices shuffled so the input order says nothing.
    cells = [(col + rng.uniform(-0.2, 0.2), -row + rng.uniform(-0.2, 0.2))
             for row in range(3) for col in range(3)]
    shuffled = list(range(9))
    rng.shuffle(shuffled)
    points = [cells[i] for i in shuffled]
    order = reading_order(points, row_tolerance=0.5)
    assert [shuffled[i] for i in order] == list(range(9))


def test_reading_order_without_tolerance_is_strictly_north_to_south() -> None:
    points = [(0.0, 0.0), (5.0, 0.1), (-5.0, 0.05)]
    assert reading_order(points) == [1, 2, 0]


@pytest.mark.parametrize("seed", [0, 3, 8, 17])
def test_bounds_keep_every_region_in_the_band_compactness_would_leave(seed: int) -> None:
    # With a strong compactness term alone some region ends up > 15 % off; the band (as the
    # planner's tolerance is passed) keeps every region inside it on the same input.
    ids, adjacency, positions = _lattice(6)
    rng = random.Random(seed)
    weights = [rng.choice([0, 5, 10, 20, 40]) for _ in ids]
    mean = sum(weights) / 4
    free = partition(ids, weights, adjacency, n_regions=4, positions=positions, compactness=2.0)
    banded = partition(ids, weights, adjacency, n_regions=4, positions=positions,
                       compactness=2.0, bounds=(0.85 * mean, 1.15 * mean))
    assert free.max_deviation > 0.15
    assert banded.max_deviation <= 0.15
    assert _is_contiguous(banded, adjacency)


def test_bounds_must_be_an_ordered_pair() -> None:
    ids, adjacency, _ = _lattice(3)
    with pytest.raises(InvalidInput, match="bounds"):
        partition(ids, [1.0] * 9, adjacency, n_regions=3, bounds=(5.0, 2.0))

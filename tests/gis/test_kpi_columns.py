"""KPIs of 20,000 groups are computed as numpy columns: the rounding, scores and ranks are
exactly those of the per-row Python arithmetic they replaced."""

from __future__ import annotations

import numpy as np
import pytest

from gis.kpis import _rank, _rounded, _score_columns


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_rounding_columns_equals_pythons_round_including_halves(digits: int) -> None:
    rng = np.random.default_rng(digits)
    values = np.concatenate([rng.random(20000), rng.random(20000) * 1e6, np.arange(4000) / 16,
                             rng.integers(0, 10**6, 20000) / rng.integers(1, 10**4, 20000),
                             [2.675, 1.005, 0.125, 0.5, 1e10 + 0.125, 1e15 / 3]])
    ok = np.ones(len(values), dtype=bool)
    ok[::7] = False
    expected = [round(v, digits) if k else None
                for v, k in zip(values.tolist(), ok.tolist(), strict=True)]
    assert _rounded(values, ok, digits) == expected


def _score_loop(row: dict, scoring: list) -> tuple[float | None, list[str]]:
    """The per-row scoring the columns replace (gridgov before 0010_kpi_speed)."""
    total = weight = 0.0
    met = []
    for kpi, target, w, higher in scoring:
        value = row.get(kpi)
        if value is None:
            continue
        if value >= target if higher else value <= target:
            met.append(kpi)
        if w <= 0:
            continue
        if higher:
            achieved = min(value / target, 1.0) if target > 0 else 1.0
        else:
            achieved = min(target / value, 1.0) if value > 0 else 1.0
        total += w * achieved
        weight += w
    return (round(100 * total / weight, 1) if weight else None), met


def test_column_scores_equal_a_loop_over_the_targets() -> None:
    rng = np.random.default_rng(6)
    n = 500
    columns = {k: [None if x < 0.1 else round(float(x), 4) for x in rng.random(n)]
               for k in ("closure_rate", "on_time_rate", "reopen_rate")}
    columns["mean_ttc_h"] = [None if x < 0.1 else round(float(x) * 200, 2) for x in rng.random(n)]
    scoring = [("closure_rate", 0.95, 2.0, True), ("on_time_rate", 0.0, 1.0, True),
               ("reopen_rate", 0.05, 0.0, False), ("mean_ttc_h", 48.0, 1.5, False),
               ("satisfaction", 4.0, 1.0, True)]
    scores, met = _score_columns(columns, scoring, n)
    for i in range(n):
        row = {k: v[i] for k, v in columns.items()}
        assert (scores[i], met[i]) == _score_loop(row, scoring)


def test_rank_puts_the_best_first_shares_ties_and_puts_missing_values_last() -> None:
    values = [0.5, None, 0.9, 0.5, 0.7, None]
    keys = ["f", "a", "e", "b", "d", "c"]
    order, ranks = _rank(values, keys, lower=False)
    assert [keys[i] for i in order] == ["e", "d", "b", "f", "a", "c"]
    assert [ranks[i] for i in order] == [1, 2, 3, 3, None, None]
    order, ranks = _rank(values, keys, lower=True)
    assert [keys[i] for i in order] == ["b", "f", "d", "e", "a", "c"]
    assert [ranks[i] for i in order] == [1, 1, 3, 4, None, None]

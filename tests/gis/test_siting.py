"""Siting: MCLP with CBC, gains that add up, and new sites that really cover what they claim."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from gis.coverage import CoverageQuery, coverage
from gis.errors import InvalidInput
from gis.siting import SitingQuery, best_sites

STRAIGHT = CoverageQuery("clinic", radius_m=400, gaps=False)


def test_sites_cover_the_households_they_claim(conn: Connection) -> None:
    result = best_sites(conn, SitingQuery(STRAIGHT, k=2))
    assert result["status"] == "Optimal" and len(result["sites"]) == 2
    gains = [s["households_gained"] for s in result["sites"]]
    assert gains == sorted(gains, reverse=True) and sum(gains) == result["households_gained"]
    before = coverage(conn, STRAIGHT)["summary"]
    after = coverage(conn, CoverageQuery("clinic", radius_m=400, gaps=False, extra_sites=tuple(
        (s["lon"], s["lat"]) for s in result["sites"])))["summary"]
    assert after["households_covered"] - before["households_covered"] == \
        result["households_gained"]


def test_more_sites_never_gain_less(conn: Connection) -> None:
    gained = [best_sites(conn, SitingQuery(STRAIGHT, k=k))["households_gained"] for k in (1, 2, 4)]
    assert gained == sorted(gained) and gained[0] > 0


def test_the_best_single_site_is_the_best_candidate(conn: Connection) -> None:
    one = best_sites(conn, SitingQuery(STRAIGHT, k=1, max_candidates=2000))
    # MCLP with k=1 is just the candidate covering the most: greedy and exact agree.
    assert one["sites"][0]["households_gained"] == one["households_gained"]


def test_road_siting_from_road_nodes(conn: Connection) -> None:
    result = best_sites(conn, SitingQuery(CoverageQuery("clinic", mode="road", minutes=5,
                                                        gaps=False), k=2, candidates="nodes"))
    assert result["sites"] and result["households_gained"] <= \
        result["households_uncovered_before"]
    assert all(s["label"].startswith("road node") for s in result["sites"])


@pytest.mark.parametrize(("query", "field"), [
    (SitingQuery(STRAIGHT, k=0), "k"), (SitingQuery(STRAIGHT, k=51), "k"),
    (SitingQuery(STRAIGHT, candidates="roofs"), "candidates"),
    (SitingQuery(CoverageQuery("nope"), k=1), "facility_type"),
])
def test_bad_siting_queries(conn: Connection, query: SitingQuery, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        best_sites(conn, query)
    assert err.value.field == field

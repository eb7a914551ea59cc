"""Feature pages are cached beside the tiles and evicted by the same change log: exactly the
pages a changed box can alter (every page of the layer without a bbox, or for a change without
a box), never a page read before a change, within a quarter of the cache's bytes."""

from __future__ import annotations

import time

from gis.tilecache import CachePolicy, Change, PageKey, PageStore, TileCache
from tests.factories import X0, Y0

POLICIES = {"grids": CachePolicy(("areas",)), "cases": CachePolicy(("cases",), ttl_s=0.05),
            "facilities": CachePolicy(("facilities",))}
# about 850 m x 900 m, as a map or GDAL asks
HERE = (X0, Y0, X0 + 0.01, Y0 + 0.008)
FAR = (X0 + 0.2, Y0, X0 + 0.21, Y0 + 0.008)  # about 17 km east
PAGE = ('{"type":"Feature"}', 1, 1)


def _key(layer: str, bbox: tuple[float, float, float, float] | None, offset: int = 0
         ) -> PageKey:
    return (layer, bbox, ";", 100, offset)


def _point_change(seq: int, table: str, lon: float, lat: float) -> Change:
    return Change(seq, table, (lon, lat, lon, lat))


def _cached(cache: TileCache, key: PageKey) -> bool:
    return cache.pages.get(key) is not None


def _index_matches(cache: TileCache) -> bool:
    """Every indexed key is cached and every cached key is indexed (nothing leaks)."""
    store = cache.pages
    indexed = {k for cells in store._cells.values() for keys in cells.values() for k in keys}
    indexed |= {k for keys in store._wide.values() for k in keys}
    return indexed == set(store._entries) and all(
        keys for cells in store._cells.values() for keys in cells.values())


def test_a_change_evicts_the_pages_it_touches_and_keeps_the_others() -> None:
    cache = TileCache(POLICIES)
    keys = [_key("grids", HERE), _key("grids", HERE, offset=100), _key("grids", FAR),
            _key("grids", None), _key("facilities", HERE)]
    for key in keys:
        cache.put_page(key, PAGE, generation=0)
    cache.apply([_point_change(1, "areas", X0 + 0.005, Y0 + 0.004)])
    here, next_page, far, whole, facilities = (_cached(cache, k) for k in keys)
    assert not here and not next_page and not whole  # the pages that may show the change
    assert far and facilities  # elsewhere, or another table
    assert cache.stats.pages_evicted_by_change == 3
    assert _index_matches(cache)


def test_a_change_on_the_edge_of_a_page_evicts_it() -> None:
    # ST_Intersects counts a feature touching the bbox's edge: so does the eviction.
    cache = TileCache(POLICIES)
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    cache.apply([_point_change(1, "areas", HERE[2], HERE[3])])
    assert not _cached(cache, _key("grids", HERE))


def test_a_change_just_outside_the_margin_keeps_the_page() -> None:
    cache = TileCache(POLICIES)
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    x0, y0, x1, y1 = PageStore.widened(HERE)
    cache.apply([_point_change(1, "areas", x1 + 1e-6, y1 + 1e-6)])
    assert _cached(cache, _key("grids", HERE))
    cache.apply([_point_change(2, "areas", x1 - 1e-6, y1 - 1e-6)])
    assert not _cached(cache, _key("grids", HERE))


def test_a_change_without_a_box_evicts_every_page_of_the_layer() -> None:
    cache = TileCache(POLICIES)
    for key in (_key("grids", HERE), _key("grids", FAR), _key("facilities", HERE)):
        cache.put_page(key, PAGE, generation=0)
    cache.apply([Change(1, "areas", None)])
    assert not _cached(cache, _key("grids", HERE)) and not _cached(cache, _key("grids", FAR))
    assert _cached(cache, _key("facilities", HERE))


def test_a_wide_page_is_evicted_by_a_change_anywhere_in_it() -> None:
    cache = TileCache(POLICIES)
    city = (X0 - 0.3, Y0 - 0.3, X0 + 0.3, Y0 + 0.3)  # hundreds of z14 tiles: kept aside
    cache.put_page(_key("grids", city), PAGE, generation=0)
    cache.apply([_point_change(1, "areas", X0 + 0.29, Y0 - 0.29)])
    assert not _cached(cache, _key("grids", city))


def test_a_large_change_evicts_the_pages_under_it_and_only_those() -> None:
    # A bulk statement logs one extent over many tiles: the pages are then scanned, not the tiles.
    cache = TileCache(POLICIES)
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    cache.put_page(_key("grids", FAR), PAGE, generation=0)
    cache.apply([Change(1, "areas", (X0 - 0.5, Y0 - 0.5, X0 + 0.1, Y0 + 0.5))])
    assert not _cached(cache, _key("grids", HERE)) and _cached(cache, _key("grids", FAR))
    assert _index_matches(cache)


def test_a_page_read_before_a_change_is_refused() -> None:
    cache = TileCache(POLICIES)
    generation = cache.generation("grids")
    cache.apply([_point_change(1, "areas", 0.0, 0.0)])  # far away, still a newer generation
    cache.put_page(_key("grids", HERE), PAGE, generation=generation)
    assert cache.get_page(_key("grids", HERE)) is None and cache.stats.refused_puts == 1


def test_hits_and_misses_are_counted_apart_from_tiles() -> None:
    cache = TileCache(POLICIES)
    assert cache.get_page(_key("grids", HERE)) is None
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    assert cache.get_page(_key("grids", HERE)) == PAGE
    assert (cache.stats.page_hits, cache.stats.page_misses) == (1, 1)
    assert (cache.stats.hits, cache.stats.misses) == (0, 0)


def test_pages_of_clock_dependent_layers_expire() -> None:
    cache = TileCache(POLICIES)
    cache.put_page(_key("cases", HERE), PAGE, generation=0)
    assert cache.get_page(_key("cases", HERE)) == PAGE
    time.sleep(0.06)
    assert cache.get_page(_key("cases", HERE)) is None


def test_pages_take_at_most_a_quarter_of_the_cache_and_the_whole_stays_bounded() -> None:
    cache = TileCache(POLICIES, max_bytes=40_000)
    for x in range(8):  # 8 tiles of 4 kB: 33.6 kB with the overhead
        cache.put(("grids", 14, x, 0, ""), b"t" * 4000, generation=0)
    page = ("f" * 2000, 1, 1)
    for offset in range(10):  # 10 pages of 2.3 kB: only 4 fit in the quarter (10 kB)
        cache.put_page(_key("grids", HERE, offset=offset * 100), page, generation=0)
    assert cache.pages.bytes <= 10_000 and len(cache.pages) == 4
    assert _cached(cache, _key("grids", HERE, offset=900))  # the least recent went first
    assert not _cached(cache, _key("grids", HERE, offset=0))
    assert cache.size_bytes + cache.pages.bytes <= 40_000  # tiles made room
    assert cache.stats.pages_evicted_by_size == 6 and cache.stats.evicted_by_size >= 1
    assert _index_matches(cache)


def test_cache_off_stores_no_page() -> None:
    cache = TileCache(POLICIES, max_bytes=0)
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    assert len(cache.pages) == 0 and cache.get_page(_key("grids", HERE)) is None


def test_clearing_the_cache_drops_the_pages() -> None:
    cache = TileCache(POLICIES)
    cache.put_page(_key("grids", HERE), PAGE, generation=0)
    cache.clear()
    assert len(cache.pages) == 0 and cache.pages.bytes == 0

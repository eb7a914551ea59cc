"""An in-process tile cache that stays correct: evicted exactly where the data changed.

Writers never talk to the cache. Statement triggers (migration 0002_tiles) append the boxes of
changed rows to ``tile_invalidations``; every app process reads that table (``sync``, at most
every ``poll_interval_s``, on the request's own connection) and evicts the cached tiles of the
layers reading that table whose envelope, widened by the layer's margin, touches a changed box —
at every zoom. Everything else stays cached.

Reading a change log whose sequence numbers are handed out before commit needs care: a
transaction that took seq 10 may commit after one that took seq 11. ``InvalidationFeed``
therefore tracks transaction ids, not sequence numbers: each poll asks for the rows of every
transaction at or after the *previous* poll's snapshot horizon (``pg_snapshot_xmin``: every
older transaction has finished), skipping rows it has already applied. A row can thus only
become visible after a poll if its transaction was still running then, and such rows are asked
for again until the horizon passes them.

A tile rendered from a snapshot taken before a change can reach the cache after that change was
applied; ``put`` refuses it when the layer's generation moved since the request started.

Feature pages (OGC API ``items``) are cached beside the tiles (``PageStore``), under the same
rules: a page is evicted when a changed box of a table its layer reads touches the page's
``bbox`` (every page of the layer when the page has none or the change has no box), a page
read before a change is refused, and a layer's time to live bounds it too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, text

from gis.tiles import MVT_EXTENT, tiles_touching

# tile_invalidations rows are pruned after 15 minutes (migration 0002_tiles); a process that
# did not poll for longer than this cannot trust its cache any more and empties it.
MAX_POLL_GAP_S = 10 * 60

_POLL_SQL = text("""
    WITH h AS (SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint)
                      AS horizon)
    SELECT h.horizon, i.seq, i.txid, i.table_name, i.lon_min, i.lat_min, i.lon_max, i.lat_max
      FROM h LEFT JOIN tile_invalidations i
        ON i.txid >= COALESCE(CAST(:since AS bigint), h.horizon)
     ORDER BY i.seq
""")


@dataclass(frozen=True)
class Change:
    """One changed box of one table; ``bbox`` None means the whole table."""

    seq: int
    table: str
    bbox: tuple[float, float, float, float] | None


class InvalidationFeed:
    """Every committed ``tile_invalidations`` row exactly once, whatever the commit order."""

    def __init__(self) -> None:
        self.horizon: int | None = None
        self._seen: dict[int, int] = {}  # seq -> txid, for rows of not-yet-settled transactions

    def poll(self, conn: Connection) -> list[Change]:
        rows = conn.execute(_POLL_SQL, {"since": self.horizon}).all()
        horizon = int(rows[0].horizon)
        changes: list[Change] = []
        for row in rows:
            if row.seq is None or row.seq in self._seen:
                continue
            self._seen[row.seq] = int(row.txid)
            bbox = None
            if row.lon_min is not None:
                bbox = (float(row.lon_min), float(row.lat_min), float(row.lon_max),
                        float(row.lat_max))
            changes.append(Change(int(row.seq), str(row.table_name), bbox))
        self.horizon = horizon
        self._seen = {s: t for s, t in self._seen.items() if t >= horizon}
        return changes


@dataclass(frozen=True)
class CachePolicy:
    """How one cached layer depends on the database: the tables it reads, the margin (tile
    extent units) around a tile within which a change can alter it, and an optional time to
    live for layers whose content also depends on the clock (overdue flags, stale positions)."""

    tables: tuple[str, ...]
    margin_units: float = 64
    extent: int = MVT_EXTENT
    ttl_s: float | None = None


@dataclass
class Entry:
    data: bytes
    etag: str
    expires: float | None


def etag_of(data: bytes) -> str:
    """A strong ETag: the content hash (SHA-256, its first 128 bits), quoted.

    SHA-256 rather than BLAKE2b: CPUs with the SHA extensions hash it about twice as fast
    (29 KB: 16 µs against 30 µs; a 246 KB z12 grid tile: 130 µs against 280 µs), and a cold
    tile hashes every response it sends."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


TileKey = tuple[str, int, int, int, str]  # layer, z, x, y, normalised filters


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evicted_by_change: int = 0
    evicted_by_size: int = 0
    changes_applied: int = 0
    refused_puts: int = 0
    polls: int = 0
    page_hits: int = 0
    page_misses: int = 0
    pages_evicted_by_change: int = 0
    pages_evicted_by_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


Box = tuple[float, float, float, float]  # lon/lat: west, south, east, north
K = TypeVar("K")


def keys_in(cells: Mapping[tuple[int, int], set[K]], x0: int, y0: int, x1: int, y1: int
            ) -> list[K]:
    """The keys indexed under the tiles ``x0..x1`` × ``y0..y1``: the range is walked when it
    is smaller than the index, else the index is scanned (a bulk change spans many tiles)."""
    if (x1 - x0 + 1) * (y1 - y0 + 1) <= len(cells):
        return [k for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)
                for k in cells.get((x, y), ())]
    return [k for (x, y), keys in cells.items() if x0 <= x <= x1 and y0 <= y <= y1
            for k in keys]
# layer, bbox (None: the whole layer), the rest of the query (times, filters), limit, offset
PageKey = tuple[str, Box | None, str, int, int]
Page = tuple[str, int, int | None]  # the features (comma-joined GeoJSON), returned, matched


@dataclass
class _PageEntry:
    page: Page
    box: Box | None  # the page's bbox widened (see PageStore.widened), or None
    expires: float | None
    size: int


class PageStore:
    """Cached feature pages of ``TileCache`` (not thread-safe: the cache's lock guards it).

    Pages are indexed by the z14 tiles their widened bbox touches (about 2 km across), so a
    change looks at the pages near it only; pages without a bbox, or wider than
    ``WIDE_CELLS`` such tiles, are checked one by one."""

    CELL_Z = 14
    WIDE_CELLS = 64

    def __init__(self) -> None:
        self.bytes = 0
        self._entries: OrderedDict[PageKey, _PageEntry] = OrderedDict()
        self._cells: dict[str, dict[tuple[int, int], set[PageKey]]] = {}
        self._wide: dict[str, set[PageKey]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def widened(bbox: Box) -> Box:
        """The box a change must touch to alter the page: ``bbox`` plus 100 m and 1 % a side,
        so that a layer stored in another CRS (the bbox transformed there) is covered too."""
        x0, y0, x1, y1 = bbox
        m = 1e-3 + 0.01 * max(x1 - x0, y1 - y0)
        return x0 - m, y0 - m, x1 + m, y1 + m

    def _cells_of(self, box: Box) -> tuple[int, int, int, int]:
        return tiles_touching(box, self.CELL_Z, 0)

    def get(self, key: PageKey) -> _PageEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: PageKey, entry: _PageEntry) -> None:
        self.remove(key)
        self._entries[key] = entry
        self.bytes += entry.size
        layer = key[0]
        if entry.box is None:
            self._wide.setdefault(layer, set()).add(key)
            return
        x0, y0, x1, y1 = self._cells_of(entry.box)
        if (x1 - x0 + 1) * (y1 - y0 + 1) > self.WIDE_CELLS:
            self._wide.setdefault(layer, set()).add(key)
            return
        cells = self._cells.setdefault(layer, {})
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                cells.setdefault((x, y), set()).add(key)

    def remove(self, key: PageKey) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self.bytes -= entry.size
        layer = key[0]
        wide = self._wide.get(layer)
        if wide is not None and key in wide:
            wide.discard(key)
            return True
        assert entry.box is not None
        cells = self._cells.get(layer, {})
        x0, y0, x1, y1 = self._cells_of(entry.box)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                keys = cells.get((x, y))
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del cells[(x, y)]
        return True

    def pop_oldest(self) -> bool:
        if not self._entries:
            return False
        return self.remove(next(iter(self._entries)))

    def evict(self, layer: str, bbox: Box | None) -> int:
        """Drop the layer's pages a change of ``bbox`` (None: anywhere) may alter."""
        if bbox is None:
            doomed = [k for k in self._entries if k[0] == layer]
        else:
            def touches(key: PageKey) -> bool:
                box = self._entries[key].box
                return box is None or (box[0] <= bbox[2] and bbox[0] <= box[2]
                                       and box[1] <= bbox[3] and bbox[1] <= box[3])

            candidates = set(self._wide.get(layer, ()))
            candidates.update(keys_in(self._cells.get(layer, {}), *self._cells_of(bbox)))
            doomed = [k for k in candidates if touches(k)]
        for key in doomed:
            self.remove(key)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
        self._cells.clear()
        self._wide.clear()
        self.bytes = 0


class TileCache:
    """LRU of rendered tiles bounded by bytes, evicted by data changes (see module doc).

    ``max_bytes=0`` disables storing (every request renders; ETags still work).
    """

    def __init__(self, policies: Mapping[str, CachePolicy], *, max_bytes: int = 256 << 20,
                 poll_interval_s: float = 0.2) -> None:
        self.policies = dict(policies)
        self.max_bytes = max_bytes
        self.poll_interval_s = poll_interval_s
        self.stats = CacheStats()
        self._entries: OrderedDict[TileKey, Entry] = OrderedDict()
        self._index: dict[str, dict[int, dict[tuple[int, int], set[TileKey]]]] = {}
        self._bytes = 0
        self._generation: dict[str, int] = {}
        self._meta: dict[tuple[str, str], Any] = {}
        self._by_table: dict[str, list[str]] = {}
        for layer, policy in self.policies.items():
            for table in policy.tables:
                self._by_table.setdefault(table, []).append(layer)
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._feed = InvalidationFeed()
        self._last_poll = 0.0
        self.pages = PageStore()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    # --- reading the change log -----------------------------------------------------------

    def poll_due(self) -> bool:
        return time.monotonic() - self._last_poll >= self.poll_interval_s

    def sync(self, conn: Connection, *, force: bool = False) -> int:
        """Apply committed changes if the last poll is older than ``poll_interval_s``.

        Only one thread polls at a time; the others go on with the cache as it is (at most one
        poll interval behind). Returns the number of changes applied.
        """
        now = time.monotonic()
        if not force and now - self._last_poll < self.poll_interval_s:
            return 0
        if not self._poll_lock.acquire(blocking=force):
            return 0
        try:
            gap = now - self._last_poll
            changes = self._feed.poll(conn)
            self.stats.polls += 1
            if self._last_poll and gap > MAX_POLL_GAP_S:
                self.clear()
            self._last_poll = now
            self.apply(changes)
            return len(changes)
        finally:
            self._poll_lock.release()

    def apply(self, changes: Iterable[Change]) -> None:
        with self._lock:
            for change in changes:
                self.stats.changes_applied += 1
                for layer in self._by_table.get(change.table, ()):
                    self._generation[layer] = self._generation.get(layer, 0) + 1
                    self._meta = {k: v for k, v in self._meta.items() if k[0] != layer}
                    self._evict_area(layer, change.bbox)
                    self.stats.pages_evicted_by_change += self.pages.evict(layer, change.bbox)

    def _evict_area(self, layer: str, bbox: tuple[float, float, float, float] | None) -> None:
        by_zoom = self._index.get(layer)
        if not by_zoom:
            return
        policy = self.policies[layer]
        for z, cells in list(by_zoom.items()):
            if bbox is None:
                doomed = [k for keys in cells.values() for k in keys]
            else:
                doomed = keys_in(cells, *tiles_touching(bbox, z, policy.margin_units,
                                                        policy.extent))
            for key in doomed:
                self._remove(key)
                self.stats.evicted_by_change += 1

    # --- entries ----------------------------------------------------------------------------

    def generation(self, layer: str) -> int:
        """Take this before reading the database; hand it back to ``put``."""
        return self._generation.get(layer, 0)

    def get(self, key: TileKey) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            if entry.expires is not None and entry.expires < time.monotonic():
                self._remove(key)
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry

    def put(self, key: TileKey, data: bytes, *, generation: int, etag: str | None = None
            ) -> Entry:
        """Store a rendered tile unless a change to its layer was applied since ``generation``
        was taken (the tile may predate it). Returns the entry either way."""
        layer = key[0]
        policy = self.policies[layer]
        expires = time.monotonic() + policy.ttl_s if policy.ttl_s else None
        entry = Entry(data, etag or etag_of(data), expires)
        if not self.enabled or len(data) > self.max_bytes // 4:
            return entry
        with self._lock:
            if self._generation.get(layer, 0) != generation:
                self.stats.refused_puts += 1
                return entry
            if key in self._entries:
                self._remove(key)
            self._entries[key] = entry
            self._bytes += len(data) + 200  # rough per-entry overhead
            _, z, x, y, _ = key
            self._index.setdefault(layer, {}).setdefault(z, {}).setdefault((x, y), set()).add(key)
            while self._bytes + self.pages.bytes > self.max_bytes and self._entries:
                oldest = next(iter(self._entries))
                self._remove(oldest)
                self.stats.evicted_by_size += 1
        return entry

    def _remove(self, key: TileKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= len(entry.data) + 200
        layer, z, x, y, _ = key
        cells = self._index.get(layer, {}).get(z)
        if cells is not None:
            keys = cells.get((x, y))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del cells[(x, y)]
            if not cells:
                del self._index[layer][z]

    # --- feature pages (PageStore) ------------------------------------------------------------

    def get_page(self, key: PageKey) -> Page | None:
        """A cached feature page (taking a due poll first is the caller's part, as for tiles)."""
        with self._lock:
            entry = self.pages.get(key)
            if entry is not None and entry.expires is not None \
                    and entry.expires < time.monotonic():
                self.pages.remove(key)
                entry = None
            if entry is None:
                self.stats.page_misses += 1
                return None
            self.stats.page_hits += 1
            return entry.page

    def put_page(self, key: PageKey, page: Page, *, generation: int) -> None:
        """Store a feature page read after ``generation`` was taken, unless a change to its
        layer was applied since. Pages take at most a quarter of the cache's bytes."""
        layer, bbox = key[0], key[1]
        policy = self.policies[layer]
        size = len(page[0]) + 300  # rough per-entry overhead (the key, the index)
        budget = self.max_bytes // 4
        if not self.enabled or size > budget // 4:
            return
        expires = time.monotonic() + policy.ttl_s if policy.ttl_s else None
        entry = _PageEntry(page, PageStore.widened(bbox) if bbox else None, expires, size)
        with self._lock:
            if self._generation.get(layer, 0) != generation:
                self.stats.refused_puts += 1
                return
            self.pages.put(key, entry)
            while self.pages.bytes > budget and self.pages.pop_oldest():
                self.stats.pages_evicted_by_size += 1
            while self._bytes + self.pages.bytes > self.max_bytes and self._entries:
                self._remove(next(iter(self._entries)))
                self.stats.evicted_by_size += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._index.clear()
            self._meta.clear()
            self.pages.clear()
            self._bytes = 0
            for layer in self.policies:
                self._generation[layer] = self._generation.get(layer, 0) + 1

    # --- small per-layer metadata (TileJSON bounds...), dropped on any change to the layer ---

    def get_meta(self, layer: str, key: str) -> Any:
        return self._meta.get((layer, key))

    def put_meta(self, layer: str, key: str, value: Any, *, generation: int) -> None:
        with self._lock:
            if self._generation.get(layer, 0) == generation:
                self._meta[(layer, key)] = value


class TileCacheSettings(BaseSettings):
    """The server-side tile cache (``GRIDGOV_TILES_`` prefix); ``cache_mb=0`` turns it off."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_TILES_", extra="ignore")

    cache_mb: int = 256
    poll_interval_s: float = 0.2

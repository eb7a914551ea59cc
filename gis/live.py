"""Live changes from the database: one change-log reader per process, fanned out to subscribers.

Triggers (migrations ``0002_dispatch``, ``0004_cases_speed``, ``0008_intake_speed``) append JSON
payloads to ``live_changes`` for every responder position/status change and every case change,
the changed rows of one statement packed into payloads of at most ~7,000 bytes; a statement
that changed more than 5,000 cases (50,000 responders) appends one ``bulk`` note instead,
decided by counting the rows before any item is built.

Why a table and not ``NOTIFY``: a transaction that notifies holds one cluster-wide lock from its
commit until the commit record is flushed, so every case intake would commit one at a time
(group commit stops working). Appending a row costs writers nothing shared.

The reader (:class:`ChangeFeed`) asks, every ``poll_s``, for the rows of the transactions that
became visible since its previous snapshot (``pg_visible_in_snapshot``): each committed row
exactly once, whatever order the transactions took their sequence numbers in, and rolled-back
rows never. The listener numbers events (``seq``) and keeps the last ``buffer`` of them so a
reconnecting client can resume from its ``Last-Event-ID``; if the connection to the database
drops, subscribers get a ``resync`` event (reload the full state) once it is back.

No web code here: the API bridges :meth:`ChangeListener.subscribe` callbacks to its streams.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger("gridgov.live")

Event = dict[str, Any]
Callback = Callable[[Event], None]

# Payloads of the transactions that the previous poll's snapshot did not see but this
# statement does (its snapshot is pg_current_snapshot()): committed since that poll. Rows of a
# transaction still running are not visible now and come with a later poll. A transaction the
# previous snapshot did not see either started at or after its xmax or was in progress then
# (its xip list): two index lookups. Bounding by its xmin instead rescanned, every poll, every
# row written since the oldest transaction still running anywhere in the cluster (a pg_dump, a
# session idle in transaction): 20,000 rows behind one such transaction cost 26 ms per poll,
# a quarter of a core at 10 polls/s; these lookups take 0.1 ms.
_POLL_SQL = """
SELECT CAST(pg_current_snapshot() AS text) AS snapshot, l.seq, l.payload
  FROM (SELECT CAST(%(prev)s AS pg_snapshot) AS s) prev
  LEFT JOIN live_changes l
    ON (l.txid >= CAST(CAST(pg_snapshot_xmax(prev.s) AS text) AS bigint)
        OR l.txid = ANY(ARRAY(SELECT CAST(CAST(x AS text) AS bigint)
                                FROM pg_snapshot_xip(prev.s) AS x)))
   AND NOT pg_visible_in_snapshot(CAST(CAST(l.txid AS text) AS xid8), prev.s)
 ORDER BY l.seq
"""
_START_SQL = "SELECT CAST(pg_current_snapshot() AS text)"
# Writers prune too (migration 0008_intake_speed); SKIP LOCKED: nobody waits for pruning.
_PRUNE_SQL = """
DELETE FROM live_changes WHERE seq IN (
    SELECT seq FROM live_changes WHERE at < clock_timestamp() - interval '15 minutes'
     ORDER BY seq LIMIT 10000 FOR UPDATE SKIP LOCKED)
"""
PRUNE_EVERY_S = 60.0


class ChangeFeed:
    """Every committed ``live_changes`` payload exactly once, from the first poll on.

    Sequence numbers are taken before commit, so "everything after the last seq seen" would
    miss a transaction that took seq 10 but committed after the one that took seq 11. The feed
    therefore remembers the snapshot of its last poll and asks for the rows of transactions
    that were invisible to it and are visible now. Within one poll, rows come in ``seq`` order;
    two changes of the same row are always in commit order (the second writer waited for the
    first one's commit before its trigger ran).
    """

    def __init__(self) -> None:
        self.snapshot: str | None = None

    def poll(self, cursor: Any) -> list[str]:
        """Payloads committed since the previous poll (the first poll only starts the feed)."""
        if self.snapshot is None:
            cursor.execute(_START_SQL)
            self.snapshot = str(cursor.fetchone()[0])
            return []
        cursor.execute(_POLL_SQL, {"prev": self.snapshot})
        rows = cursor.fetchall()
        self.snapshot = str(rows[0][0])
        return [str(row[2]) for row in rows if row[1] is not None]


def expand(payload: str) -> list[Event]:
    """One ``live_changes`` payload → events. The triggers append ``{"type": t, "items":
    [...]}`` (changed rows of one statement, as many as fit in ~7,000 bytes) or ``{"type": t,
    "op": "bulk", "count": n}`` when one statement changed too many rows to stream (an
    import): that becomes a ``resync``.

    >>> expand('{"type": "case", "items": [{"id": 1}, {"id": 2}]}')
    [{'type': 'case', 'id': 1}, {'type': 'case', 'id': 2}]
    >>> expand('{"type": "case", "op": "bulk", "count": 90000}')[0]["type"]
    'resync'
    """
    try:
        note = json.loads(payload)
    except ValueError:
        return []
    if not isinstance(note, dict):
        return []
    kind = note.get("type")
    if note.get("op") == "bulk":
        return [{"type": "resync", "kind": kind,
                 "reason": f"{note.get('count')} {kind} rows changed at once"}]
    items = note.get("items")
    if isinstance(items, list):
        return [{"type": kind, **item} for item in items if isinstance(item, dict)]
    return [note]


class ChangeListener:
    """Background thread: poll ``live_changes`` every ``poll_s`` and call every subscriber for
    each event.

    >>> # listener = ChangeListener(engine); token = listener.subscribe(print); ...
    >>> # listener.unsubscribe(token); listener.stop()
    """

    def __init__(self, engine: Engine, *, buffer: int = 2000, poll_s: float = 0.1):
        self._engine = engine
        self._poll_s = poll_s
        self._subscribers: dict[int, Callback] = {}
        self._tokens = count(1)
        self._seq = count(1)
        self._recent: deque[Event] = deque(maxlen=buffer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # -- subscription --------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> int:
        with self._lock:
            token = next(self._tokens)
            self._subscribers[token] = callback
        self.start()
        return token

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def since(self, seq: int) -> list[Event] | None:
        """Buffered events after ``seq``; None when ``seq`` is older than the buffer."""
        with self._lock:
            if not self._recent:
                return []
            if seq < self._recent[0]["seq"] - 1:
                return None
            return [e for e in self._recent if e["seq"] > seq]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._recent[-1]["seq"] if self._recent else 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, *, wait_s: float = 5.0) -> None:
        """Start the thread (idempotent) and wait until it is listening."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, name="gridgov-live",
                                                daemon=True)
                self._thread.start()
        self._ready.wait(wait_s)

    def stop(self, *, wait_s: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(wait_s)

    @property
    def listening(self) -> bool:
        return self._ready.is_set() and not self._stop.is_set()

    # -- the thread ----------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        with self._lock:
            event["seq"] = next(self._seq)
            self._recent.append(event)
            targets = list(self._subscribers.values())
        for callback in targets:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop the feed
                log.exception("live subscriber failed")

    def _run(self) -> None:
        backoff = 0.5
        lost = False
        while not self._stop.is_set():
            raw = None
            try:
                raw = self._engine.raw_connection()
                pg: Any = raw.dbapi_connection
                raw.detach()  # this connection is ours for as long as we listen
                pg.autocommit = True
                with pg.cursor() as cur:
                    # A fresh start after a reconnect (subscribers get ``resync``): the server
                    # may be another one by now (a restore), whose transaction ids do not
                    # continue ours.
                    feed = ChangeFeed()
                    feed.poll(cur)
                    self._ready.set()
                    if lost:
                        self._publish({"type": "resync", "reason": "live feed reconnected"})
                    backoff = 0.5
                    pruned = time.monotonic()
                    while not self._stop.wait(self._poll_s):
                        for payload in feed.poll(cur):
                            for event in expand(payload):
                                self._publish(event)
                        if time.monotonic() - pruned >= PRUNE_EVERY_S:
                            cur.execute(_PRUNE_SQL)
                            pruned = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - reconnect on any database trouble
                if self._stop.is_set():
                    break
                lost = True
                self._ready.clear()
                log.warning("live listener lost the database (%s); retrying",
                            type(exc).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.close()  # detached: closes the DBAPI connection itself
        self._ready.clear()

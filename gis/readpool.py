"""The read pool: asyncpg connections for the hot read-only statements (tiles, GeoJSON pages).

A tile or a page is one statement. Run through SQLAlchemy and psycopg2 it costs the server a
hop to a worker thread and back, a pool checkout and SQLAlchemy's execution machinery — about
as much Python as the HTTP stack itself. On this pool the same statement (``gis.tiles.Read``,
built by the same functions) runs on the event loop, with no thread and no transaction
(autocommit, as ``gis.tiles.read_only`` gives the sync path), as a prepared statement (parsed
once per connection; ``plan_cache_mode = force_custom_plan`` still plans every execution with
its values, as the literal SQL of psycopg2 is planned). The sessions hold the settings the
sync path sets with ``SET LOCAL`` in front of tile statements (``gis.tiles.SERIAL``).

Nothing here changes session state, so a connection goes back to the pool as it is: no reset
round trip (``asyncpg.Pool`` sends ``RESET ALL; UNLISTEN *; ...``), and the pool is a small
one of its own (``ReadPool``).

>>> positional("SELECT :a + :b, :a")
('SELECT $1 + $2, $1', ('a', 'b'))
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from functools import lru_cache
from typing import Any

import asyncpg

from gis.tiles import SERIAL, SERIAL_SETTINGS, Read

# The session settings of every read-pool connection.
READ_SETTINGS = {**SERIAL_SETTINGS, "plan_cache_mode": "force_custom_plan",
                 "application_name": "gridgov-read"}

# SQLAlchemy's own pattern for ``:name`` bind parameters in ``text()``.
_NAMED = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


@lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``:name`` parameters as asyncpg's ``$n`` (and no ``SERIAL`` prefix), and
    the names in ``$n`` order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql.removeprefix(SERIAL)), tuple(names)


def _statement(read: Read) -> tuple[str, list[Any]]:
    sql, names = positional(read.clause.text)
    return sql, [read.params[name] for name in names]


async def fetchval(con: asyncpg.Connection, read: Read) -> Any:
    """``read``'s first column of its first row (None when there is no row): ``Read.run``."""
    sql, args = _statement(read)
    return await con.fetchval(sql, *args)


async def fetchrow(con: asyncpg.Connection, read: Read) -> asyncpg.Record | None:
    sql, args = _statement(read)
    return await con.fetchrow(sql, *args)


class ReadPoolTimeout(TimeoutError):
    """No read-pool connection came free in time."""


class ReadPool:
    """At most ``size`` asyncpg connections, opened on first need on the loop that uses them.

    Much less than ``asyncpg.Pool`` does per checkout (no task per release, no reset query,
    no timeout machinery unless a request has to wait): the statements run here change no
    session state. A connection whose use raised anything (a cancelled request may leave a
    statement running) is closed rather than reused.
    """

    def __init__(self, connect_kwargs: dict[str, Any], *, size: int, acquire_timeout_s: float
                 ) -> None:
        self._kwargs = connect_kwargs
        self.size = size
        self.acquire_timeout_s = acquire_timeout_s
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._count = 0  # open or being opened
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the read pool is closed")
            while self._idle:
                con = self._idle.pop()
                if not con.is_closed():
                    return con
                self._count -= 1
            if self._count < self.size:
                self._count += 1
                try:
                    return await asyncpg.connect(server_settings=READ_SETTINGS, **self._kwargs)
                except BaseException:
                    self._count -= 1
                    self._wake(None)
                    raise
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, self.acquire_timeout_s)
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()  # handed over just as we gave up: pass it on
                    if handed is not None:
                        self.release(handed)
                    else:
                        self._wake(None)
                if isinstance(exc, TimeoutError):
                    raise ReadPoolTimeout(f"no read-pool connection free within"
                                          f" {self.acquire_timeout_s} s") from None
                raise
            if handed is not None:
                return handed
            # None: a connection was closed, there is room to open one: go round again

    def release(self, con: asyncpg.Connection, *, broken: bool = False) -> None:
        """Give ``con`` back; ``broken``: close it instead (its use failed)."""
        if broken or self._closed or con.is_closed():
            con.terminate()
            self._count -= 1
            self._wake(None)
        elif not self._wake(con):
            self._idle.append(con)

    def _wake(self, con: asyncpg.Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(con)
                return True
        return False

    def connection(self) -> _Lease:
        """``async with pool.connection() as con``: a connection for the block."""
        return _Lease(self)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for con in idle:
            self._count -= 1
            await con.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the read pool is closed"))


class _Lease:
    __slots__ = ("pool", "con")

    def __init__(self, pool: ReadPool) -> None:
        self.pool = pool
        self.con: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self.con = await self.pool.acquire()
        return self.con

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        assert self.con is not None
        self.pool.release(self.con, broken=kind is not None)

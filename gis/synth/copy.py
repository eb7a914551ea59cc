"""Bulk loading with PostgreSQL ``COPY ... FROM STDIN`` (text format) on the raw psycopg2
connection, streamed from generators so that Python formats chunk n + 1 while the server
ingests chunk n, and memory stays bounded whatever the row count.

Geometries travel as hex EWKB, built with numpy for fixed-size shapes (points, 4-corner
footprints): exact doubles, no text round trip, no per-row shapely object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

_POINT_HEADER = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4")])
_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("x", "<f8"),
                   ("y", "<f8")])
_QUAD = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("rings", "<u4"),
                  ("points", "<u4"), ("xy", "<f8", (10,))])
_SRID_FLAG = 0x20000000


def _split_hex(buffer: bytes, width: int) -> list[str]:
    text = buffer.hex()
    step = 2 * width
    return [text[i:i + step] for i in range(0, len(text), step)]


def ewkb_points(lon: NDArray[np.float64], lat: NDArray[np.float64], srid: int = 4326
                ) -> list[str]:
    """Hex EWKB of POINT(lon lat) with ``srid``; NaN coordinates give NULL."""
    rows = np.empty(len(lon), dtype=_POINT)
    rows["order"] = 1
    rows["type"] = 1 | _SRID_FLAG
    rows["srid"] = srid
    rows["x"] = lon
    rows["y"] = lat
    out = _split_hex(rows.tobytes(), _POINT.itemsize)
    missing = np.flatnonzero(np.isnan(lon) | np.isnan(lat))
    for i in missing.tolist():
        out[i] = NULL
    return out


def ewkb_quads(rings: NDArray[np.float64], srid: int = 4326) -> list[str]:
    """Hex EWKB of polygons given as (n, 5, 2) closed rings."""
    rows = np.empty(len(rings), dtype=_QUAD)
    rows["order"] = 1
    rows["type"] = 3 | _SRID_FLAG
    rows["srid"] = srid
    rows["rings"] = 1
    rows["points"] = 5
    rows["xy"] = rings.reshape(len(rings), 10)
    return _split_hex(rows.tobytes(), _QUAD.itemsize)


def ints(values: NDArray[np.integer], null: int | None = None) -> list[str]:
    out: list[str] = np.asarray(values).astype(np.int64).astype(str).tolist()
    if null is not None:
        for i in np.flatnonzero(np.asarray(values) == null).tolist():
            out[i] = NULL
    return out


def floats(values: NDArray[np.floating]) -> list[str]:
    """Shortest round-trip text of each double; NaN gives NULL."""
    arr = np.asarray(values, dtype=np.float64)
    out = [repr(v) for v in arr.tolist()]
    for i in np.flatnonzero(np.isnan(arr)).tolist():
        out[i] = NULL
    return out


def times(epoch_s: NDArray[np.int64], null: int | None = None) -> list[str]:
    """ISO-8601 UTC timestamps ('2025-01-02T03:04:05Z') from epoch seconds."""
    arr = np.asarray(epoch_s, dtype=np.int64)
    out: list[str] = np.datetime_as_string(arr.astype("datetime64[s]"), unit="s",
                                           timezone="UTC").tolist()
    if null is not None:
        for i in np.flatnonzero(arr == null).tolist():
            out[i] = NULL
    return out


def texts(values: Iterable[object]) -> list[str]:
    """COPY-escaped text; None gives NULL."""
    return [NULL if v is None else str(v).translate(_ESCAPES) for v in values]


def const(value: object, n: int) -> list[str]:
    return [NULL if value is None else str(value)] * n


def tsv(columns: Sequence[list[str]]) -> bytes:
    """Rows of COPY text format from equally long columns of already formatted fields."""
    if not columns or not columns[0]:
        return b""
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


class _ChunkReader:
    """A read-only file over an iterator of byte chunks (what ``copy_expert`` wants).

    ``read`` may return fewer bytes than asked (psycopg2 reads until it gets ``b""``), so a big
    chunk is handed out in slices without ever being copied as a whole.
    """

    def __init__(self, chunks: Iterator[bytes], on_chunk: Callable[[bytes], None] | None
                 ) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._pos = 0
        self._on_chunk = on_chunk

    def read(self, size: int = -1) -> bytes:
        while self._pos >= len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            if self._on_chunk is not None:
                self._on_chunk(chunk)
            self._chunk, self._pos = chunk, 0
        end = len(self._chunk) if size < 0 else self._pos + size
        out = self._chunk[self._pos:end]
        self._pos += len(out)
        return out


def copy_in(conn: Connection, table: str, columns: Sequence[str], chunks: Iterable[bytes],
            *, on_chunk: Callable[[bytes], None] | None = None) -> None:
    """Stream ``chunks`` (COPY text rows) into ``table`` within the connection's transaction.

    ``table`` and ``columns`` are identifiers written by this package, never user input.
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    cur = raw.cursor()
    try:
        cur.copy_expert(sql, _ChunkReader(iter(chunks), on_chunk), size=1 << 20)  # type: ignore[attr-defined]
    finally:
        cur.close()


_SEGMENT = np.dtype([("order", "u1"), ("type", "<u4"), ("srid", "<u4"), ("points", "<u4"),
                     ("xy", "<f8", (4,))])


def ewkb_segments(x1: NDArray[np.float64], y1: NDArray[np.float64], x2: NDArray[np.float64],
                  y2: NDArray[np.float64], srid: int = 4326) -> list[str]:
    """Hex EWKB of two-point LINESTRINGs."""
    rows = np.empty(len(x1), dtype=_SEGMENT)
    rows["order"] = 1
    rows["type"] = 2 | _SRID_FLAG
    rows["srid"] = srid
    rows["points"] = 2
    rows["xy"] = np.column_stack([x1, y1, x2, y2])
    return _split_hex(rows.tobytes(), _SEGMENT.itemsize)

"""Request dependencies: the database connection (one per request, from the app's pool)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection


def get_conn(request: Request) -> Iterator[Connection]:
    """A pooled connection; work not committed with ``commit()`` is rolled back."""
    with request.app.state.engine.connect() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn)]


def commit(conn: Connection) -> None:
    """Make the request's writes durable *before* the response goes out (2xx means stored).

    Under test the connection runs inside an outer transaction: only the savepoint is released.
    """
    nested = conn.get_nested_transaction()
    if nested is not None:
        nested.commit()
        conn.begin_nested()
    else:
        conn.commit()

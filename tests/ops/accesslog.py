"""Catching the ``gridgov.access`` lines a block of a test logs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

from api.middleware import JsonFormatter


@contextlib.contextmanager
def access_lines() -> Iterator[list[dict[str, Any]]]:
    """The access lines logged inside the block, parsed from their JSON form (the list is
    filled when the block ends)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gridgov.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        lines.extend(json.loads(line) for line in out.getvalue().splitlines())

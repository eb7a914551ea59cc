"""Waiting for a change to reach what the app serves (the caches poll their change log)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def within(seconds: float, fetch: Callable[[], T], ok: Callable[[T], bool]) -> float:
    """Fetch until ``ok`` holds; the seconds it took. Fails when it takes longer."""
    start = time.monotonic()
    while not ok(fetch()):
        assert time.monotonic() - start < seconds, "change not visible in time"
        time.sleep(0.02)
    return time.monotonic() - start

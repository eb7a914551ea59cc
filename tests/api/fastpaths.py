"""Switching a fast path (``api.middleware.FastPath``) off, or watching what it answers, in the
tests that compare it with its route."""

from __future__ import annotations

from typing import Any

import pytest

from api.middleware import FastPath


async def no_answer(self: FastPath, scope: Any, *groups: str) -> None:
    return None  # every request goes on to the route


def spy_answers(monkeypatch: pytest.MonkeyPatch, cls: type[FastPath]) -> list[bool]:
    """Whether ``cls`` answered each request from now on (False: it went on to the route)."""
    seen: list[bool] = []
    original = cls.answer

    async def spy(self: FastPath, scope: Any, *groups: str) -> Any:
        response = await original(self, scope, *groups)
        seen.append(response is not None)
        return response

    monkeypatch.setattr(cls, "answer", spy)
    return seen

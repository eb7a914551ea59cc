"""Demo city (placeholder until the Helsinki loader lands)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gis.settings import CitySettings


def load_demo(conn: Connection, *, city: CitySettings, progress: bool = False,
              reload: bool = False) -> dict[str, Any]:
    raise NotImplementedError("the Helsinki demo loader is being written")

"""Settings, one pydantic-settings class per concern, each with the ``GRIDGOV_`` env prefix.

Nothing here is instantiated at import time: callers build the settings they need and pass
them down (``DatabaseSettings()`` reads the environment when it is constructed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding gridgov's pyproject.toml.

    Falls back to ``start`` itself, so an installed gridgov keeps its data beside where it runs.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "gridgov"' in pyproject.read_text(errors="ignore"):
            return folder
    return here


def _default_data_dir() -> Path:
    """``<project>/.gridgov``; when run as root from a folder the ``postgres`` user cannot
    enter (PostgreSQL then runs as ``postgres``), a per-project folder under /var/tmp."""
    folder = project_root() / ".gridgov"
    if os.geteuid() == 0 and any(not p.stat().st_mode & 0o001 for p in folder.parents
                                 if p.exists()):
        digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"gridgov-{digest}"
    return folder


class DatabaseSettings(BaseSettings):
    """Where the database is: an existing server (``GRIDGOV_DATABASE_URL``) or the embedded one."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of an existing PostGIS database (production)."
    )
    data_dir: Path = Field(default_factory=_default_data_dir)
    pg_port: int = 55432
    pg_bin: Path | None = Field(default=None, description="Folder with initdb/pg_ctl/postgres.")
    db_name: str = "gridgov"
    pool_size: int = 10
    max_overflow: int = 20

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"


class CitySettings(BaseSettings):
    """How the demo city is cut: targets per level and the local metric projection."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_CITY_", extra="ignore")

    household_target: int = Field(default=200, description="Households per grid (DOMAIN.md).")
    grids_per_community: int = 12
    communities_per_street: int = 4
    streets_per_district: int = 3
    county_codes: list[str] = Field(default_factory=lambda: ["910101", "910102"])
    local_epsg: int = Field(default=3067, description="Metric CRS for Helsinki (ETRS-TM35FIN).")


class ServerSettings(BaseSettings):
    """The HTTP server."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

"""Settings, one pydantic-settings class per concern, each with the ``GRIDGOV_`` env prefix.

Nothing here is instantiated at import time: callers build the settings they need and pass
them down (``DatabaseSettings()`` reads the environment when it is constructed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

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
    # A checked-in connection above pool_size is closed, so a pool smaller than the busy
    # moments' concurrency opens and closes a server process per request (≈ 1.4 ms of
    # PostgreSQL CPU each, docs/cases.md "Intake speed"): size it for the peaks.
    pool_size: int = 20
    max_overflow: int = 10

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
    gc_freeze: bool = Field(
        default=True, description="after start-up, move every live object out of the garbage"
        " collector's view (gc.freeze): a full collection then scans only what requests made,"
        " instead of holding the interpreter for 50-650 ms every few seconds under load")


class SecuritySettings(BaseSettings):
    """How exposed the service is: the run mode, CORS, body limits, security headers.

    ``mode=production`` makes the app refuse to start with unsafe defaults (the embedded
    database, live demo tokens, weak secrets); see docs/operations.md.
    """

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_", extra="ignore")

    mode: Literal["local", "production"] = Field(
        default="local", description="local (a developer's machine) or production")
    cors_origins: str = Field(
        default="", description="comma-separated origins allowed to call the API from a"
        " browser with credentials (e.g. https://city.example.org); empty: none; * : any")
    cors_public_read: bool = Field(
        default=True, description="tiles, styles, OGC API Features and Open311 GETs answer"
        " any origin (read-only, no credentials)")
    max_body_bytes: int = Field(default=4 << 20, ge=1024,
                                description="largest request body of ordinary endpoints")
    max_upload_bytes: int = Field(
        default=100 << 20, ge=1024, description="largest body of upload endpoints (case"
        " photos, bulk case import, plan import)")
    hsts_seconds: int = Field(
        default=0, ge=0, description="Strict-Transport-Security max-age on HTTPS requests"
        " (0: not sent); set it once TLS works")
    frame_ancestors: str = Field(
        default="'self'", description="CSP frame-ancestors: who may embed the pages in frames")

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]


class LimitSettings(BaseSettings):
    """Rate limits on intake (``GRIDGOV_LIMITS_*``), in the ``limits`` notation:
    ``"10/minute;100/hour"`` (several windows separated by ``;``); empty: no limit."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_LIMITS_", extra="ignore")

    enabled: bool = True
    public: str = Field(default="10/minute;60/hour",
                        description="per client IP without a token (report form, Open311)")
    account: str = Field(default="30/minute;300/hour",
                         description="per token of a non-staff account (reporter)")
    staff: str = Field(default="600/minute", description="per staff token; empty: none")
    storage: str = Field(
        default="memory://", description="counter storage: memory:// keeps them per worker"
        " process; redis://host:6379 shares them between workers (needs the redis package)")


class MetricsSettings(BaseSettings):
    """The Prometheus endpoint ``GET /metrics`` (``GRIDGOV_METRICS_*``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_METRICS_", extra="ignore")

    enabled: bool = True
    token: str | None = Field(
        default=None, description="when set, scrapers must send `Authorization: Bearer"
        " <token>`; otherwise only clients in `allow` may scrape")
    allow: str = Field(default="127.0.0.0/8,::1/128",
                       description="comma-separated networks that may scrape without a token")


class LogSettings(BaseSettings):
    """Application logs (``GRIDGOV_LOG_*``): the ``gridgov.*`` loggers, one access line per
    request with its request id."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_LOG_", extra="ignore")

    format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line (for log shippers)")
    level: str = "INFO"
    access: bool = Field(default=True, description="one `gridgov.access` line per request")

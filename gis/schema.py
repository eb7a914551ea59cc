"""Schema migrations through Alembic's API (``gridgov migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from gis.errors import SetupError

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(*, connection: Connection | None = None, dbname: str | None = None) -> Config:
    ini = ROOT / "alembic.ini"
    if not ini.is_file():
        raise SetupError(f"alembic.ini not found at {ini}: install gridgov from its source tree")
    config = Config(str(ini))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    if dbname is not None:
        config.attributes["dbname"] = dbname
    return config


def upgrade(*, connection: Connection | None = None, dbname: str | None = None,
            revision: str = "heads") -> None:
    command.upgrade(alembic_config(connection=connection, dbname=dbname), revision)


def downgrade(*, connection: Connection | None = None, dbname: str | None = None,
              revision: str = "base") -> None:
    command.downgrade(alembic_config(connection=connection, dbname=dbname), revision)

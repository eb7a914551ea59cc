"""Migrations on a real, fresh PostGIS database: up, down, up again, and no drift from models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.pool import NullPool

from gis import db, schema
from gis.models import Base
from gis.settings import DatabaseSettings


@pytest.fixture
def fresh_engine(db_settings: DatabaseSettings, worker_id: str) -> Iterator[Engine]:
    name = f"gridgov_migrations_{worker_id}"
    db.drop_database(db_settings, name)
    db.ensure_database(db_settings, name)
    engine = db.make_engine(db_settings, name, poolclass=NullPool)
    yield engine
    engine.dispose()
    db.drop_database(db_settings, name)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"spatial_ref_sys"}


def test_upgrade_downgrade_upgrade_round_trip(fresh_engine: Engine) -> None:
    name = fresh_engine.url.database
    schema.upgrade(dbname=name)
    assert _tables(fresh_engine) == set(Base.metadata.tables) | {"alembic_version"}
    schema.downgrade(dbname=name)
    assert _tables(fresh_engine) == {"alembic_version"}
    schema.upgrade(dbname=name)
    assert set(Base.metadata.tables) <= _tables(fresh_engine)


def test_migrated_schema_matches_models(fresh_engine: Engine) -> None:
    schema.upgrade(dbname=fresh_engine.url.database)
    with fresh_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    spatial_noise = {"spatial_ref_sys", "topology", "layer"}
    assert [d for d in diff if not any(n in str(d) for n in spatial_noise)] == []


def test_every_geometry_column_has_a_gist_index(engine: Engine) -> None:
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT f_table_name, f_geometry_column FROM geometry_columns"
            " WHERE f_table_schema = 'public'")).all()
        gist = conn.execute(text(
            "SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")).all()
    missing = [(t, c) for t, c in columns
               if not any(t == it and f"({c})" in idef for it, idef in gist)]
    assert columns and missing == []


def test_revisions_have_one_head() -> None:
    """Parallel branches are merged, so a new revision has one parent to build on."""
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(schema.alembic_config()).get_heads()) == 1

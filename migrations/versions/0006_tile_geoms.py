"""tile geometries: a stored Web Mercator copy of area geometry for vector tiles

Revision ID: 0006_tile_geoms
Revises: 0005_merge
Create Date: 2026-11-23 01:30:00

Tiles are drawn in Web Mercator (EPSG:3857). Transforming every polygon of a tile on every
request was a third of a cold area tile's SQL (a z12 grid tile holds ~2,900 polygons: 23-25 ms
with the transform, 17 ms without), so ``areas`` gets ``geom_3857``: a *stored generated*
column ``ST_Transform(geom, 3857)``. Being generated, it can never disagree with ``geom``: every
INSERT, UPDATE and COPY computes it, no trigger is needed, and the tile-cache triggers of
0002_tiles, which watch ``geom``, see every change exactly as before. Tiles still choose rows
on ``geom`` and draw them from ``geom_3857`` (``gis/tiles.py``).

Its GiST index (every geometry column has one) is partial, ``valid_to IS NULL``: only areas in
force are drawn.

Cases are left alone on purpose: a stored copy saved 1-2 ms of ~33 on a dense z14 case tile
(10,000 points; its time goes into heap reads and ST_AsMVT), and would cost every case write a
transform and a second GiST insert, and a million-row table rewrite here (docs/map.md).
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006_tile_geoms'
down_revision: str | None = '0005_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WEB_MERCATOR = 3857

# table -> (geometry type of its geom column, index predicate)
TABLES = {
    'areas': ('MultiPolygon', 'valid_to IS NULL'),
}


def upgrade() -> None:
    for table, (kind, where) in TABLES.items():
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN geom_3857 geometry({kind}, {WEB_MERCATOR})"
            f" GENERATED ALWAYS AS (ST_Transform(geom, {WEB_MERCATOR})) STORED")
        predicate = f" WHERE {where}" if where else ""
        op.execute(f"CREATE INDEX ix_{table}_geom_3857 ON {table} USING gist (geom_3857)"
                   f"{predicate}")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_geom_3857")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS geom_3857")

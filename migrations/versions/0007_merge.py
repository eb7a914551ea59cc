"""merge: the KPI rollup (0006_kpi_fast) and tile geometry (0006_tile_geoms) revisions

Revision ID: 0007_merge
Revises: 0006_kpi_fast, 0006_tile_geoms
Create Date: 2026-11-23 01:55:00
"""
from collections.abc import Sequence

revision: str = '0007_merge'
down_revision: tuple[str, ...] = ('0006_kpi_fast', '0006_tile_geoms')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

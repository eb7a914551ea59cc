"""KPI speed (issue 6): placeholder, filled by the KPI work

Revision ID: 0010_kpi_speed
Revises: 0009_tile_speed
Create Date: 2026-11-23 02:40:00
"""
from collections.abc import Sequence

revision: str = '0010_kpi_speed'
down_revision: str | None = '0009_tile_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""tile speed (issue 5): placeholder, filled by the tile work

Revision ID: 0009_tile_speed
Revises: 0008_intake_speed
Create Date: 2026-11-23 02:40:00
"""
from collections.abc import Sequence

revision: str = '0009_tile_speed'
down_revision: str | None = '0008_intake_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

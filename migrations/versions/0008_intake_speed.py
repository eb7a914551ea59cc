"""intake speed (issue 3): placeholder, filled by the intake work

Revision ID: 0008_intake_speed
Revises: 0007_merge
Create Date: 2026-11-23 02:40:00
"""
from collections.abc import Sequence

revision: str = '0008_intake_speed'
down_revision: str | None = '0007_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

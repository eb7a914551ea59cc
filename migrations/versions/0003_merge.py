"""merge: one head for the cases, tiles, dispatch, plans, analysis and open311 branches

Revision ID: 0003_merge
Revises: 0002_tiles, 0002_plans, 0002_analysis, 0003_open311
Create Date: 2026-11-23 00:00:00

The subsystems were added as parallel branches off ``0001``; this revision joins them so that
later revisions have a single parent and ``alembic heads`` names one revision.
"""
from collections.abc import Sequence

revision: str = '0003_merge'
down_revision: tuple[str, ...] = ('0002_tiles', '0002_plans', '0002_analysis', '0003_open311')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

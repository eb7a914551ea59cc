"""open311: find a case by its reporter's tracking token

Revision ID: 0003_open311
Revises: 0002_cases
Create Date: 2026-11-23 12:00:00

- ``ix_cases_tracking``: a partial index on ``cases.tracking_sha256``. Open311's
  ``GET tokens/{token}`` and the public tracking page (``/report/track/{token}``) look a case up
  by the SHA-256 of its tracking token; without the index that is a scan of every case.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_open311'
down_revision: str | None = '0002_cases'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_cases_tracking', 'cases', ['tracking_sha256'], unique=False,
                    postgresql_where=sa.text('tracking_sha256 IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_cases_tracking', table_name='cases',
                  postgresql_where=sa.text('tracking_sha256 IS NOT NULL'))

"""merge: the case, tile and audit revisions of 0004 back into one head

Revision ID: 0005_merge
Revises: 0004_case_open, 0004_audit
Create Date: 2026-11-23 01:20:00
"""
from collections.abc import Sequence

revision: str = '0005_merge'
down_revision: tuple[str, ...] = ('0004_case_open', '0004_audit')
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

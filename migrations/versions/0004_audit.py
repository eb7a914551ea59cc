"""audit: an append-only log of administrative actions

Revision ID: 0004_audit
Revises: 0003_merge
Create Date: 2026-11-23 01:00:00

- ``audit_log``: who (account id, name and role at the time; ``cli:<os user>`` for the command
  line) did what (``user.create``, ``category.update``, ``plan.publish``…) to which target,
  with details as JSON and the request id of the HTTP request. No foreign key to ``users``: the
  record must outlive the account. Written by ``gis/audit.py``.
- Append-only like ``case_events``: the existing ``gridgov_append_only()`` trigger refuses
  UPDATE and DELETE, and a statement trigger refuses TRUNCATE.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004_audit'
down_revision: str | None = '0003_merge'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_log',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('actor_id', sa.BigInteger(), nullable=True,
                  comment='users.id at the time (no foreign key: the log outlives accounts)'),
        sa.Column('actor_name', sa.Text(), nullable=False),
        sa.Column('actor_role', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.Text(), nullable=True),
        sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_index('ix_audit_log_actor', 'audit_log', ['actor_name', 'at'], unique=False)
    op.create_index('ix_audit_log_action', 'audit_log', ['action', 'at'], unique=False)
    op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
               " FOR EACH ROW EXECUTE FUNCTION gridgov_append_only()")
    op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
               " FOR EACH STATEMENT EXECUTE FUNCTION gridgov_append_only()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.drop_index('ix_audit_log_action', table_name='audit_log')
    op.drop_index('ix_audit_log_actor', table_name='audit_log')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')

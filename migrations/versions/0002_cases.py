"""cases: intake, routing rules, working calendar, summons

Revision ID: 0002_cases
Revises: 0001
Create Date: 2026-11-23 10:00:00

- ``cases`` gains who reported it (``reporter_id``), the SHA-256 of the reporter's tracking token,
  the fingerprint of the request that used its Idempotency-Key, and which routing rule chose the
  department; partial indexes for open cases by deadline (escalation, overdue filter), duplicates
  and reporters.
- ``calendar_days``: holidays and make-up working days per jurisdiction.
- ``routing_rules``: category × area routing (codes, so rules survive redraws).
- ``case_summons``: 吹哨报到, summon time and the department's first response.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_cases'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('cases', sa.Column('idempotency_fingerprint', sa.String(length=64), nullable=True, comment='SHA-256 of the request that used idempotency_key'))
    op.add_column('cases', sa.Column('reporter_id', sa.Integer(), nullable=True))
    op.add_column('cases', sa.Column('tracking_sha256', sa.String(length=64), nullable=True, comment="SHA-256 of the reporter's tracking token"))
    op.add_column('cases', sa.Column('routed_by', sa.Text(), nullable=True, comment='which rule chose the department: component, zone, rule, category'))
    op.create_foreign_key(op.f('fk_cases_reporter_id_users'), 'cases', 'users', ['reporter_id'], ['id'])
    op.create_index('ix_cases_open_due', 'cases', ['due_at'], unique=False, postgresql_where=sa.text("status NOT IN ('closed', 'rejected')"))
    op.create_index('ix_cases_duplicate_of', 'cases', ['duplicate_of'], unique=False, postgresql_where=sa.text('duplicate_of IS NOT NULL'))
    op.create_index('ix_cases_reporter', 'cases', ['reporter_id'], unique=False, postgresql_where=sa.text('reporter_id IS NOT NULL'))

    op.create_table('calendar_days',
    sa.Column('jurisdiction_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('working', sa.Boolean(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['jurisdiction_id'], ['jurisdictions.id'], name=op.f('fk_calendar_days_jurisdiction_id_jurisdictions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('jurisdiction_id', 'day', name=op.f('pk_calendar_days'))
    )
    op.create_table('routing_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction_id', sa.Integer(), nullable=False),
    sa.Column('area_code', sa.String(length=32), nullable=False),
    sa.Column('category_code', sa.String(length=16), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_routing_rules_department_id_departments')),
    sa.ForeignKeyConstraint(['jurisdiction_id'], ['jurisdictions.id'], name=op.f('fk_routing_rules_jurisdiction_id_jurisdictions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_routing_rules')),
    sa.UniqueConstraint('jurisdiction_id', 'area_code', 'category_code', name='uq_routing_rules_key')
    )
    op.create_table('case_summons',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('case_id', sa.BigInteger(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('summoned_by', sa.Integer(), nullable=True),
    sa.Column('summoned_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('responded_by', sa.Integer(), nullable=True),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_summons_case_id_cases')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_case_summons_department_id_departments')),
    sa.ForeignKeyConstraint(['responded_by'], ['users.id'], name=op.f('fk_case_summons_responded_by_users')),
    sa.ForeignKeyConstraint(['summoned_by'], ['users.id'], name=op.f('fk_case_summons_summoned_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_summons'))
    )
    op.create_index('ix_case_summons_case', 'case_summons', ['case_id'], unique=False)
    op.create_index('ix_case_summons_open', 'case_summons', ['department_id'], unique=False, postgresql_where=sa.text('responded_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_case_summons_open', table_name='case_summons', postgresql_where=sa.text('responded_at IS NULL'))
    op.drop_index('ix_case_summons_case', table_name='case_summons')
    op.drop_table('case_summons')
    op.drop_table('routing_rules')
    op.drop_table('calendar_days')
    op.drop_index('ix_cases_reporter', table_name='cases', postgresql_where=sa.text('reporter_id IS NOT NULL'))
    op.drop_index('ix_cases_duplicate_of', table_name='cases', postgresql_where=sa.text('duplicate_of IS NOT NULL'))
    op.drop_index('ix_cases_open_due', table_name='cases', postgresql_where=sa.text("status NOT IN ('closed', 'rejected')"))
    op.drop_constraint(op.f('fk_cases_reporter_id_users'), 'cases', type_='foreignkey')
    op.drop_column('cases', 'routed_by')
    op.drop_column('cases', 'tracking_sha256')
    op.drop_column('cases', 'reporter_id')
    op.drop_column('cases', 'idempotency_fingerprint')

"""plans: the planner workbench (operation log, cached counts, whole-jurisdiction plans)

Revision ID: 0002_plans
Revises: 0001
Create Date: 2026-11-23 12:00:00

- ``plans.root_area_id`` may be NULL: a plan of the whole jurisdiction. ``plans.version``
  counts the operations applied; ``updated_at`` and ``published_by`` record who did what when.
- ``plan_areas`` caches what the workbench shows per area (households, population, area) and
  carries the grid type through to publishing; an index on (plan_id, parent_key) serves the
  "children of this parent" queries every operation and check makes.
- ``plan_ops``: the operation log for undo/redo, the rows before and after each operation.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002_plans'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('plans', 'root_area_id', existing_type=sa.BigInteger(), nullable=True)
    op.add_column('plans', sa.Column('version', sa.Integer(), server_default='0', nullable=False, comment='operations applied so far'))
    op.add_column('plans', sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False))
    op.add_column('plans', sa.Column('published_by', sa.Integer(), nullable=True))
    op.create_foreign_key(op.f('fk_plans_published_by_users'), 'plans', 'users', ['published_by'], ['id'])
    op.add_column('plan_areas', sa.Column('grid_type', sa.Text(), nullable=True))
    op.add_column('plan_areas', sa.Column('households', sa.Integer(), server_default='0', nullable=False))
    op.add_column('plan_areas', sa.Column('population', sa.Integer(), server_default='0', nullable=False))
    op.add_column('plan_areas', sa.Column('area_m2', sa.Float(), server_default='0', nullable=False))
    op.create_index('ix_plan_areas_parent', 'plan_areas', ['plan_id', 'parent_key'], unique=False)
    op.create_table('plan_ops',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('summary', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('undone', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_plan_ops_actor_id_users')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_plan_ops_plan_id_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_ops')),
    sa.UniqueConstraint('plan_id', 'seq', name='uq_plan_ops_seq')
    )


def downgrade() -> None:
    op.drop_table('plan_ops')
    op.drop_index('ix_plan_areas_parent', table_name='plan_areas')
    op.drop_column('plan_areas', 'area_m2')
    op.drop_column('plan_areas', 'population')
    op.drop_column('plan_areas', 'households')
    op.drop_column('plan_areas', 'grid_type')
    op.drop_constraint(op.f('fk_plans_published_by_users'), 'plans', type_='foreignkey')
    op.drop_column('plans', 'published_by')
    op.drop_column('plans', 'updated_at')
    op.drop_column('plans', 'version')
    op.execute("DELETE FROM plans WHERE root_area_id IS NULL")
    op.alter_column('plans', 'root_area_id', existing_type=sa.BigInteger(), nullable=False)

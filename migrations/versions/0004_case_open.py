"""case_open: a redirected case is open (as the lifecycle and the case list say)

Revision ID: 0004_case_open
Revises: 0004_cases_speed (its faster gridgov_rebuild_case_cells recounts the cells)
Create Date: 2026-11-23 00:10:00

``gridgov_case_open`` counted ``redirected`` as a terminal state, so tiles, the command screen
and ``/api/stats`` hid redirected cases from "open" while the lifecycle (``gis/lifecycle.py``:
a redirected case is dispatched again) and ``/api/cases?overdue=`` kept them open. Terminal
states are ``gis.caseconfig.TERMINAL``: closed and rejected. The tile count cells are rebuilt.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004_case_open'
down_revision: str | None = '0004_cases_speed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _case_open(terminal: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION gridgov_case_open(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT status NOT IN ({terminal})
    $$
    """


def upgrade() -> None:
    op.execute(_case_open("'closed', 'rejected'"))
    op.execute("SELECT gridgov_rebuild_case_cells()")


def downgrade() -> None:
    op.execute(_case_open("'closed', 'rejected', 'redirected'"))
    op.execute("SELECT gridgov_rebuild_case_cells()")

"""trigger plans: the KPI trigger's update branch plans large statements for their size

Revision ID: 0012_trigger_plans
Revises: 0011_intake_delta
Create Date: 2026-11-23 06:45:00

``gridgov_kpi_cases()`` (0002_analysis) finds the KPI keys an UPDATE of ``cases`` touched by
joining its two transition tables, as static SQL. PL/pgSQL keeps a static statement's plan
for the session, and a statement without parameters is planned once: after a one-row update
(every lifecycle action) the plan is a nested loop over the transition tables, and reused for
a 25,000-row update it took 35 s instead of 21 ms (``tests/gis/test_tile_case_copy.py``'s
large-update test ran into its 60 s budget under load). Now an update of more than 64 rows
runs the same statement through ``EXECUTE``, planned for its size; up to 64 rows keep the
static statement and its kept plan (a lifecycle action pays no planning). The keys found are
the same either way.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_trigger_plans'
down_revision: str | None = '0011_intake_delta'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTO = " INTO k_day, k_area, k_cat, k_dep"
HEAD = "\n        ELSE\n"
TAIL = "        END IF;\n        IF k_day IS NOT NULL THEN\n"
GUARD = ("            IF (SELECT count(*) FROM new_rows) <= 64 THEN\n"
         "            -- 0012_trigger_plans: larger updates are planned for their size\n")


def _source() -> str:
    return op.get_bind().execute(sa.text(
        "SELECT pg_get_functiondef(CAST('gridgov_kpi_cases' AS regproc))")).scalar_one()


def _replace(source: str, old: str, new: str) -> None:
    if source.count(old) != 1:
        raise RuntimeError("gridgov_kpi_cases() does not hold its update branch once")
    op.get_bind().exec_driver_sql(source.replace(old, new).replace("%", "%%"))


def _update_branch(source: str) -> str:
    """The update branch as installed: from its ``ELSE`` to the ``END IF`` before the refresh."""
    end = source.index(TAIL)
    return source[source.rindex(HEAD, 0, end):end]


def upgrade() -> None:
    source = _source()
    branch = _update_branch(source)
    statement = branch[len(HEAD):]
    if INTO not in statement or "$q$" in statement:
        raise RuntimeError("gridgov_kpi_cases(): unexpected update branch")
    dynamic = statement.replace(INTO, "", 1).rstrip().rstrip(";")
    new = (HEAD + GUARD + statement + "            ELSE\n            EXECUTE $q$\n" + dynamic
           + "\n            $q$" + INTO + ";\n            END IF;\n")
    _replace(source, branch, new)


def downgrade() -> None:
    source = _source()
    branch = _update_branch(source)
    start = branch.index(GUARD) + len(GUARD)
    statement = branch[start:branch.index("            ELSE\n            EXECUTE $q$\n")]
    _replace(source, branch, HEAD + statement)

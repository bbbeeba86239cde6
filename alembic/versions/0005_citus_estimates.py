"""The SQL functions' planner on Citus: ann_plan reads a distributed query's row estimate from the shards
(vectorpg.plan_rows: the shown tasks' remote plan rows times the task count), not the coordinator's fixed
guess of 100,000 rows, as the Python planner does (vectorpg.db.citus.plan_rows).

Upgrades re-apply the scripts of sql/ (idempotent). The downgrade sets schema_version() back to 4 and keeps
plan_rows, which the re-applied ann_plan calls.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in SCRIPTS:
        op.execute(read_script(name))


def downgrade() -> None:
    op.execute("CREATE OR REPLACE FUNCTION vectorpg.schema_version() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 4'")

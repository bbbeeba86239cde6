"""vectorpg's schema: the pgvector extension, the tables and indexes of sql/schema.sql, the SQL functions
of sql/functions.sql.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

import vectorpg.alembic  # noqa: F401  (registers op.create_vector_extension)
from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_vector_extension()
    for name in SCRIPTS:
        op.execute(read_script(name))


def downgrade() -> None:
    # every collection's partition, index and tuning row goes with the schema
    op.execute("DROP SCHEMA IF EXISTS vectorpg CASCADE")
    op.drop_vector_extension()

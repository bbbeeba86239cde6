"""vectorpg's schema: the pgvector extension, the tables and indexes of sql/schema.sql, the SQL functions
of sql/functions.sql.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import logging
from collections.abc import Sequence

from alembic import context, op

import vectorpg.alembic  # noqa: F401  (registers op.create_vector_extension)
from vectorpg.errors import InvalidArgumentError
from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("vectorpg",)  # vectorpg@head in an application's history
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_vector_extension()
    for name in SCRIPTS:
        op.execute(read_script(name))


log = logging.getLogger("alembic.runtime.migration")


def downgrade() -> None:
    # every collection's partition, index and tuning row goes with the schema: never silently
    if not op.get_context().as_sql:
        held = (
            op.get_bind()
            .exec_driver_sql("SELECT d.collection, count(*) FROM vectorpg.documents d GROUP BY 1 ORDER BY 1")
            .all()
            if op.get_bind().exec_driver_sql("SELECT to_regclass('vectorpg.documents')").scalar()
            else []
        )
        total = sum(n for _, n in held)
        names = ", ".join(f"{name} ({n:,})" for name, n in held)
        if held and context.get_x_argument(as_dictionary=True).get("drop_data") != "yes":
            raise InvalidArgumentError(
                f"downgrading vectorpg's schema deletes {total:,} documents in {len(held)} collection(s): {names}. "
                "Keep a copy first (vectorpg export NAME FILE), then: alembic downgrade base -x drop_data=yes"
            )
        log.info("dropping vectorpg's schema%s", f" and {total:,} documents: {names}" if held else " (no documents)")
    op.execute("DROP SCHEMA IF EXISTS vectorpg CASCADE")
    op.drop_vector_extension()

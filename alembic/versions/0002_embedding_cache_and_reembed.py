"""The embedding cache (vectorpg.embedding_cache) and the columns reembed() works in
(documents.embedding_next, collections.next_embedder / next_dimension).

Upgrades re-apply the scripts of sql/: they are idempotent and add what an older schema lacks. The
downgrade removes what this version added.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in SCRIPTS:
        op.execute(read_script(name))


def downgrade() -> None:
    op.drop_table("embedding_cache", schema="vectorpg")
    op.drop_column("documents", "embedding_next", schema="vectorpg")
    op.drop_column("collections", "next_dimension", schema="vectorpg")
    op.drop_column("collections", "next_embedder", schema="vectorpg")

"""collections.pending_indexes (the vector indexes a reembed() swap dropped and has yet to build again),
the trigger that clears a stale documents.embedding_next when a document's text changes, and the
functions for roles and tenants: set_owner, grant_app_role, sync_partition_security, schema_version.

Upgrades re-apply the scripts of sql/: they are idempotent and add what an older schema lacks. The
downgrade removes what this version added.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in SCRIPTS:
        op.execute(read_script(name))


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS documents_content_changed ON vectorpg.documents")
    op.execute("DROP FUNCTION IF EXISTS vectorpg.documents_content_changed()")
    for function in (
        "set_owner(name)",
        "grant_app_role(name)",
        "sync_partition_security(regclass, regclass)",
        "schema_version()",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS vectorpg.{function}")
    op.drop_column("collections", "pending_indexes", schema="vectorpg")

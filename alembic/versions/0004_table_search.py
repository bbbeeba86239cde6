"""Search over an application's own tables from SQL: vectorpg.search_table and vectorpg.hybrid_search_table,
with the filter language over a table's columns (filter_column; filter_compile and filter_sql take the
table), and the planning that vectorpg.search shares with them (ann_plan). The scripts also bring the
filter operators added since 0003 ($like, $ilike, $between, $contains) and the any-term text query
(text_query) to databases that reached 0003 before them.

Upgrades re-apply the scripts of sql/: they are idempotent and add what an older schema lacks. The
downgrade removes the table-level functions and sets schema_version() back to 3.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from vectorpg.own_schema.scripts import SCRIPTS, read_script

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the functions this version adds for callers; its helpers (ann_plan, filter_column, and filter_compile and
#: filter_sql with a table) stay after a downgrade: the functions of these scripts that 0003 had call them
ADDED = (
    "hybrid_search_table(regclass, name, name, text, vector, int, jsonb, int, regconfig, text)",
    "search_table(regclass, name, vector, int, jsonb, text)",
    "table_vector(regclass, name, vector, text)",
)


def upgrade() -> None:
    for name in SCRIPTS:
        op.execute(read_script(name))


def downgrade() -> None:
    for function in ADDED:
        op.execute(f"DROP FUNCTION IF EXISTS vectorpg.{function}")
    op.execute("CREATE OR REPLACE FUNCTION vectorpg.schema_version() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 3'")

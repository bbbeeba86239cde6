"""vectorpg's own schema as SQL: the scripts in ``sql/`` that setup(), the Alembic migrations and psql apply.

``sql/schema.sql`` (tables and indexes of ``vectorpg``) is generated from :data:`vectorpg.models.store_metadata`
by ``vectorpg schema``, so the schema is written once, in the models; a test fails when the file
and the models disagree. ``sql/functions.sql`` (the SQL functions) is written by hand. Both files are
idempotent, and both are applied in that order by :func:`apply_scripts`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from psycopg import sql as psycopg_sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable, SetColumnComment, SetTableComment

from vectorpg.own_schema.tables import SCHEMA, store_metadata

#: the scripts, in the order they are applied
SCRIPTS = ("schema.sql", "functions.sql")
#: What ``vectorpg.schema_version()`` returns once these scripts ran (sql/functions.sql); one more with
#: every migration in alembic/versions.
SCHEMA_VERSION = 5


def sql_dir() -> Path:
    """The directory that holds the SQL scripts: ``vectorpg/sql`` in an installed wheel (pyproject maps the
    top-level ``sql/`` there), the top-level ``sql/`` itself in a source checkout or editable install."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "sql"
    return installed if installed.is_dir() else package.parent / "sql"


def read_script(name: str) -> str:
    """The text of one of :data:`SCRIPTS`."""
    if name not in SCRIPTS:
        raise ValueError(f"unknown script {name!r}; the scripts are {', '.join(SCRIPTS)}")
    return (sql_dir() / name).read_text(encoding="utf-8")


def render_schema() -> str:
    """The text of ``sql/schema.sql``: ``CREATE ... IF NOT EXISTS`` for every table and index of the models."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]

    def sql(ddl: Any) -> str:
        text = str(ddl.compile(dialect=dialect)).strip()
        return "\n".join(line.rstrip() for line in text.splitlines()) + ";"

    statements = [
        psycopg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {};").format(psycopg_sql.Identifier(SCHEMA)).as_string(None)
    ]
    for table in store_metadata.sorted_tables:
        statements.append(sql(CreateTable(table, if_not_exists=True)))
        statements.append(_add_missing_columns(table))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(sql(CreateIndex(index, if_not_exists=True)))
        if table.comment:
            statements.append(sql(SetTableComment(table)))
        statements.extend(sql(SetColumnComment(column)) for column in table.columns if column.comment)
    header = (
        "-- vectorpg's tables and indexes. GENERATED from vectorpg/own_schema/tables.py by `vectorpg schema`: do not\n"
        "-- edit; change the models and regenerate (tests/test_migrations.py fails while they differ).\n"
        "-- Idempotent, and it upgrades: columns added since a table was created are added (DO blocks).\n"
        "-- Apply with sql/install.sql, Database.setup() or `alembic upgrade head`.\n"
    )
    return header + "\n" + "\n\n".join(filter(None, statements)) + "\n"


def _add_missing_columns(table: Any) -> str:
    """A DO block that adds the columns an older version of ``table`` lacks (new columns are nullable or
    have a default), so that the script upgrades a database as well as it installs one."""
    checks = []
    for column in table.columns:
        if column.primary_key or not (column.nullable or column.server_default is not None):
            continue  # only columns a later version can add to a table that has rows
        ddl = str(CreateColumn(column).compile(dialect=postgresql.dialect())).strip()  # type: ignore[no-untyped-call]
        check = psycopg_sql.SQL(
            "    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {table}::regclass\n"
            "                   AND attname = {column} AND NOT attisdropped) THEN\n"
            "        ALTER TABLE {name} ADD COLUMN {ddl};\n"
            "    END IF;"
        ).format(
            table=psycopg_sql.Literal(table.fullname),
            column=psycopg_sql.Literal(column.name),
            name=psycopg_sql.Identifier(table.schema, table.name),
            ddl=psycopg_sql.SQL(ddl),  # type: ignore[arg-type]  # compiled from the model
        )
        checks.append(check.as_string(None))
    if not checks:
        return ""
    return "DO $$\nBEGIN\n" + "\n".join(checks) + "\nEND $$;"


def scripts_fingerprint() -> str:
    """``vectorpg <SCHEMA_VERSION> <sha256 of the scripts>``: what :func:`apply_scripts` leaves as the comment
    of the vectorpg schema, so that :meth:`Database.setup` runs no DDL (and takes no locks) when it matches."""
    digest = hashlib.sha256("".join(read_script(name) for name in SCRIPTS).encode()).hexdigest()[:16]
    return f"vectorpg {SCHEMA_VERSION} {digest}"


def applied_fingerprint(raw: Any) -> str | None:
    """The fingerprint the scripts left in this database (``None``: not applied by vectorpg's Python side)."""
    row = raw.execute("SELECT obj_description(to_regnamespace(%s), 'pg_namespace')", [SCHEMA]).fetchone()
    return row[0] if row else None


def apply_scripts(raw: Any) -> None:
    """Run every script on a psycopg connection (inside the caller's transaction)."""
    for name in SCRIPTS:
        raw.execute(read_script(name))
    comment = psycopg_sql.SQL("COMMENT ON SCHEMA {} IS {}")
    raw.execute(comment.format(psycopg_sql.Identifier(SCHEMA), psycopg_sql.Literal(scripts_fingerprint())))


def write_schema(*, check: bool = False) -> bool:
    """Write ``sql/schema.sql`` from the models, or with ``check`` only tell whether it is current."""
    target = sql_dir() / "schema.sql"
    text = render_schema()
    if check:
        return target.exists() and target.read_text(encoding="utf-8") == text
    target.write_text(text, encoding="utf-8")
    return True

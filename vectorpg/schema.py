"""vectorpg's own schema as SQL: the scripts in ``sql/`` that setup(), the Alembic migrations and psql apply.

``sql/schema.sql`` (tables and indexes of ``vectorpg``) is generated from :data:`vectorpg.models.store_metadata`
by ``python -m vectorpg.schema``, so the schema is written once, in the models; a test fails when the file
and the models disagree. ``sql/functions.sql`` (the SQL functions) is written by hand. Both files are
idempotent, and both are applied in that order by :func:`apply_scripts`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable, SetColumnComment, SetTableComment

from .models import SCHEMA, store_metadata

#: the scripts, in the order they are applied
SCRIPTS = ("schema.sql", "functions.sql")


def sql_dir() -> Path:
    """The directory that holds the SQL scripts (packaged as ``vectorpg/sql``, a link to the top-level ``sql/``)."""
    packaged = Path(__file__).with_name("sql")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "sql"


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

    statements = [f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}";']
    for table in store_metadata.sorted_tables:
        statements.append(sql(CreateTable(table, if_not_exists=True)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(sql(CreateIndex(index, if_not_exists=True)))
        if table.comment:
            statements.append(sql(SetTableComment(table)))
        statements.extend(sql(SetColumnComment(column)) for column in table.columns if column.comment)
    header = (
        "-- vectorpg's tables and indexes. GENERATED from vectorpg/models.py by `python -m vectorpg.schema`:\n"
        "-- do not edit; change the models and regenerate (tests/test_schema.py fails while they differ).\n"
        "-- Idempotent. Apply with sql/install.sql, Database.setup() or `alembic upgrade head`.\n"
    )
    return header + "\n" + "\n\n".join(statements) + "\n"


def apply_scripts(raw: Any) -> None:
    """Run every script on a psycopg connection (inside the caller's transaction)."""
    for name in SCRIPTS:
        raw.execute(read_script(name))


def main(argv: list[str] | None = None) -> int:
    """``python -m vectorpg.schema [--check]``: write ``sql/schema.sql`` (or check that it is current)."""
    args = sys.argv[1:] if argv is None else argv
    target = sql_dir() / "schema.sql"
    text = render_schema()
    if "--check" in args:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run python -m vectorpg.schema", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

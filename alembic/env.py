"""Alembic environment of vectorpg's own schema.

Where it connects: ``-x url=...``, else ``sqlalchemy.url`` in alembic.ini, else ``$VECTORPG_URL``, else
the embedded PostgreSQL (started if needed), exactly as :func:`vectorpg.connect` does.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import vectorpg
import vectorpg.alembic
from vectorpg.own_schema.tables import SCHEMA, store_metadata

#: kept apart from an application's own ``alembic_version`` table
VERSION_TABLE = "vectorpg_alembic_version"

config = context.config
if config.config_file_name is not None:  # alembic.ini's logging: what each migration does is printed
    fileConfig(config.config_file_name, disable_existing_loggers=False)
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url") or None


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Only vectorpg's schema belongs to these migrations."""
    if type_ == "schema":
        return name == SCHEMA
    return True


options = {
    "target_metadata": store_metadata,
    "include_schemas": True,
    "version_table": VERSION_TABLE,
    **vectorpg.alembic.configure_kwargs(include_name=include_name, own_schema=True),
}

if context.is_offline_mode():
    context.configure(
        url=url or "postgresql+psycopg://", literal_binds=True, dialect_opts={"paramstyle": "named"}, **options
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    db = vectorpg.connect(url)
    try:
        with db.engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        db.close()

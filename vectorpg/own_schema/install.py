"""Installing pgvector and vectorpg's own schema into a database (what :meth:`vectorpg.Database.setup` runs).

Both steps are explicit calls, never side effects of connecting. They are idempotent and safe from many
processes at once (an advisory lock serialises them), and a database whose schema is already this version
of the scripts costs one query and takes no lock.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from vectorpg.db.engine import MIN_PGVECTOR, driver_connection, parse_version
from vectorpg.errors import ExtensionError, PermissionDeniedError
from vectorpg.own_schema.scripts import SCHEMA_VERSION, applied_fingerprint, apply_scripts, scripts_fingerprint
from vectorpg.own_schema.tables import SCHEMA

#: Advisory lock key that serialises vectorpg's setup (extension + schema) across processes.
SETUP_LOCK = 0x76656374  # 'vect'

_set_up: weakref.WeakSet[Engine] = weakref.WeakSet()


def extension_version(engine: Engine) -> tuple[int, ...] | None:
    """The installed pgvector version, or ``None`` if the extension is not installed here."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'").first()
    return parse_version(row[0]) if row else None


def install_extension(engine: Engine) -> tuple[int, ...]:
    """``CREATE EXTENSION IF NOT EXISTS vector`` and check the version (>= 0.8.0); return the version.

    Raises :class:`ExtensionError` saying what was found and how to fix it when pgvector is not available
    on the server, cannot be created (permissions), or is too old.
    """
    return _in_setup_transaction(engine, lambda raw: None)


def setup(engine: Engine) -> None:
    """Install pgvector and vectorpg's own schema and SQL functions: the scripts in ``sql/``, which the
    Alembic migrations apply too."""
    if engine in _set_up:
        return
    with engine.connect() as conn:
        raw = driver_connection(conn.connection)
        current = applied_fingerprint(raw) == scripts_fingerprint()
    if current:  # this very version of the scripts ran here: no DDL, no locks
        _set_up.add(engine)
        return
    try:
        _in_setup_transaction(engine, apply_scripts)
    except ExtensionError as exc:
        cause = getattr(exc.__cause__, "orig", exc.__cause__)
        if not isinstance(cause, psycopg.errors.InsufficientPrivilege):
            raise
        # an application role that does not own vectorpg's schema: fine when the owner installed this
        # version of it (docs/security.md, least privilege)
        installed = installed_schema_version(engine)
        if installed != SCHEMA_VERSION:
            raise PermissionDeniedError(
                f"this role may not install vectorpg's schema ({cause}), and the schema in this database is "
                f"at version {installed or 'none'}, not {SCHEMA_VERSION}. Run Database.setup() (or `alembic "
                "upgrade head`) once as the schema's owner, then SELECT vectorpg.grant_app_role('<this role>').",
                sqlstate="42501",
            ) from exc
    _set_up.add(engine)


def installed_schema_version(engine: Engine) -> int | None:
    """``vectorpg.schema_version()`` of this database (``None`` when vectorpg's schema is not there, or
    this role may not use it)."""
    with engine.connect() as conn:
        raw = driver_connection(conn.connection)
        try:
            found = raw.execute("SELECT to_regprocedure('vectorpg.schema_version()') IS NOT NULL").fetchone()
            if not found or not found[0]:
                return None
            row = raw.execute("SELECT vectorpg.schema_version()").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return None
    return int(row[0]) if row else None


def has_store_schema(engine: Engine) -> bool:
    """Whether :func:`setup` has created vectorpg's tables in this database."""
    with engine.connect() as conn:
        return inspect(conn).has_table("collections", schema=SCHEMA)


def _in_setup_transaction(engine: Engine, then: Callable[[psycopg.Connection[Any]], None]) -> tuple[int, ...]:
    required = ".".join(map(str, MIN_PGVECTOR))
    try:
        with engine.begin() as conn:
            raw = driver_connection(conn.connection)
            # IF NOT EXISTS is not safe against a concurrent CREATE: serialise vectorpg's setup.
            raw.execute("SELECT pg_advisory_xact_lock(%s)", [SETUP_LOCK])
            available = raw.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
            if available is None:
                raise ExtensionError(
                    "pgvector is not installed on this PostgreSQL server. Install it (for example "
                    "`apt install postgresql-18-pgvector`, or the pgvector/pgvector Docker image from "
                    "docker-compose.yml), or use the embedded server: vectorpg.connect() with no URL.",
                    required=required,
                )
            raw.execute("CREATE EXTENSION IF NOT EXISTS vector")
            found = raw.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            assert found is not None
            version = parse_version(found[0])
            if version < MIN_PGVECTOR:
                raise ExtensionError(
                    f"pgvector {found[0]} is installed, but vectorpg needs >= {required} (iterative index "
                    "scans). Install a newer pgvector on the server, then run: ALTER EXTENSION vector UPDATE;",
                    found=found[0],
                    required=required,
                )
            then(raw)
    except (DBAPIError, psycopg.Error) as exc:
        reason = getattr(exc, "orig", exc)
        raise ExtensionError(
            f"could not create the pgvector extension or vectorpg's schema: {reason}. Ask a superuser "
            "to run CREATE EXTENSION vector; in this database once, then connect again.",
            required=required,
        ) from exc
    # Connections opened before the extension existed have no vector types registered.
    engine.dispose()
    return version

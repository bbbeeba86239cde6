"""``connect()``: where PostgreSQL comes from, and the :class:`Database` handle.

With no URL (argument or ``$VECTORPG_URL``) vectorpg starts the embedded server; with a URL it connects to
any PostgreSQL that has pgvector. Connecting runs no DDL: installing the extension (:meth:`Database.
install_extension`) and vectorpg's own schema (:meth:`Database.setup`) are explicit calls, which
:meth:`Database.collection` makes for you the first time it needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pgvector
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ConfigurationError, ExtensionError, PermissionDeniedError, ServerError
from .failures import translating
from .models import SCHEMA
from .schema import SCHEMA_VERSION, applied_fingerprint, apply_scripts, scripts_fingerprint
from .server import EmbeddedServer, embedded_server
from .types import EncodedVector

if TYPE_CHECKING:
    from .collection import Collection
    from .embeddings import Embedder

#: Oldest pgvector that vectorpg supports (iterative index scans arrived in 0.8.0).
MIN_PGVECTOR = (0, 8, 0)

#: Advisory lock key that serialises vectorpg's setup (extension + schema) across processes.
SETUP_LOCK = 0x76656374  # 'vect'


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.8.5"`` -> ``(0, 8, 5)``; pre-release suffixes are ignored (``"0.9.0-dev"`` -> ``(0, 9, 0)``)."""
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in parts)


def _register_vector_types(dbapi_connection: Any) -> None:
    """Register pgvector's binary dumpers and loaders on a new psycopg connection, if the types exist."""
    from pgvector.psycopg.bit import register_bit_info
    from pgvector.psycopg.halfvec import register_halfvec_info
    from pgvector.psycopg.sparsevec import register_sparsevec_info
    from pgvector.psycopg.vector import register_vector_info

    conn = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    info = TypeInfo.fetch(conn, "vector")
    if info is None:  # extension not installed yet: Database.install_extension() resets the pool
        return
    register_vector_info(conn, info)
    _register_encoded(conn, info.oid, pgvector.Vector)
    for name, register in (
        ("halfvec", register_halfvec_info),
        ("sparsevec", register_sparsevec_info),
        ("bit", register_bit_info),
    ):
        type_info = TypeInfo.fetch(conn, name)
        if type_info is not None:
            register(conn, type_info)
            if name == "halfvec":
                _register_encoded(conn, type_info.oid, pgvector.HalfVector)


def _register_encoded(conn: Any, oid: int, value_class: type[Any]) -> None:
    """The binary dumper binary COPY uses for ``oid``: pre-encoded :class:`EncodedVector` values go out as
    they are (no per-row conversion); anything else is encoded by pgvector."""

    class EncodedDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> Any:
            if isinstance(obj, EncodedVector):
                return obj
            value = obj if isinstance(obj, value_class) else value_class(obj)
            return value.to_binary()

    EncodedDumper.oid = oid
    conn.adapters.register_dumper(EncodedVector, EncodedDumper)


def ensure_vector_types(dbapi_connection: Any) -> None:
    """Register the vector types on a psycopg connection once (for engines vectorpg did not create)."""
    conn = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    if not getattr(conn, "_vectorpg_types", False):
        _register_vector_types(conn)
        conn._vectorpg_types = True


def _sqlalchemy_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"vectorpg needs PostgreSQL; got a {parsed.get_backend_name()!r} URL")
    driver = parsed.get_driver_name()
    if parsed.drivername not in ("postgresql", "postgres") and driver != "psycopg":
        raise ConfigurationError(
            f"vectorpg uses the psycopg 3 driver; use postgresql+psycopg:// (got {parsed.drivername}://)"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class Database:
    """A connected database: SQLAlchemy engine, session factory, and the store API's entry points."""

    def __init__(self, engine: Engine, *, server: EmbeddedServer | None = None) -> None:
        self.engine = engine
        self.server = server
        self.session_factory = sessionmaker(engine, expire_on_commit=False)
        self._setup_done = False

    @property
    def url(self) -> str:
        """The connection URL (password hidden)."""
        return self.engine.url.render_as_string(hide_password=True)

    def session(self) -> Session:
        """A new SQLAlchemy session bound to this database."""
        return self.session_factory()

    @contextmanager
    def psycopg_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A raw psycopg connection from the pool (vector types registered), inside a transaction."""
        with raw_connection(self.engine) as raw:
            yield raw

    # -- the extension -----------------------------------------------------------------------------

    def extension_version(self) -> tuple[int, ...] | None:
        """The installed pgvector version, or ``None`` if the extension is not installed here."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            row = raw.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return parse_version(row[0]) if row else None

    def install_extension(self) -> tuple[int, ...]:
        """``CREATE EXTENSION IF NOT EXISTS vector`` and check the version (>= 0.8.0); return the version.

        Raises :class:`ExtensionError` saying what was found and how to fix it when pgvector is not
        available on the server, cannot be created (permissions), or is too old. Safe to call from
        several processes at once.
        """
        version = self._in_setup_transaction(lambda raw: None)
        return version

    def setup(self) -> None:
        """Install pgvector and vectorpg's own schema and SQL functions: the scripts in ``sql/``, which the
        Alembic migrations apply too (idempotent, safe to run concurrently)."""
        if self._setup_done:
            return
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            current = applied_fingerprint(raw) == scripts_fingerprint()
        if current:  # this very version of the scripts ran here: no DDL, no locks
            self._setup_done = True
            return
        try:
            self._in_setup_transaction(apply_scripts)
        except ExtensionError as exc:
            cause = getattr(exc.__cause__, "orig", exc.__cause__)
            if not isinstance(cause, psycopg.errors.InsufficientPrivilege):
                raise
            # an application role that does not own vectorpg's schema: fine when the owner installed
            # this version of it (docs/security.md, least privilege)
            installed = self.installed_schema_version()
            if installed != SCHEMA_VERSION:
                raise PermissionDeniedError(
                    f"this role may not install vectorpg's schema ({cause}), and the schema in this database is "
                    f"at version {installed or 'none'}, not {SCHEMA_VERSION}. Run Database.setup() (or `alembic "
                    "upgrade head`) once as the schema's owner, then SELECT vectorpg.grant_app_role('<this role>').",
                    sqlstate="42501",
                ) from exc
        self._setup_done = True

    def installed_schema_version(self) -> int | None:
        """``vectorpg.schema_version()`` of this database (``None`` when vectorpg's schema is not there, or
        this role may not use it)."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            try:
                found = raw.execute("SELECT to_regprocedure('vectorpg.schema_version()') IS NOT NULL").fetchone()
                if not found or not found[0]:
                    return None
                row = raw.execute("SELECT vectorpg.schema_version()").fetchone()
            except psycopg.errors.InsufficientPrivilege:
                return None
        return int(row[0]) if row else None

    def _in_setup_transaction(self, then: Callable[[psycopg.Connection[Any]], None]) -> tuple[int, ...]:
        required = ".".join(map(str, MIN_PGVECTOR))
        try:
            with self.engine.begin() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
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
        self.engine.dispose()
        return version

    def has_store_schema(self) -> bool:
        """Whether :meth:`setup` has created vectorpg's tables in this database."""
        with self.engine.connect() as conn:
            return inspect(conn).has_table("collections", schema=SCHEMA)

    # -- the store API -----------------------------------------------------------------------------

    @translating("opening a collection")
    def collection(
        self,
        name: str,
        *,
        dimension: int | None = None,
        metric: str | None = None,
        embedder: Embedder | str | None = "default",
        create: bool = True,
    ) -> Collection:
        """Open the collection ``name``, creating it (and vectorpg's schema) if needed.

        ``embedder="default"`` uses the packaged all-MiniLM-L6-v2 model (384 dimensions) unless a
        ``dimension`` is given, which makes a vector-only collection. ``metric`` defaults to cosine for a
        new collection and to the recorded one for an existing collection. An existing collection must
        be opened with the same dimension, metric and embedder it was created with (or without them).
        """
        from .registry import open_collection

        return open_collection(self, name, dimension=dimension, metric=metric, embedder=embedder, create=create)

    @translating("listing collections")
    def collections(self) -> list[str]:
        """Names of the collections in this database."""
        from .registry import list_collections

        return list_collections(self)

    @translating("dropping a collection")
    def drop_collection(self, name: str) -> bool:
        """Drop a collection and all its documents; return whether it existed."""
        from .registry import drop_collection

        return drop_collection(self, name)

    def close(self) -> None:
        """Close the pooled connections. The embedded server stops when the last process using it exits."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"embedded:{self.server.data_dir}" if self.server else self.url
        return f"<vectorpg.Database {where}>"


@contextmanager
def raw_connection(engine: Engine, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """The psycopg connection under a pooled SQLAlchemy connection: in a transaction that commits when the
    block ends (SQLAlchemy's own, so that it really commits), or in autocommit mode for statements that
    cannot run in a transaction block (``CONCURRENTLY``)."""
    if autocommit:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn.connection.driver_connection  # type: ignore[misc]
        return
    with engine.begin() as conn:
        yield conn.connection.driver_connection  # type: ignore[misc]


def engine_of(db: Database | Engine) -> Engine:
    """The engine of a :class:`Database`, or the engine itself."""
    return db if isinstance(db, Engine) else db.engine


def connect(
    url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    echo: bool = False,
    **engine_kwargs: Any,
) -> Database:
    """Connect to PostgreSQL + pgvector and return a :class:`Database`.

    ``url`` (or ``$VECTORPG_URL``) is any ``postgresql://`` URL; without one, the embedded server is
    started in ``data_dir`` (``$VECTORPG_DATA_DIR``, else a per-user directory) or reused if it is already
    running. Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    server: EmbeddedServer | None = None
    url = url or os.environ.get("VECTORPG_URL") or None
    if url is None:
        server = embedded_server(data_dir)
        url = server.url
    engine_kwargs.setdefault("pool_pre_ping", True)
    # No automatic server-side prepared statements: a cached generic plan ignores the per-query planner
    # settings vectorpg applies, and prepared statements break behind transaction-mode poolers.
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("prepare_threshold", None)
    engine_kwargs["connect_args"] = connect_args
    engine = create_engine(_sqlalchemy_url(url), echo=echo, **engine_kwargs)
    event.listen(engine, "connect", lambda dbapi_conn, _record: _register_vector_types(dbapi_conn))
    if server is not None:
        embedded = server
        # a new connection after the embedded server crashed (or was stopped) starts it again
        event.listen(engine, "do_connect", lambda *_args: embedded.ensure_running())
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise ServerError(
            f"cannot reach PostgreSQL at {make_url(_sqlalchemy_url(url)).render_as_string()}: {exc.orig}. "
            "Check that the server is running and the URL (host, port, user, password, database) is right."
        ) from exc
    return Database(engine, server=server)

"""``connect()`` and :class:`Database`: the one top-level door.

With no URL (argument or ``$VECTORPG_URL``) vectorpg starts the embedded server; with a URL it connects to
any PostgreSQL that has pgvector. Connecting runs no DDL: installing the extension (:meth:`Database.
install_extension`) and vectorpg's own schema (:meth:`Database.setup`) are explicit calls, which
:meth:`Database.collection` makes for you the first time it needs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from vectorpg.db import routing
from vectorpg.db.engine import create_vector_engine, raw_connection
from vectorpg.db.routing import ReadRouter
from vectorpg.db.server import EmbeddedServer, embedded_server
from vectorpg.db.translate import translating
from vectorpg.own_schema import install
from vectorpg.rag.collection import DocumentCollection
from vectorpg.store import registry, transfer

if TYPE_CHECKING:
    from vectorpg.embeddings import Embedder


class Database:
    """A connected database: SQLAlchemy engine, session factory, and the store API's entry points."""

    def __init__(
        self, engine: Engine, *, server: EmbeddedServer | None = None, router: ReadRouter | None = None
    ) -> None:
        self.engine = engine
        self.server = server
        #: where reads go when the database has read replicas (``connect(..., replicas=[...])``)
        self.router = router
        self.session_factory = sessionmaker(engine, expire_on_commit=False)

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

    # -- the extension and vectorpg's schema (vectorpg.own_schema.install) -------------------------

    def extension_version(self) -> tuple[int, ...] | None:
        """The installed pgvector version, or ``None`` if the extension is not installed here."""
        return install.extension_version(self.engine)

    def install_extension(self) -> tuple[int, ...]:
        """``CREATE EXTENSION IF NOT EXISTS vector`` and check the version (>= 0.8.0); return the version.

        Raises :class:`ExtensionError` saying what was found and how to fix it when pgvector is not
        available on the server, cannot be created (permissions), or is too old. Safe to call from
        several processes at once.
        """
        return install.install_extension(self.engine)

    def setup(self) -> None:
        """Install pgvector and vectorpg's own schema and SQL functions: the scripts in ``sql/``, which the
        Alembic migrations apply too (idempotent, safe to run concurrently)."""
        install.setup(self.engine)

    def installed_schema_version(self) -> int | None:
        """``vectorpg.schema_version()`` of this database (``None`` when vectorpg's schema is not there, or
        this role may not use it)."""
        return install.installed_schema_version(self.engine)

    def has_store_schema(self) -> bool:
        """Whether :meth:`setup` has created vectorpg's tables in this database."""
        return install.has_store_schema(self.engine)

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
        field_indexes: Mapping[str, str] | None = None,
        auto_index: bool = True,
    ) -> DocumentCollection:
        """Open the collection ``name``, creating it (and vectorpg's schema) if needed.

        ``embedder="default"`` uses the packaged all-MiniLM-L6-v2 model (384 dimensions) unless a
        ``dimension`` is given, which makes a vector-only collection. ``metric`` defaults to cosine for a
        new collection and to the recorded one for an existing collection. An existing collection must
        be opened with the same dimension, metric and embedder it was created with (or without them).

        ``field_indexes`` (key -> ``"keyword"``, ``"integer"``, ``"float"``, ``"boolean"``, ``"text"`` or
        ``"timestamp"``) creates the field indexes that are missing (:mod:`vectorpg.fields`): filters on
        those keys are then planned from real statistics. ``auto_index=False`` keeps the collection from
        building its HNSW index by itself once it is large (:mod:`vectorpg.store.indexing`).
        """
        opened = registry.open_collection(
            self.engine, name, dimension=dimension, metric=metric, embedder=embedder, create=create,
            kind=DocumentCollection, auto_index=auto_index, field_indexes=field_indexes,
        )  # fmt: skip
        opened.router = self.router
        return opened

    def reading(self, *, read_your_writes: bool = True) -> AbstractContextManager[None]:
        """``with db.reading(read_your_writes=True): ...``: the reads inside the block (in this thread or task)
        wait for their replica to replay every write committed before them (``False``: they do not wait),
        whatever the Database's own setting (:mod:`vectorpg.db.routing`)."""
        return routing.reading(read_your_writes=read_your_writes)

    @translating("listing collections")
    def collections(self) -> list[str]:
        """Names of the collections in this database."""
        return registry.list_collections(self.engine)

    @translating("dropping a collection")
    def drop_collection(self, name: str) -> bool:
        """Drop a collection and all its documents; return whether it existed."""
        return registry.drop_collection(self.engine, name)

    @translating("importing a collection")
    def import_collection(
        self,
        path: str | os.PathLike[str],
        *,
        collection: str | None = None,
        format: str | None = None,
        progress: bool | None = None,
    ) -> Any:
        """Read a :meth:`~vectorpg.Collection.export` file into ``collection`` (default: the exported name),
        created with the exported dimension, metric and model when missing; one transaction, all or nothing."""
        docs, _ = transfer.import_collection(self, path, collection=collection, format=format, progress=progress)
        return docs  # opened without its model (open it again with one to search by text)

    def close(self) -> None:
        """Close the pooled connections. The embedded server stops when the last process using it exits."""
        self.engine.dispose()
        if self.router is not None:
            self.router.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"embedded:{self.server.data_dir}" if self.server else self.url
        return f"<vectorpg.Database {where}>"


def connect(
    url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    echo: bool = False,
    replicas: Sequence[str] | None = None,
    read_your_writes: bool = False,
    max_lag: float | None = 10.0,
    replica_wait: float = 2.0,
    **engine_kwargs: Any,
) -> Database:
    """Connect to PostgreSQL + pgvector and return a :class:`Database`.

    ``url`` (or ``$VECTORPG_URL``) is any ``postgresql://`` URL; without one, the embedded server is
    started in ``data_dir`` (``$VECTORPG_DATA_DIR``, else a per-user directory) or reused if it is already
    running (this needs the ``vectorpg[server]`` extra). Extra keyword arguments go to
    :func:`sqlalchemy.create_engine`.

    ``replicas``: URLs of streaming replicas of that server. Searches, counts and gets then run on them
    (round robin, skipping a replica that is down or lags more than ``max_lag`` seconds), writes and DDL on
    the primary. ``read_your_writes=True`` makes each read wait (at most ``replica_wait`` seconds, then the
    primary answers) until its replica has replayed every write committed before it; ``db.reading(...)``
    sets it for a block of reads. See :mod:`vectorpg.db.routing`.
    """
    server: EmbeddedServer | None = None
    url = url or os.environ.get("VECTORPG_URL") or None
    if url is None:
        server = embedded_server(data_dir)
        url = server.url
    engine = create_vector_engine(url, echo=echo, server=server, **engine_kwargs)
    router = None
    urls = routing.replica_urls(replicas)
    if urls:
        router = ReadRouter(
            engine, [create_vector_engine(u, echo=echo, **engine_kwargs) for u in urls],
            read_your_writes=read_your_writes, max_lag=max_lag, wait=replica_wait,
        )  # fmt: skip
    return Database(engine, server=server, router=router)

"""The async API: the sync API's objects, each method a coroutine with the same arguments and results.

```python
import vectorpg.aio

db = await vectorpg.aio.connect()                      # embedded server, or a URL / $VECTORPG_URL
docs = await db.collection("articles")
await docs.add(["first text", "second text"], ids=["a", "b"])
hits = await docs.search("a question", k=5, where={"lang": "en"})

repo = vectorpg.aio.Repository(Article, async_session)  # an AsyncSession, an AsyncEngine, or a Database
rows = await repo.search(query_vector, k=10, where=Article.lang == "en")
```

It is built on SQLAlchemy's :class:`~sqlalchemy.ext.asyncio.AsyncEngine` and psycopg's
:class:`~psycopg.AsyncConnection`, and runs the sync API's own code: each call runs inside SQLAlchemy's greenlet
(:func:`sqlalchemy.util.greenlet_spawn`, as ``AsyncSession.run_sync`` does), where every round trip to the
server, binary COPY included, is awaited on the event loop (:mod:`vectorpg.db.bridge`). So validation, the
search planner and the write path are the sync API's, and a search from a thousand tasks is a thousand awaits,
not a thousand threads. Embedding a text runs in a worker thread (:func:`vectorpg.awaiting.off_loop`).

The sync API inside ``await async_session.run_sync(fn)`` works too: ``fn`` gets the session's sync
:class:`~sqlalchemy.orm.Session`, and ``vectorpg.Repository(Model, session)`` over it is the sync face.

Cancelling a task mid-call rolls back what the call wrote (each write is one transaction, or a savepoint in
a caller's session) and hands the connection back to the pool clean, or discards it.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vectorpg.awaiting import greenlet_spawn
from vectorpg.database import Database as SyncDatabase
from vectorpg.db.engine import create_async_vector_engine
from vectorpg.db.routing import ReadRouter, reading, replica_urls
from vectorpg.db.server import EmbeddedServer, embedded_server
from vectorpg.errors import InvalidArgumentError
from vectorpg.rag.collection import DocumentCollection
from vectorpg.repository import ModelT
from vectorpg.repository import Repository as SyncRepository
from vectorpg.store.reads import Document

if TYPE_CHECKING:
    pass

__all__ = ["Collection", "Database", "Repository", "connect"]

P = ParamSpec("P")
R = TypeVar("R")


def _awaitable(method: Callable[..., R]) -> Callable[..., Coroutine[Any, Any, R]]:
    """The sync ``method`` of the wrapped object (``self.sync``) as a coroutine: run in SQLAlchemy's
    greenlet, every round trip awaited on the event loop."""

    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> R:
        return await greenlet_spawn(functools.partial(method, self.sync, *args, **kwargs))

    call.__doc__ = f"Awaitable :meth:`{method.__qualname__}`.\n\n{method.__doc__ or ''}"
    return call


class _Face:
    """Forwards plain attributes (``name``, ``dimension``, ``metric``...) to the sync object."""

    sync: Any

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.sync, name)
        if callable(value) and not isinstance(value, type):
            raise AttributeError(
                f"{type(self).__name__}.{name} has no async form; call it on .sync inside "
                f"`await vectorpg.aio.run_sync(fn)`"
            )
        return value

    def __repr__(self) -> str:
        return f"<async {self.sync!r}>"


class Collection(_Face):
    """A collection (:class:`vectorpg.Collection`), every method awaitable."""

    def __init__(self, sync: DocumentCollection | Any) -> None:  # (reembed's result is typed as its base class)
        self.sync = sync

    add = _awaitable(DocumentCollection.add)
    upsert = _awaitable(DocumentCollection.upsert)
    update = _awaitable(DocumentCollection.update)
    get = _awaitable(DocumentCollection.get)
    delete = _awaitable(DocumentCollection.delete)
    count = _awaitable(DocumentCollection.count)
    search = _awaitable(DocumentCollection.search)
    search_many = _awaitable(DocumentCollection.search_many)
    hybrid_search = _awaitable(DocumentCollection.hybrid_search)
    explain = _awaitable(DocumentCollection.explain)
    explain_hybrid = _awaitable(DocumentCollection.explain_hybrid)
    recall = _awaitable(DocumentCollection.recall)
    tune = _awaitable(DocumentCollection.tune)
    create_index = _awaitable(DocumentCollection.create_index)
    drop_index = _awaitable(DocumentCollection.drop_index)
    indexes = _awaitable(DocumentCollection.indexes)
    index_if_large = _awaitable(DocumentCollection.index_if_large)
    create_text_index = _awaitable(DocumentCollection.create_text_index)
    create_field_index = _awaitable(DocumentCollection.create_field_index)
    drop_field_index = _awaitable(DocumentCollection.drop_field_index)
    field_indexes = _awaitable(DocumentCollection.field_indexes)
    ensure_field_indexes = _awaitable(DocumentCollection.ensure_field_indexes)
    indexed_fields = _awaitable(DocumentCollection.indexed_fields)
    check_current = _awaitable(DocumentCollection.check_current)
    _reembed = _awaitable(DocumentCollection.reembed)
    ingest = _awaitable(DocumentCollection.ingest)
    ingest_text = _awaitable(DocumentCollection.ingest_text)
    retrieve = _awaitable(DocumentCollection.retrieve)
    export = _awaitable(DocumentCollection.export)
    _upload = _awaitable(DocumentCollection.upload)

    async def scan(self, where: dict[str, Any] | None = None, *, batch_size: int = 1000) -> AsyncIterator[Document]:
        """:meth:`vectorpg.Collection.scan` as an async iterator: ``async for doc in docs.scan(where)``, a
        keyset page (one awaited :meth:`get`) at a time."""
        after: str | None = None
        while True:
            page = await self.get(where=where, limit=batch_size, after=after)
            for document in page:
                yield document
            if len(page) < batch_size:
                return
            after = page[-1].id

    async def reembed(self, embedder: Any, **options: Any) -> Collection:
        """Awaitable :meth:`vectorpg.Collection.reembed`: the collection opened with the new embedder."""
        return Collection(await self._reembed(embedder, **options))

    async def upload(self, *args: Any, parallel: int = 1, **kwargs: Any) -> int:
        """Awaitable :meth:`vectorpg.Collection.upload`, on one connection (``parallel=1``: the async API
        overlaps work across tasks, not threads; run several uploads as tasks to use more connections)."""
        if parallel != 1:
            raise InvalidArgumentError(
                "the async upload runs on one connection (parallel=1); start several uploads as tasks instead"
            )
        return await self._upload(*args, **kwargs)


class Database(_Face):
    """A connected database (:class:`vectorpg.Database`) on an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`."""

    def __init__(
        self, engine: AsyncEngine, *, server: EmbeddedServer | None = None, replicas: Sequence[AsyncEngine] = (),
        **routing: Any,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.server = server
        self.replicas = list(replicas)
        router = ReadRouter(engine.sync_engine, [r.sync_engine for r in replicas], **routing) if replicas else None
        #: the sync :class:`vectorpg.Database` over the same pool (its calls need the greenlet: use the
        #: coroutines here, or :func:`run_sync`)
        self.sync = SyncDatabase(engine.sync_engine, server=server, router=router)
        self.session_factory = async_sessionmaker(engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        """A new :class:`~sqlalchemy.ext.asyncio.AsyncSession` on this database."""
        return self.session_factory()

    async def collection(self, name: str, **options: Any) -> Collection:
        """Awaitable :meth:`vectorpg.Database.collection` (the same options): open or create the collection
        ``name``; the default embedder's model loads in a worker thread."""
        return Collection(await greenlet_spawn(functools.partial(self.sync.collection, name, **options)))

    async def import_collection(self, path: str | os.PathLike[str], **options: Any) -> Collection:
        """Awaitable :meth:`vectorpg.Database.import_collection`."""
        return Collection(await greenlet_spawn(functools.partial(self.sync.import_collection, path, **options)))

    collections = _awaitable(SyncDatabase.collections)
    drop_collection = _awaitable(SyncDatabase.drop_collection)
    extension_version = _awaitable(SyncDatabase.extension_version)
    install_extension = _awaitable(SyncDatabase.install_extension)
    setup = _awaitable(SyncDatabase.setup)
    installed_schema_version = _awaitable(SyncDatabase.installed_schema_version)
    has_store_schema = _awaitable(SyncDatabase.has_store_schema)

    def reading(self, *, read_your_writes: bool = True) -> AbstractContextManager[None]:
        """:meth:`vectorpg.Database.reading`: read-your-writes (or not) for the reads inside the block."""
        return reading(read_your_writes=read_your_writes)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.engine.dispose()
        for replica in self.replicas:
            await replica.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Repository(_Face, Generic[ModelT]):
    """:class:`vectorpg.Repository` (an application's own model), every method awaitable.

    ``bind``: an :class:`~sqlalchemy.ext.asyncio.AsyncSession` (the calls join its transaction, each write in a
    savepoint, as the sync Repository does in a ``Session``), an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or
    a :class:`Database`. The other arguments are the sync Repository's."""

    def __init__(self, model: type[ModelT], bind: AsyncSession | AsyncEngine | Database, **options: Any) -> None:
        if isinstance(bind, AsyncSession):
            sync_bind: Any = bind.sync_session
        elif isinstance(bind, AsyncEngine):
            sync_bind = bind.sync_engine
        elif isinstance(bind, Database):
            sync_bind = bind.sync
        else:
            raise InvalidArgumentError(
                f"vectorpg.aio.Repository needs an AsyncSession, an AsyncEngine or a vectorpg.aio.Database, got "
                f"{type(bind).__name__} (the sync vectorpg.Repository takes a Session, an Engine or a Database)"
            )
        self.sync: SyncRepository[ModelT] = SyncRepository(model, sync_bind, **options)

    add = _awaitable(SyncRepository.add)
    upsert = _awaitable(SyncRepository.upsert)
    update = _awaitable(SyncRepository.update)
    get = _awaitable(SyncRepository.get)
    get_many = _awaitable(SyncRepository.get_many)
    delete = _awaitable(SyncRepository.delete)
    count = _awaitable(SyncRepository.count)
    search = _awaitable(SyncRepository.search)
    search_many = _awaitable(SyncRepository.search_many)
    hybrid_search = _awaitable(SyncRepository.hybrid_search)
    explain = _awaitable(SyncRepository.explain)
    explain_hybrid = _awaitable(SyncRepository.explain_hybrid)
    recall = _awaitable(SyncRepository.recall)
    tune = _awaitable(SyncRepository.tune)


async def run_sync(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run sync vectorpg code (``fn(*args, **kwargs)``) over an async database: its round trips are awaited
    on the event loop, as in the coroutines above."""
    return await greenlet_spawn(functools.partial(fn, *args, **kwargs))


async def connect(
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
    """Connect to PostgreSQL + pgvector: :func:`vectorpg.connect`'s async twin (the same URL rules; without
    one, the embedded server, started in a worker thread; ``replicas`` and the routing options as there).
    Extra keyword arguments go to :func:`sqlalchemy.ext.asyncio.create_async_engine`."""
    server: EmbeddedServer | None = None
    url = url or os.environ.get("VECTORPG_URL") or None
    if url is None:
        server = await asyncio.to_thread(embedded_server, data_dir)
        url = server.url
    urls = replica_urls(replicas)
    engine = await create_async_vector_engine(url, echo=echo, server=server, **engine_kwargs)
    others = [await create_async_vector_engine(u, echo=echo, **engine_kwargs) for u in urls]
    routing = {"read_your_writes": read_your_writes, "max_lag": max_lag, "wait": replica_wait}
    return Database(engine, server=server, replicas=others, **routing)

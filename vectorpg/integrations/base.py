"""What the framework adapters share: a collection opened lazily, sync and async.

A framework's store is built before anything is written, without its embedding model having been called,
so the collection is opened (and created with the dimension of the first vectors written) only when needed;
a search of a collection that does not exist yet finds nothing. The async face is :mod:`vectorpg.aio` over
the same database, one per event loop (an async engine's connections belong to the loop that made them).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import vectorpg
import vectorpg.aio
from vectorpg.errors import CollectionNotFoundError


def open_database(database: vectorpg.Database | str | None) -> vectorpg.Database:
    """``database`` itself, a URL connected to, or (``None``) the embedded default."""
    if isinstance(database, vectorpg.Database):
        return database
    return vectorpg.connect(database)


class CollectionPair:
    """The collection ``name`` of ``database``, sync and async, opened on first use."""

    def __init__(self, database: vectorpg.Database, name: str, *, metric: str = "cosine") -> None:
        self.database = database
        self.name = name
        self.metric = metric
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, vectorpg.aio.Collection] = (
            weakref.WeakKeyDictionary()
        )
        self._async_databases: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, vectorpg.aio.Database] = (
            weakref.WeakKeyDictionary()
        )

    def sync(self, dimension: int | None = None) -> Any:
        """The collection; ``None`` when it does not exist and no ``dimension`` was given to create it."""
        if self._sync is None:
            try:
                self._sync = self.database.collection(self.name, embedder=None, create=False)
            except CollectionNotFoundError:
                if dimension is None:
                    return None
                self._sync = self.database.collection(self.name, dimension=dimension, metric=self.metric, embedder=None)
        return self._sync

    async def aio(self, dimension: int | None = None) -> vectorpg.aio.Collection | None:
        """The collection on this event loop's async database (the same rules as :meth:`sync`)."""
        loop = asyncio.get_running_loop()
        found = self._async.get(loop)
        if found is not None:
            return found
        adb = self._async_databases.get(loop)
        if adb is None:
            adb = await vectorpg.aio.connect(self.database.engine.url.render_as_string(hide_password=False))
            self._async_databases[loop] = adb
        try:
            opened = await adb.collection(self.name, embedder=None, create=False)
        except CollectionNotFoundError:
            if dimension is None:
                return None
            opened = await adb.collection(self.name, dimension=dimension, metric=self.metric, embedder=None)
        self._async[loop] = opened
        return opened

    async def aclose(self) -> None:
        """Close this event loop's async database (its pooled connections)."""
        loop = asyncio.get_running_loop()
        self._async.pop(loop, None)
        adb = self._async_databases.pop(loop, None)
        if adb is not None:
            await adb.close()

    def drop(self) -> None:
        """Drop the collection and forget it."""
        self.database.drop_collection(self.name)
        self._sync = None
        self._async.clear()

"""Fixtures (a pytest plugin): the sync API and the async one (:mod:`vectorpg.aio`) behind one face, so that a
test written once runs through both (``face``: parametrized ``sync`` / ``async``).

The async face drives :mod:`vectorpg.aio` from the test's own code: each coroutine method runs to completion
on an event loop the fixture owns (one a test, as an application has one), and its results are the async API's
own. Only the calls go through it; what a test reads from the database directly stays on ``db``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import vectorpg
import vectorpg.aio


class Driven:
    """An object of :mod:`vectorpg.aio` called from sync code: its coroutine methods run to completion on
    ``loop``; the async faces they return are driven too."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not inspect.iscoroutinefunction(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wrap(self._loop.run_until_complete(value(*args, **kwargs)))

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, (vectorpg.aio.Collection, vectorpg.aio.Repository, vectorpg.aio.Database)):
            return Driven(value, self._loop)
        return value


class Face:
    """What a test calls: ``collection(...)`` and ``repository(model, ...)``, sync or async underneath."""

    def __init__(self, db: vectorpg.Database, url: str, api: str) -> None:
        self.db = db
        self.api = api
        self.loop: asyncio.AbstractEventLoop | None = None
        self.adb: vectorpg.aio.Database | None = None
        if api == "async":
            self.loop = asyncio.new_event_loop()
            self.adb = self.loop.run_until_complete(vectorpg.aio.connect(url))

    def collection(self, name: str, **options: Any) -> Any:
        if self.adb is None:
            return self.db.collection(name, **options)
        return Driven(self.adb, self._running()).collection(name, **options)

    def repository(self, model: type[Any], **options: Any) -> Any:
        if self.adb is None:
            return vectorpg.Repository(model, self.db, **options)
        return Driven(vectorpg.aio.Repository(model, self.adb, **options), self._running())

    def collections(self) -> list[str]:
        return self.db.collections() if self.adb is None else self.run(self.adb.collections())

    def drop_collection(self, name: str) -> bool:
        return self.db.drop_collection(name) if self.adb is None else self.run(self.adb.drop_collection(name))

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine of the async API on this face's loop."""
        return self._running().run_until_complete(coroutine)

    def _running(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None
        return self.loop

    def close(self) -> None:
        if self.adb is not None and self.loop is not None:
            self.loop.run_until_complete(self.adb.close())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, db: vectorpg.Database, database_url: str) -> Iterator[Face]:
    """The API under test, sync and async: the same test runs through both."""
    api = Face(db, database_url, request.param)
    yield api
    api.close()

"""psycopg's sync API over an async connection, so that one copy of vectorpg's code serves both APIs.

An async engine (``create_async_engine``) is SQLAlchemy's sync engine run inside a greenlet
(:func:`sqlalchemy.util.greenlet_spawn`), its driver psycopg's :class:`~psycopg.AsyncConnection`: SQLAlchemy's
own statements are awaited at each I/O point. vectorpg's code also talks to psycopg directly (binary COPY,
pipelines, transactions with planner settings); :func:`driver_connection` hands it the psycopg connection under a
pooled connection, and for an async one a :class:`SyncBridge`, whose calls are awaited the same way
(:func:`sqlalchemy.util.await_`). Outside that greenlet a bridged call raises SQLAlchemy's ``MissingGreenlet``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, TypeVar, cast

import psycopg

from vectorpg.awaiting import await_

T = TypeVar("T")
_BRIDGE_KEY = "vectorpg_bridge"


@contextmanager
def _entered(manager: AbstractAsyncContextManager[T]) -> Iterator[T]:
    """An async context manager, entered and left with each step awaited."""
    value = await_(manager.__aenter__())
    try:
        yield value
    except BaseException as exc:
        if not await_(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        await_(manager.__aexit__(None, None, None))


class SyncBridge:
    """The parts of :class:`psycopg.Connection` vectorpg uses, over an :class:`psycopg.AsyncConnection`.

    Attributes it does not define (``info``, ``adapters``, ``pgconn``, ``broken``, ``prepare_threshold``...)
    are the async connection's own."""

    __slots__ = ("async_connection",)

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        object.__setattr__(self, "async_connection", connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.async_connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "autocommit":  # a coroutine on an async connection
            await_(self.async_connection.set_autocommit(value))
        else:
            setattr(self.async_connection, name, value)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> BridgedCursor:
        return BridgedCursor(await_(self.async_connection.execute(query, params, **kwargs)))

    def cursor(self, *args: Any, **kwargs: Any) -> BridgedCursor:
        return BridgedCursor(self.async_connection.cursor(*args, **kwargs))

    def commit(self) -> None:
        await_(self.async_connection.commit())

    def rollback(self) -> None:
        await_(self.async_connection.rollback())

    @contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with _entered(self.async_connection.transaction(*args, **kwargs)) as transaction:
            yield transaction

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        with _entered(self.async_connection.pipeline()) as pipeline:
            yield pipeline


class BridgedCursor:
    """The parts of :class:`psycopg.Cursor` vectorpg uses, over an :class:`psycopg.AsyncCursor`."""

    __slots__ = ("async_cursor",)

    def __init__(self, cursor: psycopg.AsyncCursor[Any]) -> None:
        self.async_cursor = cursor

    def __getattr__(self, name: str) -> Any:  # description, rowcount, statusmessage, connection...
        return getattr(self.async_cursor, name)

    def __enter__(self) -> BridgedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> BridgedCursor:
        await_(self.async_cursor.execute(query, params, **kwargs))
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        await_(self.async_cursor.executemany(query, params_seq, **kwargs))

    def fetchone(self) -> Any:
        return await_(self.async_cursor.fetchone())

    def fetchmany(self, size: int = 0) -> list[Any]:
        rows: list[Any] = await_(self.async_cursor.fetchmany(size))
        return rows

    def fetchall(self) -> list[Any]:
        rows: list[Any] = await_(self.async_cursor.fetchall())
        return rows

    def close(self) -> None:
        await_(self.async_cursor.close())

    @contextmanager
    def copy(self, statement: Any, params: Any = None, *, writer: Any = None) -> Iterator[BridgedCopy]:
        """``COPY``: the async cursor's, with its own writer (a sync writer's thread has no place here:
        the data is built in the same greenlet that sends it)."""
        with _entered(self.async_cursor.copy(statement, params)) as copy:
            yield BridgedCopy(copy)


class BridgedCopy:
    """The parts of :class:`psycopg.Copy` vectorpg uses, over an :class:`psycopg.AsyncCopy`."""

    __slots__ = ("async_copy",)

    def __init__(self, copy: psycopg.AsyncCopy) -> None:
        self.async_copy = copy

    def set_types(self, types: Any) -> None:
        self.async_copy.set_types(types)

    def write(self, buffer: Any) -> None:
        await_(self.async_copy.write(buffer))

    def write_row(self, row: Any) -> None:
        await_(self.async_copy.write_row(row))


def sync_driver(raw: Any, info: dict[Any, Any] | None = None) -> psycopg.Connection[Any]:
    """``raw`` (a driver connection) in psycopg's sync API: itself, or a :class:`SyncBridge` over an async
    one (kept in ``info``, a pooled connection's, when given: one bridge a connection)."""
    if not isinstance(raw, psycopg.AsyncConnection):
        return cast("psycopg.Connection[Any]", raw)
    bridge = info.get(_BRIDGE_KEY) if info is not None else None
    if bridge is None or bridge.async_connection is not raw:
        bridge = SyncBridge(raw)
        if info is not None:
            info[_BRIDGE_KEY] = bridge
    return cast("psycopg.Connection[Any]", bridge)


def is_bridged(raw: Any) -> bool:
    """Whether ``raw`` is a :class:`SyncBridge` (the connection under it is async)."""
    return isinstance(raw, SyncBridge)

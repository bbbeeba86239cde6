"""How vectorpg's sync code runs under its async API: SQLAlchemy's greenlet bridge.

:mod:`vectorpg.aio` runs the sync code inside :func:`greenlet_spawn`, where :func:`await_` hands an awaitable
to the event loop and resumes with its result (this is how SQLAlchemy's own async engine works). The rest of
the package calls :func:`off_loop` for CPU-bound work that would otherwise hold the event loop (a model
embedding texts): in that greenlet it runs in a worker thread, elsewhere it is a plain call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy.util
import sqlalchemy.util.concurrency

T = TypeVar("T")

await_ = sqlalchemy.util.await_
greenlet_spawn = sqlalchemy.util.greenlet_spawn
in_greenlet = sqlalchemy.util.concurrency.in_greenlet  # inside greenlet_spawn (awaiting through the loop)


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``; under the async API in a worker thread, so that the event loop goes on."""
    if not in_greenlet():
        return fn(*args, **kwargs)
    return await_(asyncio.to_thread(fn, *args, **kwargs))

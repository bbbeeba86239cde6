"""Short locks for online schema changes: a transaction whose locks wait at most a moment, tried again on a
timeout, so that readers and writers never queue long behind DDL (the online dimension change of
:mod:`vectorpg.alembic.online` and the partition swap of :mod:`vectorpg.store.partition_swap`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

#: the longest a step waits for a lock before its transaction is rolled back and tried again
LOCK_TIMEOUT = "300ms"


def set_lock_timeout(raw: psycopg.Connection[Any]) -> None:
    """:data:`LOCK_TIMEOUT` for the rest of ``raw``'s current transaction."""
    raw.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def retry_lock_timeouts(attempt: Callable[[], T], attempts: int) -> T:
    """``attempt()`` (a whole transaction that calls :func:`set_lock_timeout`), again after a growing,
    jittered pause each time a lock was not granted in time (others held the table: they go first)."""
    for n in range(attempts):
        try:
            return attempt()
        except Exception as exc:  # a lock timeout, raw or wrapped by SQLAlchemy, is retried; nothing else
            if not isinstance(getattr(exc, "orig", exc), psycopg.errors.LockNotAvailable) or n == attempts - 1:
                raise
        time.sleep(min(1.0, 0.05 * 2**n) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")

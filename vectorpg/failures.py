"""What a failure from PostgreSQL means for the caller: :func:`translate` turns driver errors into vectorpg
errors that say what happened and what to do, with the original error chained; :func:`translating`
applies it to a public operation.

Every write of vectorpg runs in one transaction, so whichever of these happens, nothing of the failed
operation was written; the messages say so where it matters (a retry of ``add`` / ``upsert`` with the same
ids is idempotent).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

from .errors import (
    ConnectionLostError,
    DatabaseError,
    DiskFullError,
    PermissionDeniedError,
    StatementTimeoutError,
    VectorPgError,
)

F = TypeVar("F", bound=Callable[..., Any])


def translate(exc: BaseException, action: str) -> VectorPgError | None:
    """The vectorpg error for a driver error raised while ``action`` (``"adding documents"``), or ``None``
    when it has no better explanation than its own."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(original, psycopg.Error):
        return None
    state = original.sqlstate or ""
    detail = (original.diag.message_primary if original.diag else None) or str(original).strip().splitlines()[0]
    if state == "42501":
        return PermissionDeniedError(
            f"permission denied while {action}: {detail}. The database role lacks a privilege on vectorpg's "
            "objects: run Database.setup() (or `alembic upgrade head`) as their owner, then GRANT USAGE ON "
            "SCHEMA vectorpg and the needed rights on its tables to this role.",
            sqlstate=state,
        )
    if state == "53100":
        return DiskFullError(
            f"the database server's disk is full ({action}): {detail}. Nothing of this operation was written "
            "(its transaction rolled back). Free space on the server (VACUUM FULL, drop unused indexes or "
            "collections) or move its data directory, then retry.",
            sqlstate=state,
        )
    if state == "57014":
        return StatementTimeoutError(
            f"a statement ran past statement_timeout while {action} and was cancelled: {detail}. Raise the "
            "timeout (SET statement_timeout, or options='-c statement_timeout=...' in the URL), build a vector "
            "index (collection.create_index()) or ask for fewer rows.",
            sqlstate=state,
        )
    lost = isinstance(original, psycopg.OperationalError) and not state  # no server state: the link broke
    if state.startswith("08") or state in ("57P01", "57P02", "57P03") or lost:
        return ConnectionLostError(
            f"the connection to PostgreSQL was lost while {action}: {detail}. The operation's transaction "
            "did not commit, so nothing of it was written; retry it (add / upsert with the same ids is "
            "idempotent) once the server is reachable.",
            sqlstate=state or None,
        )
    if state.startswith("53") or state.startswith("58"):
        return DatabaseError(f"the database server failed while {action}: {detail}", sqlstate=state)
    return None


def translating(action: str) -> Callable[[F], F]:
    """Decorate a public operation: driver errors that :func:`translate` explains become vectorpg errors."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (DBAPIError, psycopg.Error) as exc:
                better = translate(exc, action)
                if better is None and args:
                    # a handle whose collection changed under it (reembed in another process) fails on
                    # data errors: say that, not the symptom
                    stale = getattr(args[0], "stale_error", None)
                    better = stale() if callable(stale) else None
                if better is None:
                    raise
                raise better from exc

        return wrapper  # type: ignore[return-value]

    return decorate

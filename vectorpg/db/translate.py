"""What a failure from PostgreSQL means for the caller: :func:`translate` turns driver errors into vectorpg
errors that say what happened and what to do, with the original error chained; :func:`translating`
applies it to a public operation.

Every write of vectorpg runs in one transaction, so whichever of these happens, nothing of the failed
operation was written; the messages say so where it matters (a retry of ``add`` / ``upsert`` with the same
ids is idempotent).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from sqlalchemy.exc import DBAPIError

from vectorpg.errors import (
    ConfigurationError,
    ConflictError,
    ConnectionLostError,
    DatabaseError,
    DiskFullError,
    InvalidInputError,
    LockNotAvailableError,
    PermissionDeniedError,
    StatementTimeoutError,
    VectorPgError,
)

F = TypeVar("F", bound=Callable[..., Any])

#: How many times an operation that is one whole transaction runs again after a deadlock or a serialization
#: failure (each retry waits a little longer: 50 ms, 100 ms, 200 ms).
RETRIES = 3
_CONFLICTS = (errors.DeadlockDetected, errors.SerializationFailure)


#: what a prepared statement that a pooler moved between server connections raises
_PREPARED = (errors.InvalidSqlStatementName, errors.DuplicatePreparedStatement, errors.ProtocolViolation)


def translate(exc: BaseException, action: str) -> VectorPgError | None:
    """The vectorpg error for a driver error raised while ``action`` (``"adding documents"``): a specific
    class where the SQLSTATE says what happened, else a :class:`DatabaseError` with the SQLSTATE; ``None``
    only for an error that is not psycopg's."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(original, psycopg.Error):
        return None
    state = original.sqlstate or ""
    detail = (original.diag.message_primary if original.diag else None) or str(original).strip().splitlines()[0]
    if isinstance(original, errors.InsufficientPrivilege):
        return PermissionDeniedError(
            f"permission denied while {action}: {detail}. The database role lacks a privilege on vectorpg's "
            "objects: run Database.setup() (or `alembic upgrade head`) as their owner, then, as the owner, "
            "SELECT vectorpg.grant_app_role('<this role>') (docs/security.md). Creating collections and "
            "building indexes stay with the owner.",
            sqlstate=state,
        )
    if isinstance(original, errors.DiskFull):
        return DiskFullError(
            f"the database server's disk is full ({action}): {detail}. Nothing of this operation was written "
            "(its transaction rolled back). Free space on the server (VACUUM FULL, drop unused indexes or "
            "collections) or move its data directory, then retry.",
            sqlstate=state,
        )
    if isinstance(original, errors.QueryCanceled) and "statement timeout" not in detail:
        return DatabaseError(
            f"a statement was cancelled while {action}: {detail}. Someone asked for it (Ctrl-C, "
            "pg_cancel_backend(), a pooler's query timeout); nothing of this operation was written.",
            sqlstate=state,
        )
    if isinstance(original, errors.QueryCanceled):
        return StatementTimeoutError(
            f"a statement ran past statement_timeout while {action} and was cancelled: {detail}. Raise the "
            "timeout (SET statement_timeout, or options='-c statement_timeout=...' in the URL), build a vector "
            "index (collection.create_index()) or ask for fewer rows.",
            sqlstate=state,
        )
    if isinstance(original, _CONFLICTS):
        return ConflictError(
            f"concurrent transactions conflicted while {action} ({detail}), again after {RETRIES} retries. "
            "Nothing of this operation was written; retry it later, or write overlapping ids from fewer "
            "processes at once.",
            sqlstate=state,
        )
    if isinstance(original, errors.LockNotAvailable):
        return LockNotAvailableError(
            f"a lock needed while {action} was not available in time: {detail}. Nothing was written. Another "
            "transaction holds it (an index build, a reembed swap, a migration): retry once it is done, or "
            "raise lock_timeout.",
            sqlstate=state,
        )
    if isinstance(original, _PREPARED) and "prepared statement" in detail:  # lost, doubled or mismatched
        return ConfigurationError(
            f"a server-side prepared statement went wrong while {action}: {detail}. A transaction-mode pooler "
            "(PgBouncer) runs each transaction on any server connection, and psycopg prepares a statement "
            "that runs often: create the engine with connect_args={'prepare_threshold': None} "
            "(vectorpg.connect() does)."
        )
    if isinstance(original, errors.ProtocolViolation):  # a bug or a proxy in the way, not a network failure
        return DatabaseError(
            f"PostgreSQL reported a protocol violation while {action}: {detail}. A pooler or proxy between "
            "the application and the server may not support what was sent.",
            sqlstate=state,
        )
    if not state and "number of parameters must be between" in detail:  # refused by libpq, never sent
        return InvalidInputError(
            f"the statement for {action} needs more than 65,535 parameters, PostgreSQL's limit: {detail}. Pass "
            "lists as one array (vectorpg's filters do: $in takes a list) or split the operation."
        )
    pgconn = getattr(original, "pgconn", None)
    still_connected = pgconn is not None and pgconn.status == psycopg.pq.ConnStatus.OK
    lost = isinstance(original, psycopg.OperationalError) and not state and not still_connected
    shutdown = (errors.AdminShutdown, errors.CrashShutdown, errors.CannotConnectNow)
    # SQLSTATE classes (psycopg has a class per SQLSTATE, none per class): 08 connection, 54 limits, 53 / 58 server
    if state.startswith("08") or isinstance(original, shutdown) or lost:
        return ConnectionLostError(
            f"the connection to PostgreSQL was lost while {action}: {detail}. The operation's transaction "
            "did not commit, so nothing of it was written; retry it (add / upsert with the same ids is "
            "idempotent) once the server is reachable.",
            sqlstate=state or None,
        )
    if state.startswith("54"):
        return DatabaseError(
            f"the input is too large for PostgreSQL while {action}: {detail}. Nothing was written; split it "
            "into smaller pieces.",
            sqlstate=state,
        )
    if state.startswith("53") or state.startswith("58"):
        return DatabaseError(f"the database server failed while {action}: {detail}", sqlstate=state)
    # anything else PostgreSQL refused: still a vectorpg error, with the SQLSTATE and the original chained
    return DatabaseError(f"PostgreSQL refused {action}: {detail}", sqlstate=state or None)


def translating(action: str, *, retry: bool = False) -> Callable[[F], F]:
    """Decorate a public operation: driver errors become vectorpg errors (:func:`translate`). With
    ``retry``, for an operation that is one whole transaction of its own, deadlocks and serialization
    failures run it again up to :data:`RETRIES` times first."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempt = 0
            while True:
                try:
                    return fn(*args, **kwargs)
                except (DBAPIError, psycopg.Error) as exc:
                    original = exc.orig if isinstance(exc, DBAPIError) else exc
                    if retry and attempt < RETRIES and isinstance(original, _CONFLICTS):
                        attempt += 1
                        time.sleep(0.05 * 2 ** (attempt - 1))
                        continue
                    raise _better(exc, action, args) from exc

        return wrapper  # type: ignore[return-value]

    return decorate


def _better(exc: BaseException, action: str, args: tuple[Any, ...]) -> VectorPgError:
    better = translate(exc, action)
    if better is None or type(better) is DatabaseError:
        # a handle whose collection changed under it (reembed in another process) fails on data errors:
        # say that, not the symptom
        stale = getattr(args[0], "stale_error", None) if args else None
        found = stale() if callable(stale) else None
        if isinstance(found, VectorPgError):
            return found
    return better if better is not None else DatabaseError(f"the database failed while {action}: {exc}")

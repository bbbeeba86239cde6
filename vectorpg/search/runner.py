"""How a search's statements run: one connection per search, settings local to it, rows as psycopg loads them.

:func:`statement_runner` gives ``run(statement, settings) -> rows``. On an :class:`~sqlalchemy.Engine`
(:class:`EngineRunner`) the connection is in autocommit mode and statements run on psycopg directly
(:mod:`vectorpg.db.direct`): a statement and its ``set_config(..., true)`` settings go out in one pipeline,
one network round trip, and the settings end with the statement (ORM statements: the first settings
open a transaction, rolled back when the search is done). In a
caller's :class:`~sqlalchemy.orm.Session` the statements join its transaction and the settings are put
back afterwards. ``orm`` runs ORM statements (rows of mapped objects) through SQLAlchemy.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from vectorpg.db.direct import Compiled, execute_direct, execute_sql, set_local
from vectorpg.db.engine import driver_connection, vector_statements
from vectorpg.search.planner import Runner
from vectorpg.search.statements import InStatement, apply_settings


class EngineRunner:
    """``run(statement, settings) -> rows`` on one autocommit connection (see :func:`statement_runner`)."""

    def __init__(self, conn: Connection, stack: ExitStack, orm: bool) -> None:
        self.conn = conn
        self.stack = stack
        self.executor: Any = stack.enter_context(Session(bind=conn, expire_on_commit=False)) if orm else conn
        self.orm = orm
        self.in_transaction = False
        #: (compiled statement, or the ORM statement; settings) of every statement run (None: run by
        #: SQLAlchemy, not kept)
        self.executed: list[tuple[Any, dict[str, str]] | None] = []

    def _settings(self, settings: dict[str, str]) -> dict[str, str]:
        """The settings to apply before an ORM statement (opening the transaction they need)."""
        if isinstance(settings, InStatement):
            return {}
        if settings and not self.in_transaction:
            raw = driver_connection(self.conn.connection)
            self.stack.enter_context(raw.transaction(force_rollback=True))
            self.in_transaction = True
        return settings

    def __call__(self, stmt: Any, settings: dict[str, str]) -> list[Any]:
        if self.orm:
            self.executed.append((stmt, settings))
            return self.again(stmt, None, settings)
        compiled: list[Compiled] = []
        # rows as psycopg loads them; settings and statement in one round trip (vectorpg.db.direct)
        rows = execute_direct(self.conn, stmt, compiled, _direct_settings(settings))
        self.executed.append((compiled[0], settings) if compiled else None)
        return rows

    def again(self, statement: Any, vector: Any, settings: dict[str, str]) -> list[Any]:
        """Run a statement :meth:`__call__` ran before (a :class:`Compiled` one, or an ORM statement),
        with ``vector`` as its ``query_vector`` parameter (``None``: the statement's own)."""
        if isinstance(statement, Compiled):
            if vector is not None:
                processor = statement.processors.get("query_vector")
                value = processor(vector) if processor else vector
                statement = statement.with_params({**statement.params, "query_vector": value})
            return execute_sql(self.conn, statement, _direct_settings(settings))
        set_local(self.conn, self._settings(settings))  # the ORM session runs on this connection
        params = {} if vector is None else {"query_vector": vector}
        return list(self.executor.execute(statement, params).all())


def _direct_settings(settings: dict[str, str]) -> dict[str, str] | None:
    """Settings to send with a statement (none when the statement sets them itself)."""
    return None if isinstance(settings, InStatement) or not settings else settings


@contextmanager
def statement_runner(bind: Engine | Session, *, orm: bool = False) -> Iterator[Runner]:
    """One connection for all the statements of one search, and ``run(statement, settings) -> rows``.

    On an :class:`~sqlalchemy.Engine` the connection is in autocommit mode, so a search costs no BEGIN /
    COMMIT round trips: a statement's settings share its pipeline (:func:`vectorpg.db.direct.execute_sql`);
    for ORM statements the first settings open a transaction (psycopg's ``transaction()``), rolled back
    when the search is done. In a caller's :class:`~sqlalchemy.orm.Session` the statements join its transaction
    and the settings are put back afterwards. ``orm`` runs ORM statements (rows of mapped objects).
    """
    if isinstance(bind, Session):
        with _session_runner(bind) as run:
            yield run
        return
    with autocommit_connection(bind) as conn, ExitStack() as stack:
        yield EngineRunner(conn, stack, orm)


@contextmanager
def autocommit_connection(engine: Engine) -> Iterator[Connection]:
    """A pooled connection with psycopg's ``autocommit`` on (each statement its own transaction), put back
    in the pool as it came out, and the vector types registered on it (an application's own engine, too).

    This sets the psycopg attribute itself rather than SQLAlchemy's ``isolation_level="AUTOCOMMIT"``
    execution option, whose set-and-reset per checkout measured 0.1-0.3 ms a search here (about a third of
    a small search's client-side cost). A connection that cannot be put back in transactional mode is
    invalidated: the pool never hands out a connection left in autocommit.
    """
    with engine.connect() as conn, vector_statements(conn.connection):
        raw = driver_connection(conn.connection)
        was = raw.autocommit
        if not was:
            raw.autocommit = True
        try:
            yield conn
        finally:
            if not was and not conn.invalidated:
                try:
                    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        raw.rollback()
                    raw.autocommit = False
                except psycopg.Error as exc:
                    conn.invalidate(exc)


@contextmanager
def _session_runner(session: Session) -> Iterator[Runner]:
    restore: dict[str, str] = {}

    def run(stmt: Any, settings: dict[str, str]) -> list[Any]:
        for name, value in apply_settings(session, settings, remember=True).items():
            restore.setdefault(name, value)
        return list(session.execute(stmt).all())

    with vector_statements(session.connection().connection):
        try:
            yield run
        except BaseException:
            if restore:  # the session may be broken: keep the error that got us here
                with suppress(Exception):
                    apply_settings(session, restore, remember=False)
            raise
        if restore:
            apply_settings(session, restore, remember=False)


@dataclass(frozen=True)
class _Kept:
    """A search's one statement, kept to answer the same search with another query vector."""

    at: float
    statement: Any  # Compiled, or an ORM statement (EngineRunner.again)
    orm: bool
    settings: dict[str, str]
    strategy: str
    k: int


class StatementMemory:
    """The statements of searches that took one statement, by search key: the same search with another
    query vector runs that SQL again with the new vector, with no planning and one round trip."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, _Kept] = {}

    def keep(self, key: Hashable, run: Any, strategy: str, k: int) -> None:
        """Keep the statement ``run`` executed, if it executed exactly one on an engine's connection."""
        executed = run.executed if isinstance(run, EngineRunner) else []
        if len(executed) == 1 and executed[0] is not None:
            statement, settings = executed[0]
            self._kept[key] = _Kept(time.monotonic(), statement, run.orm, settings, strategy, k)

    def run(self, key: Hashable, bind: Engine | Session, vector: Any, max_age: float) -> list[Any] | None:
        """The rows of the statement kept under ``key`` for ``vector``; ``None`` if none is kept (or it is
        older than ``max_age`` seconds) or an ANN result came back short."""
        entry = self._kept.get(key)
        if entry is None or isinstance(bind, Session) or time.monotonic() - entry.at > max_age:
            return None
        with statement_runner(bind, orm=entry.orm) as run:
            assert isinstance(run, EngineRunner)
            rows = run.again(entry.statement, vector, entry.settings)
        if entry.strategy == "ann" and len(rows) < entry.k:
            return None  # dead rows or a short filtered scan: the full path completes it
        return rows

    def clear(self) -> None:
        self._kept.clear()

"""Run a SQLAlchemy Core statement on the psycopg connection underneath, without SQLAlchemy's execution path.

A search's statement is built with SQLAlchemy (one place for the SQL) and compiled through SQLAlchemy's own
compiled-statement cache, but executed by psycopg directly: no execution context, no result proxy, no row
processing (psycopg's loaders give ``dict`` for JSONB; a search's vector columns arrive in pgvector's binary form, one
``frombuffer`` each: :class:`Compiled` readers). This is what keeps a search within a fraction of a
millisecond of raw psycopg running the same SQL (``benchmarks/search_v2.py`` measures it).

The engine's ``before_cursor_execute`` / ``after_cursor_execute`` events still fire with the SQL text and
parameters (instrumentation and the test suite's statement counters see every statement), and a
connection that fails at the driver level is invalidated, so the pool does not hand it out again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pgvector
import psycopg
import psycopg.sql
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from vectorpg.db.engine import driver_connection
from vectorpg.sqltypes import VectorWire


@dataclass(frozen=True)
class Compiled:
    """A statement as psycopg runs it: SQL text, processed parameters, the bind processors by parameter
    name (to process a new value for one of them) and the readers of result columns that SQLAlchemy
    would convert (pgvector's binary form -> NumPy: :class:`vectorpg.sqltypes.VectorWire`)."""

    sql: str
    params: dict[str, Any]
    processors: dict[str, Any]
    readers: tuple[tuple[int, Callable[[Any], Any]], ...] = ()

    def with_params(self, params: dict[str, Any]) -> Compiled:
        return replace(self, params=params)


def execute_direct(
    conn: Connection,
    statement: Any,
    capture: list[Any] | None = None,
    settings: dict[str, str] | None = None,
) -> list[tuple[Any, ...]]:
    """Execute ``statement`` (a Core construct) on ``conn``'s psycopg connection with ``settings`` local
    to it (:func:`execute_sql`) and return its rows; ``capture`` gets the :class:`Compiled` statement
    appended (to run the same SQL again)."""
    compiled = compile_direct(conn, statement)
    if compiled is None:  # parameters rendered at execution time (expanding IN, literal_execute)
        raw = driver_connection(conn.connection)
        if settings and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with raw.transaction(force_rollback=True):  # the settings last until its end
                set_local(conn, settings)
                return list(conn.execute(statement).all())
        set_local(conn, settings or {})
        return list(conn.execute(statement).all())
    if capture is not None:
        capture.append(compiled)
    return execute_sql(conn, compiled, settings)


def execute_sql(conn: Connection, compiled: Compiled, settings: dict[str, str] | None = None) -> list[tuple[Any, ...]]:
    """Execute a statement :func:`compile_direct` compiled (perhaps with new parameters), with
    ``set_config(name, value, true)`` ``settings`` local to it.

    On an idle autocommit connection the settings and the statement go out in one pipeline (one network
    round trip): without a Sync between them, the server runs both in one implicit transaction, so the
    settings apply to the statement and end with it (no BEGIN / ROLLBACK round trips). Inside a
    transaction the settings last until its end, as ``set_local`` does.
    """
    raw = driver_connection(conn.connection)
    pipelined = bool(settings) and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if settings and not pipelined:
        set_local(conn, settings)
    cursor = raw.cursor()
    try:
        with _translated(conn, raw, compiled.sql, compiled.params):
            if pipelined:
                assert settings is not None
                with raw.pipeline():
                    _run(conn, raw, *_set_config(raw, settings))
                    _run(conn, raw, compiled.sql, compiled.params, cursor)
            else:
                _run(conn, raw, compiled.sql, compiled.params, cursor)
            rows = cursor.fetchall() if cursor.description is not None else []
    finally:
        cursor.close()
    return _numpy_rows(rows, compiled.readers)


@contextmanager
def _translated(conn: Connection, raw: psycopg.Connection[Any], sql: str, params: Any) -> Iterator[None]:
    """A driver error as SQLAlchemy's ``DBAPIError`` (which :mod:`vectorpg.db.translate` types); a broken
    connection is invalidated first, so the pool does not hand it out again."""
    try:
        yield
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


def _run(
    conn: Connection, raw: psycopg.Connection[Any], sql: str, params: Any, cursor: psycopg.Cursor[Any] | None = None
) -> None:
    """``cursor.execute`` (the connection's own when ``None``) between the engine's cursor events."""
    events = conn._has_events or conn.engine._has_events
    if events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
    if cursor is None:
        raw.execute(sql, params)
    else:
        cursor.execute(sql, params)
    if events:
        conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)


def _numpy_rows(rows: list[Any], readers: tuple[tuple[int, Callable[[Any], Any]], ...]) -> list[Any]:
    """Vectors as NumPy arrays, as SQLAlchemy's types return them: the columns :class:`Compiled` reads
    from pgvector's binary form, and pgvector ``Vector`` values (text form, psycopg's loader)."""
    if not rows:
        return rows
    convert = dict(readers)
    for i, value in enumerate(rows[0]):
        if isinstance(value, pgvector.Vector):
            convert.setdefault(i, _vector_to_numpy)
    if not convert:
        return rows
    return [tuple(convert[i](v) if i in convert else v for i, v in enumerate(row)) for row in rows]


def _vector_to_numpy(value: Any) -> Any:
    return value.to_numpy() if isinstance(value, pgvector.Vector) else value


def compile_direct(conn: Connection, statement: Any) -> Compiled | None:
    """``statement`` compiled through SQLAlchemy's compiled cache (:class:`Compiled`); ``None`` for a
    statement whose SQL text SQLAlchemy completes only at execution (post-compile parameters).

    This reads SQLAlchemy's compiled-statement cache as ``Connection.execute`` does (its signature differs
    between SQLAlchemy 2.0 and 2.1; both are handled, and the suite runs every search through here).
    """
    found = statement._compile_w_cache(
        dialect=conn.dialect,
        compiled_cache=conn.engine._compiled_cache,
        column_keys=[],
        for_executemany=False,
        schema_translate_map=None,
    )
    if len(found) == 4:  # SQLAlchemy 2.1: (compiled, extracted, collected parameters, cache hit)
        compiled, extracted, collected, _ = found
        params = compiled.construct_params(
            extracted_parameters=extracted, escape_names=False, _collected_params=collected
        )
    else:  # SQLAlchemy 2.0: (compiled, extracted, cache hit)
        compiled, extracted, _ = found
        params = compiled.construct_params(extracted_parameters=extracted, escape_names=False)
    if compiled.post_compile_params or compiled.literal_execute_params:
        return None
    processors = dict(compiled._bind_processors)
    for name, bind in compiled.binds.items():
        if isinstance(bind.type, VECTOR):
            # psycopg's own pgvector dumper sends a NumPy array as binary directly (vectorpg.db.engine
            # registers it); SQLAlchemy's processor would wrap it in a Vector first
            processors[name] = _vector_param
    escaped = compiled.escaped_bind_names
    out = {}
    for name, value in params.items():
        processor = processors.get(name)
        out[escaped.get(name, name)] = processor(value) if processor is not None else value
    readers = tuple(
        (i, entry[3].result_processor(conn.dialect, None))
        for i, entry in enumerate(compiled._result_columns)
        if isinstance(entry[3], VectorWire)
    )
    return Compiled(compiled.string, out, processors, readers)


def _vector_param(value: Any) -> Any:
    if isinstance(value, pgvector.Vector) or (
        isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 1
    ):
        return value
    return pgvector.Vector(value) if value is not None else None


def _set_config(raw: psycopg.Connection[Any], settings: dict[str, str]) -> tuple[str, list[str]]:
    """``SELECT set_config(%s, %s, true), ...``: one call per setting, names and values bound."""
    calls = psycopg.sql.SQL(", ").join([psycopg.sql.SQL("set_config(%s, %s, true)")] * len(settings))
    sql = psycopg.sql.SQL("SELECT {}").format(calls).as_string(raw)
    return sql, [item for pair in settings.items() for item in pair]


def set_local(conn: Connection, settings: dict[str, str]) -> None:
    """``set_config(name, value, true)`` for every setting, in one statement (inside a transaction)."""
    if not settings:
        return
    raw = driver_connection(conn.connection)
    sql, values = _set_config(raw, settings)
    with _translated(conn, raw, sql, values):
        _run(conn, raw, sql, values)

"""Run a SQLAlchemy Core statement on the psycopg connection underneath, without SQLAlchemy's execution path.

A search's statement is built with SQLAlchemy (one place for the SQL) and compiled through SQLAlchemy's own
compiled-statement cache, but executed by psycopg directly: no execution context, no result proxy, no row
processing (psycopg's loaders already give ``dict`` for JSONB and NumPy arrays for pgvector types). This is
what keeps a search within a fraction of a millisecond of raw psycopg running the same SQL
(``benchmarks/search_v2.py`` measures it).

The engine's ``before_cursor_execute`` / ``after_cursor_execute`` events still fire with the SQL text and
parameters (instrumentation and the test suite's statement counters see every statement), and a
connection that fails at the driver level is invalidated, so the pool does not hand it out again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pgvector
import psycopg
import psycopg.sql
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


def execute_direct(conn: Connection, statement: Any, capture: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Execute ``statement`` (a Core construct) on ``conn``'s psycopg connection and return its rows;
    ``capture`` gets ``(sql, parameters, bind processors)`` appended (to run the same SQL again)."""
    compiled = compile_direct(conn, statement)
    if compiled is None:  # parameters rendered at execution time (expanding IN, literal_execute)
        return list(conn.execute(statement).all())
    sql, params, processors = compiled
    if capture is not None:
        capture.append((sql, params, processors))
    return execute_sql(conn, sql, params)


def execute_sql(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Execute compiled SQL text with processed parameters (what :func:`compile_direct` returns)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    events = conn._has_events or conn.engine._has_events
    cursor = raw.cursor()
    if events:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params)
        rows = _numpy_vectors(cursor.fetchall()) if cursor.description is not None else []
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
    finally:
        cursor.close()
    if events:
        conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
    return rows


def _numpy_vectors(rows: list[Any]) -> list[Any]:
    """pgvector ``Vector`` values as NumPy arrays, as SQLAlchemy's VECTOR type returns them."""
    if not rows:
        return rows
    columns = [i for i, value in enumerate(rows[0]) if isinstance(value, pgvector.Vector)]
    if not columns:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i in columns:
            if isinstance(values[i], pgvector.Vector):
                values[i] = values[i].to_numpy()
        out.append(tuple(values))
    return out


def compile_direct(conn: Connection, statement: Any) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """The SQL text (from SQLAlchemy's compiled cache), the processed parameters of ``statement`` and the
    bind processors by parameter name; ``None`` for a statement whose SQL text SQLAlchemy completes only
    at execution (post-compile parameters).

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
    return compiled.string, out, processors


def _vector_param(value: Any) -> Any:
    if isinstance(value, pgvector.Vector) or (
        isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 1
    ):
        return value
    return pgvector.Vector(value) if value is not None else None


def set_local(conn: Connection, settings: dict[str, str]) -> None:
    """``set_config(name, value, true)`` for every setting, in one statement (inside a transaction)."""
    if not settings:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    calls = psycopg.sql.SQL(", ").join([psycopg.sql.SQL("set_config(%s, %s, true)")] * len(settings))
    sql = psycopg.sql.SQL("SELECT {}").format(calls).as_string(raw)  # names and values are bound parameters
    values = [item for pair in settings.items() for item in pair]
    events = conn._has_events or conn.engine._has_events
    if events:
        conn.dispatch.before_cursor_execute(conn, None, sql, values, None, False)
    try:
        raw.execute(sql, values)
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, psycopg.Error) from exc
    if events:
        conn.dispatch.after_cursor_execute(conn, None, sql, values, None, False)

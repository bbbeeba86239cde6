"""Writing batches of rows: multi-row INSERT for small batches, binary COPY for large ones.

Both paths run inside the caller's transaction, so a batch is all-or-nothing. Upserts of large batches
COPY into a temporary staging table and then ``INSERT ... SELECT ... ON CONFLICT``. Values pass through
each column type's SQLAlchemy bind processor on both paths (so vectors go out as pgvector values in
binary, JSONB as JSON, enums as their database values).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Column, MetaData, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from .errors import DuplicateIdError
from .types import HALFVEC, VECTOR, EncodedVector, encode_binary

#: Batches with at least this many rows go through binary COPY.
COPY_THRESHOLD = 64

OnConflict = Literal["error", "update", "nothing"]


def check_unique_keys(keys: Sequence[Any], what: str = "id") -> None:
    """Raise :class:`DuplicateIdError` naming the rows if a key appears twice in one batch."""
    seen: dict[Any, int] = {}
    dups: list[str] = []
    ids: list[Any] = []
    for row, key in enumerate(keys):
        if key in seen:
            dups.append(f"{key!r} at rows {seen[key]} and {row}")
            ids.append(key)
        else:
            seen[key] = row
    if dups:
        shown = "; ".join(dups[:5]) + ("; ..." if len(dups) > 5 else "")
        raise DuplicateIdError(
            f"duplicate {what} in one batch: {shown}. Each {what} may appear once per batch; "
            "merge the rows or send them in separate calls",
            ids=ids,
        )


def _bound_rows(session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Any]:
    dialect = session.get_bind().dialect
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in columns]
    # Dense vector columns of validated float arrays: encoded for the wire in one NumPy pass.
    encoded: dict[int, list[EncodedVector]] = {}
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        if isinstance(column_type, (VECTOR, HALFVEC)):
            values = [row[i] for row in rows]
            if all(isinstance(v, np.ndarray) and v.ndim == 1 for v in values) and len({len(v) for v in values}) == 1:
                encoded[i] = encode_binary(np.stack(values), half=isinstance(column_type, HALFVEC))
                processors[i] = None
    if not any(processors) and not encoded:
        return list(rows)
    return [
        tuple(
            encoded[i][n] if i in encoded else proc(value) if proc is not None and value is not None else value
            for i, (proc, value) in enumerate(zip(processors, row))
        )
        for n, row in enumerate(rows)
    ]


def _copy(session: Session, target: sql.Composable, oids: list[int], columns: Sequence[str], rows: list[Any]) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(oids)
        for row in rows:
            copy.write_row(row)


def _column_oids(session: Session, table: Table, columns: Sequence[str]) -> list[int]:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    qualified = sql.Identifier(*([table.schema] if table.schema else []), table.name).as_string(raw)
    found = dict(
        raw.execute(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [qualified],
        ).fetchall()
    )
    return [found[c] for c in columns]


def write_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: OnConflict = "error",
    conflict_columns: Sequence[str] = (),
    update_extra: Mapping[str, ColumnElement[Any]] | None = None,
    copy_threshold: int = COPY_THRESHOLD,
) -> None:
    """Write ``rows`` (tuples aligned with ``columns``) to ``table`` in the session's transaction.

    ``on_conflict``: ``"error"`` (a key that exists raises :class:`DuplicateIdError`), ``"update"``
    (upsert: the non-key columns are replaced, plus ``update_extra``), or ``"nothing"`` (keep the row).
    """
    if not rows:
        return
    update_columns = [c for c in columns if c not in conflict_columns]
    try:
        if len(rows) < copy_threshold:
            stmt = pg_insert(table)
            if on_conflict == "update":
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(conflict_columns),
                    set_={**{c: stmt.excluded[c] for c in update_columns}, **(update_extra or {})},
                )
            elif on_conflict == "nothing":
                stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_columns))
            session.execute(stmt, [dict(zip(columns, row)) for row in rows])
            return

        bound = _bound_rows(session, table, columns, rows)
        oids = _column_oids(session, table, columns)
        target_name = sql.Identifier(*([table.schema] if table.schema else []), table.name)
        if on_conflict == "error":
            _copy(session, target_name, oids, columns, bound)
            return
        stage_name = f"vectorpg_stage_{uuid.uuid4().hex[:16]}"
        raw = session.connection().connection.driver_connection
        assert raw is not None
        raw.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(stage_name),
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                target_name,
            )
        )
        _copy(session, sql.Identifier(stage_name), oids, columns, bound)
        stage = Table(stage_name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
        stmt = pg_insert(table).from_select(list(columns), select(*(stage.c[c] for c in columns)))
        if on_conflict == "update":
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict_columns),
                set_={**{c: stmt.excluded[c] for c in update_columns}, **(update_extra or {})},
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_columns))
        session.execute(stmt)
        raw.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(stage_name)))
    except (IntegrityError, psycopg.errors.UniqueViolation) as exc:
        orig = getattr(exc, "orig", exc)
        if getattr(orig, "sqlstate", None) == "23505" and on_conflict == "error":
            detail = getattr(getattr(orig, "diag", None), "message_detail", None) or str(orig)
            raise DuplicateIdError(
                f"a row with the same key already exists in {table.fullname} ({detail}); "
                "use upsert() to replace existing rows",
                ids=[],
            ) from exc
        raise


def key_in(column: ColumnElement[Any], keys: Sequence[Any]) -> ColumnElement[bool]:
    """``column = ANY(:keys)`` with the keys as one array parameter (an ``IN`` list would take one
    parameter per key, and PostgreSQL's protocol allows at most 65,535 per statement)."""
    return column == any_(bindparam(None, list(keys), type_=ARRAY(column.type)))

"""Writing batches of rows: multi-row INSERT for small batches, binary COPY for large ones.

Both paths run inside the caller's transaction, so a batch is all-or-nothing. Upserts of large batches
COPY into a temporary staging table and then ``INSERT ... SELECT ... ON CONFLICT``. Values pass through
each column type's SQLAlchemy bind processor on both paths (so vectors go out as pgvector values in
binary, JSONB as JSON, enums as their database values).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy import Column, MetaData, Table, any_, bindparam, exists, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vectorpg.db.copy_stream import JsonDocument, binary_stream
from vectorpg.db.engine import driver_connection
from vectorpg.errors import DuplicateIdError
from vectorpg.sqltypes import HALFVEC, VECTOR, EncodedVector, encode_block

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


def _bound_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    matrices: Mapping[str, np.ndarray],
) -> tuple[list[Any], dict[int, tuple[np.ndarray, bool]]]:
    """Rows with every value through its column type's bind processor, except dense vector columns of
    validated float arrays: those come back apart as one matrix per column (column position -> (matrix,
    halfvec?)), their place in the rows left unread, to be encoded for the wire in one NumPy pass (the
    ``matrices`` given as such, the others stacked); and JSON already encoded (:class:`JsonDocument`),
    which goes out as it is."""
    dialect = session.get_bind().dialect
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    blocks: dict[int, tuple[np.ndarray, bool]] = {}
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        if name in matrices:
            blocks[i] = (matrices[name], isinstance(column_type, HALFVEC))
            processors[i] = None
            continue
        values = [row[i] for row in rows]
        if isinstance(column_type, (VECTOR, HALFVEC)):
            if all(isinstance(v, np.ndarray) and v.ndim == 1 for v in values) and len({len(v) for v in values}) == 1:
                blocks[i] = (np.stack(values), isinstance(column_type, HALFVEC))
                processors[i] = None
        elif processors[i] is not None and all(type(v) is JsonDocument for v in values):
            processors[i] = None
    if not any(processors):  # nothing to convert: the rows as they are (block columns are not read from them)
        return list(rows), blocks
    return [
        tuple(
            None if i in blocks else proc(value) if proc is not None and value is not None else value
            for i, (proc, value) in enumerate(zip(processors, row))
        )
        for row in rows
    ], blocks


def _copy(
    session: Session,
    target: sql.Composable,
    oids: list[int],
    columns: Sequence[str],
    rows: list[Any],
    blocks: dict[int, tuple[np.ndarray, bool]],
) -> None:
    raw = driver_connection(session.connection().connection)

    def statement(order: Sequence[int]) -> sql.Composed:
        names = sql.SQL(", ").join(sql.Identifier(columns[i]) for i in order)
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)

    stream = binary_stream(oids, rows, blocks)
    if stream is not None:  # built while the server takes the previous chunk (a writer thread sends them)
        order, chunks = stream
        with raw.cursor() as cursor, cursor.copy(statement(order), writer=QueuedLibpqWriter(cursor)) as copy:
            for chunk in chunks:
                copy.write(chunk)
        return
    with raw.cursor() as cursor, cursor.copy(statement(range(len(columns)))) as copy:
        copy.set_types(oids)
        encoded = {i: encode_block(matrix, half=half) for i, (matrix, half) in blocks.items()}
        for n, row in enumerate(rows):
            if encoded:
                row = tuple(EncodedVector(encoded[i][n].tobytes()) if i in encoded else v for i, v in enumerate(row))
            copy.write_row(row)


def _column_oids(session: Session, table: Table, columns: Sequence[str]) -> tuple[list[int], bool]:
    """The type oids of ``columns``, and whether the table has row-level security (one catalog query)."""
    raw = driver_connection(session.connection().connection)
    qualified = sql.Identifier(*([table.schema] if table.schema else []), table.name).as_string(raw)
    found = raw.execute(
        "SELECT a.attname, a.atttypid::int, c.relrowsecurity FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [qualified],
    ).fetchall()
    oids = {name: oid for name, oid, _ in found}
    return [oids[c] for c in columns], bool(found and found[0][2])


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
    keys_absent: bool = False,
    on_existing: Callable[[], None] | None = None,
    matrices: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write ``rows`` (tuples aligned with ``columns``) to ``table`` in the session's transaction.

    ``matrices``: dense vector columns given as one validated float32 matrix each, row ``n`` for row
    ``n`` (their place in the rows is not read), so that a large batch's vectors go to the wire in one
    NumPy pass without being split into rows and stacked again.

    ``on_conflict``: ``"error"`` (a key that exists raises :class:`DuplicateIdError`), ``"update"``
    (upsert: the non-key columns are replaced, plus ``update_extra``), or ``"nothing"`` (keep the row).
    A large upsert whose keys are all new (``keys_absent``: the caller looked; else one query looks) is
    copied straight into the table, as an insert; a key that a concurrent writer added meanwhile rolls that
    copy back to its savepoint, and the rows are upserted through a staging table. ``on_existing`` is
    called there, before the staging, when ``keys_absent`` was a guess (the caller did not look, and is
    told that some key is stored after all).
    """
    if not rows:
        return
    matrices = dict(matrices or {})
    if matrices and len(rows) < copy_threshold:  # a multi-row INSERT reads every value from the rows
        rows = _with_matrices(columns, rows, matrices)
        matrices = {}
    update_columns = [c for c in columns if c not in conflict_columns]
    upsert = bool(conflict_columns) and on_conflict != "error"
    if upsert:
        # every writer locks rows in the same order (Python's, code points for strings): two upserts of
        # overlapping ids wait for each other instead of deadlocking
        keys = list(map(itemgetter(*[list(columns).index(c) for c in conflict_columns]), rows))
        order = sorted(range(len(rows)), key=keys.__getitem__)
        if order != list(range(len(rows))):  # rows already in key order (a usual batch) stay where they are
            rows = [rows[n] for n in order]
            matrices = {name: matrix[order] for name, matrix in matrices.items()}
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
            session.execute(stmt, [{c: _plain(v) for c, v in zip(columns, row)} for row in rows])
            return

        bound, blocks = _bound_rows(session, table, columns, rows, matrices)
        oids, secured = _column_oids(session, table, columns)
        target_name = sql.Identifier(*([table.schema] if table.schema else []), table.name)
        raw = driver_connection(session.connection().connection)
        # PostgreSQL refuses COPY FROM into a table with row-level security: such rows go through a staging
        # table (no RLS) and an INSERT ... SELECT, to which the policies apply.
        if on_conflict == "error" and not secured:
            _copy(session, target_name, oids, columns, bound, blocks)
            return
        if (
            upsert
            and not secured
            and (keys_absent or not _any_key_exists(session, table, columns, conflict_columns, rows))
        ):
            try:  # all new (the usual bulk load): straight in, as an insert is
                with session.begin_nested():
                    _copy(session, target_name, oids, columns, bound, blocks)
                return
            except psycopg.errors.UniqueViolation:
                pass  # a concurrent writer added one of the keys meanwhile: the upsert below replaces it
        if keys_absent and on_existing is not None:
            on_existing()
        stage_name = f"vectorpg_stage_{uuid.uuid4().hex[:16]}"
        raw.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(stage_name),
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                target_name,
            )
        )
        _copy(session, sql.Identifier(stage_name), oids, columns, bound, blocks)
        stage = Table(stage_name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
        # the stage holds the rows in key order (sorted above) and a scan of a new heap returns them in the
        # order they went in: no ORDER BY, which sorted every row with its vector (it spilled to disk)
        stmt = pg_insert(table).from_select(list(columns), select(*(stage.c[c] for c in columns)))
        if on_conflict == "update":
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict_columns),
                set_={**{c: stmt.excluded[c] for c in update_columns}, **(update_extra or {})},
            )
        elif on_conflict == "nothing":
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


def _with_matrices(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], matrices: Mapping[str, np.ndarray]
) -> list[tuple[Any, ...]]:
    """The rows with the matrices' rows in their columns' places."""
    given = {columns.index(name): matrix for name, matrix in matrices.items()}
    return [tuple(given[i][n] if i in given else value for i, value in enumerate(row)) for n, row in enumerate(rows)]


def _any_key_exists(
    session: Session, table: Table, columns: Sequence[str], keys: Sequence[str], rows: Sequence[Sequence[Any]]
) -> bool:
    """Whether a row of ``table`` has the key of one of ``rows``: one statement, the keys as arrays; a key
    column with one value in every row (a collection's name) is a plain condition, which prunes partitions."""
    values = {c: [row[list(columns).index(c)] for row in rows] for c in keys}
    same = {c: v[0] for c, v in values.items() if len(set(v)) == 1}
    varying = [c for c in keys if c not in same]
    conditions = [table.c[c] == bindparam(None, value, type_=table.c[c].type) for c, value in same.items()]
    if len(varying) == 1:  # key = ANY(array): the key's unique index, probed once a key (no join to plan)
        conditions.append(key_in(table.c[varying[0]], values[varying[0]]))
    elif varying:
        arrays = [bindparam(None, values[c], type_=ARRAY(table.c[c].type)) for c in varying]
        given = func.unnest(*arrays).table_valued(*varying, name="given").render_derived()
        conditions += [table.c[c] == given.c[c] for c in varying]
    return bool(session.execute(select(exists(select(literal(1)).where(*conditions)))).scalar())


def _plain(value: Any) -> Any:
    """A value as SQLAlchemy's bind processors take it (encoded JSON decoded again)."""
    return value.value() if type(value) is JsonDocument else value


def key_in(column: ColumnElement[Any], keys: Sequence[Any]) -> ColumnElement[bool]:
    """``column = ANY(:keys)`` with the keys as one array parameter (an ``IN`` list would take one
    parameter per key, and PostgreSQL's protocol allows at most 65,535 per statement)."""
    return column == any_(bindparam(None, list(keys), type_=ARRAY(column.type)))

"""Change an embedding column's dimension (or model) in a migration, re-embedding every row.

A vector of 384 numbers cannot be cast to 768: the rows must be embedded again by the new model. In a
migration::

    def embed(rows):  # rows: tuples of the ``source`` columns, one per table row
        return new_model.encode([body for (body,) in rows])

    def upgrade():
        op.change_vector_dimension("items", "embedding", 768, embed=embed, source=["body"], key="id")

In a migration (``op.change_vector_dimension``) the change runs online by default: in
``autocommit_block()``, each step a short transaction of its own while the application reads and writes the
table (:mod:`vectorpg.alembic.online`: add the column and a trigger, backfill in batches, build the new
indexes ``CONCURRENTLY``, swap under a lock held for a moment); an interrupted run resumes when run again.
``online=False`` (and the function called with a connection in a transaction) does it all in one transaction:

What it does, in the migration's transaction:

1. adds a column ``<column>__new`` of the new type (nullable);
2. fills it in batches: reads ``key`` + ``source`` of rows still NULL there, calls ``embed``, validates
   every vector (dimension, NaN/infinity: a typed error naming the row) and writes the batch;
3. locks the table, fills rows written meanwhile, and checks that no row is left without a new vector;
4. drops the old column (and its indexes), renames the new one, restores NOT NULL, and re-creates the
   vector indexes the old column had, for the new dimension.

Until step 4 the old column and its index keep serving searches; after it, every row has a vector of
the new dimension (the typed column enforces it): no row ever disagrees with the model. Any error rolls
the whole change back. Autogenerate writes this operation (with ``embed=...`` to fill in) when a vector
column's dimension changes, instead of an ``alter_column`` that would fail on the first row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg
from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation, Operations
from psycopg import sql
from sqlalchemy import Column, MetaData, Table, bindparam, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex

from vectorpg import validation
from vectorpg.alembic.online import Embed, Target, online_change, temporary_name
from vectorpg.alembic.ops import IMPORT, _call
from vectorpg.db.engine import driver_connection, ensure_vector_types
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import list_vector_indexes
from vectorpg.progress import progress_bar
from vectorpg.sqltypes import VectorType, column_type


def change_vector_dimension(
    connection: Connection,
    table: str,
    column: str,
    dimension: int,
    *,
    embed: Embed,
    source: Sequence[str],
    key: str = "id",
    schema: str | None = None,
    vector_type: str = "vector",
    batch_size: int = 500,
    progress: bool = True,
    online: bool = False,
) -> int:
    """Re-embed every row of ``table`` into a ``vector_type(dimension)`` column that replaces ``column``.

    ``embed(rows)`` gets a batch of tuples (the ``source`` columns of each row, in order) and returns one
    vector per row. Returns the number of rows embedded. Runs in ``connection``'s transaction, or, with
    ``online=True``, on an autocommit connection in short transactions of its own while reads and writes
    go on (:func:`vectorpg.alembic.online.online_change`; ``op.change_vector_dimension(..., online=True)``
    runs it in ``autocommit_block()``).
    """
    if not callable(embed):
        raise InvalidArgumentError("change_vector_dimension needs embed=<function of a batch of rows>")
    for each in (key, column, *source):
        validation.identifier(each, "column")
    if not source:
        raise InvalidArgumentError("source=[...] names the columns embed() reads (for example ['body'])")
    validation.identifier(table, "table")
    if schema is not None:
        validation.identifier(schema, "schema")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    vtype = VectorType.parse(vector_type)
    new_type = column_type(vtype, dimension)
    new_column = temporary_name(column)
    raw = driver_connection(connection.connection)
    ensure_vector_types(connection.connection)
    name = sql.Identifier(*([schema] if schema else []), table)
    qualified = name.as_string(raw)
    old_indexes = [info for info in list_vector_indexes(connection, qualified) if info.spec.column == column]
    not_null = connection.execute(
        text("SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attname = :c"),
        {"t": qualified, "c": column},
    ).scalar()
    if not_null is None:
        raise InvalidArgumentError(f"{qualified} has no column {column!r}")

    def ddl(template: str, *args: sql.Composable) -> None:
        raw.execute(sql.SQL(template).format(name, *args))

    type_sql = sql.SQL(str(new_type.compile(dialect=connection.dialect)))  # e.g. VECTOR(768), from the type
    if online:
        if not raw.autocommit or raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise InvalidArgumentError(
                "online=True commits as it goes: call it on an autocommit connection (in a migration, "
                "op.change_vector_dimension(..., online=True) runs in op.get_context().autocommit_block())"
            )
        target = Target(raw, name, table, column, new_column, type_sql, key, list(source), bool(not_null), schema)
        return online_change(target, old_indexes, new_type, vtype, dimension, embed, batch_size, progress)
    ddl("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}", sql.Identifier(new_column), type_sql)
    rows_table = Table(
        table,
        MetaData(),
        *(Column(n) for n in dict.fromkeys([key, *source])),
        Column(new_column, new_type),
        schema=schema,
    )
    c = rows_table.c
    pending = c[new_column].is_(None)
    select_rows = select(c[key], *(c[n] for n in source)).where(pending).order_by(c[key]).limit(batch_size)
    update_row = (
        rows_table.update().where(c[key] == bindparam("k")).values({new_column: bindparam("v", type_=new_type)})
    )
    count_pending = select(func.count()).select_from(rows_table).where(pending)
    bar = progress_bar(
        total=connection.execute(count_pending).scalar(),
        desc=f"re-embedding {table}.{column}",
        unit="row",
        disable=not progress,
    )
    done = 0

    def fill() -> None:
        nonlocal done
        while True:
            rows = connection.execute(select_rows).all()
            if not rows:
                return
            produced = embed([tuple(r[1:]) for r in rows])
            if produced is None or len(produced) != len(rows):
                got = "nothing" if produced is None else f"{len(produced)} vectors"
                raise InvalidArgumentError(f"embed() got {len(rows)} rows and returned {got}")
            checked = validation.vectors(produced, vector_type=vtype, dimension=dimension, metric=None)
            connection.execute(update_row, [{"v": checked[i], "k": r[0]} for i, r in enumerate(rows)])
            done += len(rows)
            bar.update(len(rows))

    try:
        fill()
        # Writers may have added rows meanwhile: lock them out, fill the last ones, then swap.
        ddl("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE")
        fill()
    finally:
        bar.close()
    left = connection.execute(count_pending).scalar()
    if left:
        raise InvalidArgumentError(f"{left} rows of {qualified} have no new vector; nothing was changed")
    ddl("ALTER TABLE {} DROP COLUMN {}", sql.Identifier(column))
    ddl("ALTER TABLE {} RENAME COLUMN {} TO {}", sql.Identifier(new_column), sql.Identifier(column))
    if not_null:
        ddl("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", sql.Identifier(column))
    for info in old_indexes:
        index = replace(info.spec, dimension=dimension, vector_type=vtype).to_index(info.name)
        Table(table, MetaData(), Column(column, new_type), index, schema=schema)
        connection.execute(CreateIndex(index))
    return done


@Operations.register_operation("change_vector_dimension")
class ChangeVectorDimensionOp(MigrateOperation):
    """``op.change_vector_dimension(table, column, dimension, embed=..., source=[...])``; see the module."""

    def __init__(
        self, table_name: str, column_name: str, dimension: int, *, old_dimension: int | None = None, **kwargs: Any
    ) -> None:
        self.table_name = table_name
        self.column_name = column_name
        self.dimension = dimension
        self.old_dimension = old_dimension
        self.kwargs = kwargs

    @classmethod
    def change_vector_dimension(
        cls, operations: Operations, table_name: str, column_name: str, dimension: int, **kwargs: Any
    ) -> int:
        """Re-embed ``table_name.column_name`` into ``dimension`` (see :func:`change_vector_dimension`)."""
        result: int = operations.invoke(cls(table_name, column_name, dimension, **kwargs))
        return result

    def reverse(self) -> MigrateOperation:
        """Back to the old dimension: another re-embedding, by the old model (its embed= is to fill in)."""
        if self.old_dimension is None:
            raise ValueError("a dimension change without old_dimension cannot be reversed")
        kwargs = {k: v for k, v in self.kwargs.items() if k not in ("embed", "source")}
        return ChangeVectorDimensionOp(
            self.table_name, self.column_name, self.old_dimension, old_dimension=self.dimension, **kwargs
        )


@Operations.implementation_for(ChangeVectorDimensionOp)
def _change_dimension(operations: Operations, operation: ChangeVectorDimensionOp) -> int:
    if operation.kwargs.get("embed") is Ellipsis:
        raise InvalidArgumentError(
            f"fill in embed= (and source=) of op.change_vector_dimension for {operation.table_name}."
            f"{operation.column_name}: the rows must be embedded again by the new model"
        )
    if operations.get_context().as_sql:
        raise InvalidArgumentError(
            f"op.change_vector_dimension({operation.table_name!r}, {operation.column_name!r}, ...) re-embeds the "
            "table's rows with a Python model, which an offline migration (alembic upgrade --sql) cannot do: run "
            "this revision online (alembic upgrade REVISION), and --sql for the revisions before and after it"
        )
    kwargs = {"online": True, **operation.kwargs}  # in a migration: online unless online=False is asked
    if not kwargs["online"]:
        return change_vector_dimension(
            operations.get_bind(), operation.table_name, operation.column_name, operation.dimension, **kwargs
        )
    with operations.get_context().autocommit_block():  # commits what the migration did so far
        return change_vector_dimension(
            operations.get_bind(), operation.table_name, operation.column_name, operation.dimension, **kwargs
        )


@renderers.dispatch_for(ChangeVectorDimensionOp)
def _render_change_dimension(autogen_context: AutogenContext, operation: ChangeVectorDimensionOp) -> str:
    autogen_context.imports.add(IMPORT)
    kwargs = {k: v for k, v in operation.kwargs.items() if k not in ("embed", "source")}
    args = [operation.table_name, operation.column_name, operation.dimension]
    call = _call("change_vector_dimension", args, kwargs)[:-1] + ", embed=..., source=[...])"
    return (
        f"# vectorpg: {operation.table_name}.{operation.column_name} changes from {operation.old_dimension} to "
        f"{operation.dimension} dimensions.\n"
        "# Stored vectors cannot be cast: fill in embed= (a function of a batch of rows that returns their new\n"
        "# vectors) and source= (the columns it reads).\n" + call
    )

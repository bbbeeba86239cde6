"""The online form of ``change_vector_dimension``: expand, backfill, contract, each step a short transaction,
while the application reads and writes the table (see :func:`online_change`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Column, MetaData, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from vectorpg import validation
from vectorpg.db.locks import retry_lock_timeouts, set_lock_timeout
from vectorpg.errors import InvalidArgumentError
from vectorpg.progress import progress_bar
from vectorpg.sqltypes import VectorType

Embed = Callable[[list[tuple[Any, ...]]], Any]


def temporary_name(column: str) -> str:
    name = f"{column}__new"
    return name if len(name) <= 63 else f"{column[:40]}_{hashlib.sha1(column.encode()).hexdigest()[:8]}__new"


ONLINE_RETRIES = 50


@dataclass(frozen=True)
class Target:
    raw: psycopg.Connection[Any]
    name: sql.Identifier
    table: str
    column: str
    new_column: str
    type_sql: sql.Composable
    key: str
    source: list[str]
    not_null: bool
    schema: str | None

    def statement(self, template: str, *args: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(self.name, *args)

    def qualify(self, name: str) -> sql.Identifier:
        """``name`` in the table's schema."""
        return sql.Identifier(*([self.schema] if self.schema else []), name)

    @property
    def trigger(self) -> str:
        digest = hashlib.sha1(f"{self.schema}.{self.table}.{self.column}".encode()).hexdigest()[:12]
        return f"vectorpg_dimension_{digest}"


def _short(target: Target, step: Callable[[], object]) -> None:
    """``step`` in a transaction of its own whose locks wait only a moment, tried again on a timeout
    (:mod:`vectorpg.db.locks`)."""

    def attempt() -> None:
        with target.raw.transaction():
            set_lock_timeout(target.raw)
            step()

    retry_lock_timeouts(attempt, ONLINE_RETRIES)


def online_change(
    target: Target,
    old_indexes: list[Any],
    new_type: Any,
    vtype: VectorType,
    dimension: int,
    embed: Embed,
    batch_size: int,
    progress: bool,
) -> int:
    """Expand, backfill, contract, each step short:

    1. add the new column (nullable) and a trigger that clears it when a row's ``source`` columns change;
    2. fill it in batches of ``batch_size``, each its own transaction; a row whose text changed between
       reading and writing keeps NULL (the write compares the source values it embedded);
    3. build the new column's vector indexes ``CONCURRENTLY`` (reads and writes go on);
    4. swap, in one transaction: writers wait (SHARE ROW EXCLUSIVE) while the rows written meanwhile are
       embedded; then, under ACCESS EXCLUSIVE for a moment, the old column goes, the new one takes its name,
       NOT NULL and the index names.

    Every lock is taken with a short ``lock_timeout`` and retried, so a reader or writer is never queued
    behind the change for long. An interrupted run leaves the new column and resumes when run again.
    """
    raw, new = target.raw, sql.Identifier(target.new_column)
    sources = [sql.Identifier(c) for c in target.source]
    changed = sql.SQL(" OR ").join(sql.SQL("NEW.{0} IS DISTINCT FROM OLD.{0}").format(c) for c in sources)
    function = target.qualify(target.trigger)

    def expand() -> None:
        raw.execute(target.statement("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}", new, target.type_sql))
        raw.execute(sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
            "IF {} THEN NEW.{} := NULL; END IF; RETURN NEW; END $fn$"
        ).format(function, changed, new))  # fmt: skip
        raw.execute(target.statement("DROP TRIGGER IF EXISTS {1} ON {0}", sql.Identifier(target.trigger)))
        raw.execute(sql.SQL("CREATE TRIGGER {} BEFORE UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(target.trigger), target.name, function))  # fmt: skip

    _short(target, expand)
    key = sql.Identifier(target.key)
    read = sql.SQL("SELECT {}, {} FROM {} WHERE {} IS NULL AND {} > %s ORDER BY {} LIMIT %s").format(
        key, sql.SQL(", ").join(sources), target.name, new, key, key
    )
    first = sql.SQL("SELECT {}, {} FROM {} WHERE {} IS NULL ORDER BY {} LIMIT %s").format(
        key, sql.SQL(", ").join(sources), target.name, new, key
    )
    unchanged = sql.SQL(" AND ").join(sql.SQL("{} IS NOT DISTINCT FROM %s").format(c) for c in sources)
    write = sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s AND {} IS NULL AND {}").format(
        target.name, new, key, new, unchanged
    )
    pending = raw.execute(target.statement("SELECT count(*) FROM {} WHERE {} IS NULL", new)).fetchone()
    bar = progress_bar(total=pending[0] if pending else None, desc=f"re-embedding {target.table}.{target.column}",
                       unit="row", disable=not progress)  # fmt: skip
    done = 0

    def fill_batch(rows: list[Any]) -> None:
        nonlocal done
        produced = embed([tuple(r[1:]) for r in rows])
        if produced is None or len(produced) != len(rows):
            got = "nothing" if produced is None else f"{len(produced)} vectors"
            raise InvalidArgumentError(f"embed() got {len(rows)} rows and returned {got}")
        checked = validation.vectors(produced, vector_type=vtype, dimension=dimension, metric=None)
        with raw.cursor() as cursor:
            cursor.executemany(write, [(checked[i], r[0], *r[1:]) for i, r in enumerate(rows)])
        done += len(rows)
        bar.update(len(rows))

    try:
        rows = raw.execute(first, [batch_size]).fetchall()
        while rows:  # keyset order: one pass; rows written or changed meanwhile wait for the swap
            with raw.transaction():
                fill_batch(rows)
            rows = raw.execute(read, [rows[-1][0], batch_size]).fetchall()
        renames = _build_new_indexes(target, old_indexes, new_type, vtype, dimension)

        def swap() -> None:
            raw.execute(target.statement("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE"))
            while rest := raw.execute(first, [batch_size]).fetchall():
                fill_batch(rest)
            raw.execute(target.statement("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE"))
            raw.execute(target.statement("DROP TRIGGER IF EXISTS {1} ON {0}", sql.Identifier(target.trigger)))
            raw.execute(target.statement("ALTER TABLE {} DROP COLUMN {}", sql.Identifier(target.column)))
            raw.execute(target.statement("ALTER TABLE {} RENAME COLUMN {} TO {}", new, sql.Identifier(target.column)))
            if target.not_null:
                raw.execute(
                    target.statement("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL", sql.Identifier(target.column))
                )
            for temporary, final in renames:
                raw.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(target.qualify(temporary), sql.Identifier(final))
                )
            raw.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))

        _short(target, swap)
    finally:
        bar.close()
    return done


def _build_new_indexes(
    target: Target, old_indexes: list[Any], new_type: Any, vtype: VectorType, dimension: int
) -> list[tuple[str, str]]:
    """The old column's vector indexes, built ``CONCURRENTLY`` on the new column under temporary names (an
    INVALID one left by an interrupted run is dropped first); returns ``(temporary, final)`` names."""
    renames = []
    kind = target.raw.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                              [target.name.as_string(target.raw)]).fetchone()  # fmt: skip
    partitioned = kind is not None and kind[0] == "p"
    for info in old_indexes:
        temporary = temporary_name(info.name)
        qualified = target.qualify(temporary)
        state = target.raw.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                   [qualified.as_string(target.raw)]).fetchone()  # fmt: skip
        if state is not None and not state[0]:
            target.raw.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(qualified))
        if state is None or not state[0]:
            spec = replace(info.spec, column=target.new_column, dimension=dimension, vector_type=vtype)
            index = spec.to_index(temporary)
            # PostgreSQL builds no index on a partitioned table CONCURRENTLY: there, writers wait for the build
            index.dialect_options["postgresql"]["concurrently"] = not partitioned
            Table(target.table, MetaData(), Column(target.new_column, new_type), index, schema=target.schema)
            ddl = str(CreateIndex(index).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
            if partitioned:
                _short(target, partial(target.raw.execute, ddl))
            else:
                target.raw.execute(ddl)
        renames.append((temporary, info.name))
    return renames

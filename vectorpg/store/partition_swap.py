"""The online swap of :mod:`vectorpg.store.reembed`: a shadow partition, built while searches and writes go on.

Every collection is one partition of ``vectorpg.documents``, which all collections share, so a column
cannot change type for one collection. Once ``embedding_next`` holds the new model's vectors:

1. **Shadow.** A table ``<partition>_next`` like the partition (same columns, defaults, CHECKs but the
   dimension one, which is the new dimension's), and a trigger on the partition that mirrors every write
   into it (its ``embedding`` is the row's ``embedding_next``: none for a text written meanwhile). Creating
   the trigger blocks writers for a moment (``lock_timeout``, retried), never readers.
2. **Copy** in keyset batches of short transactions; the rows a batch reads are locked ``FOR SHARE``, so a
   concurrent update or delete of one waits for the batch and its mirror then sees the copied row.
3. **Fill** the rows without a vector (texts written meanwhile) from their current text, batch by batch,
   until a batch finds only a few.
4. **Indexes** on the shadow: the partition's own (by their catalog definitions, constraints as
   constraints, so ``ATTACH`` adopts them) and its vector indexes again for the new dimension; then the
   texts written during the builds are filled the same way.
5. **Swap**, one short transaction: writers wait (``SHARE ROW EXCLUSIVE``) while the last rows written are
   filled, then the partition is detached and dropped and the shadow attached in its place, its indexes
   and constraints renamed to the old names, and the collection's row records the new model. Readers wait
   only for that catalog work (milliseconds). A lock not granted within ``lock_timeout`` rolls the
   transaction back and it is tried again.

A run that stops anywhere before the swap commits leaves the collection as it was; the next run drops the
leftover shadow and builds it again (the vectors come back from ``embedding_next`` and the embedding cache).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import Session

from vectorpg.db.engine import driver_connection
from vectorpg.db.locks import retry_lock_timeouts, set_lock_timeout
from vectorpg.ddl.builds import create_vector_index
from vectorpg.ddl.partitioning import secure_like_parent
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import list_vector_indexes
from vectorpg.own_schema.tables import SCHEMA, documents_table

if TYPE_CHECKING:
    from vectorpg.indexes import VectorIndex
    from vectorpg.store.collection import Collection

#: how often the swap's and the trigger's transactions are tried when a lock is not granted in time
ATTEMPTS = 100
COPY_BATCH = 5_000
#: rows left to embed that the swap embeds itself, while writers wait (a writer keeps adding some)
CATCH_UP = 20
CATCH_UP_ROUNDS = 50

MIRROR = """
CREATE OR REPLACE FUNCTION vectorpg.reembed_mirror() RETURNS trigger
LANGUAGE plpgsql AS $$
-- Mirror a write on a collection's partition into its reembed shadow (TG_ARGV[0]): the row, with the new
-- model's vector (embedding_next, or none when its text changed) as its embedding.
BEGIN
    IF to_regclass(format('%I.%I', TG_TABLE_SCHEMA, TG_ARGV[0])) IS NULL THEN
        RETURN NULL;  -- the shadow of an interrupted run was dropped: nothing to mirror into
    END IF;
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format('DELETE FROM %I.%I WHERE collection = $1 AND id = $2', TG_TABLE_SCHEMA, TG_ARGV[0])
            USING OLD.collection, OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        NEW.embedding := NEW.embedding_next;
        NEW.embedding_next := NULL;
        EXECUTE format('INSERT INTO %I.%I SELECT ($1).*', TG_TABLE_SCHEMA, TG_ARGV[0]) USING NEW;
    END IF;
    RETURN NULL;
END $$
"""

Fill = Callable[[Session, Table, int | None], int]


def shadow_name(partition: str) -> str:
    return f"{partition}_next"


def shadow_swap(collection: Collection, dimension: int, fill: Fill, finish: Callable[[Session], None]) -> None:
    """Build the shadow of ``collection``'s partition with the new vectors and swap it in (see the module).

    ``fill(session, table, limit)`` embeds up to ``limit`` rows of ``table`` that have no vector (all when
    ``None``) and returns how many; ``finish(session)`` records the new model inside the swap.
    """
    part = collection.partition
    shadow = part.to_metadata(MetaData(), name=shadow_name(part.name))
    names = _Names(shadow.name)
    vector_indexes = _prepare(collection, shadow, dimension, names)
    _copy(collection, shadow)
    _catch_up(collection, shadow, fill)
    for final, spec in vector_indexes:  # concurrently: the mirror trigger keeps writing into the shadow
        create_vector_index(collection.engine, shadow, spec, name=names.temporary(final, "index"), concurrently=True)
    _retrying(collection, lambda session, raw: raw.execute(sql.SQL("ANALYZE {}").format(_id(shadow.name))))
    _catch_up(collection, shadow, fill)  # the texts written during the index builds
    _retrying(collection, lambda session, raw: _swap(session, raw, collection, shadow, names, fill, finish))


def _catch_up(collection: Collection, shadow: Table, fill: Fill) -> None:
    """Embed the shadow's rows without a vector (texts written since their row was copied) in batches
    while writers go on, until a batch finds fewer than ``CATCH_UP`` (what is left, the swap embeds while
    writers wait) or ``CATCH_UP_ROUNDS`` batches ran (a writer faster than the embedder)."""
    for _ in range(CATCH_UP_ROUNDS):
        with collection.session_factory() as session, session.begin():
            if fill(session, shadow, 1_000) < CATCH_UP:
                return


def _id(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


class _Names:
    """Temporary names of the shadow's indexes and constraints, and the partition's names they take."""

    def __init__(self, shadow: str) -> None:
        self.shadow = shadow
        self.renames: dict[str, tuple[str, str]] = {}  # temporary -> (kind, final name)

    def identifier(self, final: str, kind: str) -> sql.Identifier:
        return sql.Identifier(self.temporary(final, kind))

    def temporary(self, final: str, kind: str) -> str:
        """A new temporary name for what is renamed ``final`` (``kind``: index, constraint or bound, the
        partition-bound CHECK that is dropped once attached)."""
        name = f"rx{len(self.renames)}_{self.shadow}"[:63]
        self.renames[name] = (kind, final)
        return name


def _prepare(collection: Collection, shadow: Table, dimension: int, names: _Names) -> list[tuple[str, VectorIndex]]:
    """Create the shadow, its constraints and its non-vector indexes, and the mirror trigger; return the
    partition's vector indexes, for the new dimension."""
    part = collection.partition
    p, s = _id(part.name), _id(shadow.name)
    regclass = f'"{SCHEMA}"."{part.name}"'

    def create(session: Session, raw: psycopg.Connection[Any]) -> list[tuple[str, VectorIndex]]:
        raw.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(p))
        raw.execute(sql.SQL("DROP TRIGGER IF EXISTS reembed_mirror ON {}").format(p))  # an interrupted run's
        raw.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(s))
        raw.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE)").format(s, p)
        )
        raw.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding DROP NOT NULL").format(s))
        raw.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (collection = {})").format(
                s, names.identifier("", "bound"), sql.Literal(collection.name)
            )
        )
        dims = sql.SQL("CHECK (vector_dims(embedding) = {})").format(sql.Literal(dimension))
        raw.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                s, names.identifier("embedding_dimension", "constraint"), dims
            )
        )
        vector = {info.name: info for info in list_vector_indexes(session.connection(), part)}
        rows = raw.execute(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.conrelid = %s::regclass AND c.contype IN ('c', 'p', 'u') AND c.conname <> 'embedding_dimension' "
            "ORDER BY c.conname",
            [regclass],
        ).fetchall()
        for conname, definition in rows:  # the server's own rendering of constraints vectorpg made
            raw.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(s, names.identifier(conname, "constraint"))
                + sql.SQL(definition)
            )
        indexes = raw.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            [regclass],
        ).fetchall()
        for index_name, definition in indexes:
            if index_name in vector:
                continue
            head = re.match(r"CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ USING ", definition)
            if head is None:
                raise InvalidArgumentError(f"index {index_name} of {part.name} cannot be copied: {definition}")
            start = sql.SQL("CREATE {}INDEX {} ON {} USING ").format(
                sql.SQL(head.group(1) or ""), names.identifier(index_name, "index"), s
            )
            raw.execute(start + sql.SQL(definition[head.end() :]))
        raw.execute(MIRROR)
        raw.execute(
            sql.SQL("CREATE TRIGGER reembed_mirror AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW "
                    "EXECUTE FUNCTION vectorpg.reembed_mirror({})").format(p, sql.Literal(shadow.name))
        )  # fmt: skip
        return [(name, replace(info.spec, dimension=dimension)) for name, info in vector.items()]

    return cast("list[tuple[str, VectorIndex]]", _retrying(collection, create))


def _copy(collection: Collection, shadow: Table) -> None:
    """Rows into the shadow in keyset batches, their new vectors as ``embedding``; mirrored rows win."""
    columns = [c.name for c in collection.partition.columns]
    new = {"embedding": sql.SQL("embedding_next"), "embedding_next": sql.SQL("NULL::vector")}
    step = sql.SQL(
        "WITH batch AS (SELECT {picked} FROM {p} WHERE collection = %s AND id > %s ORDER BY id LIMIT %s FOR SHARE), "
        "copied AS (INSERT INTO {s} ({cols}) SELECT * FROM batch ON CONFLICT (collection, id) DO NOTHING) "
        "SELECT max(id) FROM batch"
    ).format(
        p=_id(collection.partition.name),
        s=_id(shadow.name),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        picked=sql.SQL(", ").join(new.get(c, sql.Identifier(c)) for c in columns),
    )
    last: str | None = ""
    with collection.engine.connect() as conn:
        raw = driver_connection(conn.connection)
        while last is not None:
            with raw.transaction():
                row = raw.execute(step, [collection.name, last, COPY_BATCH]).fetchone()
            last = row[0] if row else None


def _swap(
    session: Session,
    raw: psycopg.Connection[Any],
    collection: Collection,
    shadow: Table,
    names: _Names,
    fill: Fill,
    finish: Callable[[Session], None],
) -> None:
    part = collection.partition
    p, s, parent = _id(part.name), _id(shadow.name), _id("documents")
    raw.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(p))  # writers wait, readers go on
    fill(session, shadow, None)  # the rows written since the last catch-up batch
    raw.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET NOT NULL").format(s))
    raw.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(p))  # from here readers wait too
    raw.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, p))
    raw.execute(sql.SQL("DROP TABLE {}").format(p))
    raw.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(s, sql.Identifier(part.name)))
    raw.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(parent, p, sql.Literal(collection.name))
    )
    for temporary, (kind, final) in names.renames.items():
        if kind == "bound":
            raw.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(p, sql.Identifier(temporary)))
        elif kind == "constraint":
            raw.execute(
                sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                    p, sql.Identifier(temporary), sql.Identifier(final)
                )
            )
        else:
            raw.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(_id(temporary), sql.Identifier(final)))
    secure_like_parent(raw, documents_table, part.name)  # the parent's row-level security, if it has any
    finish(session)


def _retrying(collection: Collection, work: Callable[[Session, psycopg.Connection[Any]], Any]) -> Any:
    """Run ``work`` in a transaction whose locks wait only a moment, again on a timeout (:mod:`vectorpg.db.locks`)."""

    def attempt() -> Any:
        with collection.session_factory() as session, session.begin():
            raw = driver_connection(session.connection().connection)
            set_lock_timeout(raw)
            return work(session, raw)

    return retry_lock_timeouts(attempt, ATTEMPTS)

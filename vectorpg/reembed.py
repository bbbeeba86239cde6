"""Move a collection to another embedding model (of any dimension) without stopping its searches.

::

    docs = docs.reembed(SentenceTransformerEmbedder("/models/bge-small"))

1. The collection's row records the target (``next_embedder``, ``next_dimension``); a run for another
   target first clears what an earlier one left.
2. ``embedding_next`` is filled in batches, one transaction each, for rows that do not have it yet: an
   interrupted run resumes where it stopped, and the embedding cache spares texts embedded before.
   Searches keep using ``embedding`` (the old model's vectors) meanwhile.
3. The swap, in one transaction: lock out writers, fill rows added meanwhile, drop the old vector
   indexes, move ``embedding_next`` into ``embedding``, replace the partition's dimension CHECK and
   record the new model and dimension.
4. The vector indexes are built again, with the same method and options, for the new dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from psycopg import sql
from sqlalchemy import Text, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from .build import create_vector_index
from .cache import embed_cached
from .errors import InvalidArgumentError
from .indexes import IndexInfo, list_vector_indexes
from .models import SCHEMA, collections_table, tuning_table
from .types import VECTOR

if TYPE_CHECKING:
    from .collection import Collection
    from .embeddings import Embedder


def reembed(collection: Collection, embedder: Embedder, *, batch_size: int = 256, progress: bool = True) -> Collection:
    """Re-embed every document of ``collection`` with ``embedder``; return the collection opened with it."""
    from tqdm import tqdm

    from .collection import Collection

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    db, name = collection.db, collection.name
    dimension = int(embedder.dimension)
    if embedder.name == collection.embedder_name and dimension == collection.dimension:
        raise InvalidArgumentError(f"collection {name!r} is already embedded by {embedder.name}")
    part = collection._partition
    c = collections_table.c
    with db.session_factory() as session, session.begin():
        _lock(session, name)
        target = session.execute(select(c.next_embedder, c.next_dimension).where(c.name == name)).one()
        if tuple(target) != (embedder.name, dimension):  # a new target: forget a previous run's vectors
            session.execute(update(part).where(part.c.embedding_next.is_not(None)).values(embedding_next=None))
            session.execute(
                update(collections_table)
                .where(c.name == name)
                .values(next_embedder=bindparam("e", embedder.name, type_=Text), next_dimension=dimension)
            )
        textless = session.scalar(select(func.count()).select_from(part).where(part.c.content.is_(None)))
        if textless:
            raise InvalidArgumentError(
                f"{textless} documents of {name!r} have no text to embed again (they were added as bare vectors)"
            )
        remaining = session.scalar(select(func.count()).select_from(part).where(part.c.embedding_next.is_(None)))

    pending = select(part.c.id, part.c.content).where(part.c.embedding_next.is_(None)).order_by(part.c.id)
    write = (
        update(part).where(part.c.id == bindparam("k")).values(embedding_next=bindparam("v", type_=VECTOR(dimension)))
    )
    bar = tqdm(total=remaining, desc=f"re-embedding {name} with {embedder.name}", unit="doc", disable=not progress)

    def fill(session: Session, limit: int | None) -> int:
        """Embed one batch of rows still without a new vector (all of them when ``limit`` is None)."""
        rows = session.execute(pending.limit(limit) if limit else pending).all()
        if rows:
            vectors = embed_cached(
                db, embedder, [r.content for r in rows], dimension=dimension, metric=collection.metric
            ).vectors
            session.execute(write, [{"k": r.id, "v": vectors[i]} for i, r in enumerate(rows)])
            bar.update(len(rows))
        return len(rows)

    try:
        while True:
            with db.session_factory() as session, session.begin():
                if not fill(session, batch_size):
                    break
        with db.session_factory() as session, session.begin():
            indexes = _swap(session, collection, embedder, dimension, fill)
    finally:
        bar.close()
    for info in indexes:  # built again for the new dimension, after the swap committed
        create_vector_index(db, part, replace(info.spec, dimension=dimension), name=info.name)
    return Collection(db, name, dimension=dimension, metric=collection.metric.metric.value, embedder=embedder)


def _lock(session: Session, name: str) -> None:
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(bindparam("n", "vectorpg:" + name)))))


def _swap(
    session: Session,
    collection: Collection,
    embedder: Embedder,
    dimension: int,
    fill: Callable[[Session, int | None], int],
) -> list[IndexInfo]:
    name = collection.name
    part = collection._partition
    raw = session.connection().connection.driver_connection
    assert raw is not None
    table = sql.Identifier(SCHEMA, part.name)
    _lock(session, name)
    raw.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
    fill(session, None)  # rows added since the batches ran
    indexes = list_vector_indexes(session.connection(), part)
    for info in indexes:
        raw.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(SCHEMA, info.name)))
    raw.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS embedding_dimension").format(table))
    session.execute(update(part).values(embedding=part.c.embedding_next, embedding_next=None))
    raw.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT embedding_dimension CHECK (vector_dims(embedding) = {})").format(
            table, sql.Literal(dimension)
        )
    )
    c = collections_table.c
    session.execute(
        update(collections_table)
        .where(c.name == name)
        .values(
            dimension=dimension,
            embedder=bindparam("e", embedder.name, type_=Text),
            next_embedder=None,
            next_dimension=None,
        )
    )
    session.execute(delete(tuning_table).where(tuning_table.c.table_name == part.fullname))
    return indexes

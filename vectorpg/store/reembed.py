"""Move a collection to another embedding model (of any dimension) without stopping its searches.

::

    docs = docs.reembed(SentenceTransformerEmbedder("/models/bge-small"))

1. The collection's row records the target (``next_embedder``, ``next_dimension``); a run for another
   target first clears what an earlier one left.
2. ``embedding_next`` is filled in batches, one transaction each, for rows that do not have it yet: an
   interrupted run resumes where it stopped, and the embedding cache spares texts embedded before.
   Searches keep using ``embedding`` (the old model's vectors) meanwhile.
   A document whose text changes meanwhile loses its ``embedding_next`` (a trigger on
   ``vectorpg.documents``), and a batch never stores a vector for a text that changed under it.
3. The swap, online (:mod:`vectorpg.store.partition_swap`): the rows, with their new vectors, are copied
   into a shadow partition that a trigger keeps current, its indexes are built for the new dimension,
   and it replaces the partition in one short transaction (writers wait while the last rows written are
   embedded, readers only for the catalog change); searches go on throughout, with the old vectors and
   indexes until the swap, the new ones after. A run that stops before the swap changes nothing and is
   resumed by calling ``reembed`` again with the same embedder.

Handles on the collection that other processes opened before the swap raise
:class:`~vectorpg.errors.CollectionMismatchError` on their next write, telling them to reopen it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Table, Text, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from vectorpg.errors import InvalidArgumentError
from vectorpg.own_schema.tables import collections_table, tuning_table
from vectorpg.progress import progress_bar
from vectorpg.sqltypes import VECTOR
from vectorpg.store.embedding_cache import embed_cached
from vectorpg.store.partition_swap import shadow_swap

if TYPE_CHECKING:
    from vectorpg.embeddings import Embedder
    from vectorpg.store.collection import Collection


def reembed(collection: Collection, embedder: Embedder, *, batch_size: int = 256, progress: bool = True) -> int:
    """Re-embed every document of ``collection`` with ``embedder``; return the new dimension (the caller
    opens the collection again with the new embedder)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    sessions, name = collection.session_factory, collection.name
    dimension = int(embedder.dimension)
    part = collection.partition
    c = collections_table.c
    with sessions() as session:
        recorded = session.execute(select(c.embedder, c.dimension).where(c.name == name)).one()
    if (recorded.embedder, recorded.dimension) == (embedder.name, dimension):
        raise InvalidArgumentError(f"collection {name!r} is already embedded by {embedder.name}")
    with sessions() as session, session.begin():
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
    bar = progress_bar(
        total=remaining, desc=f"re-embedding {name} with {embedder.name}", unit="doc", disable=not progress
    )

    def fill(session: Session, table: Table, limit: int | None) -> int:
        """Embed up to ``limit`` rows of ``table`` (the partition, then its shadow) still without a new
        vector; the text must still be the one embedded (a concurrent write that changed it wins, and a
        later fill embeds the new text)."""
        column = "embedding_next" if table is part else "embedding"
        pending = select(table.c.id, table.c.content).where(table.c[column].is_(None)).order_by(table.c.id)
        rows = session.execute(pending.limit(limit) if limit else pending).all()
        if any(r.content is None for r in rows):
            raise InvalidArgumentError(f"documents added to {name!r} as bare vectors during reembed() have no text")
        if rows:
            vectors = embed_cached(
                collection.engine, embedder, [r.content for r in rows], dimension=dimension, metric=collection.metric
            ).vectors
            write = (
                update(table)
                .where(table.c.id == bindparam("k"), table.c.content == bindparam("t"))
                .values({column: bindparam("v", type_=VECTOR(dimension))})
            )
            session.execute(write, [{"k": r.id, "t": r.content, "v": vectors[i]} for i, r in enumerate(rows)])
            bar.update(len(rows))
        return len(rows)

    def finish(session: Session) -> None:
        session.execute(
            update(collections_table)
            .where(c.name == name)
            .values(
                dimension=dimension,
                embedder=bindparam("e", embedder.name, type_=Text),
                next_embedder=None,
                next_dimension=None,
                pending_indexes=None,
            )
        )
        session.execute(delete(tuning_table).where(tuning_table.c.table_name == part.fullname))

    try:
        while True:  # a short batch ends it: texts changed later are the shadow's to embed (a writer never
            with sessions() as session, session.begin():  # stops changing some)
                if fill(session, part, batch_size) < batch_size:
                    break
        shadow_swap(collection, dimension, fill, finish)
    finally:
        bar.close()
    return dimension


def _lock(session: Session, name: str) -> None:
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(bindparam("n", "vectorpg:" + name)))))

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
3. The swap, in one transaction: lock out writers, fill rows added or changed meanwhile, drop the old
   vector indexes (recorded in ``collections.pending_indexes``), move ``embedding_next`` into
   ``embedding``, replace the partition's dimension CHECK and record the new model and dimension.
4. The vector indexes are built again, with the same method and options, for the new dimension; each
   one leaves ``pending_indexes`` when it is built. A run interrupted here (a crash) is resumed by
   calling ``reembed`` again with the same embedder.

Handles on the collection that other processes opened before the swap raise
:class:`~vectorpg.errors.CollectionMismatchError` on their next write, telling them to reopen it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psycopg import sql
from sqlalchemy import Text, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from vectorpg.ddl.builds import create_vector_index
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import HNSW, IndexInfo, IVFFlat, Quantization, VectorIndex, list_vector_indexes
from vectorpg.metrics import Metric
from vectorpg.own_schema.tables import SCHEMA, collections_table, tuning_table
from vectorpg.progress import progress_bar
from vectorpg.sqltypes import VECTOR, VectorType
from vectorpg.store.embedding_cache import embed_cached

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
        recorded = session.execute(select(c.embedder, c.dimension, c.pending_indexes).where(c.name == name)).one()
    if (recorded.embedder, recorded.dimension) == (embedder.name, dimension):
        if not recorded.pending_indexes:
            raise InvalidArgumentError(f"collection {name!r} is already embedded by {embedder.name}")
        _rebuild_pending(collection, dimension)  # a run that stopped between its swap and its index builds
        return dimension
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

    pending = select(part.c.id, part.c.content).where(part.c.embedding_next.is_(None)).order_by(part.c.id)
    # the text must still be the one embedded: a concurrent add() that changed it wins, and the swap
    # embeds the new text
    write = (
        update(part)
        .where(part.c.id == bindparam("k"), part.c.content == bindparam("t"))
        .values(embedding_next=bindparam("v", type_=VECTOR(dimension)))
    )
    bar = progress_bar(
        total=remaining, desc=f"re-embedding {name} with {embedder.name}", unit="doc", disable=not progress
    )

    def fill(session: Session, limit: int | None) -> int:
        """Embed one batch of rows still without a new vector (all of them when ``limit`` is None)."""
        rows = session.execute(pending.limit(limit) if limit else pending).all()
        if rows:
            vectors = embed_cached(
                collection.engine, embedder, [r.content for r in rows], dimension=dimension, metric=collection.metric
            ).vectors
            session.execute(write, [{"k": r.id, "t": r.content, "v": vectors[i]} for i, r in enumerate(rows)])
            bar.update(len(rows))
        return len(rows)

    try:
        while True:
            with sessions() as session, session.begin():
                if not fill(session, batch_size):
                    break
        with sessions() as session, session.begin():
            _swap(session, collection, embedder, dimension, fill)
    finally:
        bar.close()
    _rebuild_pending(collection, dimension)  # after the swap committed: searches go on meanwhile
    return dimension


def _index_to_json(info: IndexInfo) -> dict[str, Any]:
    spec = info.spec
    return {
        "name": info.name,
        "column": spec.column,
        "metric": spec.metric.value,
        "method": spec.method.method,
        "options": spec.method.options(),
        "quantization": spec.quantization.value,
        "vector_type": spec.vector_type.value,
        "where": spec.where,
        "cast": spec.cast,
    }


def _index_from_json(entry: dict[str, Any], dimension: int) -> VectorIndex:
    method: HNSW | IVFFlat = HNSW(**entry["options"]) if entry["method"] == "hnsw" else IVFFlat(**entry["options"])
    return VectorIndex(
        column=entry["column"],
        metric=Metric(entry["metric"]),
        method=method,
        quantization=Quantization(entry["quantization"]),
        vector_type=VectorType(entry["vector_type"]),
        dimension=dimension,
        where=entry["where"],
        cast=entry["cast"],
    )


def _rebuild_pending(collection: Collection, dimension: int) -> None:
    """Build the indexes recorded in ``collections.pending_indexes``, each leaving the list once built."""
    sessions, name, part = collection.session_factory, collection.name, collection.partition
    c = collections_table.c
    with sessions() as session:
        pending = session.scalar(select(c.pending_indexes).where(c.name == name)) or []
    for entry in pending:
        create_vector_index(collection.engine, part, _index_from_json(entry, dimension), name=entry["name"])
        with sessions() as session, session.begin():
            _lock(session, name)
            left = session.scalar(select(c.pending_indexes).where(c.name == name)) or []
            left = [e for e in left if e["name"] != entry["name"]]
            session.execute(update(collections_table).where(c.name == name).values(pending_indexes=left or None))


def _lock(session: Session, name: str) -> None:
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(bindparam("n", "vectorpg:" + name)))))


def _swap(
    session: Session,
    collection: Collection,
    embedder: Embedder,
    dimension: int,
    fill: Callable[[Session, int | None], int],
) -> None:
    name = collection.name
    part = collection.partition
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
            pending_indexes=[_index_to_json(info) for info in indexes] or None,
        )
    )
    session.execute(delete(tuning_table).where(tuning_table.c.table_name == part.fullname))

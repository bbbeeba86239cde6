"""The store API: named collections of texts (or bare vectors) with JSON metadata.

::

    docs = db.collection("articles")                       # packaged all-MiniLM-L6-v2, cosine
    docs.add(["first text", "second text"], metadata=[{"lang": "en"}, {"lang": "fr"}], ids=["a", "b"])
    docs.search("a question", k=5, where={"lang": "en"})   # [Hit(id, content, metadata, distance)]

Each collection is one partition of ``vectorpg.documents`` (LIST by collection) with a CHECK on its
dimension, and a row in ``vectorpg.collections`` recording its dimension, metric and embedder.
``add`` inserts, ``upsert`` adds or replaces by id; text whose content hash is unchanged is not embedded
again. Searches go through the collection's :class:`~vectorpg.search.surface.SearchSurface`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Table, delete
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from vectorpg import validation
from vectorpg.awaiting import off_loop
from vectorpg.db.engine import HasEngine, engine_of
from vectorpg.db.routing import routed
from vectorpg.db.translate import translating
from vectorpg.db.writes import key_in
from vectorpg.embeddings import Embedder, check_texts
from vectorpg.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    InvalidArgumentError,
    VectorPgError,
)
from vectorpg.fields import FieldIndex, FieldType
from vectorpg.filters import compile_filter, compile_filter_estimable
from vectorpg.indexes import IndexInfo
from vectorpg.metrics import MetricSpec, check_metric
from vectorpg.own_schema.tables import SCHEMA, documents_table, partition_name
from vectorpg.search.face import Searchable
from vectorpg.search.hybrid import HybridScore
from vectorpg.search.planner import DEFAULT_CONFIG, PlannerConfig
from vectorpg.search.surface import Row, SearchSurface
from vectorpg.sqltypes import VECTOR, VectorType
from vectorpg.store import reembed as reembedding
from vectorpg.store import transfer
from vectorpg.store.batches import DocumentBatch, check_current, check_ids, prepare_batch, write_batch
from vectorpg.store.indexing import CollectionIndexes
from vectorpg.store.reads import Document, count_documents, read_documents, scan_documents
from vectorpg.store.streaming import upload
from vectorpg.store.updates import update_metadata


@dataclass(frozen=True)
class Hit:
    """One search result: the document and its distance to the query (smaller is nearer)."""

    id: str
    content: str | None
    metadata: dict[str, Any]
    distance: float


@dataclass(frozen=True)
class HybridHit:
    """One hybrid search result: the document and how each leg scored it."""

    id: str
    content: str | None
    metadata: dict[str, Any]
    score: HybridScore


class Collection(CollectionIndexes, Searchable[Mapping[str, Any], Hit, HybridHit]):
    """A named set of documents sharing a dimension, a metric and an embedder.

    Get one from :meth:`vectorpg.Database.collection`; constructing it directly (from an Engine or a
    Database) runs no SQL. ``search``, ``explain``, ``hybrid_search``, ``tune`` and ``recall`` come from
    :class:`~vectorpg.search.face.Searchable`; their ``where`` is a JSON filter (:mod:`vectorpg.filters`).
    Index management (vector, text and field indexes, the automatic HNSW index) comes from
    :class:`~vectorpg.store.indexing.CollectionIndexes`.
    """

    def __init__(
        self,
        bind: Engine | HasEngine,
        name: str,
        *,
        dimension: int,
        metric: str = "cosine",
        embedder: Embedder | None = None,
        embedder_name: str | None = None,
        planner: PlannerConfig = DEFAULT_CONFIG,
        auto_index: bool = True,
    ) -> None:
        self.engine = engine_of(bind)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.name = validation.collection_name(name)
        self.dimension = dimension
        self.metric: MetricSpec = check_metric(metric, VectorType.VECTOR)
        self.embedder = embedder
        self.embedder_name = embedder_name if embedder_name is not None else (embedder.name if embedder else None)
        self.planner = planner
        self.auto_index = auto_index
        self._index_cache: list[IndexInfo] | None = None
        self._field_cache: list[FieldIndex] | None = None
        #: one Table object per collection, so that SQLAlchemy's compiled-statement cache recognises its statements
        self.partition = Table(
            partition_name(self.name),
            MetaData(),
            *(Column(c.name, c.type) for c in documents_table.columns),
            schema=SCHEMA,
        )
        self.surface = SearchSurface(
            self.partition,
            vector_column="embedding",
            id_column="id",
            metric=self.metric,
            bind=self.engine,
            columns=_result_columns,
            id_of=lambda row: row[0],
            vector_of=lambda row: row[3],
            indexes=lambda: [(i.name, i.spec) for i in self.indexes() if i.valid],
            query_type=VECTOR(self.dimension),
            planner=self.planner,
            index_hint="Build one: create_index(HNSW()), or open the collection with auto_index=True.",
        )

    def __repr__(self) -> str:
        return (
            f"<Collection {self.name!r} dimension={self.dimension} metric={self.metric.metric.value} "
            f"embedder={self.embedder_name}>"
        )

    # -- the search surface and its hooks (vectorpg.search.face) ------------------------------------

    def _query_vector(self, query: Any, metric: MetricSpec) -> Any:
        if isinstance(query, str):
            query = off_loop(self.require_embedder().embed, check_texts([query]))[0]
        return validation.query_vector(query, vector_type=VectorType.VECTOR, dimension=self.dimension, metric=metric)

    def _conditions(self, where: Mapping[str, Any] | None) -> list[ColumnElement[bool]]:
        return [self._filter(where, self.partition.c.metadata)] if where else []

    def _where_key(self, where: Mapping[str, Any] | None) -> Hashable | None:
        if not where:
            return ""
        try:  # the filter's JSON (keys sorted) and the field indexes it is compiled with
            return json.dumps(where, sort_keys=True, allow_nan=False), tuple(sorted(self._fields_for(where).items()))
        except (TypeError, ValueError, RecursionError):  # not JSON: compile_filter says what is wrong
            return None

    def _planned_conditions(self, where: Mapping[str, Any] | None) -> tuple[list[ColumnElement[bool]], bool]:
        if not where:
            return [], True
        clause, reliable = compile_filter_estimable(where, self.partition.c.metadata, self._fields_for(where))
        return [clause], reliable

    def _fields_for(self, where: Mapping[str, Any] | None) -> dict[str, FieldType]:
        """The field indexes a filter compiles with. They are read from the catalog once per handle; before
        that first read the filter is checked, so a bad filter is refused before any SQL runs."""
        if self._field_cache is None and where:
            compile_filter(where, self.partition.c.metadata)
        return self.indexed_fields()

    def _filter(self, where: Mapping[str, Any] | None, column: ColumnElement[Any]) -> ColumnElement[bool]:
        """``where`` compiled over ``column``, conditions on indexed keys written on their field index."""
        return compile_filter(where, column, self._fields_for(where))

    def _hit(self, row: Row) -> Hit:
        return Hit(row[0], row[1], row[2], float(row[-1]))  # (id, content, metadata, [embedding], distance)

    def _hybrid_hit(self, row: Row) -> HybridHit:
        return HybridHit(row.id, row.content, row.metadata, HybridScore.from_row(row))  # type: ignore[attr-defined]

    def _text_column(self, name: str | None) -> str:
        if name not in (None, "content"):
            raise InvalidArgumentError(f"a collection's text is its content; got text_column={name!r}")
        return "content"

    def require_embedder(self) -> Embedder:
        """The collection's embedder; :class:`InvalidArgumentError` saying how to open it with one."""
        if self.embedder is None:
            recorded = f" (it was created with {self.embedder_name})" if self.embedder_name else ""
            raise InvalidArgumentError(
                f"collection {self.name!r} has no embedder{recorded}: pass vectors=..., "
                "or open it with db.collection(name, embedder=...)"
            )
        return self.embedder

    # -- writes ------------------------------------------------------------------------------------

    @translating("adding documents", retry=True)
    def add(
        self,
        items: Sequence[Any] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Add documents; return their ids.

        ``items`` are texts (embedded with the collection's embedder) or vectors. To store texts with
        precomputed vectors pass both ``items`` (texts) and ``vectors``. ``ids`` default to new UUIDs. A
        text the model embedded before (in any collection) comes from the embedding cache. The whole batch
        is validated before anything is written, and written in one transaction. ``progress(n)`` is
        called as texts are embedded.

        An id that exists is replaced, as in vectorpg 0.1, with a :class:`DeprecationWarning`: from
        vectorpg 0.3 ``add`` raises :class:`~vectorpg.errors.DuplicateIdError` for it. Call :meth:`upsert`
        to add or replace.
        """
        batch = self.prepare_batch(
            items, metadata=metadata, ids=ids, vectors=vectors, progress=progress, find_existing=True
        )
        self._commit(batch)
        if batch.existing:
            shown = ", ".join(repr(i) for i in sorted(batch.existing)[:3])
            warnings.warn(
                f"Collection.add() replaced {len(batch.existing)} existing document(s) ({shown}...); from "
                "vectorpg 0.3 add() raises DuplicateIdError for an existing id: call upsert() to add or replace",
                DeprecationWarning,
                stacklevel=3,
            )
        return batch.ids

    @translating("upserting documents", retry=True)
    def upsert(
        self,
        items: Sequence[Any] | None = None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Add documents or replace them by id; return their ids (arguments as for :meth:`add`).

        A text whose id exists with the same content is not embedded again; if only its metadata changed,
        only the metadata is written.
        """
        batch = self.prepare_batch(items, metadata=metadata, ids=ids, vectors=vectors, progress=progress)
        return self._commit(batch).ids

    @translating("uploading documents")
    def upload(
        self,
        vectors: Any = None,
        *,
        texts: Iterable[str] | None = None,
        ids: Iterable[str] | None = None,
        metadata: Iterable[Mapping[str, Any] | None] | None = None,
        batch_size: int = 2000,
        atomic: bool = True,
        parallel: int = 1,
        progress: bool | None = None,
    ) -> int:
        """Upsert documents from iterables of any size (an array or memmap, generators...) in batches of
        ``batch_size``, with bounded memory and a progress bar on long uploads; return how many were written.

        ``atomic=True``: one transaction, all or nothing. ``atomic=False``: each batch commits, and a
        failure's ``committed`` says how many documents from the start are stored (resume from there);
        ``parallel=N`` then writes on N connections. See :mod:`vectorpg.store.streaming`.
        """
        return upload(self, vectors=vectors, texts=texts, ids=ids, metadata=metadata, batch_size=batch_size,
                      atomic=atomic, parallel=parallel, progress=progress)  # fmt: skip

    def _commit(self, batch: DocumentBatch) -> DocumentBatch:
        with self.session_factory() as session, session.begin():
            write_batch(session, self, batch)
        if batch.ids:
            self.index_if_large()
        return batch

    def prepare_batch(
        self,
        items: Sequence[Any] | None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        vectors: Any = None,
        progress: Callable[[int], None] | None = None,
        find_existing: bool = False,
    ) -> DocumentBatch:
        """Validate and embed a batch without writing it (see :mod:`vectorpg.store.batches`)."""
        return prepare_batch(
            self, items, metadata=metadata, ids=ids, vectors=vectors, progress=progress, find_existing=find_existing
        )

    def write_batch(self, session: Session, batch: DocumentBatch) -> None:
        """Write a prepared batch in ``session``'s transaction (add or replace by id)."""
        write_batch(session, self, batch)

    def check_current(self, session: Session) -> None:
        """Raise :class:`CollectionMismatchError` if the collection changed model or dimension (a
        ``reembed`` in another process) since this handle was opened (see :func:`batches.check_current`)."""
        check_current(self, session)

    def stale_error(self) -> VectorPgError | None:
        """The error to raise if this handle no longer matches its collection (``None`` if it does)."""
        try:
            with self.session_factory() as session, session.begin():
                self.check_current(session)
        except (CollectionMismatchError, CollectionNotFoundError) as exc:
            return exc
        except Exception:  # the database is unreachable: the original error says more
            return None
        return None

    @translating("deleting documents", retry=True)
    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None) -> int:
        """Delete documents by id and/or by filter; return how many went. ``where={}`` deletes all."""
        if ids is None and where is None:
            raise InvalidArgumentError("delete() needs ids=..., where=..., or where={} to delete everything")
        t = documents_table
        stmt = delete(t).where(t.c.collection == self.name, self._filter(where, t.c.metadata))
        if ids is not None:
            stmt = stmt.where(key_in(t.c.id, check_ids(list(ids))))
        with self.session_factory() as session, session.begin():
            return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]

    @translating("updating metadata", retry=True)
    def update(
        self,
        ids: Sequence[str] | None = None,
        *,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        where: Mapping[str, Any] | None = None,
        set: Mapping[str, Any] | None = None,
        unset: Sequence[str] | None = None,
    ) -> int:
        """Change documents' metadata without sending their text or vectors; return how many changed.

        ``update(ids, metadata=...)`` replaces the metadata of those documents (one dict for all, or one
        per id); ``update(ids_or_where, set={...}, unset=[...])`` merges keys into and removes keys from the
        metadata of the documents chosen by ``ids`` and/or ``where`` (``where={}``: all). Validated as
        :meth:`add` validates metadata, all-or-nothing; unknown ids are skipped (the count says so).
        """
        return update_metadata(self, ids, metadata=metadata, where=where, set_=set, unset=unset)

    # -- reads -------------------------------------------------------------------------------------

    @routed
    @translating("counting documents")
    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Number of documents (matching ``where``)."""
        return count_documents(self, where)

    @routed
    @translating("reading documents")
    def get(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Document]:
        """The documents with ``ids``, in the order asked (missing ids are left out); or, without ids, a page
        of those matching ``where``: ``limit`` of them in id order, after the id ``after`` (the last of the
        previous page). :meth:`scan` pages through all of them."""
        return read_documents(self, ids, where, limit, after)

    @translating("exporting a collection")
    def export(self, path: str | os.PathLike[str], *, format: str | None = None, progress: bool | None = None) -> int:
        """Write every document to ``path`` (.jsonl or .parquet) exactly, for :mod:`vectorpg.store.transfer`."""
        return transfer.export_collection(self, path, format=format, progress=progress)

    def scan(self, where: Mapping[str, Any] | None = None, *, batch_size: int = 1000) -> Iterator[Document]:
        """Every document (matching ``where``) in id order, read ``batch_size`` at a time by keyset pages
        (:mod:`vectorpg.store.reads`): bounded memory, no transaction held between pages."""
        return scan_documents(self, where, batch_size)

    # -- another model ---------------------------------------------------------------------------------

    @translating("re-embedding")
    def reembed(self, embedder: Embedder, *, batch_size: int = 256, progress: bool = True) -> Collection:
        """Move this collection to ``embedder`` (any dimension): backfill in resumable batches while
        searches use the old vectors, swap, rebuild the indexes; see :mod:`vectorpg.store.reembed`. Returns
        the collection opened with the new embedder."""
        dimension = reembedding.reembed(self, embedder, batch_size=batch_size, progress=progress)
        return type(self)(
            self.engine, self.name, dimension=dimension, metric=self.metric.metric.value, embedder=embedder,
            planner=self.planner, auto_index=self.auto_index,
        )  # fmt: skip


def _result_columns(rows: FromClause, with_vectors: bool) -> list[Any]:
    """What a search hit reads from the rows: id, content, metadata (and the embedding, for MMR)."""
    return [rows.c.id, rows.c.content, rows.c.metadata, *([rows.c.embedding] if with_vectors else [])]

"""The store API: named collections of texts (or bare vectors) with JSON metadata.

::

    docs = db.collection("articles")                       # packaged all-MiniLM-L6-v2, cosine
    docs.add(["first text", "second text"], metadata=[{"lang": "en"}, {"lang": "fr"}], ids=["a", "b"])
    docs.search("a question", k=5, where={"lang": "en"})   # [Hit(id, content, metadata, distance)]

Each collection is one partition of ``vectorpg.documents`` (LIST by collection) with a CHECK on its
dimension, and a row in ``vectorpg.collections`` recording its dimension, metric and embedder.
``add`` is add-or-replace by id; text whose content hash is unchanged is not embedded again.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg import sql
from sqlalchemy import Column, Engine, MetaData, Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from . import bulk, validation
from .build import BuildProgress, create_vector_index, drop_vector_index
from .cache import content_hash, embed_cached, renumber
from .chunking import Chunker
from .distance import Metric, MetricSpec, check_metric
from .embeddings import Embedder, check_texts
from .errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    InvalidArgumentError,
    InvalidInputError,
    InvalidVectorError,
    VectorPgError,
)
from .failures import translating
from .filters import compile_filter
from .hybrid import HybridOptions, HybridScore, hybrid_statement, text_index
from .indexes import HNSW, IndexInfo, IVFFlat, Quantization, VectorIndex, list_vector_indexes
from .models import SCHEMA, collections_table, documents_table, partition_name
from .planner import (
    DEFAULT_CONFIG,
    PlannerConfig,
    Runner,
    SearchPlan,
    SearchRequest,
    SearchTarget,
    explain_search,
    run_search,
)
from .search import (
    QueryOptions,
    autocommit_runner,
    choose_index,
)
from .tuning import DEFAULT_RECALL, TuningResult, recall, tune, with_tuning
from .types import VECTOR, VectorType

if TYPE_CHECKING:
    from .connection import Database
    from .ingest import IngestReport
    from .rag import RetrievedChunk

MAX_ID_LENGTH = 1024
#: Limits on one document's metadata: JSON text size and nesting (PostgreSQL's own jsonb limits are far
#: higher, but a 100 MB document or a 5,000-deep one is a mistake, and costs every search that reads it).
MAX_METADATA_BYTES = 1_048_576
MAX_METADATA_DEPTH = 32


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


@dataclass
class _WritePlan:
    """A validated, embedded batch, ready to write: full rows, and ids whose metadata alone changed."""

    ids: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    metadata_only: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    #: texts the model embedded now, and texts whose vector came from the embedding cache
    embedded: int = 0
    cached: int = 0


@dataclass(frozen=True)
class Document:
    """A stored document."""

    id: str
    content: str | None
    metadata: dict[str, Any]
    embedding: np.ndarray = field(repr=False)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _check_ids(ids: Sequence[object]) -> list[str]:
    out = []
    for row, value in enumerate(ids):
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"ids are non-empty strings, got {value!r}", row=row)
        if len(value) > MAX_ID_LENGTH or "\x00" in value:
            raise InvalidInputError(f"id longer than {MAX_ID_LENGTH} characters or with a NUL", row=row)
        out.append(value)
    bulk.check_unique_keys(out)
    return out


def _check_metadata(items: Sequence[object]) -> list[dict[str, Any]]:
    out = []
    for row, value in enumerate(items):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"metadata is a dict, got {type(value).__name__}", row=row)
        problem = validation.json_too_large(value, max_depth=MAX_METADATA_DEPTH, max_bytes=MAX_METADATA_BYTES)
        if problem is not None:
            raise InvalidInputError(
                f"metadata is {problem} (the limits are {MAX_METADATA_DEPTH} levels and {MAX_METADATA_BYTES} "
                "bytes a document); keep large data in the content or another table",
                row=row,
            )
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata is not JSON (finite numbers, str keys): {exc}", row=row) from None
        if "\\u0000" in encoded:
            raise InvalidInputError("metadata contains a NUL character, which PostgreSQL cannot store", row=row)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("metadata contains a string that is not valid Unicode", row=row) from None
        out.append(json.loads(encoded))
    return out


class Collection:
    """A named set of documents sharing a dimension, a metric and an embedder.

    Get one from :meth:`vectorpg.Database.collection`; constructing it directly runs no SQL.
    """

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        dimension: int,
        metric: str = "cosine",
        embedder: Embedder | None = None,
        embedder_name: str | None = None,
        planner: PlannerConfig = DEFAULT_CONFIG,
    ) -> None:
        self.db = db
        self.name = validation.collection_name(name)
        self.dimension = dimension
        self.metric: MetricSpec = check_metric(metric, VectorType.VECTOR)
        self.embedder = embedder
        self.embedder_name = embedder_name if embedder_name is not None else (embedder.name if embedder else None)
        self._vector_type = VECTOR(dimension)
        self._index_cache: list[IndexInfo] | None = None
        self._partition_table: Table | None = None
        self.planner = planner

    def __repr__(self) -> str:
        return (
            f"<Collection {self.name!r} dimension={self.dimension} metric={self.metric.metric.value} "
            f"embedder={self.embedder_name}>"
        )

    # -- helpers -----------------------------------------------------------------------------------

    def _scope(self) -> Any:
        return documents_table.c.collection == self.name

    def _where(self, where: Mapping[str, Any] | None) -> Any:
        return compile_filter(where, documents_table.c.metadata)

    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            recorded = f" (it was created with {self.embedder_name})" if self.embedder_name else ""
            raise InvalidArgumentError(
                f"collection {self.name!r} has no embedder{recorded}: pass vectors=..., "
                "or open it with db.collection(name, embedder=...)"
            )
        return self.embedder

    def _query_vector(self, query: Any) -> Any:
        if isinstance(query, str):
            query = self._require_embedder().embed(check_texts([query]))[0]
        return validation.query_vector(
            query, vector_type=VectorType.VECTOR, dimension=self.dimension, metric=self.metric
        )

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
        """Add (or replace, by id) documents; return their ids.

        ``items`` are texts (embedded with the collection's embedder) or vectors. To store texts with
        precomputed vectors pass both ``items`` (texts) and ``vectors``. ``ids`` default to new UUIDs.
        A text whose id exists with the same content is not embedded again, and a text the model
        embedded before (in any collection) comes from the embedding cache; if only its metadata
        changed, only the metadata is written. The whole batch is validated before anything is
        written, and written in one transaction. ``progress(n)`` is called as texts are embedded.
        """
        plan = self._plan(items, metadata=metadata, ids=ids, vectors=vectors, progress=progress)
        with self.db.session_factory() as session, session.begin():
            self._write(session, plan)
        return plan.ids

    def _plan(
        self,
        items: Sequence[Any] | None,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        ids: Sequence[str] | None,
        vectors: Any,
        progress: Callable[[int], None] | None,
    ) -> _WritePlan:
        """Validate a batch and embed what must be embedded: everything ``add`` does before writing."""
        if items is None and vectors is None:
            raise InvalidArgumentError("nothing to add: pass texts, vectors, or both")
        texts: list[str] | None = None
        if items is not None and len(items) and isinstance(items[0], str):
            texts = check_texts(items)
        elif items is not None and vectors is None:
            vectors = items
        count = len(texts) if texts is not None else len(vectors)
        if vectors is not None and len(vectors) != count:
            raise InvalidInputError(f"{count} texts but {len(vectors)} vectors")
        id_list = _check_ids(ids) if ids is not None else [uuid.uuid4().hex for _ in range(count)]
        if len(id_list) != count:
            raise InvalidInputError(f"{count} documents but {len(id_list)} ids")
        metas = _check_metadata(metadata if metadata is not None else [None] * count)
        if len(metas) != count:
            raise InvalidInputError(f"{count} documents but {len(metas)} metadata entries")
        plan = _WritePlan(id_list)
        if count == 0:
            return plan
        hashes = [content_hash(t) for t in texts] if texts is not None else [None] * count

        # Which rows really change? Unchanged text keeps its embedding.
        write = list(range(count))
        if texts is not None and vectors is None and ids is not None:
            stored = self._stored_state(id_list)
            write = []
            for i in range(count):
                old = stored.get(id_list[i])
                if old is None or old[0] != hashes[i]:
                    write.append(i)
                elif old[1] != metas[i]:
                    plan.metadata_only.append((id_list[i], metas[i]))
            plan.unchanged = count - len(write) - len(plan.metadata_only)

        if vectors is not None:
            matrix = validation.dense_vectors(vectors, dimension=self.dimension, metric=self.metric)
        elif write:
            assert texts is not None
            try:
                embedded = embed_cached(
                    self.db,
                    self._require_embedder(),
                    [texts[i] for i in write],
                    dimension=self.dimension,
                    metric=self.metric,
                    progress=progress,
                )
            except InvalidVectorError as exc:  # name the row of this batch
                if exc.row is not None:
                    renumber(exc, write[exc.row])
                raise
            plan.embedded, plan.cached = embedded.computed, embedded.cached
            matrix = np.zeros((count, self.dimension), dtype=np.float32)
            matrix[write] = embedded.vectors
        plan.rows = [
            (self.name, id_list[i], texts[i] if texts is not None else None, metas[i], matrix[i], hashes[i])
            for i in write
        ]
        return plan

    def _check_current(self, session: Session) -> None:
        """Raise :class:`CollectionMismatchError` if the collection changed model or dimension (a
        ``reembed`` in another process) since this handle was opened. The ROW EXCLUSIVE locks of the write
        itself are taken first: a swap, which locks it in SHARE ROW EXCLUSIVE mode, either committed
        before this check or waits for the caller's transaction."""
        c = collections_table.c
        raw = session.connection().connection.driver_connection
        assert raw is not None
        # parent before partition: the order of the INSERT itself and of DDL on the table tree
        raw.execute(
            sql.SQL("LOCK TABLE ONLY {}, {} IN ROW EXCLUSIVE MODE").format(
                sql.Identifier(SCHEMA, documents_table.name), sql.Identifier(SCHEMA, self._partition.name)
            )
        )
        row = session.execute(select(c.dimension, c.embedder).where(c.name == self.name)).one_or_none()
        if row is None:
            raise CollectionNotFoundError(self.name)
        for what, recorded, held in (
            ("dimension", row.dimension, self.dimension),
            ("embedder", row.embedder, self.embedder_name),
        ):
            if recorded != held:
                raise CollectionMismatchError(
                    self.name,
                    what,
                    recorded,
                    held,
                    message=f"collection {self.name!r} now has {what}={recorded!r} (re-embedded since this handle "
                    f"was opened with {what}={held!r}); nothing was written. Reopen it: db.collection({self.name!r})",
                )

    def stale_error(self) -> VectorPgError | None:
        """The error to raise if this handle no longer matches its collection (``None`` if it does)."""
        try:
            with self.db.session_factory() as session, session.begin():
                self._check_current(session)
        except (CollectionMismatchError, CollectionNotFoundError) as exc:
            return exc
        except Exception:  # the database is unreachable: the original error says more
            return None
        return None

    def _write(self, session: Session, plan: _WritePlan) -> None:
        """Write a planned batch in the caller's transaction."""
        self._check_current(session)
        bulk.write_rows(
            session,
            documents_table,
            ["collection", "id", "content", "metadata", "embedding", "content_hash"],
            plan.rows,
            on_conflict="update",
            conflict_columns=["collection", "id"],
            update_extra={"updated_at": func.now()},
        )
        if plan.metadata_only:
            session.execute(
                update(documents_table)
                .where(documents_table.c.collection == bindparam("c"), documents_table.c.id == bindparam("i"))
                .values(metadata=bindparam("m"), updated_at=func.now()),
                [{"c": self.name, "i": i, "m": m} for i, m in plan.metadata_only],
            )

    def _stored_state(self, ids: list[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
        t = documents_table
        stmt = select(t.c.id, t.c.content_hash, t.c.metadata).where(self._scope(), bulk.key_in(t.c.id, ids))
        with self.db.session_factory() as session:
            return {row.id: (row.content_hash, row.metadata) for row in session.execute(stmt)}

    @translating("deleting documents", retry=True)
    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None) -> int:
        """Delete documents by id and/or by filter; return how many went. ``where={}`` deletes all."""
        if ids is None and where is None:
            raise InvalidArgumentError("delete() needs ids=..., where=..., or where={} to delete everything")
        stmt = delete(documents_table).where(self._scope(), self._where(where))
        if ids is not None:
            stmt = stmt.where(bulk.key_in(documents_table.c.id, _check_ids(list(ids))))
        with self.db.session_factory() as session, session.begin():
            return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]

    # -- reads -------------------------------------------------------------------------------------

    @translating("counting documents")
    def count(self, where: Mapping[str, Any] | None = None) -> int:
        """Number of documents (matching ``where``)."""
        stmt = select(func.count()).select_from(documents_table).where(self._scope(), self._where(where))
        with self.db.session_factory() as session:
            return int(session.scalar(stmt) or 0)

    @translating("reading documents")
    def get(self, ids: Sequence[str]) -> list[Document]:
        """The documents with these ids, in the order asked (missing ids are left out)."""
        wanted = _check_ids(list(ids))
        t = documents_table
        stmt = select(t).where(self._scope(), bulk.key_in(t.c.id, wanted))
        with self.db.session_factory() as session:
            found = {
                r.id: Document(r.id, r.content, r.metadata, np.asarray(r.embedding), r.created_at, r.updated_at)
                for r in session.execute(stmt)
            }
        return [found[i] for i in wanted if i in found]

    @translating("searching")
    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        overfetch: int | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        iterative_scan: str | None = None,
        max_scan_tuples: int | None = None,
        strategy: str = "auto",
        diversity: float | None = None,
        fetch_k: int | None = None,
        recall: float | None = None,
    ) -> list[Hit]:
        """The ``k`` documents nearest to ``query`` (a text or a vector) that match ``where``.

        ``where`` is a JSON filter (see :mod:`vectorpg.filters`), e.g. ``{"lang": "en", "year": {"$gte": 2020}}``.
        The query reads only this collection's partition. ``strategy="auto"`` lets the planner
        (:mod:`vectorpg.planner`) choose exact or index search per query, and never returns fewer than
        ``k`` hits when ``k`` documents match; ``"exact"`` and ``"ann"`` force a path. With a vector index
        (:meth:`create_index`) the ORDER BY is written so that the index serves it, quantized candidates
        being re-ranked exactly. The index knobs apply to this query only. ``diversity`` (0 to 1)
        re-orders ``fetch_k`` nearest candidates by maximal marginal relevance. ``recall`` picks the
        knob value :meth:`tune` stored for that target (default: the one tuned for 0.95, if any).
        """
        request = self._request(
            query,
            k,
            where,
            QueryOptions(ef_search, probes, iterative_scan, max_scan_tuples),
            recall,
            overfetch,
            with_vectors=diversity is not None,
        )
        rows = run_search(request, strategy, diversity, fetch_k, self.planner)
        return [Hit(r[0], r[1], r[2], float(r[-1])) for r in rows]  # (id, content, metadata, [embedding], distance)

    @translating("explaining a search")
    def explain(
        self,
        query: Any,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        strategy: str = "auto",
        analyze: bool = False,
        recall: float | None = None,
        **knobs: Any,
    ) -> SearchPlan:
        """What :meth:`search` would do: the strategy and why, the estimates, the SQL and ``EXPLAIN``."""
        request = self._request(query, k, where, QueryOptions(**knobs), recall, None)
        return explain_search(request, strategy, self.planner, analyze=analyze)

    @contextmanager
    def _runner(self) -> Iterator[Runner]:
        """One connection for all the statements of a search (a transaction only if settings need one)."""
        with autocommit_runner(self.db.engine) as (conn, prepare):

            def run(stmt: Any, settings: dict[str, str]) -> list[Any]:
                prepare(settings)
                return list(conn.execute(stmt).all())

            yield run

    def _run(self, stmt: Any, settings: dict[str, str]) -> list[Any]:
        with self._runner() as run:
            return run(stmt, settings)

    def _request(
        self,
        query: Any,
        k: int,
        where: Mapping[str, Any] | None,
        options: QueryOptions,
        recall: float | None,
        overfetch: int | None,
        with_vectors: bool = False,
    ) -> SearchRequest:
        k = validation.positive_k(k)
        part = self._partition
        conditions = [compile_filter(where, part.c.metadata)] if where else []
        vector = self._query_vector(query)
        query_param = bindparam("query_vector", vector, type_=self._vector_type)
        indexes = [i.spec for i in self.indexes() if i.valid]
        chosen = choose_index(indexes, "embedding", self.metric)
        target = SearchTarget(
            part,
            "embedding",
            lambda rows: [rows.c.id, rows.c.content, rows.c.metadata, *([rows.c.embedding] if with_vectors else [])],
            self.metric,
            indexes,
            self._runner,
            f"{self.db.engine.url}|{part.fullname}",
            vector_of=lambda row: row[3],
        )
        options = with_tuning(options, self.db.engine, part.fullname, self._index_name(chosen), recall)
        return SearchRequest(target, query_param, vector, k, conditions, chosen, options, overfetch)

    @translating("searching (hybrid)")
    def hybrid_search(
        self,
        text: str,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        vector: Any = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: tuple[float, float] = (1.0, 1.0),
        config: str = "english",
        candidates: int | None = None,
    ) -> list[HybridHit]:
        """Full-text + vector search over this collection, fused in one SQL statement, best first.

        The vector leg uses ``vector`` or the embedding of ``text``; both legs apply ``where``. See
        :mod:`vectorpg.hybrid` for ``fusion="rrf" | "weighted"``; :meth:`create_text_index` adds the GIN
        index that serves the text leg.
        """
        k = validation.positive_k(k)
        options = HybridOptions(fusion, rrf_k, weights, config, candidates)
        part = self._partition
        query_vector = self._query_vector(vector if vector is not None else text)
        fused = hybrid_statement(
            part,
            id_column="id",
            text_column="content",
            vector_column="embedding",
            query_text=text,
            query_vector=bindparam("query_vector", query_vector, type_=self._vector_type),
            metric=self.metric,
            k=k,
            where=[compile_filter(where, part.c.metadata)],
            options=options,
        ).subquery("fused")
        stmt = (
            select(part.c.content, part.c.metadata, fused)
            .join(fused, part.c.id == fused.c.id)
            .order_by(fused.c.score.desc(), fused.c.id)
        )
        return [HybridHit(r.id, r.content, r.metadata, HybridScore.from_row(r)) for r in self._run(stmt, {})]

    @translating("creating a text index")
    def create_text_index(self, config: str = "english") -> str:
        """A GIN index on ``to_tsvector(config, content)`` of this collection, for :meth:`hybrid_search`."""
        name = validation.derived_name(partition_name(self.name), config, "tsv", "idx")
        with self.db.engine.begin() as conn:
            text_index(name, self._partition.c.content, config).create(conn, checkfirst=True)
        return name

    # -- documents, chunks and prompts --------------------------------------------------------------

    @translating("ingesting files")
    def ingest(
        self,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        glob: str = "**/*",
        sync: bool = False,
        max_tokens: int | None = None,
        overlap: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        batch_size: int = 256,
        progress: bool = True,
    ) -> IngestReport:
        """Chunk, embed and store files and folders (Markdown, reStructuredText, HTML, text); see
        :mod:`vectorpg.ingest`. Unchanged files write and embed nothing; a changed file's old chunks are
        replaced in the same transaction; ``sync=True`` also removes the chunks of files that are gone.
        ``max_tokens`` (default: 200 or the model's limit) and ``overlap`` (default: 32 or a quarter of
        ``max_tokens``) size the chunks, in the embedder's tokens."""
        from .ingest import default_chunker, ingest

        chunker = default_chunker(self)
        if max_tokens is not None or overlap is not None:
            chunker = Chunker(max_tokens or chunker.max_tokens, overlap, chunker.count)
        return ingest(
            self, paths, glob=glob, sync=sync, chunker=chunker, metadata=metadata, batch_size=batch_size,
            progress=progress,
        )  # fmt: skip

    @translating("ingesting a document")
    def ingest_text(
        self, text: str, source: str, *, fmt: str = "text", metadata: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Chunk and store one document that is not a file (a web page's text, a message...) under
        ``source`` (a URI or any stable name); its previous chunks are replaced. Returns the chunk ids."""
        from .ingest import ChunkGroup, IngestReport, default_chunker, write_chunks

        if not isinstance(source, str) or not source:
            raise InvalidArgumentError("source is a non-empty string (a path, URI or stable name)")
        chunks = default_chunker(self).split(text, source, fmt)
        write_chunks(self, ChunkGroup([source], chunks), dict(metadata or {}), IngestReport())
        return [c.id for c in chunks]

    def retrieve(
        self,
        question: str,
        k: int = 5,
        *,
        where: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        diversity: float | None = 0.3,
        fetch_k: int | None = None,
    ) -> list[RetrievedChunk]:
        """The chunks to put in a prompt for ``question``: diversified (MMR), in rank order, within
        ``max_tokens`` of the embedder's tokenizer, each with its source; see :mod:`vectorpg.rag`."""
        from .rag import retrieve

        return retrieve(self, question, k, where=where, max_tokens=max_tokens, diversity=diversity, fetch_k=fetch_k)

    @translating("re-embedding")
    def reembed(self, embedder: Embedder, *, batch_size: int = 256, progress: bool = True) -> Collection:
        """Move this collection to ``embedder`` (any dimension): backfill in resumable batches while
        searches use the old vectors, swap, rebuild the indexes; see :mod:`vectorpg.reembed`. Returns the
        collection opened with the new embedder."""
        from .reembed import reembed

        return reembed(self, embedder, batch_size=batch_size, progress=progress)

    # -- indexes -----------------------------------------------------------------------------------

    @property
    def _partition(self) -> Table:
        """This collection's partition of ``vectorpg.documents``, as a table to query directly (one object
        per collection, so that SQLAlchemy's compiled-statement cache recognises its statements)."""
        if self._partition_table is None:
            self._partition_table = Table(
                partition_name(self.name),
                MetaData(),
                *(Column(c.name, c.type) for c in documents_table.columns),
                schema=SCHEMA,
            )
        return self._partition_table

    @translating("building a vector index")
    def create_index(
        self,
        method: HNSW | IVFFlat | None = None,
        *,
        quantization: str | Quantization = Quantization.NONE,
        concurrently: bool = False,
        progress: Callable[[BuildProgress], None] | None = None,
    ) -> str:
        """Build a vector index (HNSW by default) on this collection's partition; return its name.

        Build it after the bulk load. ``quantization="halfvec"`` or ``"binary"`` indexes a compact form
        of the vectors and searches re-rank the candidates on the full vectors.
        """
        quant = Quantization(quantization)
        spec = VectorIndex(
            column="embedding",
            metric=Metric.HAMMING if quant is Quantization.BINARY else self.metric.metric,
            method=method or HNSW(),
            quantization=quant,
            dimension=self.dimension,
            cast=quant is Quantization.NONE,
        )
        name = create_vector_index(self.db, self._partition, spec, concurrently=concurrently, progress=progress)
        self._index_cache = None
        return name

    @translating("dropping a vector index")
    def drop_index(self, name: str) -> bool:
        """Drop one of this collection's vector indexes; return whether it existed."""
        dropped = drop_vector_index(self.db, self._partition, name)
        self._index_cache = None
        return dropped

    def indexes(self, *, refresh: bool = False) -> list[IndexInfo]:
        """This collection's vector indexes, read from the catalog (cached; ``refresh=True`` re-reads)."""
        if self._index_cache is None or refresh:
            with self.db.engine.connect() as conn:
                self._index_cache = list_vector_indexes(conn, self._partition)
        return self._index_cache

    # -- recall ------------------------------------------------------------------------------------------

    def tune(self, target: float = DEFAULT_RECALL, *, k: int = 10, sample: int = 50) -> TuningResult:
        """Find and store the smallest ``ef_search`` / ``probes`` of this collection's index whose
        recall@k against exact search reaches ``target`` (see :mod:`vectorpg.tuning`)."""
        return tune(self, target, k=k, sample=sample)

    def recall(self, *, k: int = 10, sample: int = 50, **search_options: Any) -> float:
        """Mean recall@k of this collection's index search with the current settings."""
        return recall(self, k=k, sample=sample, **search_options)

    def _index_name(self, spec: VectorIndex | None) -> str | None:
        return next((i.name for i in self.indexes() if spec is not None and i.spec == spec), None)

    def _tuning_key(self) -> tuple[Engine, str, str | None, VectorIndex | None]:
        spec = choose_index([i.spec for i in self.indexes() if i.valid], "embedding", self.metric)
        return self.db.engine, self._partition.fullname, self._index_name(spec), spec

    def _sample_rows(self, n: int) -> list[tuple[Any, Any]]:
        part = self._partition
        rows = self._run(select(part.c.id, part.c.embedding).order_by(func.random()).limit(n), {})
        return [(row[0], row[1]) for row in rows]

    def _nearest_ids(self, vector: Any, k: int, **options: Any) -> list[Any]:
        return [hit.id for hit in self.search(vector, k, **options)]

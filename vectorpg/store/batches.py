"""The write path that :meth:`Collection.add` / :meth:`~Collection.upsert` and file ingest share.

A batch is first *prepared* (:func:`prepare_batch`): ids, metadata and vectors validated, the texts that
changed embedded (through the embedding cache), nothing written. It is then *written*
(:func:`write_batch`) in the caller's transaction: full rows by binary COPY or INSERT, and rows whose
metadata alone changed by an UPDATE. A batch is all-or-nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from psycopg import sql
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from vectorpg import validation
from vectorpg.awaiting import in_greenlet
from vectorpg.db import writes
from vectorpg.db.copy_stream import JsonDocument
from vectorpg.db.engine import driver_connection, vector_statements
from vectorpg.embeddings import check_texts
from vectorpg.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    InvalidArgumentError,
    InvalidInputError,
    InvalidVectorError,
)
from vectorpg.own_schema.tables import SCHEMA, collections_table, documents_table
from vectorpg.store.embedding_cache import content_hash, embed_cached, point_at_row

if TYPE_CHECKING:
    from vectorpg.store.collection import Collection

MAX_ID_LENGTH = 1024
#: Limits on one document's metadata: JSON text size and nesting (PostgreSQL's own jsonb limits are far
#: higher, but a 100 MB document or a 5,000-deep one is a mistake, and costs every search that reads it).
MAX_METADATA_BYTES = 1_048_576
MAX_METADATA_DEPTH = 32

#: metadata as PostgreSQL stores it (one encoder: ``json.dumps`` with options builds one per call)
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)

try:
    import orjson
except ImportError:  # optional: the standard library's encoder does the same, 10x slower
    orjson = None  # type: ignore[assignment]


def encode_json(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON; raises as ``json`` does (``ValueError`` for NaN or infinity,
    ``TypeError`` for what JSON cannot hold). orjson first; the standard encoder for what orjson refuses
    or may have written differently (non-str keys, big integers, and NaN, which orjson writes as null)."""
    if orjson is not None:
        try:
            encoded = orjson.dumps(value)
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            if b"null" not in encoded:
                return encoded
    return _JSON.encode(value).encode("utf-8")


_COLUMNS = ["collection", "id", "content", "metadata", "embedding", "content_hash"]


@dataclass
class DocumentBatch:
    """A validated, embedded batch, ready to write: full rows, and ids whose metadata alone changed."""

    ids: list[str]
    #: the rows' values, their vectors apart in ``vectors`` (row ``n``: ``vectors[n]``)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    metadata_only: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0
    #: ids of the batch that are stored already (the batch replaces them)
    existing: set[str] = field(default_factory=set)
    #: no id of the batch was stored when it was prepared (new ids, or looked up): written as an insert
    absent: bool = False
    #: ``absent`` is a guess (a large batch of vectors was not looked up): ``existing`` is filled by the
    #: write if some id is stored after all
    guessed: bool = False
    #: texts the model embedded now, and texts whose vector came from the embedding cache
    embedded: int = 0
    cached: int = 0


def check_ids(ids: Sequence[object]) -> list[str]:
    """Non-empty strings of at most :data:`MAX_ID_LENGTH` characters, no NUL, each once."""
    out = []
    for row, value in enumerate(ids):
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"ids are non-empty strings, got {value!r}", row=row)
        if len(value) > MAX_ID_LENGTH or "\x00" in value:
            raise InvalidInputError(f"id longer than {MAX_ID_LENGTH} characters or with a NUL", row=row)
        out.append(value)
    writes.check_unique_keys(out)
    return out


def check_metadata(items: Sequence[object]) -> list[JsonDocument]:
    """Each item a JSON object within the limits (``None`` is ``{}``), encoded once as PostgreSQL will store
    it: :class:`~vectorpg.db.copy_stream.JsonDocument` values, which the write sends as they are."""
    out = []
    for row, value in enumerate(items):
        if value is None:
            value = {}
        if type(value) is not dict and not isinstance(value, Mapping):
            raise InvalidInputError(f"metadata is a dict, got {type(value).__name__}", row=row)
        problem = None
        try:
            encoded = encode_json(value)
        except RecursionError:
            problem = f"nested deeper than {MAX_METADATA_DEPTH} levels"
        except UnicodeEncodeError:
            raise InvalidInputError("metadata contains a string that is not valid Unicode", row=row) from None
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata is not JSON (finite numbers, str keys): {exc}", row=row) from None
        else:
            if len(encoded) > MAX_METADATA_BYTES:
                problem = f"more than {MAX_METADATA_BYTES} bytes of JSON"
            elif encoded.count(b"{") + encoded.count(b"[") > MAX_METADATA_DEPTH:  # perhaps deep: walk it
                problem = validation.json_too_large(value, max_depth=MAX_METADATA_DEPTH, max_bytes=MAX_METADATA_BYTES)
        if problem is not None:
            raise InvalidInputError(
                f"metadata is {problem} (the limits are {MAX_METADATA_DEPTH} levels and {MAX_METADATA_BYTES} "
                "bytes a document); keep large data in the content or another table",
                row=row,
            )
        if b"\\u0000" in encoded:  # JSON escapes control characters even with ensure_ascii=False
            raise InvalidInputError("metadata contains a NUL character, which PostgreSQL cannot store", row=row)
        out.append(JsonDocument(encoded))
    return out


def prepare_batch(
    collection: Collection,
    items: Sequence[Any] | None,
    *,
    metadata: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str] | None,
    vectors: Any,
    progress: Callable[[int], None] | None,
    find_existing: bool = False,
) -> DocumentBatch:
    """Validate a batch and embed what must be embedded: everything a write does before writing.

    ``batch.existing`` lists the ids that are stored already whenever texts come with ids (their stored
    hashes decide what to embed again), and with ``find_existing`` in every case: looked up now, or, for a
    large batch of vectors, by the write, and only if some id is stored (``batch.guessed``: no query for
    the usual bulk load of new ids)."""
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
    id_list = check_ids(ids) if ids is not None else [uuid.uuid4().hex for _ in range(count)]
    if len(id_list) != count:
        raise InvalidInputError(f"{count} documents but {len(id_list)} ids")
    metas = check_metadata(metadata if metadata is not None else [None] * count)
    if len(metas) != count:
        raise InvalidInputError(f"{count} documents but {len(metas)} metadata entries")
    batch = DocumentBatch(id_list, absent=ids is None)
    if count == 0:
        return batch
    hashes = [content_hash(t) for t in texts] if texts is not None else [None] * count

    # Which rows really change? Unchanged text keeps its embedding.
    write = list(range(count))
    reuse = texts is not None and vectors is None
    if find_existing and not reuse and count >= writes.COPY_THRESHOLD:
        batch.absent = batch.guessed = True  # a bulk load of new ids, most likely: the write finds out
    elif ids is not None and (reuse or find_existing):
        stored = _stored_state(collection, id_list)
        batch.existing = set(stored)
        batch.absent = not stored
        if reuse:
            write = []
            for i in range(count):
                old = stored.get(id_list[i])
                if old is None or old[0] != hashes[i]:
                    write.append(i)
                elif old[1] != (stored_as := metas[i].value()):
                    batch.metadata_only.append((id_list[i], stored_as))
            batch.unchanged = count - len(write) - len(batch.metadata_only)

    if vectors is not None:
        matrix = validation.dense_vectors(vectors, dimension=collection.dimension, metric=collection.metric)
        batch.vectors = matrix if len(write) == count else matrix[write]  # one matrix to the wire, not rows
    elif write:
        assert texts is not None
        try:
            embedded = embed_cached(
                collection.engine,
                collection.require_embedder(),
                [texts[i] for i in write],
                dimension=collection.dimension,
                metric=collection.metric,
                progress=progress,
            )
        except InvalidVectorError as exc:  # name the row of this batch
            if exc.row is not None:
                point_at_row(exc, write[exc.row])
            raise
        batch.embedded, batch.cached = embedded.computed, embedded.cached
        batch.vectors = embedded.vectors
    batch.rows = [
        (collection.name, id_list[i], texts[i] if texts is not None else None, metas[i], None, hashes[i]) for i in write
    ]
    return batch


def _stored_state(
    collection: Collection, ids: list[str], session: Session | None = None
) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """id -> (content hash, metadata) of the ``ids`` that are stored; read in ``session`` (its transaction
    sees its own writes) or a session of its own."""
    t = documents_table
    stmt = select(t.c.id, t.c.content_hash, t.c.metadata).where(
        t.c.collection == collection.name, writes.key_in(t.c.id, ids)
    )
    if session is not None:
        return {row.id: (row.content_hash, row.metadata) for row in session.execute(stmt)}
    with collection.session_factory() as own:
        return _stored_state(collection, ids, own)


def write_batch(session: Session, collection: Collection, batch: DocumentBatch) -> None:
    """Write a prepared batch in the caller's transaction (add-or-replace by id)."""
    # (a connection opened before another process installed pgvector has no vector types yet)
    with vector_statements(session.connection().connection):
        check_current(collection, session)
        writes.write_rows(
            session,
            documents_table,
            _COLUMNS,
            batch.rows,
            on_conflict="update",
            conflict_columns=["collection", "id"],
            update_extra={"updated_at": func.now()},
            keys_absent=batch.absent,
            matrices={"embedding": batch.vectors} if batch.vectors is not None else None,
            on_existing=(lambda: batch.existing.update(_stored_state(collection, batch.ids, session)))
            if batch.guessed
            else None,
        )
        if batch.metadata_only:
            t = documents_table
            session.execute(
                update(t)
                .where(t.c.collection == bindparam("c"), t.c.id == bindparam("i"))
                .values(metadata=bindparam("m"), updated_at=func.now()),
                [{"c": collection.name, "i": i, "m": m} for i, m in batch.metadata_only],
            )


def check_current(collection: Collection, session: Session) -> None:
    """Raise :class:`CollectionMismatchError` if ``collection`` changed model or dimension (a ``reembed``
    in another process) since its handle was opened. The ROW EXCLUSIVE locks of the write itself are taken
    first: a swap, which locks it in SHARE ROW EXCLUSIVE mode, either committed before this check or waits
    for the caller's transaction."""
    c = collections_table.c
    raw = driver_connection(session.connection().connection)
    # parent before partition: the order of the INSERT itself and of DDL on the table tree
    raw.execute(
        sql.SQL("LOCK TABLE ONLY {}, {} IN ROW EXCLUSIVE MODE").format(
            sql.Identifier(SCHEMA, documents_table.name), sql.Identifier(SCHEMA, collection.partition.name)
        )
    )
    row = session.execute(select(c.dimension, c.embedder).where(c.name == collection.name)).one_or_none()
    if row is None:
        raise CollectionNotFoundError(collection.name)
    for what, recorded, held in (
        ("dimension", row.dimension, collection.dimension),
        ("embedder", row.embedder, collection.embedder_name),
    ):
        if recorded != held:
            raise CollectionMismatchError(
                collection.name,
                what,
                recorded,
                held,
                message=f"collection {collection.name!r} now has {what}={recorded!r} (re-embedded since this handle "
                f"was opened with {what}={held!r}); nothing was written. Reopen it: db.collection({collection.name!r})",
            )


class WriteBehind:
    """Writes on one background thread, one at a time, while the caller prepares (embeds) the next batch.

    ``submit(fn, *args)`` waits for the previous write (re-raising its error) and starts ``fn``; leaving the
    ``with`` block waits for the last one. Embedding releases the GIL in ONNX Runtime and PyTorch, and so
    does psycopg while the server ingests, so batch n+1 is embedded while batch n is stored.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vectorpg-write")
        self._last: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if in_greenlet():  # under vectorpg.aio the connection is the event loop's: write here (embedding
            fn(*args)  # is off the loop already, so the loop goes on meanwhile)
            return
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.wait()
            elif self._last is not None:
                wait([self._last])  # the caller's error wins; the write in flight still finishes first
        finally:
            self._pool.shutdown(wait=True)

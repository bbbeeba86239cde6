"""Streaming upload: documents from iterables of any size, in batches, with bounded memory.

:meth:`Collection.upload` takes vectors (a NumPy array or memmap, or any iterable of vectors), texts, ids
and metadata as iterables, cuts them into batches of ``batch_size`` rows and writes each batch as
:meth:`~vectorpg.store.Collection.upsert` does (validated whole first; a document whose id exists is
replaced, so running an upload again is harmless). Only a few batches are in memory at a time.

Atomicity:

- ``atomic=True`` (the default): one transaction for the whole upload. A bad row anywhere, or a failure
  of the server, leaves the collection as it was; the error names the row's position in the stream.
- ``atomic=False``: each batch commits on its own, so a long upload keeps what it wrote. On a failure
  the error carries ``committed``: every document before that position is stored, so the upload resumes
  from there (``itertools.islice(source, committed, None)``). ``parallel=N`` writes batches on N
  connections at once (embedding and validation stay in the calling thread). Either way a batch is
  embedded while the one before it is written.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from vectorpg.db.translate import translate
from vectorpg.errors import InvalidArgumentError, InvalidInputError, VectorPgError
from vectorpg.progress import progress_bar
from vectorpg.store.batches import DocumentBatch, WriteBehind, prepare_batch, write_batch

if TYPE_CHECKING:
    from vectorpg.store.collection import Collection

MAX_PARALLEL = 16
_END = object()


def upload(
    collection: Collection,
    *,
    vectors: Any,
    texts: Iterable[str] | None,
    ids: Iterable[str] | None,
    metadata: Iterable[Mapping[str, Any] | None] | None,
    batch_size: int,
    atomic: bool,
    parallel: int,
    progress: bool | None,
) -> int:
    """See :meth:`vectorpg.store.Collection.upload`; returns how many documents were written."""
    if vectors is None and texts is None:
        raise InvalidArgumentError("nothing to upload: pass vectors=..., texts=..., or both")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidArgumentError(f"parallel must be an integer from 1 to {MAX_PARALLEL}, got {parallel!r}")
    if parallel > 1 and atomic:
        raise InvalidArgumentError(
            "parallel=N writes on N connections, which cannot share one transaction: pass atomic=False "
            "(each batch commits; a failure reports how many documents are stored, to resume from there)"
        )
    total = _length(vectors if vectors is not None else texts)
    show = progress if progress is not None else sys.stderr.isatty() and (total is None or total >= 10 * batch_size)
    bar = progress_bar(total=total, desc=f"vectorpg: uploading to {collection.name!r}", unit="doc", disable=not show)
    batches = _batches(collection, vectors, texts, ids, metadata, batch_size)
    try:
        if atomic:
            written = _atomic(collection, batches, bar)
        else:
            written = _committing(collection, batches, bar, parallel)
    finally:
        bar.close()
    if written:
        collection.index_if_large()
    return written


def _atomic(collection: Collection, batches: Iterator[tuple[int, DocumentBatch]], bar: Any) -> int:
    """One transaction; batch n is written on a background thread while batch n+1 is prepared (embedded)."""
    written = 0

    def write(session: Session, batch: DocumentBatch) -> None:
        write_batch(session, collection, batch)
        bar.update(len(batch.ids))

    with collection.session_factory() as session, session.begin(), WriteBehind() as behind:
        for _, batch in batches:
            behind.submit(write, session, batch)
            written += len(batch.ids)
    return written


def _committing(collection: Collection, batches: Iterator[tuple[int, DocumentBatch]], bar: Any, parallel: int) -> int:
    """Each batch in its own transaction, ``parallel`` at a time; on a failure, the first error raised,
    with ``committed``: the length of the stream's prefix that is stored whole."""
    done: dict[int, int] = {}  # start -> size, of committed batches
    lock = threading.Lock()

    def write(start: int, batch: DocumentBatch) -> None:
        with collection.session_factory() as session, session.begin():
            write_batch(session, collection, batch)
        with lock:
            done[start] = len(batch.ids)
            bar.update(len(batch.ids))

    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="vectorpg-upload") as pool:
        pending: set[Future[None]] = set()
        try:
            for start, batch in batches:  # a bad row raises here: the batches before it are good
                pending.add(pool.submit(write, start, batch))
                if len(pending) >= 2 * parallel:  # bounded: a few batches in memory
                    pending = _settle(pending, FIRST_COMPLETED)
            pending = _settle(pending, ALL_COMPLETED)
        except _WriteFailed as exc:  # a write failed: write nothing more
            failure = exc.__cause__
            for future in pending:
                future.cancel()
        except BaseException as exc:
            failure = exc
        try:
            _settle(pending, ALL_COMPLETED)  # the batches in flight commit (or fail: the first error wins)
        except _WriteFailed as exc:
            failure = failure if failure is not None else exc.__cause__
    if failure is None:
        return sum(done.values())
    error = failure if isinstance(failure, VectorPgError) else translate(failure, "uploading documents")
    if error is None:
        raise failure
    committed = _prefix(done)
    error.committed = committed  # type: ignore[attr-defined]
    error.args = (f"{error.args[0] if error.args else error} ({committed} documents before it are stored: resume "
                  f"the upload from position {committed})",)  # fmt: skip
    raise error from (None if error is failure else failure)


class _WriteFailed(Exception):
    """A batch's write raised (the error is the cause)."""


def _settle(pending: set[Future[None]], until: str) -> set[Future[None]]:
    """Wait for ``pending`` writes (the first to finish, or all); raise :class:`_WriteFailed` from a failure."""
    finished, left = wait(pending, return_when=until)
    for future in finished:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            raise _WriteFailed() from error
    return left


def _prefix(done: dict[int, int]) -> int:
    """How many documents from the start of the stream are stored without a gap."""
    position = 0
    while position in done:
        position += done[position]
    return position


def _batches(
    collection: Collection,
    vectors: Any,
    texts: Iterable[str] | None,
    ids: Iterable[str] | None,
    metadata: Iterable[Mapping[str, Any] | None] | None,
    batch_size: int,
) -> Iterator[tuple[int, DocumentBatch]]:
    """``(start, prepared batch)`` for each ``batch_size`` rows of the zipped inputs; a bad row's error names
    its position in the whole stream; inputs of different lengths are an error at the first missing row."""
    sources = {
        name: _chunks(value, batch_size)
        for name, value in (("vectors", vectors), ("texts", texts), ("ids", ids), ("metadata", metadata))
        if value is not None
    }
    start = 0
    while True:
        chunk: dict[str, Any] = {name: next(source, _END) for name, source in sources.items()}
        ended = sorted(name for name, value in chunk.items() if value is _END)
        if len(ended) == len(chunk):
            return
        sizes = {name: len(value) for name, value in chunk.items() if value is not _END}
        if ended or len(set(sizes.values())) > 1:
            short = min(sizes.values()) if not ended else 0
            which = ended or [name for name, size in sizes.items() if size == short]
            raise InvalidInputError(f"{', '.join(which)} ended at row {start + short}, before the other inputs")
        try:
            batch = prepare_batch(
                collection,
                chunk.get("texts"),
                metadata=chunk.get("metadata"),
                ids=chunk.get("ids"),
                vectors=chunk.get("vectors"),
                progress=None,
            )
        except VectorPgError as exc:
            _shift_row(exc, start)
            raise
        yield start, batch
        start += len(batch.ids)


def _chunks(values: Any, size: int) -> Iterator[Any]:
    """``values`` in pieces of ``size``: array slices (a memmap reads only that part), or lists."""
    if isinstance(values, np.ndarray):
        for start in range(0, len(values), size):
            yield values[start : start + size]
        return
    if isinstance(values, (str, bytes, Mapping)):
        raise InvalidArgumentError(f"upload() takes iterables of rows, got a {type(values).__name__}")
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _shift_row(exc: VectorPgError, start: int) -> None:
    """Point an error about a row of one batch at that row's position in the stream."""
    row = getattr(exc, "row", None)
    if row is None or not start:
        return
    exc.row = row + start  # type: ignore[attr-defined]
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (exc.args[0].replace(f"row {row}", f"row {row + start}", 1), *exc.args[1:])


def _length(values: Any) -> int | None:
    try:
        return len(values)
    except TypeError:
        return None

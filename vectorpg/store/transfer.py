"""Export a collection to a file and import it back, exactly: ids, content, metadata, vectors and the model.

Two formats, chosen by the file's suffix (or ``format=``):

- **JSONL** (``.jsonl``): a header line ``{"vectorpg_export": 1, "collection": ..., "dimension": ...,
  "metric": ..., "model": ...}``, then one document a line ``{"id", "content", "metadata", "embedding"}``. The
  vectors are float32 written in their shortest exact form, so they read back bit for bit.
- **Parquet** (``.parquet``, needs ``pyarrow``: ``vectorpg[parquet]``): columns ``id``, ``content``,
  ``metadata`` (JSON text) and ``embedding`` (a fixed-size list of float32), the header in the schema's metadata.

An export reads the collection a keyset page at a time (:meth:`~vectorpg.Collection.scan`), an import writes
through :meth:`~vectorpg.Collection.upload` in batches (one transaction: all or nothing); memory stays bounded
both ways, and both show a progress bar on a terminal. An import into a new collection creates it with the
exported dimension, metric and model name (the model itself is not needed to import: the vectors are in the
file); into an existing one, those must agree. Timestamps are not carried over (the import's are new).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vectorpg.errors import CollectionMismatchError, InvalidArgumentError, InvalidInputError, MissingDependencyError
from vectorpg.progress import progress_bar

FORMAT_VERSION = 1
FORMATS = ("jsonl", "parquet")


def _format(path: Path, format: str | None) -> str:
    chosen = format or path.suffix.lstrip(".").lower()
    if chosen not in FORMATS:
        raise InvalidArgumentError(f"unknown export format {chosen!r} for {path.name}: use .jsonl or .parquet")
    return chosen


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "parquet", "a Parquet export or import") from exc
    return pyarrow


def _header(collection: Any) -> dict[str, Any]:
    return {
        "vectorpg_export": FORMAT_VERSION,
        "collection": collection.name,
        "dimension": collection.dimension,
        "metric": collection.metric.metric.value,
        "model": collection.embedder_name,
    }


def export_collection(
    collection: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    batch_size: int = 1000,
    progress: bool | None = None,
) -> int:
    """Write every document of ``collection`` to ``path``; return how many were written."""
    target = Path(path)
    kind = _format(target, format)
    total = collection.count()
    show = progress if progress is not None else sys.stderr.isatty()
    bar = progress_bar(total=total, desc=f"vectorpg: exporting {collection.name!r}", unit="doc", disable=not show)
    pages = _pages(collection.scan(batch_size=batch_size), batch_size)
    written = 0
    try:
        if kind == "jsonl":
            with target.open("wb") as out:
                out.write(orjson.dumps(_header(collection)) + b"\n")
                for page in pages:
                    out.write(b"".join(orjson.dumps(_line(d), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for d in page))
                    written += len(page)
                    bar.update(len(page))
        else:
            pa = _pyarrow()
            schema = pa.schema(
                [("id", pa.string()), ("content", pa.string()), ("metadata", pa.string()),
                 ("embedding", pa.list_(pa.float32(), collection.dimension))],
                metadata={"vectorpg": json.dumps(_header(collection))},
            )  # fmt: skip
            with pa.parquet.ParquetWriter(str(target), schema) as writer:
                for page in pages:
                    matrix = np.stack([d.embedding for d in page]).astype(np.float32)
                    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), collection.dimension)
                    writer.write_table(
                        pa.table(
                            [pa.array([d.id for d in page]), pa.array([d.content for d in page], pa.string()),
                             pa.array([json.dumps(d.metadata) for d in page]), vectors],
                            schema=schema,
                        )
                    )  # fmt: skip
                    written += len(page)
                    bar.update(len(page))
    finally:
        bar.close()
    return written


def _line(document: Any) -> dict[str, Any]:
    return {
        "id": document.id,
        "content": document.content,
        "metadata": document.metadata,
        "embedding": np.asarray(document.embedding, dtype=np.float32),
    }


def _pages(documents: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while page := list(itertools.islice(documents, size)):
        yield page


def read_header(path: str | os.PathLike[str], *, format: str | None = None) -> dict[str, Any]:
    """The header of an export file (collection, dimension, metric, model), checked."""
    source = Path(path)
    if _format(source, format) == "jsonl":
        with source.open("rb") as f:
            first = f.readline()
        try:
            header = orjson.loads(first)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"{source.name} is not a vectorpg export: its first line is not JSON") from exc
    else:
        metadata = _pyarrow().parquet.read_schema(str(source)).metadata or {}
        if b"vectorpg" not in metadata:
            raise InvalidInputError(f"{source.name} is not a vectorpg export: no vectorpg header in its schema")
        header = json.loads(metadata[b"vectorpg"])
    if not isinstance(header, dict) or header.get("vectorpg_export") != FORMAT_VERSION:
        raise InvalidInputError(f"{source.name} is not a vectorpg export (version {FORMAT_VERSION}) header")
    return header


def _rows(path: Path, kind: str, batch_size: int) -> Iterator[tuple[str, str | None, dict[str, Any], np.ndarray]]:
    if kind == "jsonl":
        with path.open("rb") as f:
            f.readline()
            for number, line in enumerate(f, start=2):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                    yield (
                        row["id"],
                        row.get("content"),
                        row.get("metadata") or {},
                        np.asarray(row["embedding"], np.float32),
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise InvalidInputError(f"{path.name} line {number}: not a document ({exc})") from exc
        return
    parquet = _pyarrow().parquet.ParquetFile(str(path))
    for batch in parquet.iter_batches(batch_size=batch_size):
        columns = batch.to_pydict()
        for key, content, metadata, vector in zip(
            columns["id"], columns["content"], columns["metadata"], columns["embedding"]
        ):
            yield key, content, json.loads(metadata), np.asarray(vector, np.float32)


def import_collection(
    database: Any,
    path: str | os.PathLike[str],
    *,
    collection: str | None = None,
    format: str | None = None,
    batch_size: int = 2000,
    progress: bool | None = None,
) -> tuple[Any, int]:
    """Read an export into the collection ``collection`` (default: the exported name), creating it if needed;
    return the collection and how many documents were written (upserts: an id already stored is replaced)."""
    source = Path(path)
    kind = _format(source, format)
    header = read_header(source, format=kind)
    name = collection or header["collection"]
    docs = _target(database, name, header)
    written = 0
    for with_content in (True, False):  # texts and vector-only documents go in their own uploads
        rows = (r for r in _rows(source, kind, batch_size) if (r[1] is not None) == with_content)
        first = next(rows, None)
        if first is None:
            continue
        parts = _columns(itertools.chain([first], rows))
        written += docs.upload(
            parts["vectors"], texts=parts["texts"] if with_content else None, ids=parts["ids"],
            metadata=parts["metadata"], batch_size=batch_size, progress=progress,
        )  # fmt: skip
    return docs, written


def _columns(rows: Iterator[tuple[str, str | None, dict[str, Any], np.ndarray]]) -> dict[str, Iterator[Any]]:
    """One pass over ``rows`` as four iterators that :meth:`~vectorpg.Collection.upload` reads in step."""
    a, b, c, d = itertools.tee(rows, 4)
    return {
        "ids": (r[0] for r in a),
        "texts": (r[1] for r in b),
        "metadata": (r[2] for r in c),
        "vectors": (r[3] for r in d),
    }


class _RecordedModel:
    """The exported model's name and dimension, recorded on a new collection; it embeds nothing."""

    def __init__(self, name: str, dimension: int) -> None:
        self.name = name
        self.dimension = dimension

    def embed(self, texts: Any) -> np.ndarray:
        raise InvalidArgumentError(f"importing stores the exported vectors; {self.name!r} is not loaded")


def _target(database: Any, name: str, header: dict[str, Any]) -> Any:
    dimension, metric, model = int(header["dimension"]), str(header["metric"]), header.get("model")
    if name in database.collections():
        docs = database.collection(name, embedder=None, create=False)
        recorded = {"dimension": docs.dimension, "metric": docs.metric.metric.value, "embedder": docs.embedder_name}
        for what, wanted in (("dimension", dimension), ("metric", metric), ("embedder", model)):
            found = recorded[what]
            if found != wanted:
                raise CollectionMismatchError(name, what, found, wanted)
        return docs
    embedder = _RecordedModel(model, dimension) if model else None
    database.collection(name, dimension=dimension, metric=metric, embedder=embedder)
    return database.collection(name, embedder=None, create=False)

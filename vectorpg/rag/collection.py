"""A collection of documents and their chunks: the store's :class:`~vectorpg.store.Collection` plus file
ingest and retrieval for prompts (what :meth:`vectorpg.Database.collection` returns)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from vectorpg.db.translate import translating
from vectorpg.errors import InvalidArgumentError
from vectorpg.rag.chunking import Chunker
from vectorpg.rag.ingest import ChunkGroup, default_chunker, ingest, write_chunks
from vectorpg.rag.report import IngestReport
from vectorpg.rag.retrieval import RetrievedChunk, retrieve
from vectorpg.store.batches import WriteBehind
from vectorpg.store.collection import Collection


class DocumentCollection(Collection):
    """A :class:`~vectorpg.store.Collection` that also ingests files and retrieves chunks for prompts."""

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
        :mod:`vectorpg.rag.ingest`. Unchanged files write and embed nothing; a changed file's old chunks are
        replaced in the same transaction; ``sync=True`` also removes the chunks of files that are gone.
        ``max_tokens`` (default: 200 or the model's limit) and ``overlap`` (default: 32 or a quarter of
        ``max_tokens``) size the chunks, in the embedder's tokens."""
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
        if not isinstance(source, str) or not source:
            raise InvalidArgumentError("source is a non-empty string (a path, URI or stable name)")
        chunks = default_chunker(self).split(text, source, fmt)
        with WriteBehind() as behind:
            write_chunks(self, ChunkGroup([source], chunks), dict(metadata or {}), IngestReport(), behind)
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
        ``max_tokens`` of the embedder's tokenizer, each with its source; see :mod:`vectorpg.rag.retrieval`."""
        return retrieve(self, question, k, where=where, max_tokens=max_tokens, diversity=diversity, fetch_k=fetch_k)

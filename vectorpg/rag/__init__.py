"""Retrieval-augmented generation on top of the store: chunking, file ingest, retrieval and prompts.

::

    docs = db.collection("handbook")               # a DocumentCollection
    docs.ingest("handbook/", glob="**/*.md", sync=True)
    chunks = docs.retrieve("How do I rotate the logs?", k=5, max_tokens=1000)
    prompt = vectorpg.rag.build_prompt("How do I rotate the logs?", chunks)

Everything here calls the store's public API (:meth:`~vectorpg.store.Collection.prepare_batch`,
:meth:`~vectorpg.store.Collection.write_batch`, :meth:`~vectorpg.store.Collection.search`).
"""

from vectorpg.rag.chunking import Chunk, Chunker, approximate_tokens, chunk_id, chunk_text
from vectorpg.rag.collection import DocumentCollection
from vectorpg.rag.ingest import ingest, read_document
from vectorpg.rag.report import IngestReport
from vectorpg.rag.retrieval import DEFAULT_TEMPLATE, RetrievedChunk, build_prompt, retrieve

__all__ = [
    "DEFAULT_TEMPLATE",
    "Chunk",
    "Chunker",
    "DocumentCollection",
    "IngestReport",
    "RetrievedChunk",
    "approximate_tokens",
    "build_prompt",
    "chunk_id",
    "chunk_text",
    "ingest",
    "read_document",
    "retrieve",
]

"""The store: named collections of documents (text, JSON metadata, a vector) in vectorpg's own schema.

- :mod:`~vectorpg.store.collection`: :class:`Collection` and its results (:class:`Hit`, :class:`HybridHit`,
  :class:`Document`);
- :mod:`~vectorpg.store.batches`: the write path that ``add`` / ``upsert`` and file ingest share;
- :mod:`~vectorpg.store.registry`: opening, creating and dropping collections;
- :mod:`~vectorpg.store.reembed`: moving a collection to another model without stopping its searches;
- :mod:`~vectorpg.store.embedding_cache`: text a model embedded once is never embedded again by it.
"""

from vectorpg.store.batches import DocumentBatch
from vectorpg.store.collection import Collection, Hit, HybridHit
from vectorpg.store.reads import Document

__all__ = ["Collection", "Document", "DocumentBatch", "Hit", "HybridHit"]

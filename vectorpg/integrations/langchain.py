"""LangChain's vector store over a vectorpg collection (``pip install 'vectorpg[langchain]'``).

```python
from vectorpg.integrations.langchain import VectorpgStore

store = VectorpgStore(embeddings, collection="docs")          # the embedded default database
store = VectorpgStore(embeddings, collection="docs", database="postgresql://...")   # or a URL, a Database
store.add_documents(documents)
store.similarity_search("question", k=4, filter={"source": {"$in": ["a.md", "b.md"]}})
retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 4})
```

Documents are a collection's rows: ``page_content`` its text, ``metadata`` its JSON metadata, ``id`` its id
(a new UUID when none is given), the vector LangChain's embedding model made. Writes are upserts (adding a
document again with its id replaces it), all or nothing per call, validated as :meth:`vectorpg.Collection.add`
validates. ``filter`` is vectorpg's JSON filter language, which is LangChain's operator dict: ``{"key": value}``,
``$eq $ne $gt $gte $lt $lte $in $nin $exists``, ``$and $or $not``. Scores: ``similarity_search_with_score``
gives the metric's distance (smaller is nearer), ``similarity_search_with_relevance_scores`` a relevance in
[0, 1]. The async methods run on :mod:`vectorpg.aio` (no thread pool); searches are the collection's own,
filtered and planned as every vectorpg search is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:  # pragma: no cover - the extra is missing
    from vectorpg.errors import MissingDependencyError

    raise MissingDependencyError("langchain-core", "langchain", "vectorpg.integrations.langchain") from exc

import vectorpg
from vectorpg.errors import InvalidArgumentError
from vectorpg.integrations.base import CollectionPair, open_database

__all__ = ["VectorpgEmbeddings", "VectorpgStore"]

_RELEVANCE = {
    "cosine": VectorStore._cosine_relevance_score_fn,
    "l2": VectorStore._euclidean_relevance_score_fn,
    "inner_product": VectorStore._max_inner_product_relevance_score_fn,
}


class VectorpgStore(VectorStore):
    """A LangChain :class:`~langchain_core.vectorstores.VectorStore` over the vectorpg collection ``collection``.

    ``database``: a :class:`vectorpg.Database`, a URL, or ``None`` for the embedded default. ``metric``:
    ``cosine`` (default), ``l2`` or ``inner_product``, used when the collection is created (with the dimension of
    the first vectors written); an existing collection keeps its own.
    """

    def __init__(
        self,
        embedding: Embeddings,
        collection: str = "langchain",
        database: vectorpg.Database | str | None = None,
        *,
        metric: str = "cosine",
    ) -> None:
        if metric not in _RELEVANCE:
            raise InvalidArgumentError(f"metric must be one of {', '.join(_RELEVANCE)}; got {metric!r}")
        self.embedding = embedding
        self.pair = CollectionPair(open_database(database), collection, metric=metric)

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # -- writes ------------------------------------------------------------------------------------

    def _rows(
        self, texts: Iterable[str], metadatas: Sequence[dict[str, Any]] | None, ids: Sequence[str | None] | None
    ) -> tuple[list[str], list[dict[str, Any]], list[str]]:
        texts = list(texts)
        metadata = [dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        if len(metadata) != len(texts):
            raise InvalidArgumentError(f"{len(texts)} texts but {len(metadata)} metadatas")
        given = list(ids) if ids is not None else [None] * len(texts)
        if len(given) != len(texts):
            raise InvalidArgumentError(f"{len(texts)} texts but {len(given)} ids")
        return texts, metadata, [i if i else str(uuid.uuid4()) for i in given]

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` with the store's embedding model and upsert them; return their ids."""
        texts, metadata, keys = self._rows(texts, metadatas, ids)
        if not texts:
            return []
        vectors = np.asarray(self.embedding.embed_documents(texts), dtype=np.float32)
        docs = self.pair.sync(dimension=vectors.shape[1] if vectors.ndim == 2 else None)
        return list(docs.upsert(texts, vectors=vectors, ids=keys, metadata=metadata))

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts` (the model's ``aembed_documents``, then :mod:`vectorpg.aio`)."""
        texts, metadata, keys = self._rows(texts, metadatas, ids)
        if not texts:
            return []
        vectors = np.asarray(await self.embedding.aembed_documents(texts), dtype=np.float32)
        docs = await self.pair.aio(dimension=vectors.shape[1] if vectors.ndim == 2 else None)
        assert docs is not None
        return list(await docs.upsert(texts, vectors=vectors, ids=keys, metadata=metadata))

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (ids that are not stored are ignored); ``filter=`` deletes the matching ones."""
        docs = self.pair.sync()
        where = kwargs.get("filter")
        if docs is None:
            return True
        if ids is None and where is None:
            raise InvalidArgumentError("delete() needs ids or filter= (filter={} deletes every document)")
        docs.delete(ids, where=where)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        docs = await self.pair.aio()
        where = kwargs.get("filter")
        if docs is None:
            return True
        if ids is None and where is None:
            raise InvalidArgumentError("delete() needs ids or filter= (filter={} deletes every document)")
        await docs.delete(ids, where=where)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents with these ids, in the order asked; missing ids are left out."""
        docs = self.pair.sync()
        return [] if docs is None else [_document(d) for d in docs.get(list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        docs = await self.pair.aio()
        return [] if docs is None else [_document(d) for d in await docs.get(list(ids))]

    # -- searches ----------------------------------------------------------------------------------

    def similarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents matching ``filter``, with their distance (smaller is nearer)."""
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter, **kwargs)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query)
        docs = await self.pair.aio()
        return [] if docs is None else _scored(await docs.search(vector, k, where=filter, **kwargs))

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_with_score` for a vector; other keywords go to :meth:`vectorpg.Collection.search`
        (``max_distance``, ``ef_search``, ``strategy``...)."""
        docs = self.pair.sync()
        return [] if docs is None else _scored(docs.search(embedding, k, where=filter, **kwargs))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        docs = await self.pair.aio()
        return [] if docs is None else [d for d, _ in _scored(await docs.search(embedding, k, where=filter, **kwargs))]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        docs = self.pair.sync()
        metric = docs.metric.metric.value if docs is not None else self.pair.metric
        return _RELEVANCE[metric]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance: ``k`` of the ``fetch_k`` nearest, ``lambda_mult`` the weight of relevance
        against novelty (vectorpg's ``diversity`` is ``1 - lambda_mult``)."""
        return self.max_marginal_relevance_search_by_vector(
            self.embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        docs = self.pair.sync()
        if docs is None:
            return []
        hits = docs.search(embedding, k, where=filter, diversity=1 - lambda_mult, fetch_k=max(fetch_k, k), **kwargs)
        return [d for d, _ in _scored(hits)]

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = await self.embedding.aembed_query(query)
        docs = await self.pair.aio()
        if docs is None:
            return []
        hits = await docs.search(vector, k, where=filter, diversity=1 - lambda_mult, fetch_k=max(fetch_k, k), **kwargs)
        return [d for d, _ in _scored(hits)]

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection: str = "langchain",
        database: vectorpg.Database | str | None = None,
        metric: str = "cosine",
        **kwargs: Any,
    ) -> VectorpgStore:
        """A store over ``collection`` with ``texts`` added."""
        store = cls(embedding, collection, database, metric=metric)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def drop(self) -> None:
        """Drop the collection and every document in it."""
        self.pair.drop()

    async def aclose(self) -> None:
        """Close the async connections this event loop's calls opened (the sync ones are the Database's)."""
        await self.pair.aclose()


class VectorpgEmbeddings(Embeddings):
    """A vectorpg :class:`~vectorpg.embeddings.Embedder` as LangChain :class:`~langchain_core.embeddings.Embeddings`
    (default: the packaged all-MiniLM-L6-v2, which needs ``vectorpg[embed]`` and no download)."""

    def __init__(self, embedder: Any = None) -> None:
        if embedder is None:
            from vectorpg.embeddings import default_embedder

            embedder = default_embedder()
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _document(stored: Any) -> Document:
    return Document(page_content=stored.content or "", metadata=dict(stored.metadata), id=stored.id)


def _scored(hits: Sequence[Any]) -> list[tuple[Document, float]]:
    return [(Document(page_content=h.content or "", metadata=dict(h.metadata), id=h.id), h.distance) for h in hits]

"""LangChain's vector store over an application's own SQLAlchemy model (``pip install 'vectorpg[langchain]'``).

```python
class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = mapped_column(primary_key=True)
    body: Mapped[str]
    meta: Mapped[dict] = mapped_column(JSONB, default=dict)
    embedding: Mapped[np.ndarray] = vector_column(1536)

store = VectorpgModelStore(embeddings, Repository(Note, db), text_attribute="body", metadata_attribute="meta")
```

A document is a row: ``id`` the primary key (a string key; new UUIDs when none is given), ``page_content`` the
``text_attribute`` column, ``metadata`` the JSON(B) ``metadata_attribute`` column (JSONB), the vector the repository's
vector column. ``filter`` is vectorpg's JSON filter language over that metadata column, or any SQLAlchemy
expression on the model (``Note.lang == "en"``). The searches, validation and write path are the repository's;
the async methods run :mod:`vectorpg.aio`'s Repository over an async engine on the same database.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:  # pragma: no cover - the extra is missing
    from vectorpg.errors import MissingDependencyError

    raise MissingDependencyError("langchain-core", "langchain", "vectorpg.integrations.langchain_model") from exc

from sqlalchemy.ext.asyncio import AsyncEngine

import vectorpg.aio
from vectorpg.db.engine import create_async_vector_engine
from vectorpg.errors import InvalidArgumentError
from vectorpg.filters import compile_filter
from vectorpg.integrations.langchain import _RELEVANCE
from vectorpg.repository import Repository

__all__ = ["VectorpgModelStore"]


class VectorpgModelStore(VectorStore):
    """A LangChain :class:`~langchain_core.vectorstores.VectorStore` over ``repository`` (a
    :class:`vectorpg.Repository` of the application's model, bound to an engine or a Database)."""

    def __init__(
        self,
        embedding: Embeddings,
        repository: Repository[Any],
        *,
        text_attribute: str,
        metadata_attribute: str,
    ) -> None:
        columns = {a.key: a for a in repository._mapper.column_attrs}
        for role, name in (("text_attribute", text_attribute), ("metadata_attribute", metadata_attribute)):
            if name not in columns:
                raise InvalidArgumentError(f"{repository.model.__name__} has no column attribute {name!r} ({role})")
        if len(repository._primary_key) != 1:
            raise InvalidArgumentError(f"{repository.model.__name__} needs a one-column primary key for LangChain ids")
        self.embedding = embedding
        self.repository = repository
        self.text_attribute = text_attribute
        self.metadata_attribute = metadata_attribute
        self._id_attribute = repository._column_to_attr[repository._primary_key[0].name]
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AsyncEngine, Any]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # -- mapping documents and rows ----------------------------------------------------------------

    def _row_dicts(
        self, texts: Iterable[str], metadatas: Sequence[dict[str, Any]] | None, ids: Sequence[str | None] | None,
        vectors: Any,
    ) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
        texts = list(texts)
        metadata = [dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        keys = [i if i else str(uuid.uuid4()) for i in (list(ids) if ids is not None else [None] * len(texts))]
        if not len(texts) == len(metadata) == len(keys):
            raise InvalidArgumentError(f"{len(texts)} texts, {len(metadata)} metadatas and {len(keys)} ids")
        rows = [
            {self._id_attribute: key, self.text_attribute: text, self.metadata_attribute: meta,
             self.repository.vector_attribute: vector}
            for key, text, meta, vector in zip(keys, texts, metadata, vectors)
        ]  # fmt: skip
        return rows, keys

    def _where(self, filter: Any) -> Any:
        if filter is None or not isinstance(filter, dict):
            return filter  # None, or a SQLAlchemy expression on the model
        return compile_filter(filter, self.repository.table.c[self._column(self.metadata_attribute)])

    def _column(self, attribute: str) -> str:
        return self.repository._attr_to_column[attribute]

    def _document(self, row: Any) -> Document:
        return Document(
            page_content=getattr(row, self.text_attribute) or "",
            metadata=dict(getattr(row, self.metadata_attribute) or {}),
            id=str(getattr(row, self._id_attribute)),
        )

    async def _arepo(self) -> Any:
        """:mod:`vectorpg.aio`'s Repository over an async engine to the same database, one per event loop."""
        loop = asyncio.get_running_loop()
        found = self._async.get(loop)
        if found is None:
            url = self._sync_engine().url.render_as_string(hide_password=False)
            engine = await create_async_vector_engine(url)
            found = (engine, vectorpg.aio.Repository(self.repository.model, engine, **self._options()))
            self._async[loop] = found
        return found[1]

    def _sync_engine(self) -> Any:
        bind = self.repository._bind  # an Engine, a Database, or a Session
        if hasattr(bind, "get_bind"):
            return bind.get_bind()
        return bind if hasattr(bind, "url") else bind.engine

    def _options(self) -> dict[str, Any]:
        return {"vector_attribute": self.repository.vector_attribute, "metric": self.repository.metric.metric.value}

    async def aclose(self) -> None:
        """Dispose of this event loop's async engine."""
        found = self._async.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].dispose()

    # -- the VectorStore methods -------------------------------------------------------------------

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:  # fmt: skip
        texts = list(texts)
        if not texts:
            return []
        vectors = np.asarray(self.embedding.embed_documents(texts), dtype=np.float32)
        rows, keys = self._row_dicts(texts, metadatas, ids, vectors)
        self.repository.upsert(rows)
        return keys

    async def aadd_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:  # fmt: skip
        texts = list(texts)
        if not texts:
            return []
        vectors = np.asarray(await self.embedding.aembed_documents(texts), dtype=np.float32)
        rows, keys = self._row_dicts(texts, metadatas, ids, vectors)
        await (await self._arepo()).upsert(rows)
        return keys

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None and kwargs.get("filter") is None:
            raise InvalidArgumentError("delete() needs ids or filter= (filter={} deletes every row)")
        self.repository.delete(ids, where=self._where(kwargs.get("filter")) if "filter" in kwargs else None)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None and kwargs.get("filter") is None:
            raise InvalidArgumentError("delete() needs ids or filter= (filter={} deletes every row)")
        await (await self._arepo()).delete(ids, where=self._where(kwargs.get("filter")) if "filter" in kwargs else None)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._document(row) for row in self.repository.get(list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._document(row) for row in await (await self._arepo()).get(list(ids))]

    def similarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        return [d for d, _ in await self.asimilarity_search_with_score(query, k, filter=filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` nearest rows matching ``filter``, with their distance (smaller is nearer)."""
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter, **kwargs)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query)
        pairs = await (await self._arepo()).search(vector, k, where=self._where(filter), **kwargs)
        return [(self._document(row), distance) for row, distance in pairs]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        pairs = self.repository.search(embedding, k, where=self._where(filter), **kwargs)
        return [(self._document(row), distance) for row, distance in pairs]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Any = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        metric = self.repository.metric.metric.value
        if metric not in _RELEVANCE:
            raise InvalidArgumentError(f"no relevance score for the {metric} metric (cosine, l2, inner_product)")
        return _RELEVANCE[metric]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, filter: Any = None,
        **kwargs: Any,
    ) -> list[Document]:  # fmt: skip
        """Maximal marginal relevance (vectorpg's ``diversity`` is ``1 - lambda_mult``)."""
        pairs = self.repository.search(
            self.embedding.embed_query(query), k, where=self._where(filter), diversity=1 - lambda_mult,
            fetch_k=max(fetch_k, k), **kwargs,
        )  # fmt: skip
        return [self._document(row) for row, _ in pairs]

    @classmethod
    def from_texts(
        cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None, *,
        ids: list[str] | None = None, **kwargs: Any,
    ) -> VectorpgModelStore:  # fmt: skip
        """``kwargs``: ``repository``, ``text_attribute`` and ``metadata_attribute``, as for the constructor."""
        store = cls(embedding, kwargs.pop("repository"), **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

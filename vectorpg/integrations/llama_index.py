"""LlamaIndex's vector store over a vectorpg collection (``pip install 'vectorpg[llama-index]'``).

```python
from llama_index.core import StorageContext, VectorStoreIndex
from vectorpg.integrations.llama_index import VectorpgVectorStore

store = VectorpgVectorStore(collection="docs")                 # the embedded default; database=URL | Database
index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store))
```

A node is a collection row: its id the row's id, its text the row's content, its embedding the row's vector, and
its metadata, with LlamaIndex's own keys for rebuilding the node (``_node_content``, ``ref_doc_id``...), the row's
JSON metadata. ``MetadataFilters`` become vectorpg filters (every :class:`FilterOperator`: ``ANY`` / ``ALL`` /
``CONTAINS`` on arrays, ``TEXT_MATCH`` as ``$like``, ``IS_EMPTY`` as missing-or-null; AND / OR / NOT, nested).
Query modes: ``DEFAULT`` (the collection's search), ``MMR`` (its maximal marginal relevance), ``HYBRID`` and
``TEXT_SEARCH`` (its full-text + vector fusion). Similarities are ``1 - distance`` under cosine, ``-distance``
under inner product and ``1 / (1 + distance)`` under l2. The async methods run on :mod:`vectorpg.aio`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode, MetadataMode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as exc:  # pragma: no cover - the extra is missing
    from vectorpg.errors import MissingDependencyError

    raise MissingDependencyError("llama-index-core", "llama-index", "vectorpg.integrations.llama_index") from exc

import numpy as np

import vectorpg
from vectorpg.errors import InvalidArgumentError, InvalidInputError
from vectorpg.integrations.base import CollectionPair, open_database

__all__ = ["VectorpgVectorStore", "to_vectorpg_filter"]

_SIMPLE = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_SIMILARITY: dict[str, Callable[[float], float]] = {
    "cosine": lambda d: 1.0 - d,
    "inner_product": lambda d: -d,
    "l2": lambda d: 1.0 / (1.0 + d),
}


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition(f: MetadataFilter) -> dict[str, Any]:
    key, value, op = f.key, f.value, f.operator
    if op in _SIMPLE:
        return {key: {_SIMPLE[op]: value}}
    if op is FilterOperator.CONTAINS:
        return {key: {"$contains": value}}
    if op is FilterOperator.ALL:
        return {key: {"$contains": list(value)}}  # type: ignore[arg-type]
    if op is FilterOperator.ANY:
        return {"$or": [{key: {"$contains": v}} for v in value]}  # type: ignore[union-attr]
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{op.value} on {key!r} needs a string, got {value!r}")
        pattern = f"%{_like_literal(value)}%"
        return {key: {"$like" if op is FilterOperator.TEXT_MATCH else "$ilike": pattern}}
    if op is FilterOperator.IS_EMPTY:
        return {"$or": [{key: {"$exists": False}}, {key: None}]}
    raise InvalidArgumentError(f"the filter operator {op!r} has no vectorpg form")


def to_vectorpg_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (nested, AND / OR / NOT) as a vectorpg JSON filter."""
    if filters is None or not filters.filters:
        return None
    parts = [to_vectorpg_filter(f) or {} if isinstance(f, MetadataFilters) else _condition(f) for f in filters.filters]
    if filters.condition is FilterCondition.OR:
        return {"$or": parts}
    combined = parts[0] if len(parts) == 1 else {"$and": parts}
    return {"$not": combined} if filters.condition is FilterCondition.NOT else combined


class VectorpgVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store (``stores_text=True``) over the vectorpg collection ``collection``.

    ``database``: a :class:`vectorpg.Database`, a URL, or ``None`` for the embedded default. ``dimension`` and
    ``metric`` are used when the collection is created (else on the first write, with the vectors' dimension).
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection: str = "llama_index"
    metric: str = "cosine"
    _pair: CollectionPair = PrivateAttr()
    _dimension: int | None = PrivateAttr(default=None)

    def __init__(
        self,
        collection: str = "llama_index",
        database: vectorpg.Database | str | None = None,
        dimension: int | None = None,
        metric: str = "cosine",
        **kwargs: Any,
    ) -> None:
        if metric not in _SIMILARITY:
            raise InvalidArgumentError(f"metric must be one of {', '.join(_SIMILARITY)}; got {metric!r}")
        super().__init__(collection=collection, metric=metric, **kwargs)  # type: ignore[call-arg]  # pydantic fields
        self._pair = CollectionPair(open_database(database), collection, metric=metric)
        self._dimension = dimension

    @classmethod
    def class_name(cls) -> str:
        return "VectorpgVectorStore"

    @property
    def client(self) -> vectorpg.Database:
        return self._pair.database

    # -- writes ------------------------------------------------------------------------------------

    def _rows(self, nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]], np.ndarray]:
        ids, texts, metadata, vectors = [], [], [], []
        for row, node in enumerate(nodes):
            if node.embedding is None:
                raise InvalidInputError(f"node {node.node_id!r} has no embedding (embed it first)", row=row)
            ids.append(node.node_id)
            texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
            metadata.append(node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata))
            vectors.append(node.embedding)
        return ids, texts, metadata, np.asarray(vectors, dtype=np.float32)

    def _dimension_of(self, vectors: np.ndarray) -> int | None:
        return self._dimension or (vectors.shape[1] if vectors.ndim == 2 else None)

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert the nodes (each with its embedding) all or nothing; return their ids."""
        if not nodes:
            return []
        ids, texts, metadata, vectors = self._rows(nodes)
        self._pair.sync(self._dimension_of(vectors)).upsert(texts, vectors=vectors, ids=ids, metadata=metadata)
        return ids

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        if not nodes:
            return []
        ids, texts, metadata, vectors = self._rows(nodes)
        docs = await self._pair.aio(self._dimension_of(vectors))
        assert docs is not None
        await docs.upsert(texts, vectors=vectors, ids=ids, metadata=metadata)
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        docs = self._pair.sync()
        if docs is not None:
            docs.delete(where={"ref_doc_id": ref_doc_id})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        docs = await self._pair.aio()
        if docs is not None:
            await docs.delete(where={"ref_doc_id": ref_doc_id})

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete the nodes with these ids and/or matching ``filters`` (neither: nothing)."""
        docs = self._pair.sync()
        where = to_vectorpg_filter(filters)
        if docs is not None and (node_ids is not None or where is not None):
            docs.delete(node_ids, where=where if where is not None else {})

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        docs = await self._pair.aio()
        where = to_vectorpg_filter(filters)
        if docs is not None and (node_ids is not None or where is not None):
            await docs.delete(node_ids, where=where if where is not None else {})

    def clear(self) -> None:
        """Delete every node."""
        docs = self._pair.sync()
        if docs is not None:
            docs.delete(where={})

    async def aclear(self) -> None:
        docs = await self._pair.aio()
        if docs is not None:
            await docs.delete(where={})

    # -- reads -------------------------------------------------------------------------------------

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes with these ids (in that order) and/or matching ``filters``."""
        docs = self._pair.sync()
        if docs is None:
            return []
        where = to_vectorpg_filter(filters)
        found = docs.get(node_ids, where=where) if node_ids is not None else list(docs.scan(where))
        return [_node(d.metadata, d.content, d.embedding) for d in found]

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        docs = await self._pair.aio()
        if docs is None:
            return []
        where = to_vectorpg_filter(filters)
        if node_ids is not None:
            found = await docs.get(node_ids, where=where)
        else:
            found = [d async for d in docs.scan(where)]
        return [_node(d.metadata, d.content, d.embedding) for d in found]

    def _search(self, query: VectorStoreQuery, kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """The collection method, its arguments and its keywords for ``query``."""
        if query.node_ids:
            raise InvalidArgumentError("a query restricted to node_ids is not supported: filter on metadata instead")
        where = to_vectorpg_filter(query.filters)
        if query.doc_ids:
            docs_filter = {"ref_doc_id": {"$in": list(query.doc_ids)}}
            where = docs_filter if where is None else {"$and": [where, docs_filter]}
        k = query.similarity_top_k
        if query.mode in (VectorStoreQueryMode.HYBRID, VectorStoreQueryMode.TEXT_SEARCH):
            if not query.query_str:
                raise InvalidArgumentError(f"a {query.mode.value} query needs its text (query_str)")
            return "hybrid_search", (query.query_str, query.hybrid_top_k or k), {
                "where": where, "vector": query.query_embedding,
            }  # fmt: skip
        if query.query_embedding is None:
            raise InvalidArgumentError("the query has no embedding (query_embedding)")
        options: dict[str, Any] = {"where": where}
        if query.mode is VectorStoreQueryMode.MMR:
            threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold", 0.5)
            options |= {"diversity": 1 - threshold, "fetch_k": max(k, kwargs.get("mmr_prefetch_k", 4 * k))}
        elif query.mode is not VectorStoreQueryMode.DEFAULT:
            raise InvalidArgumentError(f"query mode {query.mode.value!r} is not supported (default, mmr, hybrid)")
        return "search", (query.query_embedding, k), options

    def _result(self, docs: Any, hits: list[Any]) -> VectorStoreQueryResult:
        similarity = _SIMILARITY[docs.metric.metric.value]
        nodes = [_node(h.metadata, h.content) for h in hits]
        scores = [h.score.score if hasattr(h, "score") else similarity(h.distance) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=scores, ids=[h.id for h in hits])

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The nearest nodes (filtered; MMR; or hybrid full-text + vector), best first."""
        method, args, options = self._search(query, kwargs)
        docs = self._pair.sync()
        if docs is None:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        return self._result(docs, getattr(docs, method)(*args, **options))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        method, args, options = self._search(query, kwargs)
        docs = await self._pair.aio()
        if docs is None:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        return self._result(docs, await getattr(docs, method)(*args, **options))

    async def aclose(self) -> None:
        """Close the async connections this event loop's calls opened."""
        await self._pair.aclose()


def _node(metadata: dict[str, Any], content: str | None, embedding: Any = None) -> BaseNode:
    node: BaseNode = metadata_dict_to_node(metadata, text=content)  # type: ignore[no-untyped-call]
    if embedding is not None:
        node.embedding = [float(x) for x in embedding]
    return node

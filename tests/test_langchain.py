"""LangChain's own standard suite for vector stores (``langchain_tests``), sync and async, run against
:class:`vectorpg.integrations.langchain.VectorpgStore` and over an application's own model
(:class:`~vectorpg.integrations.langchain_model.VectorpgModelStore`) on the real server; then what the suite does
not cover (filters, MMR, relevance scores, a retriever), checked against exact search over the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from langchain_tests.integration_tests.vectorstores import EMBEDDING_SIZE
from sqlalchemy import String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import vector_column
from vectorpg.integrations.langchain import VectorpgStore
from vectorpg.integrations.langchain_model import VectorpgModelStore


class Base(DeclarativeBase):
    pass


class Note(Base):
    """An application's own model: LangChain's documents in its rows."""

    __tablename__ = "lc_notes"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    body: Mapped[str] = mapped_column(String)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    embedding: Mapped[Any] = vector_column(EMBEDDING_SIZE)


class TestVectorpgModelStore(VectorStoreIntegrationTests):
    """The same standard suite over the application's own model."""

    @pytest.fixture
    async def vectorstore(self, db: vectorpg.Database) -> AsyncIterator[VectorStore]:  # type: ignore[override]
        Base.metadata.create_all(db.engine)
        repository = vectorpg.Repository(Note, db)
        store = VectorpgModelStore(self.get_embeddings(), repository, text_attribute="body", metadata_attribute="meta")
        yield store
        await store.aclose()
        Base.metadata.drop_all(db.engine)


class TestVectorpgStore(VectorStoreIntegrationTests):
    @pytest.fixture
    async def vectorstore(self, db: vectorpg.Database) -> AsyncIterator[VectorStore]:  # type: ignore[override]
        store = VectorpgStore(self.get_embeddings(), collection="standard", database=db)
        yield store
        await store.aclose()
        store.drop()


Corpus = tuple[list[str], list[dict[str, object]]]


@pytest.fixture
def corpus() -> Corpus:
    texts = [f"text number {i} about {'cats' if i % 3 else 'dogs'}" for i in range(60)]
    return texts, [{"n": i, "kind": "cat" if i % 3 else "dog"} for i in range(60)]


def _exact(store: VectorpgStore, texts: list[str], query: str, allowed: list[int], k: int) -> list[str]:
    vectors = np.asarray(store.embeddings.embed_documents(texts), dtype=np.float64)
    q = np.asarray(store.embeddings.embed_query(query), dtype=np.float64)
    cosine = 1 - (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    order = sorted(allowed, key=lambda i: cosine[i])
    return [str(i) for i in order[:k]]


def test_filters_scores_mmr_and_a_retriever(
    db: vectorpg.Database, corpus: tuple[list[str], list[dict[str, object]]]
) -> None:
    texts, metadata = corpus
    store = VectorpgStore(VectorStoreIntegrationTests.get_embeddings(), collection="extras", database=db)
    store.add_texts(texts, metadata, ids=[str(i) for i in range(len(texts))])
    query = "text number 7 about cats"
    where = {"$and": [{"kind": "cat"}, {"n": {"$gte": 10}}]}
    allowed = [i for i, m in enumerate(metadata) if m["kind"] == "cat" and int(m["n"]) >= 10]  # type: ignore[call-overload]
    got = [d.id for d in store.similarity_search(query, k=5, filter=where)]
    assert got == _exact(store, texts, query, allowed, 5)
    scored = store.similarity_search_with_relevance_scores(query, k=5, filter=where)
    assert [d.id for d, _ in scored] == got and all(0 <= s <= 1 for _, s in scored)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    mmr = store.max_marginal_relevance_search(query, k=5, fetch_k=20, lambda_mult=0.3, filter=where)
    assert len(mmr) == 5 and {d.metadata["kind"] for d in mmr} == {"cat"}
    assert set(d.id for d in mmr) <= set(_exact(store, texts, query, allowed, 20))
    retriever = store.as_retriever(search_kwargs={"k": 3, "filter": {"kind": "dog"}})
    found = retriever.invoke(query)
    assert [d.id for d in found] == _exact(store, texts, query, [i for i in range(60) if i % 3 == 0], 3)
    assert all(isinstance(d, Document) and d.page_content == texts[int(d.id or -1)] for d in found)
    store.delete(filter={"kind": "dog"})
    assert store.get_by_ids(["0", "1", "3"]) == [Document(page_content=texts[1], metadata=metadata[1], id="1")]


async def test_async_searches_match_the_sync_ones(
    db: vectorpg.Database, corpus: tuple[list[str], list[dict[str, object]]]
) -> None:
    texts, metadata = corpus
    store = VectorpgStore(VectorStoreIntegrationTests.get_embeddings(), collection="extras_async", database=db)
    try:
        await store.aadd_texts(texts, metadata, ids=[str(i) for i in range(len(texts))])
        for query in ("cats", "dogs", "text number 3"):
            sync = [d.id for d in store.similarity_search(query, k=6, filter={"n": {"$lt": 40}})]
            assert [d.id for d in await store.asimilarity_search(query, k=6, filter={"n": {"$lt": 40}})] == sync
            mmr = await store.amax_marginal_relevance_search(query, k=4, fetch_k=12)
            assert [d.id for d in mmr] == [d.id for d in store.max_marginal_relevance_search(query, k=4, fetch_k=12)]
    finally:
        await store.aclose()


def test_bad_input_is_a_vectorpg_error_and_writes_nothing(db: vectorpg.Database) -> None:
    store = VectorpgStore(VectorStoreIntegrationTests.get_embeddings(), collection="bad", database=db)
    store.add_texts(["kept"], ids=["k"])
    with pytest.raises(vectorpg.InvalidInputError):
        store.add_texts(["fine", ""], ids=["a", "b"])  # an empty text: refused, nothing written
    with pytest.raises(vectorpg.InvalidArgumentError, match="metadatas"):
        store.add_texts(["x", "y"], [{"a": 1}])
    with pytest.raises(vectorpg.InvalidArgumentError, match="metric"):
        VectorpgStore(VectorStoreIntegrationTests.get_embeddings(), metric="hamming")
    assert [d.id for d in store.get_by_ids(["k", "a", "b"])] == ["k"]


def test_the_model_store_filters_on_json_and_on_columns(db: vectorpg.Database, corpus: Corpus) -> None:
    texts, metadata = corpus
    Base.metadata.create_all(db.engine)
    store = VectorpgModelStore(
        VectorStoreIntegrationTests.get_embeddings(), vectorpg.Repository(Note, db), text_attribute="body",
        metadata_attribute="meta",
    )  # fmt: skip
    store.add_texts(texts, metadata, ids=[str(i) for i in range(len(texts))])
    query = "text number 7 about cats"
    allowed = [i for i, m in enumerate(metadata) if m["kind"] == "cat"]
    assert [d.id for d in store.similarity_search(query, k=4, filter={"kind": "cat"})] == _exact(
        VectorpgStore(store.embeddings, "unused", db), texts, query, allowed, 4
    )
    by_column = store.similarity_search(query, k=60, filter=Note.body.like("%dogs"))
    assert {d.id for d in by_column} == {str(i) for i in range(60) if i % 3 == 0}
    assert store.get_by_ids(["5"]) == [Document(page_content=texts[5], metadata=metadata[5], id="5")]
    with pytest.raises(vectorpg.InvalidArgumentError, match="no column attribute"):
        VectorpgModelStore(store.embeddings, store.repository, text_attribute="nope", metadata_attribute="meta")

"""LlamaIndex's vector store over a collection: through ``VectorStoreIndex`` with llama-index-core's mock
embedding and LLM, and each query checked against exact search over the same rows (NumPy), every filter
operator against a Python predicate, the query modes, and the async methods."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from llama_index.core import Settings, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

import vectorpg
from vectorpg.integrations.llama_index import VectorpgVectorStore

DIM = 8
WORDS = ["postgres", "vectors", "cats", "dogs", "graphs", "tables"]


@pytest.fixture(autouse=True)
def offline_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """LlamaIndex's default tokenizer downloads tiktoken's encoding; a word split needs no network."""
    monkeypatch.setattr(Settings, "_tokenizer", lambda text: text.split())


def _nodes(n: int = 60) -> tuple[list[TextNode], np.ndarray]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    nodes = []
    for i in range(n):
        text = f"note {i} about {WORDS[i % 6]} and {WORDS[(i * 5) % 6]}"
        meta = {"n": i, "kind": WORDS[i % 6], "tags": [WORDS[i % 6], WORDS[i % 4]], "title": f"Note {i}"}
        if i % 9 == 0:
            meta["optional"] = None
        elif i % 9 == 1:
            meta["optional"] = "set"
        node = TextNode(text=text, id_=f"node-{i:02d}", metadata=meta, embedding=vectors[i].tolist())
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{i % 5}")
        nodes.append(node)
    return nodes, vectors


@pytest.fixture
def store(db: vectorpg.Database) -> Iterator[VectorpgVectorStore]:
    yield VectorpgVectorStore(collection="llama", database=db)


def only(key: str, value: Any, operator: FilterOperator = FilterOperator.EQ) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=operator)])


def _exact(vectors: np.ndarray, q: np.ndarray, allowed: list[int], k: int) -> list[str]:
    cosine = 1 - (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    return [f"node-{i:02d}" for i in sorted(allowed, key=lambda i: cosine[i])[:k]]


def test_through_a_vector_store_index_with_the_mock_embedding_and_llm(store: VectorpgVectorStore) -> None:
    nodes = [TextNode(text=f"{w} are described in note {i}", id_=f"n{i}") for i, w in enumerate(WORDS)]
    for i, node in enumerate(nodes):
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{i % 2}")
    context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=context, embed_model=MockEmbedding(embed_dim=DIM))
    found = index.as_retriever(similarity_top_k=3).retrieve("what about cats?")
    assert len(found) == 3 and {n.node.node_id for n in found} <= {n.node_id for n in nodes}
    assert all(n.node.get_content() == nodes[int(n.node.node_id[1:])].text for n in found)
    answer = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query("what about cats?")
    assert str(answer) and len(answer.source_nodes) == 2
    index.delete_ref_doc("doc-0")
    assert sorted(n.node_id for n in store.get_nodes()) == ["n1", "n3", "n5"]


def test_queries_equal_exact_search(store: VectorpgVectorStore) -> None:
    nodes, vectors = _nodes()
    assert store.add(nodes) == [n.node_id for n in nodes]
    rng = np.random.default_rng(9)
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="n", value=10, operator=FilterOperator.GTE),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="kind", value="cats"),
                    MetadataFilter(key="tags", value="graphs", operator=FilterOperator.CONTAINS),
                ],
                condition=FilterCondition.OR,
            ),
        ]
    )
    allowed = [i for i in range(60) if i >= 10 and (WORDS[i % 6] == "cats" or "graphs" in (WORDS[i % 6], WORDS[i % 4]))]
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        result = store.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=5, filters=filters))
        assert result.ids == _exact(vectors, q, allowed, 5)
        cosine = 1 - (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
        expected = [1 - cosine[int(i[-2:])] for i in result.ids]
        np.testing.assert_allclose(result.similarities, expected, atol=1e-5)
        assert [n.node_id for n in result.nodes] == result.ids
        assert result.nodes[0].metadata["n"] >= 10 and result.nodes[0].get_content().startswith("note ")


OPERATORS: list[tuple[MetadataFilter, Callable[[int], bool]]] = [
    (MetadataFilter(key="kind", value="dogs"), lambda i: WORDS[i % 6] == "dogs"),
    (MetadataFilter(key="kind", value="dogs", operator=FilterOperator.NE), lambda i: WORDS[i % 6] != "dogs"),
    (MetadataFilter(key="n", value=50, operator=FilterOperator.GT), lambda i: i > 50),
    (MetadataFilter(key="n", value=3, operator=FilterOperator.LT), lambda i: i < 3),
    (MetadataFilter(key="n", value=58, operator=FilterOperator.GTE), lambda i: i >= 58),
    (MetadataFilter(key="n", value=1, operator=FilterOperator.LTE), lambda i: i <= 1),
    (MetadataFilter(key="n", value=[4, 7, 99], operator=FilterOperator.IN), lambda i: i in (4, 7)),
    (MetadataFilter(key="kind", value=["cats", "dogs"], operator=FilterOperator.NIN), lambda i: i % 6 not in (2, 3)),
    (
        MetadataFilter(key="tags", value=["graphs", "dogs"], operator=FilterOperator.ANY),
        lambda i: bool({"graphs", "dogs"} & {WORDS[i % 6], WORDS[i % 4]}),
    ),
    (
        MetadataFilter(key="tags", value=["postgres", "cats"], operator=FilterOperator.ALL),
        lambda i: {"postgres", "cats"} <= {WORDS[i % 6], WORDS[i % 4]},
    ),
    (
        MetadataFilter(key="tags", value="vectors", operator=FilterOperator.CONTAINS),
        lambda i: "vectors" in (WORDS[i % 6], WORDS[i % 4]),
    ),
    (MetadataFilter(key="title", value="te 1", operator=FilterOperator.TEXT_MATCH), lambda i: "te 1" in f"Note {i}"),
    (
        MetadataFilter(key="title", value="NOTE 2", operator=FilterOperator.TEXT_MATCH_INSENSITIVE),
        lambda i: "note 2" in f"note {i}",
    ),
    (MetadataFilter(key="optional", value=None, operator=FilterOperator.IS_EMPTY), lambda i: i % 9 != 1),
]


@pytest.mark.parametrize(("condition", "predicate"), OPERATORS, ids=[f.operator.value for f, _ in OPERATORS])
def test_every_filter_operator(store: VectorpgVectorStore, condition: MetadataFilter, predicate: Any) -> None:
    nodes, vectors = _nodes()
    store.add(nodes)
    q = vectors[0]
    allowed = [i for i in range(60) if predicate(i)]
    result = store.query(
        VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=60, filters=MetadataFilters(filters=[condition]))
    )
    assert result.ids == _exact(vectors, q, allowed, 60) and allowed
    negated = MetadataFilters(filters=[condition], condition=FilterCondition.NOT)
    got = store.get_nodes(filters=negated)
    assert sorted(n.node_id for n in got) == [f"node-{i:02d}" for i in range(60) if not predicate(i)]


def test_modes_get_delete_and_clear(store: VectorpgVectorStore) -> None:
    nodes, vectors = _nodes()
    store.add(nodes)
    q = vectors[7].tolist()
    mmr = store.query(
        VectorStoreQuery(query_embedding=q, similarity_top_k=4, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.3)
    )
    assert len(mmr.ids) == 4 and set(mmr.ids) <= set(_exact(vectors, vectors[7], list(range(60)), 16))
    hybrid = store.query(
        VectorStoreQuery(
            query_embedding=q, query_str="note 7 graphs", similarity_top_k=3, mode=VectorStoreQueryMode.HYBRID
        )
    )
    assert hybrid.ids[0] == "node-07"
    assert [n.node_id for n in store.get_nodes(["node-03", "node-01"])] == ["node-03", "node-01"]
    assert store.get_nodes(["node-01"])[0].embedding == pytest.approx(vectors[1].tolist(), abs=1e-6)
    store.delete("doc-1")  # the nodes of source document doc-1: i % 5 == 1
    store.delete_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="n", value=50, operator=FilterOperator.GTE)])
    )
    left = sorted(n.node_id for n in store.get_nodes())
    assert left == [f"node-{i:02d}" for i in range(50) if i % 5 != 1]
    store.delete_nodes(["node-00", "node-02"])
    assert len(store.get_nodes()) == len(left) - 2
    with pytest.raises(vectorpg.InvalidArgumentError, match="node_ids"):
        store.query(VectorStoreQuery(query_embedding=q, node_ids=["node-03"]))
    store.clear()
    assert store.get_nodes() == []


def test_async_methods_match_the_sync_ones(store: VectorpgVectorStore) -> None:
    nodes, vectors = _nodes()

    async def main() -> tuple[list[str], list[str], int]:
        try:
            await store.async_add(nodes)
            query = VectorStoreQuery(query_embedding=vectors[4].tolist(), similarity_top_k=6)
            found = (await store.aquery(query)).ids
            got = [n.node_id for n in await store.aget_nodes(["node-09", "node-08"])]
            await store.adelete("doc-2")
            await store.adelete_nodes(
                filters=MetadataFilters(filters=[MetadataFilter(key="n", value=30, operator=FilterOperator.LT)])
            )
            remaining = len(await store.aget_nodes())
            return found or [], got, remaining
        finally:
            await store.aclose()

    found, got, remaining = asyncio.run(main())
    assert found == _exact(vectors, vectors[4], list(range(60)), 6)
    assert got == ["node-09", "node-08"]
    assert remaining == len([i for i in range(30, 60) if i % 5 != 2])


def test_a_node_without_embedding_is_refused_and_nothing_written(store: VectorpgVectorStore) -> None:
    nodes, _ = _nodes(3)
    nodes[2].embedding = None
    with pytest.raises(vectorpg.InvalidInputError, match="no embedding"):
        store.add(nodes)
    assert store.get_nodes() == []

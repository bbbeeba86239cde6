"""Vector indexes on the real server: specs, catalog round trip, EXPLAIN, knobs, builds, recall."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from vectorpg import HNSW, IVFFlat, Repository, vector_column, vector_index
from vectorpg.ddl.builds import BuildProgress, create_vector_index, drop_vector_index, reindex_vector_index
from vectorpg.indexes import Quantization, VectorIndex, list_vector_indexes

DIM = 16

# (vector type, metric, quantization) for every index pgvector can build, per method.
HNSW_CASES = [
    *[(v, m, "none") for v in ("vector", "halfvec", "sparsevec") for m in ("l2", "inner_product", "cosine", "l1")],
    ("bit", "hamming", "none"),
    ("bit", "jaccard", "none"),
    *[("vector", m, "halfvec") for m in ("l2", "inner_product", "cosine", "l1")],
    ("vector", "hamming", "binary"),
]
IVFFLAT_CASES = [
    *[(v, m, "none") for v in ("vector", "halfvec") for m in ("l2", "inner_product", "cosine")],
    ("bit", "hamming", "none"),
    *[("vector", m, "halfvec") for m in ("l2", "inner_product", "cosine")],
    ("vector", "hamming", "binary"),
]
CASES = [("hnsw", *c) for c in HNSW_CASES] + [("ivfflat", *c) for c in IVFFLAT_CASES]


def model_with(index: Any, vector_type: str = "vector", dimension: int = DIM) -> tuple[Any, Any]:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        category: Mapped[str] = mapped_column(String(10))
        embedding: Mapped[Any] = vector_column(dimension, vector_type)
        __table_args__ = (index,) if index is not None else ()

    return Base, Item


def data_for(vector_type: str, n: int, rng: np.random.Generator, dim: int = DIM) -> Any:
    if vector_type == "bit":
        bits = rng.random((n, dim)) < 0.5
        bits[:, 0] = True
        return bits
    return rng.normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize(("method", "vtype", "metric", "quant"), CASES, ids=["-".join(c) for c in CASES])
def test_declared_index_round_trips_and_serves_the_search(
    db: vectorpg.Database, method: str, vtype: str, metric: str, quant: str
) -> None:
    build = HNSW(m=8, ef_construction=32) if method == "hnsw" else IVFFlat(lists=4)
    declared = vector_index("embedding", build, metric=metric, quantization=quant, vector_type=vtype, dimension=DIM)
    base, item = model_with(declared, vtype)
    base.metadata.create_all(db.engine)
    spec: VectorIndex = declared.info["vectorpg"]
    with db.engine.connect() as conn:
        found = list_vector_indexes(conn, item.__table__)
    assert len(found) == 1
    assert found[0].name == declared.name == spec.default_name("items")
    assert found[0].spec == spec and found[0].valid and found[0].size_bytes > 0

    rng = np.random.default_rng(0)
    data = data_for(vtype, 300, rng)
    search_metric = "cosine" if quant == "binary" else metric  # binary codes are re-ranked with a float metric
    with Session(db.engine) as session:
        repo = Repository(item, session, metric=search_metric)
        repo.add({"id": i, "category": "a", "embedding": data[i]} for i in range(len(data)))
        session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny table: make the planner show its hand
        plan = repo.explain(data[0], k=5).plan
        assert f"Index Scan using {declared.name}" in plan, plan
        hits = repo.search(data[0], k=5)
        assert hits[0][0].id == 0  # the vector itself is its own nearest neighbour


def test_partial_index_predicate_round_trips(db: vectorpg.Database) -> None:
    declared = vector_index(
        "embedding", HNSW(), metric="l2", dimension=DIM, where="category = 'hot'", name="items_hot_idx"
    )
    base, item = model_with(declared)
    base.metadata.create_all(db.engine)
    with db.engine.connect() as conn:
        (info,) = list_vector_indexes(conn, item.__table__)
    spec = declared.info["vectorpg"]
    assert info.name == "items_hot_idx"
    assert "'hot'" in str(info.spec.where)
    assert dataclasses.replace(info.spec, where=spec.where) == spec  # PostgreSQL prints the predicate its way
    rng = np.random.default_rng(1)
    with Session(db.engine) as session:
        repo = Repository(item, session, metric="l2")
        repo.add(
            {"id": i, "category": "hot" if i % 2 else "cold", "embedding": v}
            for i, v in enumerate(data_for("vector", 200, rng))
        )
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = repo.explain(np.ones(DIM), k=3, where=item.category == "hot", strategy="ann")
        assert "items_hot_idx" in plan.plan


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HNSW(m=1), "m must be"),
        (lambda: HNSW(m=101), "m must be"),
        (lambda: HNSW(m=16, ef_construction=20), "at least 2 \\* m"),
        (lambda: HNSW(ef_construction=1001), "ef_construction"),
        (lambda: IVFFlat(lists=0), "lists"),
        (lambda: IVFFlat(lists=40000), "lists"),
        (lambda: vector_index("embedding", IVFFlat(), metric="l1"), "IVFFlat does not support l1"),
        (lambda: vector_index("embedding", IVFFlat(), metric="l2", vector_type="sparsevec"), "IVFFlat"),
        (lambda: vector_index("embedding", metric="hamming"), "does not apply to vector"),
        (lambda: vector_index("embedding", metric="cosine", vector_type="bit"), "does not apply to bit"),
        (lambda: vector_index("embedding", dimension=3000), "halfvec"),
        (lambda: vector_index("embedding", dimension=5000, quantization="halfvec"), "binary quantization"),
        (lambda: vector_index("embedding", quantization="binary"), "dimension"),
        (lambda: vector_index("embedding; drop", HNSW()), "invalid column name"),
        (lambda: vector_index("embedding", name="x y"), "invalid index name"),
    ],
)
def test_bad_specs_are_clear_errors_before_sql(make: Any, message: str) -> None:
    with pytest.raises(vectorpg.VectorPgError, match=message):
        make()


def test_large_dimension_through_halfvec_expression(db: vectorpg.Database) -> None:
    declared = vector_index("embedding", HNSW(), metric="cosine", quantization="halfvec", dimension=3000)
    base, item = model_with(declared, dimension=3000)
    base.metadata.create_all(db.engine)
    rng = np.random.default_rng(2)
    with Session(db.engine) as session:
        repo = Repository(item, session)
        repo.add({"id": i, "category": "x", "embedding": v} for i, v in enumerate(data_for("vector", 100, rng, 3000)))
        session.execute(text("SET LOCAL enable_seqscan = off"))
        assert declared.name in repo.explain(np.ones(3000), k=3).plan


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 40) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim))
    points = centers[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(repo: Repository[Any], data: np.ndarray, queries: np.ndarray, **options: Any) -> float:
    hits = 0
    for q in queries:
        exact = set(np.argsort(1 - data @ q)[:10].tolist())
        got = {row.id for row, _ in repo.search(q, k=10, **options)}
        hits += len(exact & got)
    return hits / (10 * len(queries))


def test_recall_hnsw_and_binary_quantization_on_10k(db: vectorpg.Database) -> None:
    """Recall sanity (not timing): HNSW at default ef_search, and binary quantization + exact re-rank at
    the default overfetch, on 10k clustered, normalised 384-d vectors; exact search over the same rows."""
    rng = np.random.default_rng(3)
    data = clustered(10_200, 384, rng)
    data, queries = data[:10_000], data[10_000:10_050]
    base, item = model_with(None, dimension=384)
    base.metadata.create_all(db.engine)
    repo = Repository(item, db, metric="cosine")
    repo.add({"id": i, "category": "x", "embedding": v} for i, v in enumerate(data))
    progress: list[BuildProgress] = []
    plain = vector_index(item.embedding, HNSW(), metric="cosine")
    binary = vector_index(item.embedding, HNSW(), quantization="binary")
    plain_name = create_vector_index(db, item, plain, progress=progress.append, poll_interval=0.05)
    binary_name = create_vector_index(db, item, binary, concurrently=True)
    assert any("building" in p.phase for p in progress), progress
    with db.engine.connect() as conn:
        names = {i.name for i in list_vector_indexes(conn, item.__table__)}
    assert names == {plain_name, binary_name} == {"items_embedding_cosine_idx", "items_embedding_hamming_binary_idx"}

    plain_spec, binary_spec = plain.info["vectorpg"], binary.info["vectorpg"]
    hnsw = recall_at_10(repo, data, queries, index=plain_spec)
    bq = recall_at_10(repo, data, queries, index=binary_spec)
    exact = recall_at_10(repo, data, queries, index=None)
    assert exact == 1.0
    assert hnsw >= 0.9, hnsw
    assert bq >= 0.9, bq
    with Session(db.engine) as session:  # the quantized search really runs on the binary index
        plan = Repository(item, session).explain(queries[0], k=10, index=binary_spec).plan
    assert binary_name in plan and "binary_quantize" in plan


def test_knobs_are_applied_and_transaction_local(database_url: str) -> None:
    db = vectorpg.connect(database_url, pool_size=1, max_overflow=0)  # one connection: any leak would show
    declared = vector_index("embedding", HNSW(), metric="l2")
    base, item = model_with(declared)
    base.metadata.create_all(db.engine)
    rng = np.random.default_rng(4)
    repo = Repository(item, db, metric="l2")
    repo.add({"id": i, "category": "x", "embedding": v} for i, v in enumerate(data_for("vector", 2000, rng)))
    db.engine.dispose()
    # ef_search=3 really reaches the HNSW scan: it returns at most 3 rows (no iterative scan).
    assert len(repo.search(np.ones(DIM), k=10, ef_search=3)) <= 3
    assert len(repo.search(np.ones(DIM), k=10, ef_search=3, iterative_scan="relaxed_order")) == 10
    with db.engine.connect() as conn:  # the same pooled connection afterwards: defaults again
        assert conn.execute(text("SHOW hnsw.ef_search")).scalar() == "40"
        assert conn.execute(text("SHOW hnsw.iterative_scan")).scalar() == "off"
    with Session(db.engine) as session:  # the caller's transaction: restored right after the query
        Repository(item, session, metric="l2").search(np.ones(DIM), k=5, ef_search=200, probes=7)
        assert session.execute(text("SHOW hnsw.ef_search")).scalar() == "40"
        assert session.execute(text("SHOW ivfflat.probes")).scalar() == "1"
    with pytest.raises(vectorpg.InvalidArgumentError):
        repo.search(np.ones(DIM), k=5, iterative_scan="sideways")
    with pytest.raises(vectorpg.InvalidArgumentError):
        repo.search(np.ones(DIM), k=5, ef_search=0)
    db.close()


def test_failed_concurrent_build_leaves_invalid_index_detected_and_rebuilt(db: vectorpg.Database) -> None:
    base, item = model_with(None)
    base.metadata.create_all(db.engine)
    rng = np.random.default_rng(5)
    Repository(item, db).add(
        {"id": i, "category": "x", "embedding": v} for i, v in enumerate(data_for("vector", 5_000, rng))
    )
    index = vector_index(item.embedding, HNSW(), metric="l2", name="items_l2_idx")
    with pytest.raises(vectorpg.IndexBuildError, match="INVALID") as info:
        create_vector_index(db, item, index, concurrently=True, settings={"statement_timeout": "5ms"})
    assert info.value.invalid and info.value.name == index.name == "items_l2_idx"
    with db.engine.connect() as conn:
        (found,) = list_vector_indexes(conn, item.__table__)
        assert not found.valid
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"  # the build's setting did not leak
    with pytest.raises(vectorpg.IndexBuildError, match="reindex_vector_index"):
        create_vector_index(db, item, index)
    reindex_vector_index(db, item, index.name)
    with db.engine.connect() as conn:
        assert list_vector_indexes(conn, item.__table__)[0].valid
    assert drop_vector_index(db, item, index.name, concurrently=True) is True
    assert drop_vector_index(db, item, index.name) is False


def test_quantization_enum_values() -> None:
    assert {q.value for q in Quantization} == {"none", "halfvec", "binary"}


def test_auto_strategy_never_returns_short_under_a_selective_filter(db: vectorpg.Database) -> None:
    """An HNSW scan filters after taking its ef_search nearest rows: with 1% of rows matching, the index
    alone returns fewer than k rows. ``strategy="auto"`` re-runs such a query exactly."""
    declared = vector_index("embedding", HNSW(), metric="l2")
    base, item = model_with(declared)
    base.metadata.create_all(db.engine)
    rng = np.random.default_rng(6)
    data = data_for("vector", 5000, rng)
    repo = Repository(item, db, metric="l2")
    repo.add({"id": i, "category": "rare" if i % 100 == 0 else "common", "embedding": v} for i, v in enumerate(data))
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE items"))
    query = np.zeros(DIM)
    rare = item.category == "rare"
    ann = repo.search(query, k=10, where=rare, strategy="ann", iterative_scan="off")
    auto = repo.search(query, k=10, where=rare)
    exact = repo.search(query, k=10, where=rare, strategy="exact")
    assert len(ann) < 10  # the measured problem
    assert [r.id for r, _ in auto] == [r.id for r, _ in exact]
    rare_ids = np.arange(0, 5000, 100)
    expected = rare_ids[np.argsort(np.linalg.norm(data[rare_ids], axis=1))[:10]]
    assert [r.id for r, _ in exact] == expected.tolist()
    with pytest.raises(vectorpg.InvalidArgumentError):
        repo.search(query, k=10, strategy="fastest")


def test_collection_auto_strategy_fills_k(db: vectorpg.Database) -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(size=(5000, 32)).astype(np.float32)
    docs = db.collection("skewed", dimension=32)
    docs.add(vectors=data, metadata=[{"rare": i % 100 == 0} for i in range(len(data))])
    docs.create_index(HNSW())
    assert len(docs.search(data[0], k=10, where={"rare": True}, strategy="ann", iterative_scan="off")) < 10
    hits = docs.search(data[0], k=10, where={"rare": True})
    assert len(hits) == 10 and all(h.metadata["rare"] for h in hits)
    assert [h.id for h in hits] == [h.id for h in docs.search(data[0], k=10, where={"rare": True}, strategy="exact")]


def test_default_knobs_fit_the_index(db: vectorpg.Database) -> None:
    """k above ef_search still returns k rows from HNSW; IVFFlat probes default to sqrt(lists)."""
    from vectorpg.search.statements import QueryOptions, settings_for

    hnsw = vector_index("embedding", HNSW(), metric="l2", dimension=DIM)
    base, item = model_with(hnsw)
    base.metadata.create_all(db.engine)
    rng = np.random.default_rng(8)
    repo = Repository(item, db, metric="l2")
    repo.add({"id": i, "category": "x", "embedding": v} for i, v in enumerate(data_for("vector", 3000, rng)))
    assert len(repo.search(np.ones(DIM), k=100, strategy="ann")) == 100  # ef_search raised from 40 to 100
    ivf = vector_index("embedding", IVFFlat(lists=64), metric="l2", dimension=DIM).info["vectorpg"]
    assert settings_for(ivf, QueryOptions(), 10) == {"ivfflat.probes": "8"}
    assert settings_for(ivf, QueryOptions(probes=3), 10) == {"ivfflat.probes": "3"}
    assert settings_for(hnsw.info["vectorpg"], QueryOptions(ef_search=300), 100) == {"hnsw.ef_search": "300"}


def test_exact_is_exact_with_an_undeclared_index(db: vectorpg.Database) -> None:
    """An index created outside the model must not turn strategy='exact' into an index scan."""
    base, item = model_with(None)
    base.metadata.create_all(db.engine)
    repo = Repository(item, db, metric="l2")
    rng = np.random.default_rng(9)
    repo.add({"id": i, "category": "x", "embedding": v} for i, v in enumerate(data_for("vector", 3000, rng)))
    create_vector_index(db, item, vector_index(item.embedding, HNSW(m=4, ef_construction=8), metric="l2"))
    plan = repo.explain(np.zeros(DIM), k=10, strategy="exact")
    assert plan.strategy == "exact" and "hnsw" not in plan.plan.lower() and "items_embedding_l2_idx" not in plan.plan

"""Recall you can ask for: tune() finds and stores ef_search / probes, search() applies them, recall() measures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import Integer, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import HNSW, IVFFlat, Repository, vector_column, vector_index
from vectorpg.search import tuning as tuning_module

DIM = 64


def make_model(method: Any) -> tuple[Any, Any]:
    class Base(DeclarativeBase):
        pass

    class Point(Base):
        __tablename__ = "points"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        embedding: Mapped[Any] = vector_column(DIM)
        __table_args__ = (vector_index("embedding", method, metric="l2", dimension=DIM),)

    return Base, Point


def hard_data(n: int, seed: int) -> np.ndarray:
    """Weakly clustered 64-d data: hard enough that HNSW's default ef_search misses neighbours."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, DIM))
    return (centers[rng.integers(0, 10, n)] + 1.5 * rng.normal(size=(n, DIM))).astype(np.float32)


def loaded(db: vectorpg.Database, method: Any) -> tuple[Repository[Any], Any]:
    base, point = make_model(method)
    base.metadata.create_all(db.engine)
    repo = Repository(point, db, metric="l2")
    repo.add({"id": i, "embedding": v} for i, v in enumerate(hard_data(8000, 1)))
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE points"))
    return repo, point


def test_tune_hnsw_stores_and_every_repository_applies_it(db: vectorpg.Database) -> None:
    repo, point = loaded(db, HNSW(m=8, ef_construction=32))
    before = vectorpg.recall(repo, k=10, sample=40)
    result = vectorpg.tune(repo, target=0.98, k=10, sample=40)
    assert result.knob == "ef_search" and result.met and result.recall >= 0.98
    assert result.tried[-1] == (result.value, result.recall)
    assert all(r < 0.98 for _, r in result.tried[:-1])  # the smallest value that meets the target
    assert result.value > 40 and before < 0.98  # the default was not enough on this data
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT knob, value, target FROM vectorpg.index_tuning")).all()
    assert stored == [("ef_search", result.value, 0.98)]
    tuning_module._cache.clear()  # as a new process would
    fresh = Repository(point, db, metric="l2")
    plan = fresh.explain(np.zeros(DIM), k=10, recall=0.98)
    assert plan.settings["hnsw.ef_search"] == str(result.value)
    assert fresh.explain(np.zeros(DIM), k=10, recall=0.98, ef_search=7).settings["hnsw.ef_search"] == "7"
    assert vectorpg.recall(fresh, k=10, sample=40, recall=0.98) >= 0.95
    with pytest.raises(vectorpg.InvalidArgumentError, match="tune"):
        fresh.search(np.zeros(DIM), k=10, recall=0.999)


def test_tune_ivfflat_probes(db: vectorpg.Database) -> None:
    repo, _ = loaded(db, IVFFlat(lists=40))
    result = vectorpg.tune(repo, target=0.95, k=10, sample=30)
    assert result.knob == "probes" and 1 <= result.value <= 40 and result.met
    assert result.recall >= 0.95


def test_collection_tune_and_recall(db: vectorpg.Database) -> None:
    docs = db.collection("tuned", dimension=DIM, metric="l2")
    docs.add(vectors=hard_data(5000, 2))
    with pytest.raises(vectorpg.InvalidArgumentError, match="no vector index"):
        docs.tune()
    docs.create_index(HNSW(m=8, ef_construction=32))
    result = docs.tune(0.97, sample=30)
    assert result.met and result.index == docs.indexes()[0].name
    assert docs.recall(sample=30) >= 0.9


def test_bad_tuning_arguments(db: vectorpg.Database) -> None:
    base, point = make_model(HNSW())
    base.metadata.create_all(db.engine)  # the arguments are checked before any row is read
    repo = Repository(point, db, metric="l2")
    for kwargs in ({"target": 0}, {"target": 1.5}, {"k": 0}, {"sample": 0}):
        with pytest.raises(vectorpg.InvalidArgumentError):
            vectorpg.tune(repo, **kwargs)


def test_tuned_value_is_a_default_not_a_cap(db: vectorpg.Database) -> None:
    """A tuned ef_search below k must not cut results short: it is raised to k like the built-in default.
    A tuned value below pgvector's default 40 is not used (search v2: tuning on a sample overestimates
    the recall of new queries at small ef_search), a larger one replaces the default."""
    from vectorpg.search.statements import QueryOptions, settings_for

    spec = vector_index("embedding", HNSW(), metric="l2", dimension=DIM).info["vectorpg"]
    tuned = QueryOptions(tuned_ef_search=20)
    assert settings_for(spec, tuned, 10) == {}  # pgvector's 40 stands
    assert settings_for(spec, QueryOptions(tuned_ef_search=60), 10) == {"hnsw.ef_search": "60"}
    assert settings_for(spec, tuned, 50) == {"hnsw.ef_search": "50"}
    assert settings_for(spec, QueryOptions(ef_search=5, tuned_ef_search=20), 50) == {"hnsw.ef_search": "5"}


def held_out(n: int, seed: int) -> np.ndarray:
    """New points from the distribution of ``hard_data(..., 1)`` (the same centres, other draws)."""
    centers = np.random.default_rng(1).normal(size=(10, DIM))
    rng = np.random.default_rng(seed)
    return (centers[rng.integers(0, 10, n)] + 1.5 * rng.normal(size=(n, DIM))).astype(np.float32)


def test_tune_on_the_applications_own_queries(db: vectorpg.Database) -> None:
    repo, _ = loaded(db, HNSW(m=8, ef_construction=32))
    # 200 queries each: a sample of 60 had left a 0.97 tuning at 0.948 on the other sample once (noise)
    logged, fresh = held_out(200, seed=5), held_out(200, seed=6)
    result = repo.tune(0.97, queries=logged)
    assert result.met and result.recall >= 0.97
    assert result.tried[-1] == (result.value, result.recall)
    assert all(r < 0.97 for _, r in result.tried[:-1])  # the smallest value that meets the target there
    # the value found on one sample of real queries holds for other real queries
    assert repo.recall(queries=fresh, recall=0.97) >= 0.95
    assert vectorpg.recall(repo, queries=fresh, ef_search=10) < repo.recall(queries=fresh, ef_search=result.value)
    with pytest.raises(vectorpg.InvalidArgumentError, match="1 to 10000"):
        repo.tune(0.97, queries=[])
    with pytest.raises(vectorpg.VectorPgError, match="dimension"):
        repo.tune(0.97, queries=[np.zeros(DIM + 1)])
    with pytest.raises(vectorpg.InvalidArgumentError, match="embedder"):
        vectorpg.tune(repo, 0.97, queries=["a text query"])

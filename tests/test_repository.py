"""Repository over an application's own models, on the real server, for every metric and vector type; the
tests that take ``face`` run through the sync API and the async one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pgvector
import pytest
from psycopg.adapt import PyFormat
from psycopg.pq import Format
from sqlalchemy import Integer, String, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from tests.fix_aio import Face
from vectorpg import Repository, vector_column
from vectorpg.db.writes import COPY_THRESHOLD

# Every (vector type, metric) pair pgvector supports.
PAIRS = [
    (vtype, metric)
    for vtype in ("vector", "halfvec", "sparsevec")
    for metric in ("l2", "inner_product", "cosine", "l1")
] + [("bit", "hamming"), ("bit", "jaccard")]

DIM = 24


def make_model(vector_type: str = "vector", dimension: int = DIM) -> tuple[type[DeclarativeBase], Any]:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        category: Mapped[str] = mapped_column(String(20))
        embedding: Mapped[Any] = vector_column(dimension, vector_type)

    return Base, Item


def random_vectors(vector_type: str, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    if vector_type == "bit":
        bits = rng.random((n, dim)) < 0.5
        bits[:, 0] = True  # no all-zero rows (jaccard is undefined there)
        return bits
    data = rng.normal(size=(n, dim)).astype(np.float32)
    if vector_type == "sparsevec":
        data[rng.random((n, dim)) < 0.6] = 0.0
        data[:, 0] = np.where(data[:, 0] == 0, 1.0, data[:, 0])
    return data


def numpy_distances(data: np.ndarray, query: np.ndarray, metric: str, vector_type: str) -> np.ndarray:
    if vector_type == "bit":
        a, q = data.astype(bool), query.astype(bool)
        if metric == "hamming":
            return (a != q).sum(axis=1).astype(float)
        inter = (a & q).sum(axis=1)
        union = (a | q).sum(axis=1)
        return 1.0 - inter / union
    if vector_type == "halfvec":  # the server stores float16
        data, query = data.astype(np.float16), query.astype(np.float16)
    a, q = data.astype(np.float64), query.astype(np.float64)
    if metric == "l2":
        return np.sqrt(((a - q) ** 2).sum(axis=1))
    if metric == "inner_product":
        return -(a @ q)
    if metric == "l1":
        return np.abs(a - q).sum(axis=1)
    return 1.0 - (a @ q) / (np.linalg.norm(a, axis=1) * np.linalg.norm(q))


@pytest.mark.parametrize(("vector_type", "metric"), PAIRS, ids=[f"{v}-{m}" for v, m in PAIRS])
def test_exact_search_equals_numpy_top_k(face: Face, db: vectorpg.Database, vector_type: str, metric: str) -> None:
    base, item = make_model(vector_type)
    base.metadata.create_all(db.engine)
    repo = face.repository(item, metric=metric)
    rng = np.random.default_rng(42)
    data = random_vectors(vector_type, 300, DIM, rng)
    categories = np.array(["a", "b", "c"])[rng.integers(0, 3, 300)]
    written = repo.add({"id": i, "category": str(categories[i]), "embedding": data[i]} for i in range(len(data)))
    assert written == 300 and repo.count() == 300

    for trial in range(3):
        query = random_vectors(vector_type, 1, DIM, rng)[0]
        where = item.category == "b" if trial == 2 else None
        hits = repo.search(query, k=10, where=where)
        expected = numpy_distances(data, query, metric, vector_type)
        allowed = np.flatnonzero(categories == "b") if where is not None else np.arange(len(data))
        best = np.sort(expected[allowed])[:10]
        got_ids = [row.id for row, _ in hits]
        got = np.array([d for _, d in hits])
        assert len(hits) == 10
        # Each returned distance is that row's true distance, and together they are the k smallest.
        np.testing.assert_allclose(got, expected[got_ids], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(got, best, rtol=2e-3, atol=2e-3)
        if where is not None:
            assert {row.category for row, _ in hits} == {"b"}


def test_search_returns_model_rows_nearest_first(face: Face, db: vectorpg.Database) -> None:
    base, item = make_model(dimension=3)
    base.metadata.create_all(db.engine)
    repo = face.repository(item, metric="l2")
    repo.add([item(id=1, category="x", embedding=[1, 0, 0]), item(id=2, category="y", embedding=[0, 1, 0])])
    hits = repo.search([0.9, 0.1, 0], k=5)
    assert [type(row) for row, _ in hits] == [item, item]
    assert [row.id for row, _ in hits] == [1, 2]
    assert hits[0][1] < hits[1][1]
    assert isinstance(hits[0][0].embedding, np.ndarray)
    np.testing.assert_allclose(hits[0][0].embedding, [1, 0, 0])
    assert repo.search([0.9, 0.1, 0], k=5, where=[item.category == "y"])[0][0].id == 2
    # metric override per query
    assert repo.search([0.0, 5.0, 0], k=1, metric="inner_product")[0][0].id == 2


def test_add_get_upsert_delete_count(face: Face, db: vectorpg.Database) -> None:
    base, item = make_model(dimension=3)
    base.metadata.create_all(db.engine)
    repo = face.repository(item)
    assert repo.add({"id": 1, "category": "a", "embedding": [1, 2, 3]}) == 1
    assert [r.category for r in repo.get([1])] == ["a"]
    assert repo.get([99]) == []
    with pytest.raises(vectorpg.DuplicateIdError):
        repo.add({"id": 1, "category": "b", "embedding": [1, 2, 3]})
    assert (
        repo.upsert(
            [
                {"id": 1, "category": "b", "embedding": [3, 2, 1]},
                {"id": 2, "category": "c", "embedding": [1, 1, 1]},
            ]
        )
        == 2
    )
    assert repo.count() == 2
    (got,) = repo.get([1])
    assert got.category == "b"
    np.testing.assert_allclose(got.embedding, [3, 2, 1])
    assert [r.id for r in repo.get([2, 3, 1])] == [2, 1]  # in the order asked, missing keys left out
    assert repo.count(item.category == "c") == 1
    assert repo.delete([1, 3]) == 1
    assert repo.count() == 1
    repo.add([{"id": 5, "category": "c", "embedding": [1, 0, 0]}, {"id": 6, "category": "d", "embedding": [0, 1, 0]}])
    assert repo.delete(where=item.category == "c") == 2
    assert [r.id for r in repo.get([6, 2, 5])] == [6]
    with pytest.raises(vectorpg.InvalidArgumentError, match="where=\\[\\]"):
        repo.delete()
    assert repo.delete(where=[]) == 1 and repo.count() == 0


def test_the_0_1_spellings_still_work_with_a_deprecation_warning(db: vectorpg.Database) -> None:
    base, item = make_model(dimension=3)
    base.metadata.create_all(db.engine)
    with pytest.warns(DeprecationWarning, match="vector_attribute"):
        repo = Repository(item, db, vector_column="embedding")
    with pytest.warns(DeprecationWarning, match="add_many"):
        assert repo.add_many([{"id": 1, "category": "a", "embedding": [1, 2, 3]}]) == 1
    with pytest.warns(DeprecationWarning, match="get\\(\\[id\\]\\)"):
        assert repo.get(1).category == "a"  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="get\\(\\[id\\]\\)"):
        assert repo.get(99) is None  # type: ignore[comparison-overlap]
    with pytest.warns(DeprecationWarning, match="get_many"):
        assert [r.id for r in repo.get_many([1, 7])] == [1]


@pytest.mark.parametrize("size", [COPY_THRESHOLD - 1, COPY_THRESHOLD, 1000])
def test_bulk_paths_store_the_same_values(face: Face, db: vectorpg.Database, size: int) -> None:
    """Below the threshold rows go through INSERT, from it through binary COPY; both store exactly."""
    base, item = make_model()
    base.metadata.create_all(db.engine)
    repo = face.repository(item)
    rng = np.random.default_rng(size)
    data = rng.normal(size=(size, DIM)).astype(np.float32)
    repo.add({"id": i, "category": "c", "embedding": data[i]} for i in range(size))
    data2 = data + 1
    repo.upsert({"id": i, "category": "u", "embedding": data2[i]} for i in range(size))
    with Session(db.engine) as session:
        rows = session.execute(select(item.id, item.category, item.embedding).order_by(item.id)).all()
    assert len(rows) == size
    assert {r.category for r in rows} == {"u"}
    np.testing.assert_array_equal(np.stack([r.embedding for r in rows]), data2)


def test_duplicate_ids_in_one_batch_are_a_clear_error(face: Face, db: vectorpg.Database) -> None:
    base, item = make_model(dimension=2)
    base.metadata.create_all(db.engine)
    repo = face.repository(item)
    rows = [{"id": i % 150, "category": "x", "embedding": [1, i]} for i in range(200)]
    for write in (repo.add, repo.upsert):
        with pytest.raises(vectorpg.DuplicateIdError) as info:
            write(rows)
        assert "rows 0 and 150" in str(info.value)
        assert 0 in info.value.ids
    assert repo.count() == 0


def test_large_add_with_an_existing_id_writes_nothing(face: Face, db: vectorpg.Database) -> None:
    base, item = make_model(dimension=2)
    base.metadata.create_all(db.engine)
    repo = face.repository(item)
    repo.add({"id": 500, "category": "x", "embedding": [1, 1]})
    with pytest.raises(vectorpg.DuplicateIdError, match="already exists"):
        repo.add({"id": i, "category": "x", "embedding": [1, i]} for i in range(1000))
    assert repo.count() == 1


def test_session_bound_repository_joins_the_callers_transaction(db: vectorpg.Database) -> None:
    base, item = make_model(dimension=2)
    base.metadata.create_all(db.engine)
    with Session(db.engine) as session:
        repo = Repository(item, session)
        repo.add([{"id": 1, "category": "x", "embedding": [1, 0]}])
        assert repo.count() == 1  # visible inside the transaction
        session.rollback()
    assert Repository(item, db).count() == 0
    with Session(db.engine) as session:
        repo = Repository(item, session)
        repo.add([{"id": 1, "category": "x", "embedding": [1, 0]}])
        with pytest.raises(vectorpg.InvalidVectorError):  # a bad batch rolls back only its savepoint
            repo.add([{"id": 2, "category": "x", "embedding": [np.nan, 0]}])
        session.commit()
    assert Repository(item, db).count() == 1


def test_query_vector_is_sent_in_binary(db: vectorpg.Database) -> None:
    base, item = make_model(dimension=3)
    base.metadata.create_all(db.engine)
    repo = Repository(item, db)
    repo.add({"id": 1, "category": "x", "embedding": [1, 2, 3]})
    seen: list[Any] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters, cursor.connection))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        repo.search([1, 2, 3], k=1)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    statement, parameters, raw = next(s for s in seen if "ORDER BY" in s[0])
    values = list(parameters.values())
    vector = next(v for v in values if isinstance(v, pgvector.Vector))
    assert "[1" not in statement  # the vector is a parameter, not SQL text
    dumper = raw.adapters.get_dumper(type(vector), PyFormat.AUTO)
    assert dumper.format == Format.BINARY


def test_text_query_needs_an_embedder(face: Face, db: vectorpg.Database, hash_embedder: Any) -> None:
    base, item = make_model(dimension=32)
    base.metadata.create_all(db.engine)
    with pytest.raises(vectorpg.InvalidArgumentError, match="embedder"):
        face.repository(item).search("hello", k=1)
    repo = face.repository(item, embedder=hash_embedder)
    repo.add({"id": 1, "category": "x", "embedding": hash_embedder.embed(["hello world"])[0]})
    assert repo.search("hello", k=1)[0][0].id == 1


def test_constructing_a_repository_runs_no_sql(db: vectorpg.Database) -> None:
    _, item = make_model()
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    Repository(item, db)
    assert statements == []


def test_model_with_two_vector_columns_needs_a_choice() -> None:
    class Base(DeclarativeBase):
        pass

    class Two(Base):
        __tablename__ = "two"
        id: Mapped[int] = mapped_column(primary_key=True)
        a: Mapped[Any] = vector_column(3)
        b: Mapped[Any] = vector_column(3, "halfvec")

    with pytest.raises(vectorpg.InvalidArgumentError, match="vector_attribute"):
        Repository(Two, None)  # type: ignore[arg-type]  # refused before any SQL
    with pytest.raises(vectorpg.UnsupportedMetricError):
        Repository(Two, None, vector_attribute="b", metric="hamming")  # type: ignore[arg-type]


def test_applications_own_engine(db: vectorpg.Database) -> None:
    """A plain create_engine() works (vector types registered on first use), and forced strategies stay
    what they say even after psycopg starts preparing the repeated statement (its default: 5 runs)."""
    from sqlalchemy import create_engine, text

    base, item = make_model(dimension=8)
    engine = create_engine(db.engine.url.render_as_string(hide_password=False))
    base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)"))
    repo = Repository(item, engine, metric="l2")
    rng = np.random.default_rng(5)
    data = rng.normal(size=(3000, 8)).astype(np.float32)
    repo.add({"id": i, "category": "rare" if i % 300 == 0 else "x", "embedding": v} for i, v in enumerate(data))
    rare = item.category == "rare"
    query = np.zeros(8)
    for _ in range(8):  # the statement text repeats: psycopg prepares it from the 5th run on
        repo.search(query, k=10, where=rare, index=None, strategy="exact")
    exact = repo.search(query, k=10, where=rare, strategy="exact")
    ids = np.arange(0, 3000, 300)
    assert [r.id for r, _ in exact] == ids[np.argsort(np.linalg.norm(data[ids], axis=1))].tolist()
    engine.dispose()

"""The store API: collections of texts or vectors with JSON metadata, on the built-in partitioned schema; each
test runs through the sync API and the async one (``face``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

import vectorpg
from tests.fix_aio import Face
from tests.fix_embedders import HashEmbedder
from vectorpg.store.embedding_cache import content_hash

TEXTS = [
    "PostgreSQL stores vectors with pgvector",
    "cats sleep most of the day",
    "dogs like to play fetch",
    "vectors are compared by cosine distance",
]


def test_add_search_get_delete_count(face: Face, hash_embedder: HashEmbedder) -> None:
    docs = face.collection("articles", embedder=hash_embedder)
    assert docs.dimension == hash_embedder.dimension
    ids = docs.add(TEXTS, metadata=[{"lang": "en", "n": i} for i in range(4)], ids=["a", "b", "c", "d"])
    assert ids == ["a", "b", "c", "d"] and docs.count() == 4
    hits = docs.search("cats sleep", k=2)
    assert hits[0].id == "b" and hits[0].content == TEXTS[1] and hits[0].metadata == {"lang": "en", "n": 1}
    assert hits[0].distance <= hits[1].distance
    assert [h.id for h in docs.search("cats sleep", k=4, where={"n": {"$gte": 2}})] in (
        ["c", "d"],
        ["d", "c"],
    )
    got = docs.get(["d", "nope", "a"])
    assert [d.id for d in got] == ["d", "a"] and got[0].embedding.shape == (hash_embedder.dimension,)
    assert docs.delete(["a", "nope"]) == 1
    assert docs.delete(where={"n": 3}) == 1
    assert docs.count() == 2
    assert docs.delete(where={}) == 2 and docs.count() == 0
    with pytest.raises(vectorpg.InvalidArgumentError):
        docs.delete()


def test_generated_ids_are_unique(face: Face, hash_embedder: HashEmbedder) -> None:
    docs = face.collection("gen", embedder=hash_embedder)
    ids = docs.add(TEXTS)
    assert len(set(ids)) == 4 and docs.count() == 4


def test_exact_search_equals_numpy(face: Face) -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(size=(500, 16)).astype(np.float32)
    for metric in ("cosine", "l2", "inner_product", "l1"):
        docs = face.collection(f"m_{metric}", dimension=16, metric=metric)
        docs.add(vectors=data, ids=[str(i) for i in range(len(data))])
        query = rng.normal(size=16)
        spec = vectorpg.metric_spec(metric)
        a = data.astype(np.float64)
        expected = {
            "cosine": 1 - (a @ query) / (np.linalg.norm(a, axis=1) * np.linalg.norm(query)),
            "l2": np.linalg.norm(a - query, axis=1),
            "inner_product": -(a @ query),
            "l1": np.abs(a - query).sum(axis=1),
        }[spec.metric.value]
        hits = docs.search(query, k=10)
        assert [int(h.id) for h in hits] == list(np.argsort(expected)[:10])
        np.testing.assert_allclose([h.distance for h in hits], np.sort(expected)[:10], rtol=1e-4, atol=1e-4)


def test_unchanged_text_is_not_embedded_again(face: Face, db: vectorpg.Database, hash_embedder: HashEmbedder) -> None:
    docs = face.collection("cache", embedder=hash_embedder)
    docs.add(TEXTS, ids=["a", "b", "c", "d"], metadata=[{"v": 1}] * 4)
    assert hash_embedder.texts_embedded == 4
    docs.upsert(TEXTS, ids=["a", "b", "c", "d"], metadata=[{"v": 1}] * 4)
    assert hash_embedder.texts_embedded == 4  # nothing changed: nothing embedded, nothing written
    before = {d.id: d.updated_at for d in docs.get(["a", "b", "c", "d"])}
    docs.upsert(
        [*TEXTS[:3], "a brand new text"],
        ids=["a", "b", "c", "d"],
        metadata=[{"v": 1}, {"v": 2}, {"v": 1}, {"v": 1}],
    )
    assert hash_embedder.texts_embedded == 5  # only the changed text
    after = {d.id: d for d in docs.get(["a", "b", "c", "d"])}
    assert after["a"].updated_at == before["a"]
    assert after["b"].metadata == {"v": 2} and after["b"].updated_at > before["b"]
    assert after["d"].content == "a brand new text"
    np.testing.assert_allclose(after["d"].embedding, hash_embedder.embed(["a brand new text"])[0], rtol=1e-6)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT content_hash FROM vectorpg.documents WHERE id = 'd'")).scalar()
    assert stored == content_hash("a brand new text")


def test_add_inserts_and_upsert_replaces(face: Face, hash_embedder: HashEmbedder) -> None:
    docs = face.collection("verbs", embedder=hash_embedder)
    assert docs.add(["one", "two"], ids=["a", "b"]) == ["a", "b"]
    with pytest.warns(DeprecationWarning, match=r"replaced 1 existing document\(s\) \('a'"):
        docs.add(["one again"], ids=["a"])  # 0.1's add-or-replace, for one more release
    assert [d.content for d in docs.get(["a"])] == ["one again"]
    assert docs.upsert(["one, once more"], ids=["a"]) == ["a"]  # no warning: the suite errors on one
    assert [d.content for d in docs.get(["b", "a"])] == ["two", "one, once more"]
    assert docs.add(["three"]) and docs.count() == 3  # new ids: nothing to replace, no warning


def test_texts_with_precomputed_vectors(face: Face) -> None:
    docs = face.collection("pre", dimension=3)
    docs.add(["x", "y"], vectors=[[1, 0, 0], [0, 1, 0]], ids=["x", "y"])
    assert docs.search([0, 1, 0], k=1)[0].content == "y"
    with pytest.raises(vectorpg.InvalidArgumentError, match="no embedder"):
        docs.search("text needs an embedder", k=1)


def test_each_collection_is_a_partition_with_a_dimension_check(face: Face, db: vectorpg.Database) -> None:
    face.collection("small", dimension=3).add(vectors=[[1, 2, 3]])
    face.collection("big", dimension=5).add(vectors=[[1, 2, 3, 4, 5]])
    assert face.collections() == ["big", "small"]
    with db.engine.connect() as conn:
        parts = conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'vectorpg.documents'::regclass ORDER BY 1"
            )
        ).all()
        assert parts == [
            ("documents_big", "FOR VALUES IN ('big')"),
            ("documents_small", "FOR VALUES IN ('small')"),
        ]
        # Raw SQL cannot put a wrong-dimension vector into a collection either.
        with pytest.raises(Exception, match="embedding_dimension"):
            conn.execute(
                text("INSERT INTO vectorpg.documents (collection, id, embedding) VALUES ('small', 'z', '[1,2]')")
            )
    # A query for one collection reads only its partition.
    with db.engine.connect() as conn:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                text(
                    "EXPLAIN SELECT id FROM vectorpg.documents WHERE collection = 'small' "
                    "ORDER BY embedding <-> '[1,2,3]' LIMIT 1"
                )
            )
        )
    assert "documents_small" in plan and "documents_big" not in plan
    assert face.drop_collection("small") is True and face.drop_collection("small") is False
    assert face.collections() == ["big"]


def test_reopening_checks_dimension_metric_and_embedder(face: Face, hash_embedder: HashEmbedder) -> None:
    face.collection("notes", embedder=hash_embedder, metric="l2")
    again = face.collection("notes", embedder=hash_embedder)
    assert again.metric.metric.value == "l2" and again.embedder is hash_embedder
    with pytest.raises(vectorpg.CollectionMismatchError, match="dimension"):
        face.collection("notes", dimension=7)
    with pytest.raises(vectorpg.CollectionMismatchError, match="metric"):
        face.collection("notes", metric="cosine")
    with pytest.raises(vectorpg.CollectionMismatchError, match="embedder") as info:
        face.collection("notes", embedder=HashEmbedder(name="other-model"))
    assert info.value.recorded == "hash-embedder" and info.value.requested == "other-model"
    # Opened without its embedder, vectors still work and text says what is missing.
    bare = face.collection("notes")
    assert bare.embedder is None and bare.embedder_name == "hash-embedder"
    with pytest.raises(vectorpg.InvalidArgumentError, match="hash-embedder"):
        bare.add(["text"])


def test_missing_collection_without_create(face: Face) -> None:
    with pytest.raises(vectorpg.CollectionNotFoundError):
        face.collection("ghost", dimension=3, create=False)
    assert face.collections() == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dimension": 0}, vectorpg.InvalidArgumentError),
        ({"dimension": 20_000}, vectorpg.InvalidArgumentError),
        ({"dimension": 3, "metric": "hamming"}, vectorpg.UnsupportedMetricError),
        ({"dimension": 3, "metric": "nope"}, vectorpg.UnknownMetricError),
        ({"dimension": 3, "embedder": "some-model"}, vectorpg.InvalidArgumentError),
        ({"embedder": None}, vectorpg.InvalidArgumentError),
    ],
)
def test_bad_collection_options(face: Face, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        face.collection("bad", **kwargs)
    assert face.collections() == []


def test_bad_texts_and_queries(face: Face, hash_embedder: HashEmbedder) -> None:
    docs = face.collection("texts", embedder=hash_embedder)
    for bad, row in ((["ok", ""], 1), (["ok", "   "], 1), (["ok", None], 1), (["a\x00b"], 0), (["ok", 3], 1)):
        with pytest.raises(vectorpg.InvalidInputError) as info:
            docs.add(bad)  # type: ignore[arg-type]
        assert info.value.row == row
    with pytest.raises(vectorpg.InvalidInputError):
        docs.add("a single string")  # type: ignore[arg-type]
    for k in (0, -5):
        with pytest.raises(vectorpg.InvalidArgumentError):
            docs.search("x", k=k)
    with pytest.raises(vectorpg.DimensionMismatchError):
        docs.search([1.0, 2.0], k=1)
    with pytest.raises(vectorpg.InvalidVectorError):
        docs.search([0.0] * hash_embedder.dimension, k=1)  # zero vector under cosine
    assert docs.count() == 0


def test_embedder_returning_nan_names_the_row(face: Face) -> None:
    class Broken(HashEmbedder):
        def embed(self, texts: Any) -> np.ndarray:
            out = super().embed(texts)
            out[2, 0] = np.nan
            return out

    docs = face.collection("broken", embedder=Broken())
    with pytest.raises(vectorpg.InvalidVectorError, match="embedder returned a bad vector for row 2"):
        docs.add(["one", "two", "three", "four"])
    assert docs.count() == 0


def test_id_lists_larger_than_the_parameter_limit(face: Face) -> None:
    """PostgreSQL takes at most 65,535 parameters per statement: id lists travel as one array."""
    embedder = HashEmbedder(dimension=8)
    docs = face.collection("many", embedder=embedder)
    n = 70_000
    ids = [f"doc{i}" for i in range(n)]
    texts = [f"text number {i}" for i in range(n)]
    docs.add(texts, ids=ids)
    docs.upsert(texts, ids=ids)  # the unchanged-content check reads 70,000 stored hashes at once
    assert embedder.texts_embedded == n
    assert len(docs.get(ids)) == n
    assert docs.delete(ids[::2]) == n // 2 and docs.count() == n // 2


def test_json_filters_are_served_by_a_gin_index(face: Face, db: vectorpg.Database) -> None:
    docs = face.collection("gin", dimension=2)
    docs.add(vectors=[[1.0, float(i)] for i in range(3000)], metadata=[{"n": i % 500} for i in range(3000)])
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE vectorpg.documents_gin"))
        names = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'documents_gin'")).scalars().all()
    assert any("metadata" in n for n in names)
    plan = docs.explain([1.0, 0.0], k=3, where={"n": 7})
    assert plan.strategy == "exact" and "Bitmap Index Scan on documents_gin_metadata_idx" in plan.plan, plan.plan


def test_get_pages_through_a_filter_and_scan_reads_everything(face: Face) -> None:
    docs = face.collection("pages", dimension=2, embedder=None)
    ids = [f"d{i:03d}" for i in range(250)]
    docs.add(vectors=[[1.0, float(i)] for i in range(250)], ids=ids, metadata=[{"n": i % 10} for i in range(250)])
    threes = [i for n, i in enumerate(ids) if n % 10 == 3]
    first = docs.get(where={"n": 3}, limit=10)
    assert [d.id for d in first] == threes[:10] and first[0].metadata == {"n": 3}
    assert [d.id for d in docs.get(where={"n": 3}, limit=10, after=first[-1].id)] == threes[10:20]
    assert [d.id for d in docs.get(limit=1000, after="d240")] == ids[241:]
    assert docs.get(["d007", "nope", "d001"])[0].id == "d007"
    for bad in ({"where": {"n": 3}}, {"limit": 0}, {"limit": 10**6}, {"limit": True}):
        with pytest.raises(vectorpg.InvalidArgumentError):
            docs.get(**bad)
    with pytest.raises(vectorpg.InvalidArgumentError, match="limit= and after="):
        docs.get(["d001"], limit=5)
    if face.api == "sync":  # the async scan is an async iterator (tests/test_aio.py)
        assert [d.id for d in docs.scan(batch_size=7)] == ids
        assert [d.id for d in docs.scan({"n": {"$in": [3, 4]}}, batch_size=4)] == [
            i for n, i in enumerate(ids) if n % 10 in (3, 4)
        ]


def test_like_between_and_contains_filters(face: Face) -> None:
    docs = face.collection("ops", dimension=2, embedder=None)
    meta = [
        {"title": "PostgreSQL vectors", "year": 2019, "tags": ["db", "vectors"]},
        {"title": "postgres tips", "year": 2021, "tags": ["db"]},
        {"title": "Cats 100% asleep", "year": 2023, "tags": ["pets"]},
        {"title": "Dogs", "year": "2021", "tags": "db"},
    ]
    docs.add(vectors=[[1.0, float(i)] for i in range(4)], ids=["a", "b", "c", "d"], metadata=meta)

    def ids(where: dict[str, Any]) -> list[str]:
        return sorted(h.id for h in docs.search([1.0, 0.0], k=10, where=where))

    assert ids({"title": {"$like": "Postgre%"}}) == ["a"]
    assert ids({"title": {"$ilike": "postgre%"}}) == ["a", "b"]
    assert ids({"title": {"$like": "%100\\%%"}}) == ["c"]  # an escaped %
    assert ids({"title": {"$like": "D_gs"}}) == ["d"]
    assert ids({"year": {"$between": [2019, 2021]}}) == ["a", "b"]  # "2021" is a string: not between numbers
    assert ids({"tags": {"$contains": "db"}}) == ["a", "b"]  # "db" alone is not an array
    assert ids({"tags": {"$contains": ["db", "vectors"]}}) == ["a"]
    assert ids({"$not": {"title": {"$ilike": "%S%"}}}) == []
    with pytest.raises(vectorpg.FilterError, match="lone backslash"):
        docs.search([1.0, 0.0], k=1, where={"title": {"$like": "oops\\"}})

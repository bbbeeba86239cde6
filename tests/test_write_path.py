"""Write path v2 on the real server: the binary COPY stream vectorpg builds itself (text, JSON, NULLs,
numbers, vectors) reads back exactly as psycopg's own row-by-row COPY would store it; metadata is encoded
once, as PostgreSQL stores it; a large upsert of new keys goes straight in, and one that races a concurrent
writer falls back to the staged upsert without losing or doubling a row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import Integer, String, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from vectorpg import Repository, vector_column
from vectorpg.db import copy_stream, writes
from vectorpg.own_schema.tables import documents_table
from vectorpg.store.batches import check_metadata

DIM = 8


def _model() -> Any:
    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = "write_path_rows"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str | None] = mapped_column(String(40), nullable=True)
        body: Mapped[str | None] = mapped_column(Text, nullable=True)
        score: Mapped[int | None] = mapped_column(Integer, nullable=True)
        embedding: Mapped[Any] = vector_column(DIM)

    return Row


@pytest.mark.parametrize("chunk_bytes", [copy_stream.CHUNK_BYTES, 1_000])  # one chunk; a chunk every few rows
@pytest.mark.parametrize("null_scores", [False, True])  # the NumPy int column; NULLs in it: psycopg's rows
def test_vectorpg_copy_stream_stores_what_psycopg_would(
    db: vectorpg.Database, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int, null_scores: bool
) -> None:
    monkeypatch.setattr(copy_stream, "CHUNK_BYTES", chunk_bytes)
    model = _model()
    model.metadata.create_all(db.engine)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(300, DIM)).astype(np.float32)
    names = ["plain", "ünïcödé ✓", "", "emoji 🙂", None]
    rows = [
        {
            "id": i,
            "name": names[i % 5],
            "body": None if i % 7 == 0 else "line\nbreak\ttab \\ backslash" * (i % 3),
            "score": None if null_scores and i % 11 == 0 else i - 150,
            "embedding": data[i],
        }
        for i in range(300)
    ]
    streams = []
    real = writes.binary_stream
    monkeypatch.setattr(writes, "binary_stream", lambda *a: streams.append(real(*a)) or streams[-1])
    Repository(model, db).add(rows)
    assert (streams[0] is None) == null_scores  # vectorpg's own stream, or psycopg's rows
    with db.psycopg_connection() as raw:
        raw.execute(f"CREATE TABLE {model.__tablename__}_psycopg (LIKE {model.__tablename__})")
        with raw.cursor().copy(
            f"COPY {model.__tablename__}_psycopg (id, name, body, score, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "varchar", "text", "int4", "vector"])
            for r in rows:
                copy.write_row((r["id"], r["name"], r["body"], r["score"], r["embedding"]))
        ours = raw.execute(f"SELECT id, name, body, score, embedding::text FROM {model.__tablename__} ORDER BY id")
        theirs = raw.execute(
            f"SELECT id, name, body, score, embedding::text FROM {model.__tablename__}_psycopg ORDER BY id"
        )
        assert ours.fetchall() == theirs.fetchall()
        raw.execute(f"DROP TABLE {model.__tablename__}_psycopg")
    model.metadata.drop_all(db.engine)


def test_the_stream_covers_the_store_rows_and_leaves_other_values_to_psycopg() -> None:
    meta = check_metadata([{"a": 1}, None])
    vectors = np.ones((2, DIM), dtype=np.float32)
    oids = [25, 25, 25, 3802, 0, 25]  # collection, id, content, metadata, embedding, content_hash
    rows = [("c", "1", "text", meta[0], None, None), ("c", "2", None, meta[1], None, "hash")]
    assert copy_stream.binary_stream(oids, rows, {4: (vectors, False)}) is not None
    # a dict that was not encoded, a NUL in a string, a lone surrogate: psycopg formats them (and says no)
    for bad in ({"a": 1}, "nul\x00", "\ud800"):
        odd = [("c", "1", bad if isinstance(bad, str) else "t", bad if isinstance(bad, dict) else meta[0], None, None)]
        assert copy_stream.binary_stream(oids, odd, {4: (vectors[:1], False)}) is None


def test_metadata_is_encoded_once_as_postgresql_stores_it(db: vectorpg.Database) -> None:
    docs = db.collection("write_meta", dimension=DIM, embedder=None)
    # int keys, a tuple, None, an integer past 64 bits: what orjson refuses or writes otherwise, the
    # standard encoder takes
    given = {1: (1, 2), "nested": {"list": [True, None, 1.5]}, "text": "ünï", "big": 2**70}
    stored_as = {"1": [1, 2], "nested": {"list": [True, None, 1.5]}, "text": "ünï", "big": 2**70}
    assert check_metadata([given])[0].value() == stored_as
    vectors = np.random.default_rng(1).normal(size=(100, DIM)).astype(np.float32)
    ids = [str(i) for i in range(100)]
    docs.add(vectors=vectors, ids=ids, metadata=[given] * 100)  # COPY
    docs.add(vectors=vectors[:3], ids=["a", "b", "c"], metadata=[given] * 3)  # a small batch: INSERT
    got = docs.get(["0", "99", "a"])
    assert [hit.metadata for hit in got] == [stored_as] * 3
    for bad, message in (
        ({"x": float("nan")}, "not JSON"),  # orjson would write null
        ({"x": [float("-inf")]}, "not JSON"),
        ({"x": "\x00"}, "NUL"),
        ({"x": "\udcff"}, "Unicode"),
    ):
        with pytest.raises(vectorpg.InvalidInputError, match=message) as caught:
            docs.add(vectors=vectors[:2], ids=["n1", "n2"], metadata=[{}, bad])
        assert caught.value.row == 1
    assert docs.count() == 103


def test_an_upsert_of_new_keys_goes_straight_in(db: vectorpg.Database) -> None:
    docs = db.collection("write_new", dimension=DIM, embedder=None, auto_index=False)
    vectors = np.random.default_rng(2).normal(size=(500, DIM)).astype(np.float32)
    ids = [f"k{i}" for i in range(500)]
    docs.upsert(vectors=vectors, ids=ids, metadata=[{"round": 1}] * 500)  # all new: one COPY, no staging
    docs.upsert(vectors=vectors[::-1].copy(), ids=ids, metadata=[{"round": 2}] * 500)  # all exist: staged
    hits = docs.get(ids)
    assert len(hits) == 500 and all(hit.metadata == {"round": 2} for hit in hits)
    assert docs.search(vectors[0], 1)[0].id == "k499"  # the second round's vectors


def test_a_new_key_written_meanwhile_is_upserted_not_doubled(db: vectorpg.Database) -> None:
    """``keys_absent`` said no key was stored, but one was written since (a concurrent writer): the direct
    COPY fails on that key, rolls back to its savepoint, and the staged upsert writes every row once."""
    docs = db.collection("write_race", dimension=DIM, embedder=None, auto_index=False)
    docs.add(vectors=np.ones((1, DIM), dtype=np.float32), ids=["k250"], metadata=[{"by": "the other writer"}])
    vectors = np.random.default_rng(3).normal(size=(500, DIM)).astype(np.float32)
    meta = check_metadata([{"by": "us"}] * 500)
    rows = [(docs.name, f"k{i}", None, meta[i], vectors[i], None) for i in range(500)]
    columns = ["collection", "id", "content", "metadata", "embedding", "content_hash"]
    with Session(db.engine) as session, session.begin():
        writes.write_rows(
            session,
            documents_table,
            columns,
            rows,
            on_conflict="update",
            conflict_columns=["collection", "id"],
            keys_absent=True,
        )
    assert docs.count() == 500
    assert docs.get(["k250"])[0].metadata == {"by": "us"}
    with Session(db.engine) as session:
        t = documents_table
        one = session.scalar(select(func.count()).where(t.c.collection == docs.name, t.c.id == "k250"))
    assert one == 1


def test_a_jsonb_column_of_a_model_still_takes_any_json(db: vectorpg.Database) -> None:
    """A model's own JSONB values (dicts, wrapped by SQLAlchemy) go through psycopg's COPY formatting."""

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "write_path_json"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        info: Mapped[Any] = mapped_column(JSONB)
        embedding: Mapped[Any] = vector_column(DIM)

    Base.metadata.create_all(db.engine)
    vectors = np.random.default_rng(4).normal(size=(100, DIM)).astype(np.float32)
    Repository(Doc, db).add([{"id": i, "info": {"i": i, "l": [i]}, "embedding": vectors[i]} for i in range(100)])
    with db.psycopg_connection() as raw:
        assert raw.execute("SELECT info FROM write_path_json WHERE id = 42").fetchone() == ({"i": 42, "l": [42]},)
    Base.metadata.drop_all(db.engine)


def test_metadata_only_updates(db: vectorpg.Database) -> None:
    docs = db.collection("write_update", dimension=DIM, embedder=None, field_indexes={"tag": "keyword"})
    vectors = np.random.default_rng(5).normal(size=(200, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(200)]
    docs.add(vectors=vectors, ids=ids, metadata=[{"tag": "a" if i % 2 else "b", "n": i} for i in range(200)])
    before = {d.id: d for d in docs.get(ids)}
    # replace by id: one dict for all, or one per id; unknown ids are skipped and not counted
    assert docs.update(["d0", "d1", "nope"], metadata={"tag": "c"}) == 2
    assert docs.update(["d2", "d3"], metadata=[{"tag": "x", "k": 1}, {"tag": "y"}]) == 2
    got = {d.id: d for d in docs.get(["d0", "d1", "d2", "d3"])}
    assert [got[i].metadata for i in ("d0", "d1", "d2", "d3")] == [
        {"tag": "c"},
        {"tag": "c"},
        {"tag": "x", "k": 1},
        {"tag": "y"},
    ]
    # merge keys into what a filter matches (through the field index), remove keys
    assert docs.update(where={"tag": "a"}, set={"seen": True}, unset=["n"]) == 98  # d1 and d3 changed tags
    assert docs.count(where={"seen": True}) == 98 and docs.count(where={"tag": "a", "n": {"$exists": True}}) == 0
    assert docs.update(["d4"], set={"tag": "z"}) == 1 and docs.get(["d4"])[0].metadata == {"tag": "z", "n": 4}
    # vectors and content are untouched; updated_at moves
    after = {d.id: d for d in docs.get(ids)}
    for i in ids:
        np.testing.assert_array_equal(after[i].embedding, before[i].embedding)
    assert after["d4"].updated_at > before["d4"].updated_at and after["d6"].updated_at == before["d6"].updated_at
    assert [h.id for h in docs.search(vectors[8], 1, where={"tag": "b"})] == ["d8"]
    # validated like add, all-or-nothing, and nothing changes on a refusal
    assert docs.update(["d9"], set={"blob": "x" * 600_000}) == 1  # within the limit
    snapshot = {d.id: d.metadata for d in docs.get(ids)}
    for call, error in (
        (lambda: docs.update(["d0", "d1"], metadata=[{"ok": 1}, {"bad": float("nan")}]), vectorpg.InvalidInputError),
        (lambda: docs.update(["d0"], metadata=[{}, {}]), vectorpg.InvalidInputError),
        (lambda: docs.update(["d0"], set={"x": "\x00"}), vectorpg.InvalidInputError),
        (lambda: docs.update(["d0"], unset=[""]), vectorpg.InvalidInputError),
        (lambda: docs.update(["d0"], metadata={}, set={"a": 1}), vectorpg.InvalidArgumentError),
        (lambda: docs.update(where={"tag": "b"}, metadata={}), vectorpg.InvalidArgumentError),
        (lambda: docs.update(["d0"]), vectorpg.InvalidArgumentError),
        (lambda: docs.update(set={"a": 1}), vectorpg.InvalidArgumentError),
        (lambda: docs.update(where={"$bogus": 1}, set={"a": 1}), vectorpg.FilterError),
        # merged metadata past the size limit: refused inside the transaction
        (
            lambda: docs.update(where={}, set={"blob2": "y" * 600_000}),
            vectorpg.InvalidInputError,
        ),
    ):
        with pytest.raises(error):
            call()
    assert {d.id: d.metadata for d in docs.get(ids)} == snapshot


def test_repository_update_changes_columns_without_vectors(db: vectorpg.Database) -> None:
    model = _model()
    model.metadata.create_all(db.engine)
    repo = Repository(model, db, metric="l2")
    vectors = np.random.default_rng(6).normal(size=(100, DIM)).astype(np.float32)
    repo.add([{"id": i, "name": "old", "score": i, "embedding": vectors[i]} for i in range(100)])
    assert repo.update([1, 2, 999], set={"name": "new"}) == 2
    assert repo.update(where=model.score >= 90, set={"body": "late", "score": None}) == 10
    got = {row.id: row for row in repo.get(list(range(100)))}
    assert (got[1].name, got[3].name, got[95].body, got[95].score) == ("new", "old", "late", None)
    np.testing.assert_array_equal(got[1].embedding, vectors[1])
    assert repo.update([5], set={"embedding": vectors[6]}) == 1  # a vector, validated like add()
    assert [row.id for row, _ in repo.search(vectors[6], k=2, strategy="exact")] in ([5, 6], [6, 5])
    for change, error in (
        ({"embedding": [np.nan] * DIM}, vectorpg.InvalidVectorError),
        ({"embedding": [1.0] * (DIM + 1)}, vectorpg.DimensionMismatchError),
        ({"id": 7}, vectorpg.InvalidInputError),
        ({"nope": 1}, vectorpg.InvalidInputError),
        ({}, vectorpg.InvalidArgumentError),
    ):
        with pytest.raises(error):
            repo.update([5], set=change)
    with pytest.raises(vectorpg.InvalidArgumentError):
        repo.update(set={"name": "everyone"})
    assert repo.update([], set={"name": "x"}) == 0 and repo.count(where=model.name == "x") == 0
    model.metadata.drop_all(db.engine)


def test_the_load_that_builds_the_automatic_index_analyses_the_table(db: vectorpg.Database) -> None:
    """A collection opened with a field index, then loaded in one add past the automatic index's threshold:
    the field filter's estimate comes from the loaded rows' statistics, not the empty table's."""
    dim = 400  # the automatic index comes at max(2,000, 800,000 / dimension) rows
    docs = db.collection("write_analyse", dimension=dim, embedder=None, field_indexes={"tag": "keyword"})
    rows = 3_000
    assert rows >= docs.planner.auto_index_rows(dim)
    vectors = np.random.default_rng(7).normal(size=(rows, dim)).astype(np.float32)
    meta = [{"tag": "rare" if i % 100 == 0 else "common"} for i in range(rows)]
    docs.add(vectors=vectors, ids=[str(i) for i in range(rows)], metadata=meta)
    assert [i for i in docs.indexes(refresh=True) if i.valid]  # the automatic index was built
    # 2,970 rows match; without statistics PostgreSQL guesses 0.5% of the table (15) for any value
    plan = docs.explain(vectors[0], 10, where={"tag": "common"})
    assert plan.estimated_rows is not None and plan.estimated_rows > 2_000, plan
    assert plan.strategy == "ann"


def test_a_large_add_looks_up_its_ids_only_when_one_is_stored(
    db: vectorpg.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk add of vectors copies straight in without asking which ids exist; only when one does (the
    copy meets it) are they looked up, for add()'s warning, and the rows replaced."""
    from vectorpg.store import batches

    docs = db.collection("write_guess", dimension=DIM, embedder=None, auto_index=False)
    vectors = np.random.default_rng(9).normal(size=(300, DIM)).astype(np.float32)
    lookups: list[int] = []
    real = batches._stored_state
    monkeypatch.setattr(batches, "_stored_state", lambda c, ids, s=None: lookups.append(len(ids)) or real(c, ids, s))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning: nothing existed
        docs.add(vectors=vectors[:200], ids=[f"g{i}" for i in range(200)], metadata=[{"round": 1}] * 200)
    assert lookups == [] and docs.count() == 200
    with pytest.warns(DeprecationWarning, match=r"replaced 3 existing document\(s\) \('g0', 'g1', 'g2'"):
        docs.add(vectors=vectors[197:], ids=[f"g{i}" for i in range(3)] + [f"h{i}" for i in range(100)])
    assert lookups == [103] and docs.count() == 300
    np.testing.assert_array_equal(docs.get(["g0"])[0].embedding, vectors[197])


@pytest.mark.parametrize("n", [10, 300])  # a multi-row INSERT; COPY
def test_repository_rows_keep_their_vectors_in_any_key_order_and_the_callers_mappings_stay(
    db: vectorpg.Database, n: int
) -> None:
    """Mappings keyed by column names are read as they are (not copied) and the batch's vectors go out as
    one matrix: the upsert sorts its rows by key, and each row must still get its own vector; the
    caller's mappings are not changed (no default filled in, no vector replaced)."""
    model = _model()
    model.metadata.create_all(db.engine)
    repo = Repository(model, db, metric="l2")
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    keys = rng.permutation(n)  # not in key order
    given = [{"id": int(k), "name": f"r{k}", "embedding": vectors[i]} for i, k in enumerate(keys)]
    before = [dict(m) for m in given]
    assert repo.add(given) == n
    assert [sorted(m) for m in given] == [sorted(m) for m in before]
    assert all(m["embedding"] is b["embedding"] for m, b in zip(given, before))
    moved = [{**m, "embedding": m["embedding"] + 1} for m in given]
    assert repo.upsert(moved) == n
    stored = {row.id: row for row in repo.get([int(k) for k in keys])}
    for i, k in enumerate(keys):
        np.testing.assert_allclose(stored[int(k)].embedding, vectors[i] + 1, rtol=1e-6)
        assert stored[int(k)].name == f"r{k}"
    with pytest.raises(vectorpg.InvalidInputError) as caught:  # a key no column has: that row is named
        repo.add([{"id": n + 1, "embedding": vectors[0]}, {"id": n + 2, "embedding": vectors[0], "nope": 1}])
    assert caught.value.row == 1 and repo.count() == n
    model.metadata.drop_all(db.engine)

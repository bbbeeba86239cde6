"""Hybrid search: full-text and vector legs fused in one SQL statement, checked against hand computation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Integer, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from tests.fix_embedders import HashEmbedder
from vectorpg import Repository, vector_column
from vectorpg.search.hybrid import HybridOptions, text_index


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    embedding: Mapped[Any] = vector_column(2)
    __table_args__ = (text_index("notes_body_tsv_idx", "body"),)


NOTES = [
    # id, body, vector (distance to the query [0, 0] is the first coordinate)
    (1, "postgres vector search with postgres", [10.0, 0.0]),  # text leg only (too far for the vector leg)
    (2, "cooking recipes", [0.1, 0.0]),  # vector leg only (no 'postgres')
    (3, "postgres tips", [1.0, 0.0]),  # both legs
    (4, "gardening", [5.0, 0.0]),  # vector leg only
]


def notes_repo(db: vectorpg.Database) -> Repository[Note]:
    Base.metadata.create_all(db.engine)
    repo = Repository(Note, db, metric="l2", text_column="body")
    repo.add({"id": i, "body": b, "kind": "a" if i != 4 else "b", "embedding": v} for i, b, v in NOTES)
    return repo


def test_rrf_matches_hand_computation(db: vectorpg.Database) -> None:
    repo = notes_repo(db)
    hits = repo.hybrid_search("postgres", k=4, vector=[0.0, 0.0], candidates=3, weights=(1.0, 2.0))
    # Vector leg (3 candidates): 2 -> rank 1, 3 -> 2, 4 -> 3.  Text leg: 1 (two matches) -> 1, 3 -> 2.
    expected = {
        3: (1 / 62 + 2 / 62, 2, 2),
        1: (2 / 61, None, 1),
        2: (1 / 61, 1, None),
        4: (1 / 63, 3, None),
    }
    assert [row.id for row, _ in hits] == [3, 1, 2, 4]
    for row, score in hits:
        fused, vector_rank, text_rank = expected[row.id]
        assert score.score == pytest.approx(fused)
        assert (score.vector_rank, score.text_rank) == (vector_rank, text_rank)
        assert (score.vector_distance is None) == (vector_rank is None)
        assert (score.text_score is None) == (text_rank is None)
    assert hits[0][1].vector_distance == pytest.approx(1.0)
    assert hits[1][1].text_score > hits[0][1].text_score  # two matches outrank one


def test_filter_applies_to_both_legs_and_weighted_fusion(db: vectorpg.Database) -> None:
    repo = notes_repo(db)
    filtered = repo.hybrid_search("postgres", k=4, vector=[0.0, 0.0], where=Note.kind == "b")
    assert [row.id for row, _ in filtered] == [4]
    weighted = repo.hybrid_search("postgres", k=4, vector=[0.0, 0.0], fusion="weighted", weights=(0.5, 0.5))
    scores = {row.id: s.score for row, s in weighted}
    # distances 0.1, 1, 5, 10 -> normalised closeness 1, 0.909, 0.505, 0; text scores -> 1 (id 1), 0 (id 3)
    assert scores[2] == pytest.approx(0.5 * 1.0)
    assert scores[1] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert scores[3] == pytest.approx(0.5 * (10 - 1) / 9.9 + 0.0)
    assert scores[4] == pytest.approx(0.5 * (10 - 5) / 9.9)


def test_query_text_is_a_parameter(db: vectorpg.Database) -> None:
    repo = notes_repo(db)
    hostile = "postgres'); DROP TABLE notes; --"
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    repo.hybrid_search(hostile, k=2, vector=[0.0, 0.0])
    assert all("DROP TABLE" not in s for s in seen)
    assert repo.count() == 4


def test_bad_hybrid_options() -> None:
    for kwargs in (
        {"fusion": "max"},
        {"rrf_k": -1},
        {"weights": (1.0,)},
        {"config": "english'; --"},
        {"candidates": 0},
    ):
        with pytest.raises(vectorpg.InvalidArgumentError):
            HybridOptions(**kwargs)  # type: ignore[arg-type]


def test_text_column_is_required(db: vectorpg.Database) -> None:
    Base.metadata.create_all(db.engine)
    with pytest.raises(vectorpg.InvalidArgumentError, match="text_column"):
        Repository(Note, db).hybrid_search("x", k=1, vector=[1.0, 0.0])


def test_collection_hybrid_search(db: vectorpg.Database) -> None:
    embedder = HashEmbedder()
    docs = db.collection("hybrid", embedder=embedder)
    docs.add(
        ["the quick brown fox", "a lazy dog sleeps", "foxes are quick and clever", "stock market news"],
        ids=["fox", "dog", "foxes", "stocks"],
        metadata=[{"topic": "animals"}, {"topic": "animals"}, {"topic": "animals"}, {"topic": "finance"}],
    )
    name = docs.create_text_index()
    hits = docs.hybrid_search("quick fox", k=3)
    assert hits[0].id in ("fox", "foxes")
    assert hits[0].score.text_rank is not None and hits[0].score.vector_rank is not None  # both legs found it
    assert {h.id for h in hits} >= {"fox", "foxes"}
    assert all(h.score.score > 0 for h in hits)
    only_finance = docs.hybrid_search("quick fox", k=3, where={"topic": "finance"})
    assert [h.id for h in only_finance] == ["stocks"] and only_finance[0].score.text_rank is None
    from sqlalchemy import text

    with db.engine.connect() as conn:
        indexdef = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar()
    assert "gin" in indexdef and "to_tsvector('english'::regconfig" in indexdef


def test_a_question_finds_the_documents_that_share_its_words(db: vectorpg.Database) -> None:
    """The text leg matches any of the question's significant terms, ranked (a question's words never all
    appear in its answer); web-search syntax keeps its meaning; the SQL function ranks the same way."""
    docs = db.collection("questions", dimension=2, embedder=None)
    texts = {
        "sigchld": "When a child process exits, its parent receives SIGCHLD.",
        "kill": "The kill command sends a signal to a process by its id.",
        "cats": "Cats sleep sixteen hours a day.",
        "fork": "fork creates a child process that is a copy of its parent.",
    }
    docs.add(list(texts.values()), vectors=[[1.0, float(i)] for i in range(4)], ids=list(texts))
    question = "which signal does a parent receive when its child process exits"
    hits = docs.hybrid_search(question, k=4, vector=[1.0, 0.0])
    text_ranks = {h.id: h.score.text_rank for h in hits}
    assert text_ranks["sigchld"] == 1 and text_ranks["cats"] is None
    assert {i for i, r in text_ranks.items() if r is not None} == {"sigchld", "kill", "fork"}
    phrase = docs.hybrid_search('"child process" -fork', k=4, vector=[1.0, 0.0])
    assert {h.id for h in phrase if h.score.text_rank is not None} == {"sigchld"}
    with db.psycopg_connection() as raw:
        rows = raw.execute(
            "SELECT id, text_rank FROM vectorpg.hybrid_search('questions', %s, '[1, 0]', 4)", [question]
        ).fetchall()
    assert dict(rows) == text_ranks


def test_explain_hybrid_names_the_text_index_or_says_how_to_build_it(db: vectorpg.Database) -> None:
    docs = db.collection("explained", embedder=HashEmbedder())
    docs.add(["the quick brown fox", "a lazy dog sleeps"], ids=["fox", "dog"])
    before = docs.explain_hybrid("quick fox", k=2, where={"topic": {"$exists": False}})
    assert before.text_index is None and "create_text_index()" in before.hint and "--text" in before.hint
    assert "to_tsvector" in before.sql and "Limit" in before.plan
    name = docs.create_text_index()
    after = docs.explain_hybrid("quick fox", k=2, analyze=True)
    assert after.text_index == name and after.hint == "" and "actual time" in after.plan
    repo = notes_repo(db)  # an application's model with text_index() in its __table_args__
    assert repo.explain_hybrid("postgres", vector=[0.0, 0.0]).text_index == "notes_body_tsv_idx"
    assert [h.id for h in docs.hybrid_search("quick fox", k=1)] == ["fox"]  # explaining changed nothing

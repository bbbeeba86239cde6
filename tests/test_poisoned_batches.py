"""Batches of 1,000 with one bad row: refused whole, with a typed error naming the row, and nothing written,
through the repository, the store API (vectors and an embedder's output) and plain SQL."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import BigInteger, Integer, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import Repository, vector_column

BATCH = 1000
BAD_ROW = 617
DIM = 8


def _poison(kind: str) -> list[Any]:
    rows: list[Any] = list(np.random.default_rng(0).normal(size=(BATCH, DIM)).astype(np.float32))
    bad: Any = {
        "nan": [np.nan] + [1.0] * (DIM - 1),
        "+inf": [np.inf] + [1.0] * (DIM - 1),
        "-inf": [-np.inf] + [1.0] * (DIM - 1),
        "out of range": [1e39] + [1.0] * (DIM - 1),
        "empty": [],
        "wrong dimension": [1.0] * (DIM + 1),
        "zero under cosine": [0.0] * DIM,
        "ragged": [[1.0, 2.0], [3.0]],
        "not numbers": ["a"] * DIM,
        "none": None,
    }[kind]
    rows[BAD_ROW] = bad
    return rows


KINDS = [
    "nan",
    "+inf",
    "-inf",
    "out of range",
    "empty",
    "wrong dimension",
    "zero under cosine",
    "ragged",
    "not numbers",
    "none",
]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "poison_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    embedding = vector_column(DIM)


@pytest.mark.parametrize("kind", KINDS)
def test_repository_batch(db: vectorpg.Database, kind: str) -> None:
    db.install_extension()
    Base.metadata.create_all(db.engine)
    repo = Repository(Item, db, metric="cosine")
    repo.add({"id": 10_000 + i, "n": i, "embedding": [1.0] * DIM} for i in range(5))  # rows already there
    rows = [{"id": i, "n": i, "embedding": v} for i, v in enumerate(_poison(kind))]
    with pytest.raises(vectorpg.VectorPgError) as caught:
        repo.add(rows)
    assert isinstance(caught.value, (vectorpg.InvalidVectorError, vectorpg.InvalidInputError))
    assert caught.value.row == BAD_ROW and f"row {BAD_ROW}" in str(caught.value)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_store_batch(db: vectorpg.Database, kind: str) -> None:
    docs = db.collection("poison", dimension=DIM, embedder=None)
    docs.add(vectors=np.ones((3, DIM)), ids=["a", "b", "c"])
    with pytest.raises(vectorpg.VectorPgError) as caught:
        docs.add(vectors=_poison(kind), ids=[str(i) for i in range(BATCH)])
    assert caught.value.row == BAD_ROW  # type: ignore[attr-defined]
    assert docs.count() == 3


class PoisonedEmbedder:
    """A model service that returns one bad vector in a batch (the issue's NaN from an embedding service)."""

    name = "poisoned"
    dimension = DIM

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def embed(self, texts: Any) -> np.ndarray:
        out = np.ones((len(texts), DIM), dtype=np.float64)
        if len(texts) > BAD_ROW:
            out[BAD_ROW] = {"nan": np.nan, "+inf": np.inf, "zero under cosine": 0.0, "out of range": 1e39}[self.kind]
        return out


@pytest.mark.parametrize("kind", ["nan", "+inf", "zero under cosine", "out of range"])
def test_embedder_output_batch(db: vectorpg.Database, kind: str) -> None:
    docs = db.collection("poison", embedder=PoisonedEmbedder(kind))
    with pytest.raises(vectorpg.InvalidVectorError, match=f"embedder returned a bad vector for row {BAD_ROW}"):
        docs.add([f"text {i}" for i in range(BATCH)], ids=[str(i) for i in range(BATCH)])
    assert docs.count() == 0
    with db.psycopg_connection() as raw:  # nothing cached either
        assert raw.execute("SELECT count(*) FROM vectorpg.embedding_cache").fetchone() == (0,)


@pytest.mark.parametrize(
    ("literal", "error"),
    [
        ("[NaN,1,1,1,1,1,1,1]", "NaN not allowed"),
        ("[Infinity,1,1,1,1,1,1,1]", "infinite value not allowed"),
        ("[1e39,1,1,1,1,1,1,1]", "out of range"),
        ("[]", "at least 1 dimension"),
        ("[1,1,1,1,1,1,1,1,1]", "embedding_dimension"),
        ("[0,0,0,0,0,0,0,0]", "embedding_nonzero"),
    ],
)
def test_sql_batch(db: vectorpg.Database, database_url: str, literal: str, error: str) -> None:
    """One INSERT of 1,000 rows through SQL (another language's driver, say): refused whole."""
    db.collection("poison", dimension=DIM, metric="cosine", embedder=None)
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.Error, match=error):
            conn.execute(
                "INSERT INTO vectorpg.documents (collection, id, embedding) "
                "SELECT 'poison', i::text, CASE WHEN i = %s THEN %s::vector ELSE '[1,1,1,1,1,1,1,1]'::vector END "
                "FROM generate_series(0, %s) i",
                [BAD_ROW, literal, BATCH - 1],
            )
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM vectorpg.documents_poison").fetchone() == (0,)

"""Lean execution on the real server: vectors read in pgvector's binary form, a search's settings and its
statement in one network round trip (counted in libpq's protocol trace), and a Repository's repeated
search answered by the statement it kept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from psycopg.pq import Trace
from sqlalchemy import Integer, String, event, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from vectorpg import HNSW, Repository, vector_column, vector_index

DIM = 16


def _model(vector_type: str) -> Any:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = f"lean_{vector_type}"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tag: Mapped[str] = mapped_column(String(10), index=True)
        embedding: Mapped[Any] = vector_column(DIM, vector_type, nullable=True)
        __table_args__ = (vector_index("embedding", HNSW(), metric="l2", dimension=DIM, vector_type=vector_type),)

    return Item


@pytest.fixture
def trace(db: vectorpg.Database, tmp_path: Path) -> Any:
    """``messages()``: the protocol messages of the connections the engine hands out meanwhile."""
    path = tmp_path / "libpq.trace"
    handle = path.open("w")

    def start(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.pgconn.trace(handle.fileno())
        dbapi_connection.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)

    def stop(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.pgconn.untrace()

    event.listen(db.engine, "checkout", start)
    event.listen(db.engine, "checkin", stop)

    class Messages:
        def clear(self) -> None:
            handle.flush()
            path.write_text("")
            handle.seek(0)

        def round_trips(self) -> int:
            """Waits for the server: each ends with its ReadyForQuery message."""
            handle.flush()
            return len(re.findall(r"^B\t\d+\tReadyForQuery", path.read_text(), flags=re.M))

        def sent(self, kind: str) -> int:
            handle.flush()
            return len(re.findall(rf"^F\t\d+\t{kind}\b", path.read_text(), flags=re.M))

    yield Messages()
    event.remove(db.engine, "checkout", start)
    event.remove(db.engine, "checkin", stop)
    handle.close()


@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
def test_vectors_are_read_in_binary_form_exactly(db: vectorpg.Database, vector_type: str) -> None:
    model = _model(vector_type)
    model.metadata.create_all(db.engine)
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, DIM)).astype(np.float32)
    repo = Repository(model, db)
    repo.add([{"id": i, "tag": "a", "embedding": v} for i, v in enumerate(data)])
    repo.add([{"id": 99, "tag": "a", "embedding": None}])
    want = data if vector_type == "vector" else data.astype(np.float16).astype(np.float32)
    # a search's results read vector_send(column): bytes, not 16 decimals per element to parse; an
    # application's own SELECT keeps the text form (PostgreSQL would run vector_send below its sorts)
    sql = str(select(model).compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    assert "_send(" not in sql, sql
    plan = repo.explain(data[7], k=3, strategy="exact")
    assert f"{vector_type}_send(nearest.embedding) AS embedding" in plan.sql, plan.sql
    with Session(db.engine) as session:  # an application's own query
        got = {item.id: item.embedding for item in session.scalars(select(model))}
    assert got[99] is None
    for i in range(50):
        assert got[i].dtype == np.float32 and got[i].flags.writeable
        np.testing.assert_array_equal(got[i], want[i])
    hits = repo.search(data[7], k=3)
    assert hits[0][0].id == 7 and hits[0][1] == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_array_equal(hits[0][0].embedding, want[7])
    hits = repo.search(data[7], k=3)  # the kept statement reads them the same way
    np.testing.assert_array_equal(hits[0][0].embedding, want[7])
    # an exact scan copies out only the k vectors it returns, not every vector its sort reads
    plan = repo.explain(data[7], k=3, where=model.tag == "a", strategy="exact")
    assert plan.sql.count("_send(") == 1 and plan.sql.index("_send(") < plan.sql.index("FROM LATERAL (SELECT"), plan.sql
    exact = repo.search(data[7], k=3, where=model.tag == "a", strategy="exact")
    assert exact[0][0].id == 7 and len(exact) == 3
    indexed = Repository(model, db, metric="l2")  # the HNSW index's metric: an index scan
    plan = indexed.explain(data[7], k=3)
    assert plan.strategy == "ann" and f"{vector_type}_send(nearest.embedding)" in plan.sql, plan.sql
    np.testing.assert_array_equal(indexed.search(data[7], k=3)[0][0].embedding, want[7])


def test_settings_and_the_statement_share_one_round_trip(db: vectorpg.Database, trace: Any) -> None:
    docs = db.collection("lean_trips", dimension=DIM, embedder=None, field_indexes={"tag": "keyword"})
    rng = np.random.default_rng(2)
    data = rng.normal(size=(6_000, DIM)).astype(np.float32)
    docs.add(
        vectors=data, ids=[str(i) for i in range(len(data))], metadata=[{"tag": f"t{i % 2}"} for i in range(len(data))]
    )
    docs.create_index(HNSW())
    with db.psycopg_connection() as raw:  # statistics for the field index's expression
        raw.execute("ANALYZE vectorpg.documents")
    where = {"tag": "t1"}  # half the rows: a filtered iterative scan with its settings
    assert docs.explain(data[0], 10, where=where).strategy == "ann"
    docs.search(data[0], 10, where=where)
    trace.clear()
    hits = docs.search(data[1], 10, where=where)
    assert len(hits) == 10
    # the settings, the statement and one Sync: one wait for the server (no BEGIN / ROLLBACK)
    assert trace.round_trips() == 1
    assert trace.sent("Sync") == 1 and trace.sent("Query") == 0
    with db.psycopg_connection() as raw:  # the settings ended with the statement
        assert raw.execute("SHOW hnsw.iterative_scan").fetchone() == ("off",)
    # the settings did apply to the statement (a short scan cap is honoured: fewer candidates)
    capped = docs.search(data[1], 10, where=where, max_scan_tuples=1, strategy="ann")
    assert len(capped) == 10  # completed exactly when the capped scan came back short


def test_an_error_in_a_pipelined_search_leaves_the_pool_healthy(db: vectorpg.Database) -> None:
    docs = db.collection("lean_errors", dimension=DIM, embedder=None)
    rng = np.random.default_rng(3)
    data = rng.normal(size=(3_000, DIM)).astype(np.float32)
    docs.add(vectors=data, ids=[str(i) for i in range(len(data))], metadata=[{"n": i} for i in range(len(data))])
    docs.create_index(HNSW())
    with pytest.raises(vectorpg.VectorPgError):
        # a value pgvector refuses, checked by the server inside the pipeline
        docs.search(data[0], 10, ef_search=5_000, strategy="ann")
    assert len(docs.search(data[0], 10, strategy="ann")) == 10
    # a search turns psycopg's autocommit on for its checkout only: the pool's connections come back
    # transactional (the last one out is the one the search used: the pool is LIFO)
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw.info.transaction_status.name == "IDLE" and raw.autocommit is False
    with pytest.raises(vectorpg.VectorPgError):
        docs.search(data[0], 10, ef_search=5_000, strategy="ann")
    with db.engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False
        conn.exec_driver_sql("CREATE TEMP TABLE lean_atomic (n int)")
        conn.rollback()  # it was a transaction: the table is gone
        assert conn.exec_driver_sql("SELECT to_regclass('pg_temp.lean_atomic')").scalar() is None


def test_a_repository_keeps_the_statement_of_a_repeated_search(db: vectorpg.Database) -> None:
    model = _model("vector")
    model.metadata.create_all(db.engine)
    rng = np.random.default_rng(4)
    data = rng.normal(size=(3_000, DIM)).astype(np.float32)
    repo = Repository(model, db, metric="l2")
    repo.add([{"id": i, "tag": f"t{i % 50}", "embedding": v} for i, v in enumerate(data)])
    sent: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        for where in (model.tag == "t3", [model.tag.in_(["t1", "t2"]), model.id > 10]):
            repo.search(data[0], k=5, where=where)
            sent.clear()
            for q in data[1:4]:
                got = repo.search(q, k=5, where=where)
                assert len(sent) == 1 and not sent[0].lstrip().upper().startswith("EXPLAIN"), sent
                sent.clear()
                exact = repo.search(q, k=5, where=where, strategy="exact")
                assert [(o.id, round(d, 5)) for o, d in got] == [(o.id, round(d, 5)) for o, d in exact]
                sent.clear()
        repo.search(data[0], k=5, where=model.tag == "t4")  # other values: another search, planned anew
        assert any(s.lstrip().upper().startswith("EXPLAIN") for s in sent), sent
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)

"""An application's own engine (psycopg's defaults: statements run often are prepared server-side) behind
a real PgBouncer in transaction mode: vectorpg's searches and writes through it never use a prepared
statement, so none is lost between transactions; the engine keeps its own setting for its own statements."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Integer, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import Repository, vector_column
from vectorpg.db.engine import sqlalchemy_url
from vectorpg.db.translate import translate

DIM = 8
THREADS, ROUNDS = 6, 30


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "pooled_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[Any] = vector_column(DIM)


@pytest.fixture
def own_engine(pgbouncer_server_url: str, database_url: str) -> Any:
    """The application's engine: plain ``create_engine`` through PgBouncer, psycopg's defaults."""
    url = sqlalchemy_url(pgbouncer_server_url).replace("/postgres", f"/{conninfo_to_dict(database_url)['dbname']}")
    engine = create_engine(url, pool_size=THREADS)
    yield engine
    engine.dispose()


def test_searches_and_writes_through_an_apps_own_engine_behind_pgbouncer(own_engine: Any) -> None:
    Base.metadata.create_all(own_engine)
    repo = Repository(Item, own_engine, metric="l2")
    docs = vectorpg.Database(own_engine).collection("pooled", dimension=DIM, embedder=None)
    rng = np.random.default_rng(5)
    base = rng.normal(size=(300, DIM)).astype(np.float32)
    repo.add([{"id": i, "tag": i % 3, "embedding": base[i]} for i in range(300)])
    docs.add(vectors=base, ids=[str(i) for i in range(300)], metadata=[{"tag": i % 3} for i in range(300)])
    errors: list[str] = []

    def in_threads(work: Any) -> None:
        def run(t: int) -> None:
            for i in range(ROUNDS):  # each statement far more often than psycopg's prepare_threshold (5)
                try:
                    work(t, i)
                except Exception as exc:  # every failure is collected and shown
                    errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    def repository(t: int, i: int) -> None:
        repo.upsert([{"id": 1_000 + t * ROUNDS + i, "tag": t % 3, "embedding": base[i]}])
        assert [r.id for r in repo.get([i])] == [i]
        hits = repo.search(base[i], k=3, where=Item.tag == i % 3, strategy="exact")
        assert hits and all(row.tag == i % 3 for row, _ in hits)

    def collection(t: int, i: int) -> None:
        docs.upsert(vectors=base[i : i + 1], ids=[f"t{t}-{i}"], metadata=[{"tag": t % 3}])
        assert [d.id for d in docs.get([str(i)])] == [str(i)]
        found = docs.search(base[i], k=3, where={"tag": i % 3})
        assert found and all(h.metadata["tag"] == i % 3 for h in found)

    in_threads(repository)
    in_threads(collection)
    assert errors == [], errors[:5]
    assert repo.count() == 300 + THREADS * ROUNDS and docs.count() == 300 + THREADS * ROUNDS
    with own_engine.connect() as conn:  # the application's own statements keep psycopg's default
        assert conn.connection.driver_connection.prepare_threshold == 5


def test_a_lost_prepared_statement_is_a_configuration_error_that_names_the_setting(
    pgbouncer_server_url: str, database_url: str
) -> None:
    """What psycopg's always-prepare does behind transaction pooling, through vectorpg's error translation:
    not a lost connection, a ConfigurationError naming prepare_threshold."""
    url = pgbouncer_server_url.replace("/postgres", f"/{conninfo_to_dict(database_url)['dbname']}")
    seen: list[BaseException] = []
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as a, psycopg.connect(url, autocommit=True) as b:
        for i in range(40):  # two clients interleaved over 3 server connections: a's statements move
            try:
                a.execute("SELECT %s::int + 1", [i])
                b.execute("SELECT pg_sleep(0)")
            except psycopg.Error as exc:
                seen.append(translate(exc, "searching"))
                break
    assert seen, "PgBouncer kept every prepared statement: not in transaction mode?"
    assert isinstance(seen[0], vectorpg.ConfigurationError) and "prepare_threshold" in str(seen[0]), seen[0]

"""The online dimension change on the real server, with the application reading and writing meanwhile: no
reader or writer hits its 1 s lock_timeout, and every row ends with the new model's vector of its current
text (rows added, and texts changed, during the change included)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import create_engine

import vectorpg
import vectorpg.alembic

ROWS = 3_000


def _vector(body: str) -> list[float]:
    n = float(body.split()[1])
    return [n, n * 2, 1.0, 0.5, 0.5, 0.5]


def test_readers_and_writers_go_on_during_an_online_change(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS live")
        conn.execute("CREATE TABLE live (id int PRIMARY KEY, body text NOT NULL, embedding vector(4) NOT NULL)")
        conn.execute("INSERT INTO live SELECT i, 'item ' || i, ARRAY[i, 1, 2, 3]::real[]::vector "
                     "FROM generate_series(1, %s) i", [ROWS])  # fmt: skip
        conn.execute("CREATE INDEX live_hnsw ON live USING hnsw (embedding vector_l2_ops)")
    stop, writing = threading.Event(), threading.Event()
    writing.set()
    problems: list[str] = []
    counts = {"reads": 0, "writes": 0}

    def client(work: Any, kind: str, keep_going: threading.Event | None = None) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '1s'")
            i = 0
            while not stop.is_set() and (keep_going is None or keep_going.is_set()):
                try:
                    work(conn, i)
                    counts[kind] += 1
                except psycopg.errors.LockNotAvailable as exc:
                    problems.append(f"{kind}: lock timeout: {exc}")
                except psycopg.Error as exc:
                    problems.append(f"{kind}: {type(exc).__name__}: {exc}")
                i += 1
                time.sleep(0.002)

    def read(conn: psycopg.Connection[Any], i: int) -> None:
        conn.execute("SELECT count(*) FROM live").fetchone()
        conn.execute("SELECT id FROM live ORDER BY embedding <-> (SELECT embedding FROM live WHERE id = 1) "
                     "LIMIT 5").fetchall()  # fmt: skip

    def write(conn: psycopg.Connection[Any], i: int) -> None:  # the old model's writes, until the deploy
        new_id = ROWS + 1 + i
        conn.execute("INSERT INTO live VALUES (%s, %s, ARRAY[%s, 1, 2, 3]::real[]::vector)",
                     [new_id, f"item {new_id}", new_id])  # fmt: skip
        changed = 1 + (i * 37) % ROWS  # a text changes: its new vector must follow
        conn.execute("UPDATE live SET body = %s WHERE id = %s", [f"item {changed + 100_000}", changed])

    batches = 0

    def embed(rows: list[tuple[Any, ...]]) -> np.ndarray:
        nonlocal batches
        batches += 1
        if batches == 8:
            writing.clear()  # the application moves to the new model: its 4-d writes stop
        time.sleep(0.02)  # a model takes its time
        return np.array([_vector(body) for (body,) in rows], dtype=np.float32)

    threads = [threading.Thread(target=client, args=(read, "reads")),
               threading.Thread(target=client, args=(write, "writes", writing))]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            done = vectorpg.alembic.change_vector_dimension(
                conn, "live", "embedding", 6, embed=embed, source=["body"], batch_size=200, progress=False, online=True
            )
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        engine.dispose()
    assert problems == [] and counts["reads"] > 20 and counts["writes"] > 5, (problems[:5], counts)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT body, embedding::text FROM live").fetchall()
        column = conn.execute("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
                              "WHERE attrelid = 'live'::regclass AND attname = 'embedding'").fetchone()  # fmt: skip
        index = conn.execute("SELECT indexdef, indisvalid FROM pg_indexes JOIN pg_index ON indexrelid = "
                             "(schemaname || '.' || indexname)::regclass WHERE tablename = 'live' AND indexname = "
                             "'live_hnsw'").fetchone()  # fmt: skip
        leftovers = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'live'::regclass AND NOT tgisinternal"
                                 ).fetchone()  # fmt: skip
        conn.execute("DROP TABLE live")
    assert len(rows) == ROWS + counts["writes"] and done >= len(rows)
    wrong = [body for body, text in rows if [float(x) for x in text.strip("[]").split(",")] != _vector(body)]
    assert wrong == [], wrong[:5]  # every row: the new model's vector of its current text
    assert column == ("vector(6)", True)
    assert index is not None and "embedding vector_l2_ops" in index[0] and index[1] is True
    assert leftovers == (0,)


def test_online_needs_an_autocommit_connection(database_url: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn, pytest.raises(vectorpg.InvalidArgumentError, match="autocommit"):
        conn.exec_driver_sql("CREATE TEMP TABLE t (id int PRIMARY KEY, body text, embedding vector(4))")
        vectorpg.alembic.change_vector_dimension(conn, "t", "embedding", 6, embed=lambda rows: [], source=["body"],
                                                 online=True)  # fmt: skip
    engine.dispose()

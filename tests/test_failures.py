"""Failures from PostgreSQL come back as vectorpg errors that say what happened and what to do, with the
original error chained, and nothing of the failed operation written."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

import vectorpg
from vectorpg.store.collection import Collection


def _as_user(url: str, user: str) -> str:
    return make_url(url).set(username=user).render_as_string(hide_password=False)


def test_server_not_reachable() -> None:
    with pytest.raises(vectorpg.ServerError, match="cannot reach PostgreSQL") as caught:
        vectorpg.connect("postgresql://nobody@127.0.0.1:1/nothing")
    assert "Check that the server is running" in str(caught.value) and caught.value.__cause__ is not None


def test_permission_denied(db: vectorpg.Database, database_url: str) -> None:
    db.collection("kb", dimension=3, embedder=None).add(vectors=[[1, 2, 3]], ids=["a"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS vectorpg_limited")
        conn.execute("CREATE ROLE vectorpg_limited LOGIN")
    limited = vectorpg.connect(_as_user(database_url, "vectorpg_limited"))
    docs = Collection(limited, "kb", dimension=3)  # no SQL yet
    try:
        with pytest.raises(
            vectorpg.PermissionDeniedError, match="permission denied while counting documents"
        ) as caught:
            docs.count()
        assert "vectorpg.grant_app_role(" in str(caught.value)
        assert isinstance(caught.value.__cause__.orig, psycopg.errors.InsufficientPrivilege)  # type: ignore[union-attr]
        assert caught.value.sqlstate == "42501" and isinstance(caught.value, PermissionError)
    finally:
        limited.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY vectorpg_limited")
            conn.execute("DROP ROLE vectorpg_limited")


def test_disk_full_during_copy(db: vectorpg.Database) -> None:
    """The server's own disk_full error (SQLSTATE 53100), raised mid-COPY by a trigger on the partition."""
    docs = db.collection("kb", dimension=4, embedder=None)
    docs.add(vectors=np.ones((3, 4)), ids=["a", "b", "c"])
    with db.psycopg_connection() as raw:
        raw.execute(
            "CREATE FUNCTION vectorpg.fill_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = '500' THEN RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device' "
            "USING ERRCODE = 'disk_full'; END IF; RETURN NEW; END $$"
        )
        raw.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON vectorpg.documents_kb "
            "FOR EACH ROW EXECUTE FUNCTION vectorpg.fill_disk()"
        )
    with pytest.raises(vectorpg.DiskFullError, match="disk is full") as caught:
        docs.add(vectors=np.ones((1000, 4)), ids=[str(i) for i in range(1000)])  # binary COPY
    assert "Nothing of this operation was written" in str(caught.value) and caught.value.__cause__ is not None
    assert docs.count() == 3


def test_statement_timeout(db: vectorpg.Database, database_url: str) -> None:
    """An exact search over 80,000 rows takes longer than a 5 ms statement_timeout, set on every new
    connection once vectorpg has set it up (so that connecting itself is not what times out)."""
    docs = db.collection("kb", dimension=96, embedder=None)
    rows = np.random.default_rng(0).normal(size=(80_000, 96)).astype(np.float32)
    docs.add(vectors=rows, ids=[str(i) for i in range(len(rows))])
    hurried = vectorpg.connect(database_url)

    def hurry(dbapi: Any, record: Any) -> None:
        dbapi.execute("SET statement_timeout = 5")
        dbapi.commit()  # a SET inside a transaction that is rolled back would not last

    event.listen(hurried.engine, "connect", hurry)
    hurried.engine.dispose()  # the connection made while connecting had no timeout
    try:
        with pytest.raises(vectorpg.StatementTimeoutError, match="statement_timeout") as caught:
            Collection(hurried, "kb", dimension=96).search(np.ones(96), 10, strategy="exact")
        assert "create_index()" in str(caught.value) and isinstance(caught.value, TimeoutError)
        assert caught.value.sqlstate == "57014" and caught.value.__cause__ is not None
    finally:
        hurried.close()


def test_connection_lost_mid_write_writes_nothing(db: vectorpg.Database, database_url: str) -> None:
    """The writer is waiting inside its COPY when its server process is terminated."""
    docs = db.collection("kb", dimension=4, embedder=None)
    docs.add(vectors=np.ones((2, 4)), ids=["a", "b"])
    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE vectorpg.documents_kb IN ACCESS EXCLUSIVE MODE")
    outcome: dict[str, Any] = {}

    def write() -> None:
        try:
            docs.add(vectors=np.ones((500, 4)), ids=[f"n{i}" for i in range(500)])
        except Exception as exc:
            outcome["error"] = exc

    writer = threading.Thread(target=write)
    writer.start()
    with psycopg.connect(database_url, autocommit=True) as admin:
        for _ in range(200):
            waiting = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchall()
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "the writer never waited for the lock"
        admin.execute("SELECT pg_terminate_backend(%s)", [waiting[0][0]])
    writer.join(timeout=60)
    blocker.rollback()
    blocker.close()
    error = outcome.get("error")
    assert isinstance(error, vectorpg.ConnectionLostError), error
    assert "nothing of it was written" in str(error) and "idempotent" in str(error)
    assert docs.count() == 2
    docs.add(vectors=np.ones((500, 4)), ids=[f"n{i}" for i in range(500)])  # the retry
    assert docs.count() == 502

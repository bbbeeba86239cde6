"""vectorpg.scaling (Citus): the statements distribute() issues, rendered and checked here without Citus; its
refusal on a server without Citus; the query-vector cast that Citus needs (citus#7078), checked on plain
PostgreSQL for equal results; and the live path on a Citus coordinator when $VECTORPG_CITUS_URL names one."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Integer, String, event, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import HNSW, Repository, vector_column, vector_index
from vectorpg.db import citus
from vectorpg.scaling import distribute, distribution_statements


class Base(DeclarativeBase):
    pass


class Chunk(Base):
    __tablename__ = "chunks"
    tenant: Mapped[str] = mapped_column(String(40), primary_key=True)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding: Mapped[Any] = vector_column(8)
    __table_args__ = (vector_index("embedding", HNSW(), metric="cosine"),)


def _rendered(*args: Any, **kwargs: Any) -> list[str]:
    return [s.as_string(None) for s in distribution_statements(*args, **kwargs)]


def test_the_statements_for_a_model_a_table_and_a_collection(db: vectorpg.Database) -> None:
    model = _rendered(Chunk, "tenant", shard_count=32)
    assert model[-1] == "SELECT create_distributed_table('\"chunks\"'::regclass, 'tenant', shard_count => 32)"
    assert "citus.propagate_set_commands = %L" in model[0] and "current_database()" in model[0]
    assert _rendered("app.items", "org", colocate_with="app.orgs")[-1] == (
        "SELECT create_distributed_table('\"app\".\"items\"'::regclass, 'org', colocate_with => 'app.orgs')"
    )
    docs = db.collection("spread", dimension=4, embedder=None)
    store = _rendered(docs, None)
    assert store[:3] == [
        f"SELECT create_reference_table('vectorpg.{t}')" for t in ("collections", "index_tuning", "embedding_cache")
    ]
    assert store[-1] == "SELECT create_distributed_table('\"vectorpg\".\"documents\"'::regclass, 'id')"
    with pytest.raises(vectorpg.InvalidArgumentError, match="distributed on 'id'"):
        _rendered(docs, "lang")
    for bad in ("tenant; DROP TABLE x", "a'b", ""):
        with pytest.raises(vectorpg.InvalidIdentifierError):
            _rendered(Chunk, bad)
    with pytest.raises(vectorpg.InvalidArgumentError, match="shard_count"):
        _rendered(Chunk, "tenant", shard_count=0)
    with pytest.raises(vectorpg.InvalidArgumentError, match="needs the shard key"):
        _rendered(Chunk, None)


def test_distribute_without_citus_is_a_clear_error_and_changes_nothing(db: vectorpg.Database) -> None:
    Base.metadata.create_all(db.engine)
    with pytest.raises(vectorpg.ConfigurationError, match="docker compose --profile citus up"):
        distribute(db, Chunk, "tenant")
    with db.psycopg_connection() as raw:
        assert raw.execute("SELECT current_setting('citus.propagate_set_commands', true)").fetchone() == (None,)


def test_searches_on_a_distributed_table_cast_the_query_vector(db: vectorpg.Database, monkeypatch: Any) -> None:
    """As Citus needs (citus#7078): checked here by marking the table distributed (results must not change)."""
    Base.metadata.create_all(db.engine)
    repo = Repository(Chunk, db, metric="cosine")
    rng = np.random.default_rng(2)
    repo.add({"tenant": f"t{i % 3}", "id": i, "embedding": v} for i, v in enumerate(rng.normal(size=(300, 8))))
    q = rng.normal(size=8)
    plain = [(row.tenant, row.id) for row, _ in repo.search(q, k=10, where=Chunk.tenant == "t1")]
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    monkeypatch.setitem(citus._known, (str(db.engine.url), "chunks"), True)
    cast = [
        (row.tenant, row.id)
        for row, _ in Repository(Chunk, db, metric="cosine").search(q, k=10, where=Chunk.tenant == "t1")
    ]
    assert cast == plain and len(cast) == 10
    assert any("CAST(" in s and "AS VECTOR(8))" in s.upper() for s in seen), seen


def _citus_plan(task_rows: list[int], task_count: int) -> dict[str, Any]:
    """An ``EXPLAIN (FORMAT JSON)`` plan node of a distributed query, in the shape of Citus's own regression
    output (multi_explain.out): the coordinator's fixed guess, and the shown tasks' remote plans."""
    tasks = [{"Node": "host=w port=5432", "Remote Plan": [[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": n}}]]}
             for n in task_rows]  # fmt: skip
    shown = "All" if len(task_rows) == task_count else f"One of {task_count}"
    return {
        "Node Type": "Custom Scan",
        "Custom Plan Provider": "Citus Adaptive",
        "Plan Rows": 100000,
        "Distributed Query": {"Job": {"Task Count": task_count, "Tasks Shown": shown, "Tasks": tasks}},
    }


def test_row_estimates_of_a_distributed_query_come_from_the_shards(db: vectorpg.Database) -> None:
    """The planner's exact/ANN choice reads the shards' estimate on Citus, not the coordinator's 100,000."""
    assert citus.plan_rows(_citus_plan([150], 32)) == 4800  # one task shown of 32
    assert citus.plan_rows(_citus_plan([10, 30], 2)) == 40  # every task shown
    assert citus.plan_rows(_citus_plan([7], 1)) == 7  # routed to one shard by its key
    no_tasks = _citus_plan([], 6)  # "Tasks Shown: None, not supported for re-partition queries"
    assert citus.plan_rows(no_tasks) == 100000
    db.setup()  # vectorpg's schema and SQL functions
    with db.engine.connect() as conn:  # plain PostgreSQL: its own estimate, as before
        plan = conn.execute(text("EXPLAIN (FORMAT JSON) SELECT 1 FROM generate_series(1, 10)")).scalar()
        assert citus.plan_rows(plan[0]["Plan"]) == 10
        for node in (_citus_plan([150], 32), _citus_plan([10, 30], 2), _citus_plan([7], 1), no_tasks, plan[0]["Plan"]):
            in_sql = conn.execute(text("SELECT vectorpg.plan_rows(CAST(:p AS json))"), {"p": json.dumps(node)})
            assert in_sql.scalar() == citus.plan_rows(node)  # the SQL functions' planner reads it alike


@pytest.mark.skipif(not os.environ.get("VECTORPG_CITUS_URL"), reason="no Citus coordinator: set VECTORPG_CITUS_URL")
def test_on_a_citus_coordinator() -> None:  # pragma: no cover (needs Citus: docker compose --profile citus up)
    db = vectorpg.connect(os.environ["VECTORPG_CITUS_URL"])
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    repo = Repository(Chunk, db, metric="cosine")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(5000, 8))
    repo.add({"tenant": f"t{i % 7}", "id": i, "embedding": v} for i, v in enumerate(vectors))
    plan = distribute(db, Chunk, "tenant", shard_count=8)
    assert plan.table == "chunks" and plan.statements
    repo = Repository(Chunk, db, metric="cosine")
    for q in rng.normal(size=(10, 8)):
        found = repo.search(q, k=10)
        exact = repo.search(q, k=10, strategy="exact")
        assert (
            len(found) == 10 and len({(r.tenant, r.id) for r, _ in found} & {(r.tenant, r.id) for r, _ in exact}) >= 8
        )
        assert len(repo.search(q, k=10, where=Chunk.tenant == "t3")) == 10
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE chunks"))  # (Citus runs it on every shard)
    estimated = repo.explain(rng.normal(size=8), k=10, where=Chunk.id < 50).estimated_rows
    assert estimated is not None and estimated < 1000  # the shards' estimate of 50 rows, not Citus's 100,000
    Base.metadata.drop_all(db.engine)
    db.close()


def test_the_compose_profile_is_a_coordinator_two_workers_and_pgvector() -> None:
    """What `docker compose --profile citus up` starts (no Docker engine here: the file itself is checked)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    citus_services = {name for name, spec in services.items() if "citus" in spec.get("profiles", [])}
    assert citus_services == {"citus-coordinator", "citus-worker-1", "citus-worker-2", "citus-init"}
    assert "profiles" not in services["postgres"]  # the default service is unchanged
    assert services["citus-coordinator"]["build"]["context"] == "docker/citus"
    init = (root / "docker" / "citus" / "init.sql").read_text()
    assert "citus_add_node('citus-worker-1'" in init and "citus_add_node('citus-worker-2'" in init
    assert "CREATE EXTENSION IF NOT EXISTS vector" in init
    assert "postgresql-${PG_MAJOR}-pgvector" in (root / "docker" / "citus" / "Dockerfile").read_text()

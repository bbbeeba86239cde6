"""Index builds sized from the index: the graph estimate against pgvector's own measure (its notice when the
graph outgrows maintenance_work_mem), the memory and workers chosen for the machine, and /dev/shm too
small for a parallel build (a clear error before the build, or a serial build when vectorpg chose)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pytest

import vectorpg
from vectorpg import HNSW
from vectorpg.ddl import builds
from vectorpg.indexes import VectorIndex

DIM = 64
ROWS = 6_000


def _spec(docs: Any) -> VectorIndex:
    """The index ``create_index(HNSW())`` builds on a collection."""
    return VectorIndex(column="embedding", metric=docs.metric.metric, method=HNSW(), dimension=DIM, cast=True)


@pytest.fixture
def docs(db: vectorpg.Database) -> Any:
    collection = db.collection("build_plan", dimension=DIM, embedder=None, auto_index=False)
    data = np.random.default_rng(0).normal(size=(ROWS, DIM)).astype(np.float32)
    collection.add(vectors=data, ids=[str(i) for i in range(ROWS)])
    return collection


def test_the_graph_estimate_matches_pgvectors_own(db: vectorpg.Database, docs: Any) -> None:
    index = _spec(docs)
    plan = builds.plan_build(db.engine, docs.partition, index, None)
    assert plan.rows == ROWS
    notices: list[str] = []
    with db.psycopg_connection() as raw:
        raw.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        raw.execute("SET LOCAL maintenance_work_mem = '1MB'; SET LOCAL max_parallel_maintenance_workers = 0")
        raw.execute(f"CREATE INDEX build_plan_probe ON vectorpg.{docs.partition.name} USING hnsw "
                    f"((embedding::vector({DIM})) vector_cosine_ops)")  # fmt: skip
        raw.execute("DROP INDEX vectorpg.build_plan_probe")
    fitted = [int(n) for n in re.findall(r"after (\d+) tuples", " ".join(notices))]
    assert fitted, notices  # 1 MB holds a few hundred of these rows
    measured = (1 << 20) / fitted[0]  # bytes pgvector's graph holds per row
    estimated = plan.graph_bytes / plan.rows
    assert 0.8 < estimated / measured < 1.25, (estimated, measured)


def test_the_embedded_server_gets_memory_for_the_graph(
    db: vectorpg.Database, docs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = _spec(docs)
    monkeypatch.setattr(builds, "embedded_server_of", lambda engine: object())  # this machine's server
    plan = builds.plan_build(db.engine, docs.partition, index, None)
    assert builds._bytes(plan.settings["maintenance_work_mem"]) >= max(64 << 20, plan.graph_bytes)
    assert int(plan.settings["max_parallel_maintenance_workers"]) >= 0 and not plan.notes
    given = builds.plan_build(db.engine, docs.partition, index, {"maintenance_work_mem": "100MB"})
    assert given.settings["maintenance_work_mem"] == "100MB"
    # a parallel build keeps the graph in /dev/shm: too little of it
    monkeypatch.setattr(builds, "_shm_free", lambda: 8 << 20)
    monkeypatch.setattr(builds.os, "cpu_count", lambda: 4)
    serial = builds.plan_build(db.engine, docs.partition, index, None)
    assert serial.settings["max_parallel_maintenance_workers"] == "0" and "serially" in serial.notes[0]
    with pytest.raises(vectorpg.IndexBuildError, match="/dev/shm") as caught:
        builds.create_vector_index(db.engine, docs.partition, index, settings={"max_parallel_maintenance_workers": "2"})
    assert "max_parallel_maintenance_workers': '0'" in str(caught.value)
    assert not [i for i in docs.indexes(refresh=True) if i.valid]  # refused before the build: no index
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        builds.create_vector_index(db.engine, docs.partition, index)  # vectorpg's choice: built serially
    assert any("serially" in str(w.message) for w in seen if issubclass(w.category, vectorpg.PerformanceWarning))
    assert len([i for i in docs.indexes(refresh=True) if i.valid]) == 1


def test_a_server_by_url_keeps_its_settings_and_hears_when_the_graph_will_not_fit(
    db: vectorpg.Database, docs: Any
) -> None:
    index = _spec(docs)
    plan = builds.plan_build(db.engine, docs.partition, index, None)
    assert plan.settings == {}
    with db.psycopg_connection() as raw:
        server_mem = builds._bytes(raw.execute("SHOW maintenance_work_mem").fetchone()[0])
    assert server_mem is not None
    assert bool(plan.notes) == (plan.graph_bytes > server_mem)
    small = builds.plan_build(db.engine, docs.partition, index, {"maintenance_work_mem": "1MB"})
    assert small.notes and "maintenance_work_mem" in small.notes[0]

"""Read replicas on real streaming replication (tests/fix_replicas.py: a primary and two replicas cloned with
``pg_basebackup -R`` from the embedded binaries): reads routed round robin and writes on the primary, the same
results everywhere, read-your-writes under a concurrent writer, lagging and dead replicas skipped, a replica
killed with SIGKILL mid-search (never a failed or wrong search), and promotion after the primary is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

import vectorpg
from tests.fix_replicas import Cluster, start_cluster
from vectorpg import HNSW

N, DIM = 3000, 16


@pytest.fixture(scope="module")
def primed(cluster: Cluster) -> Cluster:
    db = vectorpg.connect(cluster.primary.url)
    docs = db.collection("items", dimension=DIM, embedder=None)
    vectors = np.random.default_rng(1).normal(size=(N, DIM))
    docs.add(vectors=vectors, ids=[str(i) for i in range(N)], metadata=[{"team": i % 10} for i in range(N)])
    docs.create_index(HNSW(), tune_recall=None)
    db.close()
    _caught_up(cluster)
    return cluster


def _caught_up(cluster: Cluster, timeout: float = 30) -> None:
    with psycopg.connect(cluster.primary.url) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
    for replica in cluster.replicas:
        deadline = time.monotonic() + timeout
        with psycopg.connect(replica.url, autocommit=True) as conn:
            while not conn.execute("SELECT pg_last_wal_replay_lsn() >= %s", [target]).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, f"{replica.data_dir} did not catch up"
                time.sleep(0.05)


@pytest.fixture
def routed(primed: Cluster) -> Iterator[vectorpg.Database]:
    db = vectorpg.connect(primed.primary.url, replicas=[r.url for r in primed.replicas], max_lag=0.5)
    db.router.check_every = 0.1
    db.router.retry_after = 1.0
    yield db
    db.close()


def _pause(replica: Any, paused: bool, timeout: float = 10) -> None:
    """Pause (or resume) WAL replay on ``replica``. A pause takes effect when the startup process next looks
    ('pause requested' until then: it may replay a record or two more), so wait for 'paused'."""
    with psycopg.connect(replica.url, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
        deadline = time.monotonic() + timeout
        while paused and conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone() != ("paused",):
            assert time.monotonic() < deadline, "replay did not pause"
            time.sleep(0.01)


def test_reads_go_round_robin_to_the_replicas_and_writes_to_the_primary(routed: vectorpg.Database) -> None:
    docs = routed.collection("items", embedder=None, create=False)
    q = np.ones(DIM)
    servers = [docs.explain(q, k=5).server for _ in range(6)]
    assert set(servers) == {r.name for r in routed.router.replicas} and "primary" not in servers
    assert servers[0] != servers[1]  # round robin
    docs.add(vectors=[np.full(DIM, 0.5)], ids=["written"])  # a replica would refuse it: read-only
    assert docs.count() >= N


def test_every_server_gives_the_same_results(primed: Cluster) -> None:
    rng = np.random.default_rng(5)
    answers = []
    for server in [primed.primary, *primed.replicas]:
        db = vectorpg.connect(server.url)
        docs = db.collection("items", embedder=None, create=False)
        answers.append(
            [
                [h.id for h in docs.search(q, k=10, strategy=strategy, where=where)]
                for q in rng.normal(size=(10, DIM))
                for strategy, where in (("exact", None), ("auto", None), ("auto", {"team": 3}))
            ]
        )
        rng = np.random.default_rng(5)
        db.close()
    assert answers[0] == answers[1] == answers[2]


def test_read_your_writes_under_a_concurrent_writer(routed: vectorpg.Database, primed: Cluster) -> None:
    docs = routed.collection("items", embedder=None, create=False)
    stop = threading.Event()

    def writer() -> None:
        other = vectorpg.connect(primed.primary.url).collection("items", embedder=None, create=False)
        i = 0
        while not stop.is_set():
            other.upsert(vectors=[np.random.default_rng(i).normal(size=DIM)], ids=[f"bg{i % 50}"])
            i += 1

    routed.router.wait = 0.2  # a paused replica never catches up: give up on it quickly
    thread = threading.Thread(target=writer)
    thread.start()
    _pause(primed.replicas[0], True)
    try:
        for i in range(30):
            docs.upsert(vectors=[np.full(DIM, float(i + 1))], ids=[f"mine{i}"])
            with routed.reading(read_your_writes=True):
                assert [d.id for d in docs.get([f"mine{i}"])] == [f"mine{i}"], i
                assert docs.explain(np.ones(DIM), k=1).server != primed_name(routed, 0)  # paused: never read
        _pause(primed.replicas[1], True)
        docs.upsert(vectors=[np.full(DIM, -1.0)], ids=["unseen"])
        with routed.reading(read_your_writes=True):
            assert [d.id for d in docs.get(["unseen"])] == ["unseen"]  # both paused: the primary answers
            assert docs.explain(np.ones(DIM), k=1).server == "primary"
        with routed.reading(read_your_writes=False):  # without it, the replica paused a moment ago serves
            assert docs.get(["unseen"]) == [] and docs.explain(np.ones(DIM), k=1).server == primed_name(routed, 1)
    finally:
        stop.set()
        thread.join()
        _pause(primed.replicas[0], False)
        _pause(primed.replicas[1], False)


def primed_name(db: vectorpg.Database, i: int) -> str:
    return str(db.router.replicas[i].name)


def test_a_lagging_replica_is_skipped_until_it_catches_up(routed: vectorpg.Database, primed: Cluster) -> None:
    docs = routed.collection("items", embedder=None, create=False)
    _pause(primed.replicas[0], True)
    try:
        docs.upsert(vectors=[np.ones(DIM)], ids=["lag"])
        time.sleep(0.8)  # past max_lag (0.5 s) since the write the replica has not replayed
        docs.upsert(vectors=[np.ones(DIM)], ids=["lag2"])
        servers = {docs.explain(np.ones(DIM), k=1).server for _ in range(8)}
        assert primed_name(routed, 0) not in servers and primed_name(routed, 1) in servers
    finally:
        _pause(primed.replicas[0], False)
    _caught_up(primed)
    time.sleep(0.2)
    servers = {docs.explain(np.ones(DIM), k=1).server for _ in range(8)}
    assert primed_name(routed, 0) in servers


def test_a_replica_killed_mid_search_fails_no_search(routed: vectorpg.Database, primed: Cluster) -> None:
    docs = routed.collection("items", embedder=None, create=False)
    queries = np.random.default_rng(9).normal(size=(20, DIM))
    direct = vectorpg.connect(primed.primary.url).collection("items", embedder=None, create=False)
    expected = [[h.id for h in direct.search(q, k=10, strategy="exact")] for q in queries]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            for _ in range(15):
                results.extend([h.id for h in docs.search(q, k=10, strategy="exact")] for q in queries)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=searcher)
    thread.start()
    time.sleep(0.3)
    victim = primed.replicas[0]
    victim.kill()
    thread.join()
    assert errors == [] and len(results) == 15 * len(queries)
    assert all(got == expected[i % len(queries)] for i, got in enumerate(results)), "a wrong result"
    assert {docs.explain(queries[0], k=1).server for _ in range(4)} == {primed_name(routed, 1)}  # down: skipped
    victim.start()
    time.sleep(1.2)  # retry_after
    assert primed_name(routed, 0) in {docs.explain(queries[0], k=1).server for _ in range(6)}


def test_promoting_a_replica_after_the_primary_is_lost(tmp_path: Any) -> None:
    from vectorpg.cli.replica import promote

    own = start_cluster(tmp_path, replicas=1)
    try:
        db = vectorpg.connect(own.primary.url, replicas=[own.replicas[0].url])
        docs = db.collection("kept", dimension=4, embedder=None)
        docs.add(vectors=[[1, 0, 0, 0], [0, 1, 0, 0]], ids=["a", "b"])
        db.close()
        _caught_up(own)
        routed = vectorpg.connect(own.primary.url, replicas=[own.replicas[0].url])
        through = routed.collection("kept", embedder=None, create=False)
        own.primary.kill()
        assert [h.id for h in through.search([1, 0, 0, 0], k=1)] == ["a"]  # the replica still serves reads
        assert through.explain([1, 0, 0, 0], k=1).server == routed.router.replicas[0].name
        with pytest.raises(vectorpg.VectorPgError):
            through.add(vectors=[[0, 0, 1, 0]], ids=["c"])  # writes need a primary: none until one is promoted
        promote(own.replicas[0].data_dir)
        promoted = vectorpg.connect(own.replicas[0].url).collection("kept", embedder=None, create=False)
        promoted.add(vectors=[[0, 0, 1, 0]], ids=["c"])
        assert promoted.count() == 3
        routed.close()
    finally:
        own.stop()


def test_the_async_api_reads_on_the_replicas_too(primed: Cluster) -> None:
    import asyncio

    import vectorpg.aio

    async def main() -> tuple[set[str], list[str], str]:
        adb = await vectorpg.aio.connect(primed.primary.url, replicas=[r.url for r in primed.replicas])
        try:
            docs = await adb.collection("items", embedder=None, create=False)
            servers = {(await docs.explain(np.ones(DIM), k=3)).server for _ in range(4)}
            await docs.upsert(vectors=[np.full(DIM, 2.0)], ids=["async-write"])
            with adb.reading(read_your_writes=True):
                found = [d.id for d in await docs.get(["async-write"])]
                server = (await docs.explain(np.ones(DIM), k=1)).server
            return servers, found, server
        finally:
            await adb.close()

    servers, found, server = asyncio.run(main())
    assert len(servers) == 2 and all(s.startswith("replica") for s in servers)  # round robin, never the primary
    assert found == ["async-write"] and server.startswith("replica")

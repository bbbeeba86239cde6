"""The async API's own promises: many tasks on one pool, cancellation that leaves nothing written and the pool
healthy, the sync API inside ``run_sync``, an AsyncSession's transaction. (Each behaviour of the sync API is
re-run through the async one by the tests that take ``face``.)"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Integer, String, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
import vectorpg.aio
from vectorpg import vector_column

DIM = 16


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "aio_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(10))
    embedding: Mapped[Any] = vector_column(DIM)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_fifty_tasks_share_one_pool_and_get_the_sync_results(db: vectorpg.Database, database_url: str) -> None:
    data = _vectors(2000)
    docs = db.collection("many_tasks", dimension=DIM, embedder=None)
    docs.add(vectors=data, ids=[str(i) for i in range(len(data))], metadata=[{"n": i % 10} for i in range(len(data))])
    queries = _vectors(50, seed=1)
    expected = [[h.id for h in docs.search(q, k=5, where={"n": {"$lt": 5}})] for q in queries]

    async def main() -> tuple[list[list[str]], int, int]:
        adb = await vectorpg.aio.connect(database_url, pool_size=5, max_overflow=5)
        try:
            adocs = await adb.collection("many_tasks")
            writes = [
                adocs.upsert(vectors=_vectors(20, seed=100 + t), ids=[f"w{t}-{i}" for i in range(20)])
                for t in range(10)
            ]
            searches = [adocs.search(q, k=5, where={"n": {"$lt": 5}}) for q in queries]
            results = await asyncio.gather(*searches, *writes)
            pool = adb.engine.sync_engine.pool
            return [[h.id for h in hits] for hits in results[: len(queries)]], await adocs.count(), pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await adb.close()

    got, count, checked_out = asyncio.run(main())
    assert got == expected
    assert count == 2000 + 10 * 20
    assert checked_out == 0


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.01, 0.03, 0.1])
def test_cancelling_a_copy_writes_nothing_and_leaves_the_pool_healthy(database_url: str, delay: float) -> None:
    """A task cancelled while its bulk write runs (binary COPY of 100,000 rows): nothing is stored, and the
    next calls on the same pool work (the connection went back clean or was discarded)."""
    data = _vectors(100_000, seed=2)

    async def main() -> tuple[int, int, list[str], int]:
        adb = await vectorpg.aio.connect(database_url, pool_size=1, max_overflow=0)
        try:
            adocs = await adb.collection("cancelled", dimension=DIM, embedder=None, auto_index=False)
            await adocs.add(vectors=data[:10], ids=[f"keep{i}" for i in range(10)])
            task = asyncio.ensure_future(adocs.add(vectors=data, ids=[str(i) for i in range(len(data))]))
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            count = await adocs.count()
            hits = await adocs.search(data[3], k=1)
            pool = adb.engine.sync_engine.pool
            return count, len(hits), [h.id for h in hits], pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await adb.close()

    count, found, ids, checked_out = asyncio.run(main())
    assert count == 10 and found == 1 and ids == ["keep3"] and checked_out == 0


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.005, 0.02])
def test_cancelling_searches_leaves_the_pool_healthy(db: vectorpg.Database, database_url: str, delay: float) -> None:
    data = _vectors(20_000, seed=3)
    docs = db.collection("cancel_search", dimension=DIM, embedder=None, auto_index=False)
    docs.add(vectors=data, ids=[str(i) for i in range(len(data))], metadata=[{"n": i % 7} for i in range(len(data))])
    expected = [h.id for h in docs.search(data[11], k=3, where={"n": 4})]

    async def main() -> tuple[list[str], int]:
        adb = await vectorpg.aio.connect(database_url, pool_size=2, max_overflow=0)
        try:
            adocs = await adb.collection("cancel_search")
            tasks = [asyncio.ensure_future(adocs.search_many(data[:200], k=10)) for _ in range(4)]
            await asyncio.sleep(delay)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            hits = await adocs.search(data[11], k=3, where={"n": 4})
            pool = adb.engine.sync_engine.pool
            return [h.id for h in hits], pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await adb.close()

    ids, checked_out = asyncio.run(main())
    assert ids == expected and checked_out == 0


def test_repository_over_an_async_session_joins_its_transaction(db: vectorpg.Database, database_url: str) -> None:
    Base.metadata.create_all(db.engine)
    data = _vectors(300, seed=4)
    rows = [{"id": i, "category": "a" if i % 2 else "b", "embedding": data[i]} for i in range(300)]

    async def main() -> tuple[int, int, list[int], int]:
        engine = create_async_engine(vectorpg.db.engine.sqlalchemy_url(database_url))  # the app's own engine
        try:
            async with AsyncSession(engine) as session:
                repo = vectorpg.aio.Repository(Item, session, metric="l2")
                await repo.add(rows)
                inside = await repo.count()
                await session.rollback()
            after_rollback = await vectorpg.aio.Repository(Item, engine).count()
            async with AsyncSession(engine) as session, session.begin():
                repo = vectorpg.aio.Repository(Item, session, metric="l2")
                await repo.add(rows)
                with pytest.raises(vectorpg.InvalidVectorError):  # only its savepoint rolls back
                    await repo.add([{"id": 999, "category": "a", "embedding": [np.nan] * DIM}])
                ids = [row.id for row, _ in await repo.search(data[7], k=3, where=Item.category == "a")]
            committed = await vectorpg.aio.Repository(Item, engine).count()
            return inside, after_rollback, ids, committed
        finally:
            await engine.dispose()

    inside, after_rollback, ids, committed = asyncio.run(main())
    distances = np.linalg.norm(data - data[7], axis=1)
    odd = np.flatnonzero(np.arange(300) % 2 == 1)
    assert inside == 300 and after_rollback == 0 and committed == 300
    assert ids == [int(i) for i in odd[np.argsort(distances[odd])[:3]]]


def test_the_sync_api_inside_run_sync(db: vectorpg.Database, database_url: str) -> None:
    """``await session.run_sync(fn)``: the sync Repository over the session's sync Session, on the async
    driver (type registration and binary COPY included)."""
    Base.metadata.create_all(db.engine)
    data = _vectors(1500, seed=5)

    def work(session: Session) -> tuple[int, int]:
        repo = vectorpg.Repository(Item, session, metric="l2")
        repo.add({"id": i, "category": "x", "embedding": data[i]} for i in range(len(data)))  # COPY
        return repo.count(), repo.search(data[42], k=1)[0][0].id

    async def main() -> tuple[int, int, int]:
        engine = create_async_engine(vectorpg.db.engine.sqlalchemy_url(database_url))
        try:
            async with AsyncSession(engine) as session, session.begin():
                count, nearest = await session.run_sync(work)
            async with AsyncSession(engine) as session:
                stored = (await session.execute(select(text("count(*)")).select_from(Item))).scalar_one()
            return count, nearest, stored
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == (1500, 42, 1500)


def test_wrong_binds_and_sync_only_calls_say_what_to_use(database_url: str) -> None:
    with pytest.raises(vectorpg.InvalidArgumentError, match="AsyncSession, an AsyncEngine"):
        vectorpg.aio.Repository(Item, object())  # type: ignore[arg-type]

    async def main() -> None:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("sync_only", dimension=DIM, embedder=None)
            assert adocs.dimension == DIM and adocs.name == "sync_only"  # plain attributes are the sync object's
            with pytest.raises(AttributeError, match="no async form"):
                adocs.prepare_batch  # noqa: B018
            with pytest.raises(vectorpg.InvalidArgumentError, match="one connection"):
                await adocs.upload(iter(_vectors(10)), parallel=2)
        finally:
            await adb.close()

    asyncio.run(main())


def test_scan_is_an_async_iterator(db: vectorpg.Database, database_url: str) -> None:
    docs = db.collection("scanned", dimension=DIM, embedder=None)
    docs.add(
        vectors=_vectors(130), ids=[f"s{i:03d}" for i in range(130)], metadata=[{"odd": i % 2} for i in range(130)]
    )

    async def main() -> list[str]:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("scanned")
            return [d.id async for d in adocs.scan({"odd": 1}, batch_size=9)]
        finally:
            await adb.close()

    assert asyncio.run(main()) == [f"s{i:03d}" for i in range(1, 130, 2)]


def test_an_upload_from_a_generator(database_url: str) -> None:
    """``upload`` writes its batches on the caller's connection under asyncio (a sync upload writes behind on a
    thread, which an async connection cannot follow)."""
    data = _vectors(5000, seed=6)

    async def main() -> tuple[int, int]:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("uploaded", dimension=DIM, embedder=None, auto_index=False)
            written = await adocs.upload((v for v in data), ids=(f"u{i}" for i in range(len(data))), batch_size=700)
            return written, await adocs.count()
        finally:
            await adb.close()

    assert asyncio.run(main()) == (5000, 5000)


def test_an_index_build_reports_progress(database_url: str) -> None:
    """The build's progress is polled from a connection of its own (the async engine's belong to the loop)."""
    rng = np.random.default_rng(8)
    centers = rng.standard_normal((20, 384)).astype(np.float32)
    data = centers[rng.integers(0, 20, 12_000)] + 0.2 * rng.standard_normal((12_000, 384)).astype(np.float32)

    async def main() -> tuple[list[str], list[Any]]:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("built", dimension=384, embedder=None, auto_index=False)
            await adocs.add(vectors=data, ids=[str(i) for i in range(len(data))])
            events: list[Any] = []
            name = await adocs.create_index(progress=events.append, tune_recall=None)
            return [i.name for i in await adocs.indexes()] + [name], events
        finally:
            await adb.close()

    names, events = asyncio.run(main())
    assert names[-1] in names[:-1]
    assert any("building" in e.phase for e in events), events


def test_reembed_returns_the_async_collection(database_url: str) -> None:
    from tests.fix_embedders import HashEmbedder

    async def main() -> tuple[Any, int, int]:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("re", embedder=HashEmbedder(dimension=8))
            await adocs.add(["one", "two", "three"], ids=["1", "2", "3"])
            moved = await adocs.reembed(HashEmbedder(dimension=12, name="wider"), progress=False)
            return moved, moved.dimension, len(await moved.search("two", k=3))
        finally:
            await adb.close()

    moved, dimension, found = asyncio.run(main())
    assert isinstance(moved, vectorpg.aio.Collection) and dimension == 12 and found == 3

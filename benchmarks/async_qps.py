"""The async API's throughput with 1-50 concurrent tasks, next to the sync API's with as many threads and raw
psycopg async (one connection a task, the hand-written statement), same server, same run.

A collection of ``--rows`` clustered unit vectors (384-d, 200 clusters, an HNSW index, metadata ``{"n": i % 100}``)
is searched
``--searches`` times at each concurrency: ``Collection.search(q, k=10)`` and, filtered,
``where={"n": {"$lt": 10}}`` (10% of the rows). The pools hold as many connections as there are workers.
QPS is searches over wall time; p50 / p95 are over each search's latency. Recall@10 of each side against exact
search over the same rows is reported (the sides answer the same queries the same way, or the QPS means
nothing). The machine has 2 cores, shared by the client and the server: the numbers show how each API
queues work, not what a bigger machine would serve.

``python -m benchmarks.async_qps [--rows 20000] [--searches 600] [--tasks 1,5,10,25,50]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from sqlalchemy import text

import vectorpg
import vectorpg.aio
from benchmarks.common import RESULTS, exact_neighbours, figure, recall_at, save, table
from vectorpg import HNSW

DIM = 384
K = 10
FILTERED = {"n": {"$lt": 10}}
SIDES = ("sync API, threads", "vectorpg.aio, tasks", "raw psycopg async, tasks")


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "qps": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
    }


def _sync_side(docs: Any, queries: np.ndarray, workers: int, where: Any) -> tuple[dict[str, float], list[list[str]]]:
    found: list[list[str]] = [[] for _ in queries]
    latencies: list[float] = []

    def one(i: int) -> None:
        start = time.perf_counter()
        found[i] = [h.id for h in docs.search(queries[i], K, where=where)]
        latencies.append(time.perf_counter() - start)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(min(workers, len(queries)))))  # warm every connection
        latencies.clear()
        start = time.perf_counter()
        list(pool.map(one, range(len(queries))))
        seconds = time.perf_counter() - start
    return _summary(latencies, seconds), found


async def _gather(
    call: Callable[[int], Awaitable[list[str]]], n: int, tasks: int
) -> tuple[list[float], float, list[list[str]]]:
    found: list[list[str]] = [[] for _ in range(n)]
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            start = time.perf_counter()
            found[i] = await call(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return latencies, time.perf_counter() - start, found


async def _async_side(
    url: str, queries: np.ndarray, tasks: int, where: Any
) -> tuple[dict[str, float], list[list[str]]]:
    adb = await vectorpg.aio.connect(url, pool_size=tasks, max_overflow=0)
    try:
        docs = await adb.collection("qps", embedder=None, create=False)

        async def one(i: int) -> list[str]:
            return [h.id for h in await docs.search(queries[i], K, where=where)]

        await _gather(one, min(tasks, len(queries)), tasks)  # warm every connection
        latencies, seconds, found = await _gather(one, len(queries), tasks)
    finally:
        await adb.close()
    return _summary(latencies, seconds), found


async def _raw_side(
    url: str, queries: np.ndarray, tasks: int, where: Any, ef_search: int
) -> tuple[dict[str, float], list[list[str]]]:
    """One psycopg AsyncConnection a task, the statement written by hand (the partition, the index's order,
    LIMIT) with the ``ef_search`` vectorpg's planner chose for the same search (its ``explain()``), the
    filtered one with an iterative scan."""
    # the index is on embedding::vector(384) (the documents table holds every dimension): the hand-written
    # ORDER BY must name that expression, or PostgreSQL scans the partition exactly
    statement = (
        "SELECT id FROM vectorpg.documents WHERE collection = 'qps' AND (metadata->>'n')::int < 10 "
        "ORDER BY embedding::vector(384) <=> %s::vector(384) LIMIT 10"
        if where
        else "SELECT id FROM vectorpg.documents WHERE collection = 'qps' "
        "ORDER BY embedding::vector(384) <=> %s::vector(384) LIMIT 10"
    )
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None) for _ in range(tasks)]
    free: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for conn in conns:
        await register_vector_async(conn)
        await conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        if where:
            await conn.execute("SET hnsw.iterative_scan = strict_order")
        free.put_nowait(conn)

    async def one(i: int) -> list[str]:
        conn = await free.get()
        try:
            rows = await (await conn.execute(statement, [queries[i]])).fetchall()
        finally:
            free.put_nowait(conn)
        return [r[0] for r in rows]

    try:
        await _gather(one, min(tasks, len(queries)), tasks)
        latencies, seconds, found = await _gather(one, len(queries), tasks)
    finally:
        for conn in conns:
            await conn.close()
    return _summary(latencies, seconds), found


def run(url: str, rows: int, searches: int, concurrency: list[int]) -> dict[str, Any]:
    rng = np.random.default_rng(11)  # clustered, as embeddings of real texts are (uniform noise in 384-d is
    centers = rng.standard_normal((200, DIM)).astype(np.float32)  # an HNSW graph's worst case)
    data = centers[rng.integers(0, len(centers), rows)] + 0.3 * rng.standard_normal((rows, DIM)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.integers(0, rows, searches)] + 0.1 * rng.standard_normal((searches, DIM)).astype(np.float32)
    db = vectorpg.connect(url, pool_size=max(concurrency), max_overflow=0)
    db.drop_collection("qps")
    docs = db.collection("qps", dimension=DIM, embedder=None, auto_index=False)
    docs.add(vectors=data, ids=[str(i) for i in range(rows)], metadata=[{"n": i % 100} for i in range(rows)])
    docs.create_index(HNSW())
    with db.engine.begin() as conn:  # statistics, as a tuned deployment has them (without, the first raw
        conn.execute(text("ANALYZE vectorpg.documents"))  # statements can plan an exact scan)
    ef = {kind: int(docs.explain(queries[0], k=K, where=where).settings.get("hnsw.ef_search", 40))
          for kind, where in (("plain", None), ("filtered", FILTERED))}  # fmt: skip
    print(f"vectorpg's ef_search: {ef}", flush=True)
    allowed = np.flatnonzero(np.arange(rows) % 100 < 10)
    truth = {
        "plain": [[str(i) for i in row] for row in exact_neighbours(data, queries, K, "cosine")],
        "filtered": [[str(allowed[i]) for i in row] for row in exact_neighbours(data[allowed], queries, K, "cosine")],
    }
    out: dict[str, Any] = {"rows": rows, "searches": searches, "dim": DIM, "ef_search": ef, "runs": []}
    for kind, where in (("plain", None), ("filtered", FILTERED)):
        for n in concurrency:
            for side in SIDES:
                if side == SIDES[0]:
                    summary, found = _sync_side(docs, queries, n, where)
                else:
                    if side == SIDES[1]:
                        summary, found = asyncio.run(_async_side(url, queries, n, where))
                    else:
                        summary, found = asyncio.run(_raw_side(url, queries, n, where, ef[kind]))
                summary |= {"kind": kind, "side": side, "workers": n, "recall": recall_at(found, truth[kind], K)}
                out["runs"].append(summary)
                print(json.dumps(summary), flush=True)
    db.drop_collection("qps")
    db.close()
    return out


def write(result: dict[str, Any]) -> str:
    sides = SIDES
    lines = [
        "# Async API: QPS with 1-50 concurrent tasks",
        "",
        f"`python -m benchmarks.async_qps`: {result['rows']:,} x {result['dim']}-d rows (HNSW), "
        f"{result['searches']:,} searches (k={K}) at each concurrency; plain, and filtered to 10% of the rows. "
        "2 cores shared by the client and the server.",
        "",
    ]
    fig, axes = figure(10, 4.2, ncols=2)
    for ax, kind in zip(axes, ("plain", "filtered")):
        runs = [r for r in result["runs"] if r["kind"] == kind]
        body = [
            [r["workers"], r["side"], round(r["qps"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['recall']:.3f}"]
            for r in runs
        ]
        lines += [f"## {kind}", "", table(["workers", "side", "QPS", "p50 ms", "p95 ms", "recall@10"], body), ""]
        base = {r["workers"]: r["qps"] for r in runs if r["side"] == sides[0]}
        lines.append(
            "vectorpg.aio vs the sync API: "
            + ", ".join(f"{r['workers']}: {r['qps'] / base[r['workers']]:.2f}x" for r in runs if r["side"] == sides[1])
            + "; vs raw psycopg async: "
            + ", ".join(
                f"{r['workers']}: {r['qps'] / q['qps']:.2f}x"
                for r in runs
                if r["side"] == sides[1]
                for q in runs
                if q["side"] == sides[2] and q["workers"] == r["workers"]
            )
        )
        lines.append("")
        for side in sides:
            points = [r for r in runs if r["side"] == side]
            ax.plot([r["workers"] for r in points], [r["qps"] for r in points], marker="o", label=side)
        ax.set_xscale("log")
        ax.set_xlabel("concurrent workers")
        ax.set_ylabel("searches / s")
        ax.set_title(kind)
        ax.legend(fontsize=8)
    lines += [f"![QPS]({save(fig, 'async_qps.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "async_qps.md").write_text(report)
    (RESULTS / "async_qps.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--searches", type=int, default=600)
    parser.add_argument("--tasks", default="1,5,10,25,50")
    args = parser.parse_args()
    db = vectorpg.connect()
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    db.close()
    print(write(run(url, args.rows, args.searches, [int(t) for t in args.tasks.split(",")])))


if __name__ == "__main__":
    main()

"""Comparison 6: throughput and tail latency with 1 and 2 client processes (the machine has 2 cores).

Each client process opens its own ``vectorpg.connect`` and runs ``Collection.search(q, 10)`` (HNSW,
m=16, ef_construction=64, default ef_search) in a loop for a fixed time; QPS is all clients' searches
over the wall time, p99 is over every search's latency.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import numpy as np

import vectorpg
from benchmarks.common import Context, Goal, Section, figure, save, table
from benchmarks.datasets import Dataset
from vectorpg import HNSW


def _client(url: str, queries: np.ndarray, seconds: float, start_at: float, out: Any) -> None:
    db = vectorpg.connect(url)
    docs = db.collection("load", embedder=None, create=False)
    for q in queries[:10]:
        docs.search(q, 10)
    while time.time() < start_at:
        time.sleep(0.001)
    micros = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t = time.perf_counter_ns()
        docs.search(queries[i % len(queries)], 10)
        micros.append((time.perf_counter_ns() - t) / 1000)
        i += 1
    db.close()
    out.put(micros)


def run_dataset(ctx: Context, data: Dataset) -> dict[str, Any]:
    url = ctx.database("bench_load")
    db = vectorpg.connect(url)
    docs = db.collection("load", dimension=data.rows.shape[1], metric=data.metric, embedder=None)
    docs.add(vectors=data.rows, ids=[str(i) for i in range(len(data.rows))])
    docs.create_index(HNSW())
    db.close()
    seconds = 5.0 if ctx.quick else 20.0
    results = {}
    context = multiprocessing.get_context("spawn")
    for clients in (1, 2):
        queue = context.Queue()
        start_at = time.time() + 8.0  # every client connected and warm before the clock starts
        procs = [
            context.Process(target=_client, args=(url, data.queries[c::clients], seconds, start_at, queue))
            for c in range(clients)
        ]
        for p in procs:
            p.start()
        samples = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        all_micros = np.concatenate([np.asarray(s) for s in samples])
        results[clients] = {
            "qps": len(all_micros) / seconds,
            "p50": float(np.percentile(all_micros, 50)),
            "p99": float(np.percentile(all_micros, 99)),
            "searches": len(all_micros),
        }
    return {"dataset": data.name, "rows": len(data.rows), "seconds": seconds, "clients": results}


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    return render({"runs": [run_dataset(ctx, d) for d in datasets]})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, goals, plots) from the measurements."""
    measured = data["runs"]
    for m in measured:  # JSON turned the client counts into strings
        m["clients"] = {int(k): v for k, v in m["clients"].items()}
    rows, goals = [], []
    for m in measured:
        for clients, r in m["clients"].items():
            rows.append([m["dataset"], clients, r["searches"], r["qps"], r["p50"], r["p99"]])
        scale = m["clients"][2]["qps"] / m["clients"][1]["qps"]
        goals.append(Goal(f"QPS with 2 clients ÷ 1 ({m['dataset']})", "reported (2 cores)", f"{scale:.2f}x", True, ""))
    markdown = (
        "Client processes searching the same collection (HNSW, k=10) for a fixed time on this 2-core machine; "
        "the server shares the same cores.\n\n"
        + table(["dataset", "clients", "searches", "QPS", "p50 µs", "p99 µs"], rows)
    )
    fig, ax = figure(7, 4)
    for m in measured:
        clients = sorted(m["clients"])
        ax.plot(clients, [m["clients"][c]["qps"] for c in clients], marker="o", label=f"{m['dataset']} QPS")
    ax.set_xlabel("client processes")
    ax.set_ylabel("searches per second")
    ax.set_xticks([1, 2])
    ax.set_title("Throughput under concurrent clients")
    ax.legend(fontsize=8)
    return Section("6. Concurrency", markdown, {"runs": measured}, [save(fig, "concurrency.png")], goals)

"""Concurrent load: writers (upsert and delete) and readers (filtered searches) in separate processes against
one server, autovacuum on. Counted: operations, errors that are not retryable, searches that came back with
fewer than k rows while k matched, and recall@10 against exact search measured at intervals.

    python -m tests.stress.load --seconds 120       # prints the figures (the suite runs ~10 s)

Rows carry ``{"category": c}``: categories 0-4 are stable (about 1,000 rows each, never written during the
run) and what readers search; writers upsert and delete rows of categories 5-9 only, so the answers the
readers must get are known while the table churns around them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from typing import Any

DIM = 32
STABLE = 1000
K = 10
RETRYABLE = ("40001", "40P01")  # serialization failure, deadlock: the client retries


def writer(url: str, seed: int, seconds: float, out: Any) -> None:
    import numpy as np

    import vectorpg

    rng = np.random.default_rng(seed)
    docs = vectorpg.connect(url).collection("load", embedder=None, create=False)
    stats = {"upserts": 0, "deletes": 0, "retried": 0, "errors": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ids = [f"v{int(i)}" for i in rng.integers(0, 5000, size=50)]
        ids = list(dict.fromkeys(ids))
        try:
            if rng.random() < 0.7:
                docs.add(
                    vectors=rng.normal(size=(len(ids), DIM)),
                    ids=ids,
                    metadata=[{"category": int(c)} for c in rng.integers(5, 10, size=len(ids))],
                )
                stats["upserts"] += len(ids)
            else:
                stats["deletes"] += docs.delete(ids)
        except vectorpg.VectorPgError as exc:
            stats["errors"].append(repr(exc))
        except Exception as exc:
            code = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if code in RETRYABLE:
                stats["retried"] += 1
            else:
                stats["errors"].append(repr(exc))
    out.put(("writer", stats))


def reader(url: str, seed: int, seconds: float, out: Any) -> None:
    import numpy as np

    import vectorpg

    rng = np.random.default_rng(seed)
    docs = vectorpg.connect(url).collection("load", embedder=None, create=False)
    stats: dict[str, Any] = {"searches": 0, "short": 0, "recalls": [], "errors": []}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        category = int(rng.integers(0, 5))
        q = rng.normal(size=DIM)
        try:
            hits = docs.search(q, K, where={"category": category})
            stats["searches"] += 1
            stats["short"] += len(hits) < K
            if stats["searches"] % 20 == 0:
                exact = docs.search(q, K, where={"category": category}, strategy="exact")
                stats["recalls"].append(len({h.id for h in hits} & {h.id for h in exact}) / K)
            if stats["searches"] % 7 == 0:  # and an unfiltered search over the churning table
                stats["short"] += len(docs.search(q, K)) < K
        except Exception as exc:
            stats["errors"].append(repr(exc))
    out.put(("reader", stats))


def run(url: str, seconds: float, writers: int = 2, readers: int = 2) -> dict[str, Any]:
    import numpy as np

    import vectorpg
    from vectorpg import HNSW

    db = vectorpg.connect(url)
    db.drop_collection("load")
    docs = db.collection("load", dimension=DIM, embedder=None)
    rng = np.random.default_rng(0)
    docs.add(
        vectors=rng.normal(size=(5 * STABLE, DIM)),
        ids=[f"s{i}" for i in range(5 * STABLE)],
        metadata=[{"category": i % 5} for i in range(5 * STABLE)],
    )
    docs.add(
        vectors=rng.normal(size=(3000, DIM)),
        ids=[f"v{i}" for i in range(3000)],
        metadata=[{"category": 5 + i % 5} for i in range(3000)],
    )
    docs.create_index(HNSW())
    db.close()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=writer, args=(url, i, seconds, queue)) for i in range(writers)]
    procs += [context.Process(target=reader, args=(url, 100 + i, seconds, queue)) for i in range(readers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    writes = [s for kind, s in results if kind == "writer"]
    reads = [s for kind, s in results if kind == "reader"]
    recalls = [r for s in reads for r in s["recalls"]]
    return {
        "seconds": seconds,
        "upserted_rows": sum(s["upserts"] for s in writes),
        "deleted_rows": sum(s["deletes"] for s in writes),
        "retried": sum(s["retried"] for s in writes),
        "searches": sum(s["searches"] for s in reads),
        "short_results": sum(s["short"] for s in reads),
        "min_recall": min(recalls) if recalls else None,
        "mean_recall": sum(recalls) / len(recalls) if recalls else None,
        "errors": [e for s in writes + reads for e in s["errors"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--url", default=None, help="a server URL (default: the embedded server)")
    args = parser.parse_args(argv)
    from vectorpg.db.server import embedded_server

    url = args.url or embedded_server().url
    result = run(url, args.seconds)
    print(json.dumps(result, indent=2))
    return 0 if not result["errors"] and result["short_results"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

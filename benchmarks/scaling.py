"""The cost model of docs/scaling.md: per-million-row figures measured here, replica read scaling measured
here, and a projection to 10M and 100M rows with its assumptions.

``python -m benchmarks.scaling [--rows 50000]``. Measured in one run on the embedded server (2 cores):

* for 384 and 768 dimensions, ``vector`` and ``halfvec`` HNSW (m=16, ef_construction=64): table and index
  size, HNSW build time with one process and with two (one parallel worker), and single-client QPS at the
  smallest ``ef_search`` whose recall@10 against exact NumPy search over the same rows is >= 0.95;
* reads on 1 primary against 1 primary + 2 streaming replicas (``connect(..., replicas=...)``), 4 client
  threads, the same searches.

Sizes are linear in rows and are scaled to a million; the build time per million is taken from the growth
benchmark's measured law (x2.1 per doubling of rows), not linearly. The projection is arithmetic on these
figures under the assumptions printed with it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

import vectorpg
from benchmarks.common import RESULTS, figure, save, table
from benchmarks.datasets import clustered

EF_STEPS = (40, 64, 100, 160, 250, 400, 640, 1000)
#: the growth benchmark's measured law: HNSW build time x2.1 per doubling of rows (benchmarks/RESULTS.md, 5)
BUILD_PER_DOUBLING = 2.1
#: ... and p50 latency x1.1 per doubling of rows
LATENCY_PER_DOUBLING = 1.1


def _build(conn: psycopg.Connection[Any], kind: str, dim: int, workers: int) -> tuple[float, int]:
    expr = "embedding" if kind == "vector" else f"(embedding::halfvec({dim}))"
    ops = "vector_cosine_ops" if kind == "vector" else "halfvec_cosine_ops"
    conn.execute("DROP INDEX IF EXISTS items_hnsw")
    conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
    conn.execute("SET maintenance_work_mem = '1GB'")
    start = time.perf_counter()
    conn.execute(f"CREATE INDEX items_hnsw ON items USING hnsw ({expr} {ops})")
    elapsed = time.perf_counter() - start
    size = conn.execute("SELECT pg_relation_size('items_hnsw')").fetchone()[0]  # type: ignore[index]
    return elapsed, int(size)


def _search_sql(kind: str, dim: int) -> sql.Composed:
    if kind == "vector":
        return sql.SQL("SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10").format()
    return sql.SQL(
        "SELECT id FROM items ORDER BY embedding::halfvec({d}) <=> %s::vector::halfvec({d}) LIMIT 10"
    ).format(d=sql.Literal(dim))


def _at_recall(
    conn: psycopg.Connection[Any], kind: str, dim: int, queries: np.ndarray, exact: list[set[int]]
) -> dict[str, Any]:
    """The smallest ef_search reaching recall@10 >= 0.95 and the QPS there (one client)."""
    statement = _search_sql(kind, dim)
    found: dict[str, Any] = {}
    for ef in EF_STEPS:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        start = time.perf_counter()
        got = [{r[0] for r in conn.execute(statement, [q], prepare=False).fetchall()} for q in queries]
        elapsed = time.perf_counter() - start
        recall = float(np.mean([len(g & e) / 10 for g, e in zip(got, exact, strict=True)]))
        found = {"ef_search": ef, "recall": recall, "qps": len(queries) / elapsed}
        if recall >= 0.95:
            break
    return found


def measure_sizes(url: str, rows: int) -> list[dict[str, Any]]:
    out = []
    for dim in (384, 768):
        data = clustered(rows, dim, queries=100, seed=dim)
        exact_ids = np.argsort(-(data.queries @ data.rows.T), axis=1)[:, :10]
        exact = [set(map(int, r)) for r in exact_ids]
        with psycopg.connect(url, autocommit=True) as conn:
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS items")
            conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({dim}))")
            with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for i, v in enumerate(data.rows):
                    copy.write_row([i, v])
            conn.execute("VACUUM ANALYZE items")
            table_bytes = conn.execute("SELECT pg_table_size('items')").fetchone()[0]  # type: ignore[index]
            for kind in ("vector", "halfvec"):
                builds = {}
                for workers in (0, 1):
                    builds[workers + 1], index_bytes = _build(conn, kind, dim, workers)
                quality = _at_recall(conn, kind, dim, data.queries, exact)
                row = {"dim": dim, "kind": kind, "rows": rows, "table_bytes": table_bytes, "index_bytes": index_bytes,
                       "build_s": builds, **quality}  # fmt: skip
                print(json.dumps(row), flush=True)
                out.append(row)
            conn.execute("DROP TABLE items")
    return out


def measure_replicas(seconds: float = 8.0, threads: int = 4) -> dict[str, Any]:
    """Search QPS of 4 client threads on the primary alone, then spread over the primary's two replicas."""
    from tests.fix_replicas import start_cluster

    data = clustered(20_000, 384, queries=200, seed=7)
    root = Path(tempfile.mkdtemp(prefix="vectorpg-scaling-"))
    cluster = start_cluster(root, replicas=2)
    try:
        db = vectorpg.connect(cluster.primary.url)
        docs = db.collection("scaling", dimension=384, embedder=None)
        docs.add(vectors=data.rows, ids=[str(i) for i in range(len(data.rows))])
        docs.create_index(vectorpg.HNSW(), tune_recall=None)
        db.close()
        time.sleep(2)  # the replicas replay the index build
        result = {}
        for label, replicas in (("primary alone", None), ("primary + 2 replicas", [r.url for r in cluster.replicas])):
            routed = vectorpg.connect(cluster.primary.url, replicas=replicas)
            collection = routed.collection("scaling", embedder=None, create=False)
            counts = [0] * threads
            stop = time.monotonic() + seconds

            def client(i: int, collection: Any = collection, counts: list[int] = counts, stop: float = stop) -> None:
                n = 0
                while time.monotonic() < stop:
                    collection.search(data.queries[(i * 50 + n) % len(data.queries)], k=10)
                    n += 1
                counts[i] = n

            workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            result[label] = sum(counts) / seconds
            routed.close()
        return result
    finally:
        cluster.stop()


def project(
    sizes: list[dict[str, Any]], target_qps: float = 1000.0, node_ram_gib: float = 64.0
) -> list[dict[str, Any]]:
    """Shards and replicas for 10M and 100M rows from the per-million figures (assumptions in write())."""
    out = []
    for row in sizes:
        per_million = (row["table_bytes"] + row["index_bytes"]) / row["rows"] * 1e6
        for total in (10_000_000, 100_000_000):
            ram = per_million * total / 1e6
            shards = max(1, math.ceil(ram / (node_ram_gib * 2**30 * 0.5)))  # half the RAM for the working set
            per_shard_rows = total / shards
            slowdown = LATENCY_PER_DOUBLING ** math.log2(per_shard_rows / row["rows"])
            node_qps = row["qps"] / slowdown * 4  # measured on 2 cores; a node of 8 cores serves 4x (assumed)
            replicas = max(0, math.ceil(target_qps / node_qps) - 1)
            build = row["build_s"][2] * BUILD_PER_DOUBLING ** math.log2(per_shard_rows / row["rows"])
            out.append(
                {
                    **{"dim": row["dim"], "kind": row["kind"], "rows": total, "ram_gib": ram / 2**30},
                    **{"shards": shards, "replicas_per_shard": replicas, "build_h_per_shard": build / 3600},
                    "node_qps": node_qps,
                }
            )
    return out


def write(result: dict[str, Any]) -> str:
    sizes, replicas, projection = result["sizes"], result["replicas"], result["projection"]
    lines = [
        "# Scaling: measured, then projected",
        "",
        f"`python -m benchmarks.scaling --rows {sizes[0]['rows']}`, embedded PostgreSQL 18 + pgvector, 2 cores, "
        "clustered unit vectors (benchmarks.datasets.clustered), HNSW m=16 ef_construction=64, recall@10 against "
        "exact NumPy search over the same rows.",
        "",
        "## Measured",
        "",
        table(
            [
                "dim",
                "index",
                "rows",
                "table MiB / M rows",
                "index MiB / M rows",
                "build s (1 process)",
                "build s (2)",
                "ef_search for recall 0.95",
                "recall",
                "QPS (1 client)",
            ],
            [
                [
                    r["dim"],
                    r["kind"],
                    f"{r['rows']:,}",
                    f"{r['table_bytes'] / r['rows'] * 1e6 / 2**20:,.0f}",
                    f"{r['index_bytes'] / r['rows'] * 1e6 / 2**20:,.0f}",
                    f"{r['build_s'][1]:.1f}",
                    f"{r['build_s'][2]:.1f}",
                    r["ef_search"],
                    f"{r['recall']:.3f}",
                    f"{r['qps']:.0f}",
                ]
                for r in sizes
            ],
        ),
        "",
        "Replica reads (20,000 x 384-d, HNSW, 4 client threads, the same searches):",
        "",
        table(
            ["servers", "QPS", "vs primary alone"],
            [[k, f"{v:.0f}", f"{v / replicas['primary alone']:.2f}x"] for k, v in replicas.items()],
        ),
        "",
        "On 2 cores the replicas share the primary's CPU: the ratio shows the routing's cost and what the cores "
        "allow, not what replicas on their own machines give (each adds its machine's QPS).",
        "",
        "## Projected (not measured)",
        "",
        "Assumptions: rows cost what they cost here per million (sizes are linear); a node keeps its working set "
        "(table + index) in half of 64 GiB of RAM; latency grows x1.1 and HNSW build time x2.1 per doubling of "
        "rows per shard (the growth benchmark's measured laws); a node of 8 cores serves 4x the QPS measured "
        "here on 2; the target is 1,000 QPS at recall@10 0.95. Each shard answers every query (Citus fans out), "
        "so replicas multiply QPS and shards multiply capacity.",
        "",
        table(
            [
                "dim",
                "index",
                "rows",
                "RAM (table + index) GiB",
                "shards",
                "replicas per shard",
                "build h per shard",
                "QPS per node",
            ],
            [
                [
                    p["dim"],
                    p["kind"],
                    f"{p['rows']:,}",
                    f"{p['ram_gib']:,.0f}",
                    p["shards"],
                    p["replicas_per_shard"],
                    f"{p['build_h_per_shard']:.1f}",
                    f"{p['node_qps']:.0f}",
                ]
                for p in projection
            ],
        ),
    ]
    fig, ax = figure(7, 4)
    for r in sizes:
        per_million = (r["table_bytes"] + r["index_bytes"]) / r["rows"] * 1e6 / 2**30
        xs = [r["rows"], 1e6, 1e7, 1e8]
        ax.plot(xs[:1], [per_million * r["rows"] / 1e6], "o")
        ax.plot(xs, [per_million * x / 1e6 for x in xs], "--", label=f"{r['dim']}-d {r['kind']} (projected)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("table + index GiB")
    ax.legend(fontsize=7)
    lines += ["", f"![sizes]({save(fig, 'scaling.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "scaling.md").write_text(report)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    db = vectorpg.connect()
    url = db.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    sizes = measure_sizes(url, args.rows)
    db.close()
    replicas = measure_replicas()
    print(write({"sizes": sizes, "replicas": replicas, "projection": project(sizes)}))


if __name__ == "__main__":
    main()

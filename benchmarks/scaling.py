"""The cost model of docs/scaling.md: per-million-row figures measured here, replica read scaling measured
here, and a projection to 10M and 100M rows with its assumptions.

``python -m benchmarks.scaling [--rows 50000]``. Measured in one run on the embedded server (2 cores):

* for 384 and 768 dimensions, ``vector`` and ``halfvec`` HNSW (m=16, ef_construction=64), at a quarter,
  half and all of ``--rows``: table and index size, HNSW build time with one process and with two (one
  parallel worker), and single-client QPS at the smallest ``ef_search`` whose recall@10 against exact NumPy
  search over the same rows is >= 0.95;
* reads on 1 primary against 1 primary + 2 streaming replicas (``connect(..., replicas=...)``), 4 client
  threads, the same searches, with where they ran (each server's committed transactions).

Sizes are linear in rows and are scaled to a million. The projection takes the figures at the largest row
count, QPS at recall 0.95 falling by the law fitted over the three row counts, and build time growing by the
growth benchmark's measured law (x2.1 per doubling of rows): arithmetic under the assumptions printed with it.
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
#: ... and p50 latency x1.1 per doubling of rows at a fixed ef_search (a floor: keeping recall 0.95 needs a
#: growing ef_search, which the QPS law fitted here includes)
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
    """The smallest ef_search reaching recall@10 >= 0.95 and the QPS there (one client, median of 5 passes)."""
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
    passes = []  # the QPS at that ef_search again, the median of 5 passes (one pass is ~0.1 s: noisy)
    for _ in range(5):
        start = time.perf_counter()
        for q in queries:
            conn.execute(statement, [q], prepare=False).fetchall()
        passes.append(len(queries) / (time.perf_counter() - start))
    found["qps"] = float(np.median(passes))
    return found


def measure_sizes(url: str, largest: int) -> list[dict[str, Any]]:
    """Every figure of the measured table at a quarter, half and all of ``largest`` rows (the growth the
    projection extrapolates)."""
    out = []
    for rows in (largest // 4, largest // 2, largest):
        for dim in (384, 768):
            out += _measure_at(url, rows, dim)
    return out


def _measure_at(url: str, rows: int, dim: int) -> list[dict[str, Any]]:
    out = []
    data = clustered(rows, dim, queries=100, seed=dim)
    exact_ids = np.argsort(-(data.queries @ data.rows.T), axis=1)[:, :10]
    exact = [set(map(int, r)) for r in exact_ids]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # (a fresh server has none yet)
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


def growth_laws(sizes: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, float]]:
    """Per index (dim, kind): the factor per doubling of rows of the 2-process build time and of the
    single-client QPS at recall 0.95, fitted (least squares in log2) over the measured row counts.

    The QPS the projection uses (``qps_pooled``, ``qps_fitted``): the indexes' mean slope (one slope from
    all of them, since each fit has only three noisy points and an ``ef_search`` that moves in steps), never
    kinder than the growth benchmark's fixed-ef_search latency law, and each index's QPS at its largest row
    count read off the line of that slope through its points (not the one noisy measurement)."""
    series = {}
    for key in sorted({(r["dim"], r["kind"]) for r in sizes}):
        points = sorted((r for r in sizes if (r["dim"], r["kind"]) == key), key=lambda r: r["rows"])
        series[key] = (
            np.log2([r["rows"] for r in points]),
            np.log2([r["qps"] for r in points]),
            np.log2([r["build_s"][2] for r in points]),
        )
    slopes = {key: float(np.polyfit(x, qps, 1)[0]) for key, (x, qps, _) in series.items()}
    pooled = min(float(np.mean(list(slopes.values()))), -math.log2(LATENCY_PER_DOUBLING))
    return {
        key: {
            "build": float(2 ** np.polyfit(x, build, 1)[0]),
            "qps": 2 ** slopes[key],
            "qps_pooled": 2**pooled,
            "qps_fitted": float(2 ** (np.mean(qps - pooled * x) + pooled * x.max())),
        }
        for key, (x, qps, build) in series.items()
    }


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
        result: dict[str, Any] = {}
        servers = {
            "primary": cluster.primary.url,
            **{f"replica {i + 1}": r.url for i, r in enumerate(cluster.replicas)},
        }
        for label, replicas in (("primary alone", None), ("primary + 2 replicas", [r.url for r in cluster.replicas])):
            before = _transactions(servers)
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
            routed.close()
            time.sleep(1.5)  # (backends report their counts to the cumulative statistics within a second)
            served = {name: n - before[name] for name, n in _transactions(servers).items()}
            result[label] = {"qps": sum(counts) / seconds, "searches": sum(counts), "transactions": served}
        return result
    finally:
        cluster.stop()


def _transactions(servers: dict[str, str]) -> dict[str, int]:
    """Each server's committed transactions so far (pg_stat_database): where the searches ran."""
    found = {}
    for name, url in servers.items():
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            found[name] = int(row.fetchone()[0])  # type: ignore[index]
    return found


def project(
    sizes: list[dict[str, Any]],
    laws: dict[tuple[int, str], dict[str, float]],
    target_qps: float = 1000.0,
    node_ram_gib: float = 64.0,
) -> list[dict[str, Any]]:
    """Shards and replicas for 10M and 100M rows from the figures at the largest measured row count and the
    growth ``laws`` (assumptions in write())."""
    out = []
    largest = max(r["rows"] for r in sizes)
    for row in (r for r in sizes if r["rows"] == largest):
        per_million = (row["table_bytes"] + row["index_bytes"]) / row["rows"] * 1e6
        for total in (10_000_000, 100_000_000):
            ram = per_million * total / 1e6
            shards = max(1, math.ceil(ram / (node_ram_gib * 2**30 * 0.5)))  # half the RAM for the working set
            per_shard_rows = total / shards
            law = laws[row["dim"], row["kind"]]
            slowdown = law["qps_pooled"] ** -math.log2(per_shard_rows / row["rows"])
            node_qps = law["qps_fitted"] / slowdown * 4  # measured on 2 cores; a node of 8 cores serves 4x (assumed)
            replicas = max(0, math.ceil(target_qps / node_qps) - 1)
            build = row["build_s"][2] * BUILD_PER_DOUBLING ** math.log2(per_shard_rows / row["rows"])
            out.append(
                {
                    **{"dim": row["dim"], "kind": row["kind"], "rows": total, "ram_gib": ram / 2**30},
                    **{"shards": shards, "replicas_per_shard": replicas, "build_h_per_shard": build / 3600},
                    "node_qps": node_qps,
                    "qps_per_doubling": law["qps_pooled"],
                }
            )
    return out


def _replica_rows(replicas: dict[str, Any]) -> list[list[Any]]:
    alone = replicas["primary alone"]["qps"]
    out = []
    for label, r in replicas.items():
        total = max(1, sum(r["transactions"].values()))
        shares = ", ".join(f"{name} {n / total:.0%}" for name, n in r["transactions"].items())
        out.append([label, f"{r['qps']:.0f}", f"{r['qps'] / alone:.2f}x", f"{r['searches']:,}", shares])
    return out


def write(sizes: list[dict[str, Any]], replicas: dict[str, Any]) -> str:
    """The report (printed, and written with the figures and the plot to benchmarks/results/scaling.*)."""
    laws = growth_laws(sizes)
    projection = project(sizes, laws)
    counts = sorted({r["rows"] for r in sizes})
    lines = [
        "# Scaling: measured, then projected",
        "",
        f"`python -m benchmarks.scaling --rows {counts[-1]}`, embedded PostgreSQL 18 + pgvector, 2 cores, "
        "clustered unit vectors (benchmarks.datasets.clustered), HNSW m=16 ef_construction=64, recall@10 against "
        f"exact NumPy search over the same rows, at {', '.join(f'{n:,}' for n in counts)} rows.",
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
                for r in sorted(sizes, key=lambda r: (r["dim"], r["kind"], r["rows"]))
            ],
        ),
        "",
        "Growth per doubling of the rows, fitted over these row counts. QPS at recall 0.95 includes the larger "
        "ef_search that recall needs as the graph grows. Each index's fit has three noisy points, so the "
        "projection takes one slope for all, their mean (never kinder than x1/1.1, the growth benchmark's "
        "fixed-ef_search latency law), and each index's QPS at the largest row count on the line of that slope "
        "through its points:",
        "",
        table(
            [
                "dim",
                "index",
                "build time (2 processes)",
                "QPS at recall 0.95, own fit",
                "pooled (projection)",
                f"QPS at {counts[-1]:,} on the pooled line",
            ],
            [
                [
                    d,
                    k,
                    f"x{law['build']:.2f}",
                    f"x{law['qps']:.2f}",
                    f"x{law['qps_pooled']:.2f}",
                    f"{law['qps_fitted']:.0f}",
                ]
                for (d, k), law in laws.items()
            ],
        ),
        "",
        "Replica reads (20,000 x 384-d, HNSW, 4 client threads in one Python process, the same searches; where "
        "they ran: each server's committed transactions in the run, from pg_stat_database):",
        "",
        table(["servers", "QPS", "vs primary alone", "searches", "transactions on"], _replica_rows(replicas)),
        "",
        "On 2 cores the replicas and the client share the primary's CPU: the ratio shows the routing's cost and "
        "what the cores allow, not what replicas on their own machines give (each adds its machine's QPS).",
        "",
        "## Projected (not measured)",
        "",
        "Assumptions: rows cost what they cost here per million (sizes are linear); a node keeps its working set "
        "(table + index) in half of 64 GiB of RAM; per doubling of the rows per shard, QPS at recall 0.95 "
        "follows the pooled law above and HNSW build time grows x2.1 (the growth benchmark's law, measured from "
        "10,000 to 1,000,000 rows); a node of 8 cores serves 4x the QPS measured here on 2; the target is 1,000 "
        "QPS at recall@10 0.95. Each shard answers every query (Citus fans out), so a shard's replicas multiply "
        "QPS and shards multiply capacity.",
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
    fig, (size_ax, build_ax) = figure(11, 4.2, ncols=2)
    for i, (dim, kind) in enumerate(laws):
        points = sorted((r for r in sizes if (r["dim"], r["kind"]) == (dim, kind)), key=lambda r: r["rows"])
        colour = f"C{i}"
        xs = [r["rows"] for r in points]
        gib = [(r["table_bytes"] + r["index_bytes"]) / 2**30 for r in points]
        per_row = gib[-1] / xs[-1]
        size_ax.plot(xs, gib, "o-", color=colour, label=f"{dim}-d {kind} (measured)")
        size_ax.plot([xs[-1], 1e8], [per_row * xs[-1], per_row * 1e8], "--", color=colour)
        builds = [r["build_s"][2] for r in points]
        build_ax.plot(xs, builds, "o-", color=colour, label=f"{dim}-d {kind} (measured)")
        far = [xs[-1] * 2**j for j in range(0, 12)]
        build_ax.plot(far, [builds[-1] * BUILD_PER_DOUBLING ** math.log2(x / xs[-1]) for x in far], "--",
                      color=colour)  # fmt: skip
    for ax, label in ((size_ax, "table + index GiB"), (build_ax, "HNSW build s, 2 processes (one shard)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows (dashed: projected)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    lines += ["", f"![measured and projected]({save(fig, 'scaling.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "scaling.md").write_text(report)
    result = {"sizes": sizes, "replicas": replicas, "projection": projection}
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--from-json", action="store_true", help="re-render results/scaling.json, no measuring")
    args = parser.parse_args()
    if args.from_json:
        kept = json.loads((RESULTS / "scaling.json").read_text())
        for r in kept["sizes"]:
            r["build_s"] = {int(n): s for n, s in r["build_s"].items()}
        print(write(kept["sizes"], kept["replicas"]))
        return
    db = vectorpg.connect()
    url = db.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    sizes = measure_sizes(url, args.rows)
    db.close()
    replicas = measure_replicas()
    print(write(sizes, replicas))


if __name__ == "__main__":
    main()

"""Comparison 5: how costs grow with the number of vectors (clustered synthetic 384-d: 10k, 100k, 1M).

Per size: load time (``Collection.add``, binary COPY), HNSW build time (m=16, ef_construction=64,
``maintenance_work_mem`` 4 GB) with 1 process and with 2 (a parallel worker), index and table size, the
server's memory, p50 latency and recall@10 at ``ef_search`` 40 (100 queries, exact NumPy ground truth).
At the middle size, halfvec and binary-quantized indexes show what quantization changes. From the
smallest and largest sizes: the growth factor per doubling, extrapolated to 10M and 100M vectors, and the
size at which the index no longer fits in this machine's memory.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

import vectorpg
from benchmarks.common import (
    Context,
    Goal,
    Section,
    connect_raw,
    exact_neighbours,
    figure,
    machine,
    recall_at,
    save,
    table,
)
from benchmarks.datasets import Dataset, clustered
from vectorpg import HNSW
from vectorpg.ddl.builds import create_vector_index
from vectorpg.indexes import Quantization, VectorIndex

K = 10
BUILD = {"maintenance_work_mem": "4GB"}


def _server_rss(url: str) -> float:
    """Resident memory of the PostgreSQL server's processes, in MiB."""
    import psutil

    with connect_raw(url) as conn:  # while this backend lives, its parent is the postmaster
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        postmaster = psutil.Process(pid).parent()
    total = 0
    for process in [postmaster, *postmaster.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a backend that ended meanwhile
            continue
    return total / 2**20


def _measure(docs: Any, data: Dataset, truth: np.ndarray, queries: int) -> tuple[float, float]:
    found, micros = [], []
    for q in data.queries[:queries]:
        start = time.perf_counter_ns()
        found.append([int(h.id) for h in docs.search(q, K, ef_search=40, strategy="ann")])
        micros.append((time.perf_counter_ns() - start) / 1000)
    return float(np.median(micros)), recall_at(found, truth[:queries].tolist(), K)


def run_size(ctx: Context, n: int, both_builds: bool, quantized: bool) -> dict[str, Any]:
    data = clustered(n, queries=100)
    truth = exact_neighbours(data.rows, data.queries, K, "cosine")
    url = ctx.database("bench_growth")
    db = vectorpg.connect(url)
    docs = db.collection("growth", dimension=384, embedder=None)
    start = time.perf_counter()
    for s in range(0, n, 100_000):
        docs.add(vectors=data.rows[s : s + 100_000], ids=[str(i) for i in range(s, min(n, s + 100_000))])
    load = time.perf_counter() - start
    with connect_raw(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE vectorpg.documents_growth")
    builds = {}
    for workers in (0, 1) if both_builds else (1,):
        for info in docs.indexes(refresh=True):
            docs.drop_index(info.name)
        start = time.perf_counter()
        create_vector_index(
            db,
            docs.partition,
            VectorIndex("embedding", docs.metric.metric, HNSW(), dimension=384, cast=True),
            settings={**BUILD, "max_parallel_maintenance_workers": str(workers)},
        )
        builds[workers + 1] = time.perf_counter() - start
    (info,) = docs.indexes(refresh=True)
    with connect_raw(url) as conn:
        table_bytes = int(conn.execute("SELECT pg_table_size('vectorpg.documents_growth')").fetchone()[0])  # type: ignore[index]
    p50, recall = _measure(docs, data, truth, 100)
    row: dict[str, Any] = {
        "rows": n,
        "load_s": load,
        "build_s": builds,
        "index_mib": info.size_bytes / 2**20,
        "table_mib": table_bytes / 2**20,
        "server_rss_mib": _server_rss(url),
        "p50_us": p50,
        "recall": recall,
    }
    if quantized:
        row["quantized"] = {}
        for quant in (Quantization.HALFVEC, Quantization.BINARY):
            docs.create_index(HNSW(), quantization=quant)
            chosen = next(i for i in docs.indexes(refresh=True) if i.spec.quantization is quant)
            others = [i for i in docs.indexes() if i.name != chosen.name]
            for other in others:
                docs.drop_index(other.name)
            q_p50, q_recall = _measure(docs, data, truth, 100)
            row["quantized"][quant.value] = {
                "index_mib": chosen.size_bytes / 2**20,
                "p50_us": q_p50,
                "recall": q_recall,
            }
            docs.drop_index(chosen.name)
        docs.create_index(HNSW())
    db.close()
    return row


def per_doubling(small: float, large: float, n_small: int, n_large: int) -> float:
    return float((large / small) ** (1 / math.log2(n_large / n_small))) if small > 0 else float("nan")


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    sizes = (2_000, 5_000, 10_000) if ctx.quick else (10_000, 100_000, 1_000_000)
    measured = [run_size(ctx, n, both_builds=n < 1_000_000, quantized=n == sizes[1]) for n in sizes]
    return render({"sizes": measured, "quick": ctx.quick})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, fits, goals, plots) from the measurements."""
    measured = data["sizes"]
    quick = bool(data.get("quick", measured[-1]["rows"] < 1_000_000))
    for r in measured:  # JSON turned the process counts into strings
        r["build_s"] = {int(k): v for k, v in r["build_s"].items()}
    first, last = measured[0], measured[-1]
    n0, n1 = first["rows"], last["rows"]
    ram_mib = machine()["ram_gib"] * 1024
    metrics = {
        "load time (s)": (first["load_s"], last["load_s"]),
        "HNSW build, 2 processes (s)": (first["build_s"][2], last["build_s"][2]),
        "index size (MiB)": (first["index_mib"], last["index_mib"]),
        "p50 latency at ef_search 40 (µs)": (first["p50_us"], last["p50_us"]),
    }
    fits = []
    for name, (a, b) in metrics.items():
        factor = per_doubling(a, b, n0, n1)
        at = {target: b * factor ** math.log2(target / n1) for target in (10_000_000, 100_000_000)}
        fits.append([name, factor, at[10_000_000], at[100_000_000]])
    index_factor = fits[2][1]
    both = max((r for r in measured if 1 in r["build_s"]), key=lambda r: r["rows"])
    # the index (plus the table it points into) stops fitting in RAM where their size reaches RAM
    per_row_mib = (last["index_mib"] + last["table_mib"]) / n1
    fit_rows = int(ram_mib / per_row_mib)
    rows = [
        [
            r["rows"],
            r["load_s"],
            r["build_s"].get(1, "n/a"),
            r["build_s"][2],
            r["index_mib"],
            r["table_mib"],
            r["server_rss_mib"],
            r["p50_us"],
            r["recall"],
        ]
        for r in measured
    ]
    quant = next(r for r in measured if "quantized" in r)
    quant_rows = [["vector (full)", quant["index_mib"], quant["p50_us"], quant["recall"]]] + [
        [name, q["index_mib"], q["p50_us"], q["recall"]] for name, q in quant["quantized"].items()
    ]
    markdown = "\n\n".join(
        [
            "Clustered synthetic 384-d unit vectors (`benchmarks/datasets.py: clustered`), cosine, HNSW m=16 "
            "ef_construction=64; latency and recall@10 at ef_search 40 over 100 held-out queries. The build with "
            f"1 process (no parallel worker) is measured below {n1:,} rows only: at {both['rows']:,} it took "
            f"{both['build_s'][1] / both['build_s'][2]:.1f}x as long as with 2.",
            table(
                [
                    "rows",
                    "load s",
                    "build s (1 proc)",
                    "build s (2 procs)",
                    "index MiB",
                    "table MiB",
                    "server RSS MiB",
                    "p50 µs",
                    "recall@10",
                ],
                rows,
            ),
            f"Growth per doubling of the rows, fitted between {n0:,} and {n1:,}, and extrapolated:",
            table(["measure", "x per doubling", "at 10M rows", "at 100M rows"], fits),
            f"Index + table take {per_row_mib * 1024:.2f} KiB per row here: with {machine()['ram_gib']} GiB of RAM "
            f"they stop fitting in memory at about {fit_rows:,} rows; beyond that HNSW searches read the index "
            "from disk. "
            f"The index grows {index_factor:.2f}x per doubling (linear in the rows). Recall at a fixed ef_search "
            f"falls as the graph grows ({first['recall']:.2f} at {n0:,} rows, {last['recall']:.2f} at {n1:,} on "
            "this deliberately hard clustered data): the ef_search that reaches a recall target grows with the "
            "rows, which `Collection.tune()` finds and stores.",
            f"Quantized indexes at {quant['rows']:,} rows (the search re-ranks the candidates on the full vectors):",
            table(["index", "index MiB", "p50 µs", "recall@10"], quant_rows),
        ]
    )
    fig, axes = figure(12, 4.2, ncols=3)
    ns = [r["rows"] for r in measured]
    axes[0].loglog(ns, [r["build_s"][2] for r in measured], marker="o", label="HNSW build (2 procs)")
    axes[0].loglog(ns, [r["load_s"] for r in measured], marker="s", label="load (COPY)")
    axes[0].set_ylabel("seconds")
    axes[1].loglog(ns, [r["index_mib"] for r in measured], marker="o", label="HNSW index")
    axes[1].loglog(ns, [r["table_mib"] for r in measured], marker="s", label="table")
    axes[1].axhline(ram_mib, color="grey", linestyle=":", label=f"RAM ({machine()['ram_gib']} GiB)")
    axes[1].set_ylabel("MiB")
    axes[2].semilogx(ns, [r["p50_us"] / 1000 for r in measured], marker="o", label="p50 latency (ms)")
    axes[2].set_ylabel("ms per search (ef_search 40)")
    for ax in axes:
        ax.set_xlabel("rows (log scale)")
        ax.legend(fontsize=7)
    axes[0].set_title("time")
    axes[1].set_title("size")
    axes[2].set_title("latency")
    goals = [
        Goal(
            "growth measured 10k -> 1M" if not quick else "growth measured (quick sizes)",
            "reported with fits",
            f"build x{fits[1][1]:.2f}/doubling, index x{index_factor:.2f}/doubling, "
            f"recall {last['recall']:.3f} at {n1:,}",
            True,
            "",
        )
    ]
    return Section(
        "5. Growth with the number of vectors",
        markdown,
        {"sizes": measured, "fits": fits},
        [save(fig, "growth.png")],
        goals,
    )

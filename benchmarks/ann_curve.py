"""Comparison 4: recall@10 against queries per second, for vectorpg's HNSW and IVFFlat searches, Faiss's
in-process HNSW (the upper bound: no SQL, no network, same m / ef_construction, one thread) and exact NumPy.

One client, one query at a time, k=10. HNSW m=16, ef_construction=64; ef_search from 10 to 400. IVFFlat with
rows/1000 lists; probes from 1 to 64. Recall is against exact search over the same rows. Reported: QPS at
recall 0.95 (interpolated on each curve) and vectorpg ÷ Faiss.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

import vectorpg
from benchmarks.common import Context, Goal, Section, exact_neighbours, figure, recall_at, save, table
from benchmarks.datasets import Dataset
from vectorpg import HNSW, IVFFlat

K = 10
EF = (10, 20, 40, 80, 160, 400)
PROBES = (1, 2, 4, 8, 16, 32, 64)


def _curve(search: Any, queries: np.ndarray, truth: np.ndarray, knobs: tuple[int, ...]) -> list[dict[str, float]]:
    out = []
    for knob in knobs:
        for q in queries[:5]:
            search(q, knob)  # warm up
        found = []
        start = time.perf_counter()
        for q in queries:
            found.append(search(q, knob))
        seconds = time.perf_counter() - start
        out.append({"knob": knob, "recall": recall_at(found, truth.tolist(), K), "qps": len(queries) / seconds})
    return out


def qps_at(curve: list[dict[str, float]], target: float = 0.95) -> float | None:
    """QPS where the curve crosses ``target`` recall (linear interpolation), None if it never does."""
    points = sorted(curve, key=lambda p: p["recall"])
    for low, high in itertools.pairwise(points):
        if low["recall"] <= target <= high["recall"]:
            if high["recall"] == low["recall"]:
                return high["qps"]
            share = (target - low["recall"]) / (high["recall"] - low["recall"])
            return float(np.exp(np.log(low["qps"]) + share * (np.log(high["qps"]) - np.log(low["qps"]))))
    if points and points[0]["recall"] >= target:
        return max(p["qps"] for p in points)
    return None


def run_dataset(ctx: Context, data: Dataset) -> dict[str, Any]:
    import faiss

    n_queries = 100 if ctx.quick else 300
    rows, queries = data.rows, data.queries[:n_queries]
    truth = exact_neighbours(rows, queries, K, data.metric)
    ids = [str(i) for i in range(len(rows))]
    db = vectorpg.connect(ctx.database("bench_ann"))
    docs = db.collection("ann", dimension=rows.shape[1], metric=data.metric, embedder=None)
    docs.add(vectors=rows, ids=ids)
    curves: dict[str, list[dict[str, float]]] = {}

    docs.create_index(HNSW(m=16, ef_construction=64))
    curves["vectorpg HNSW"] = _curve(
        lambda q, ef: [int(h.id) for h in docs.search(q, K, ef_search=ef, strategy="ann")], queries, truth, EF
    )
    for info in docs.indexes(refresh=True):
        docs.drop_index(info.name)
    lists = max(1, len(rows) // 1000)
    docs.create_index(IVFFlat(lists=lists))
    curves[f"vectorpg IVFFlat ({lists} lists)"] = _curve(
        lambda q, probes: [int(h.id) for h in docs.search(q, K, probes=probes, strategy="ann")],
        queries,
        truth,
        tuple(p for p in PROBES if p <= lists),
    )
    db.close()

    faiss.omp_set_num_threads(1)
    base = rows.astype(np.float32)
    fq = queries.astype(np.float32)
    if data.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        fq = fq / np.linalg.norm(fq, axis=1, keepdims=True)
        index = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(base.shape[1], 16)
    index.hnsw.efConstruction = 64
    index.add(base)

    def faiss_search(q: np.ndarray, ef: int) -> list[int]:
        index.hnsw.efSearch = max(ef, K)
        return [int(i) for i in index.search(q[None, :], K)[1][0]]

    curves["Faiss HNSW (in-process, 1 thread)"] = _curve(faiss_search, fq, truth, EF)

    prepared = base  # normalised once for cosine, as Faiss got it

    def numpy_exact(q: np.ndarray, _: int) -> list[int]:
        query = q / np.linalg.norm(q) if data.metric == "cosine" else q
        scores = -(prepared @ query) if data.metric == "cosine" else ((prepared - query) ** 2).sum(axis=1)
        top = np.argpartition(scores, K)[:K]
        return [int(i) for i in top[np.argsort(scores[top])]]

    curves["exact NumPy"] = _curve(
        numpy_exact, queries[: max(20, n_queries // 5)], truth[: max(20, n_queries // 5)], (0,)
    )
    return {"dataset": data.name, "rows": len(rows), "dim": rows.shape[1], "curves": curves}


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    return render({"runs": [run_dataset(ctx, d) for d in datasets]})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, goals, plots) from the measurements."""
    measured = data["runs"]
    rows, goals = [], []
    fig, axes = figure(6 * len(measured), 4.5, ncols=len(measured))
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, measured):
        at = {name: qps_at(curve) for name, curve in m["curves"].items()}
        for name, curve in m["curves"].items():
            best = max(curve, key=lambda p: p["recall"])
            rows.append([m["dataset"], name, at[name] or "never", best["recall"], best["qps"]])
            ax.plot([p["recall"] for p in curve], [p["qps"] for p in curve], marker="o", label=name)
        ours, faiss_qps = at["vectorpg HNSW"], at["Faiss HNSW (in-process, 1 thread)"]
        if ours and faiss_qps:
            goals.append(
                Goal(
                    f"HNSW QPS at recall 0.95 vs Faiss ({m['dataset']})",
                    "reported (Faiss is the in-process bound)",
                    f"{ours:,.0f} vs {faiss_qps:,.0f} QPS = {ours / faiss_qps:.2f}x",
                    True,
                    "",
                )
            )
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (log scale)")
        ax.set_yscale("log")
        ax.axvline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{m['dataset']} ({m['rows']:,} rows)")
        ax.legend(fontsize=7)
    markdown = (
        "One client, one query at a time, k=10. QPS at recall 0.95 is interpolated on each curve; the best "
        "point is the highest recall reached (with its QPS). Points of every curve are in suite.json.\n\n"
        + table(["dataset", "method", "QPS at recall 0.95", "best recall", "QPS there"], rows)
    )
    return Section("4. ANN quality and speed", markdown, {"runs": measured}, [save(fig, "ann_curve.png")], goals)

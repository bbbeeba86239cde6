"""Comparison 3: filtered search across selectivities, recall@10, rows returned and p50 latency.

The rows carry a category (``{"label": L}`` in JSONB); each filter keeps one category, from the largest
to the smallest. Methods over the same rows:

- vectorpg auto: ``Collection.search(q, 10, where={"label": L})`` (the planner's choice);
- pgvector defaults: ``WHERE metadata @> filter ORDER BY embedding <=> q LIMIT 10`` on the same HNSW index;
- pgvector iterative: the same with ``hnsw.iterative_scan = relaxed_order``;
- exact: the same with index scans off;
- LangChain ``similarity_search_with_score_by_vector(filter=...)`` on its own table (langchain-postgres,
  default settings: it creates no vector index).

Ground truth: exact NumPy search over the rows of that category. Goal: vectorpg recall >= 0.97 and k rows
everywhere.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

import vectorpg
from benchmarks import peers
from benchmarks.common import Context, Goal, Section, connect_raw, exact_neighbours, latencies, save, table
from benchmarks.datasets import Dataset
from vectorpg import HNSW

K = 10


def pick_labels(labels: np.ndarray, count: int = 5) -> list[int]:
    sizes = np.bincount(labels)
    order = [int(i) for i in np.argsort(-sizes) if sizes[i] > 0]
    picks = sorted({order[round(p * (len(order) - 1))] for p in np.linspace(0, 1, count)}, key=lambda i: -sizes[i])
    return picks


def run_dataset(ctx: Context, data: Dataset) -> dict[str, Any]:
    assert data.labels is not None
    url = ctx.database("bench_filtered")
    n_queries = 20 if ctx.quick else 50
    dim = data.rows.shape[1]
    db = vectorpg.connect(url)
    docs = db.collection("filtered", dimension=dim, metric=data.metric, embedder=None)
    docs.add(
        vectors=data.rows,
        ids=[str(i) for i in range(len(data.rows))],
        metadata=[{"label": int(x)} for x in data.labels],
    )
    docs.create_index(HNSW())
    with connect_raw(url, autocommit=True) as conn:
        conn.execute("ANALYZE vectorpg.documents_filtered")
    operator = {"l2": "<->", "cosine": "<=>"}[data.metric]
    statement = (
        "SELECT id FROM vectorpg.documents_filtered WHERE metadata @> %s "  # noqa: S608
        f"ORDER BY (embedding::vector({dim})) {operator} %s LIMIT {K}"
    )
    lc_ok = True
    try:
        peers.langchain(
            {"op": "ingest", "url": url, "metric": data.metric, "collection": "filtered"},
            {"vectors": data.rows, "labels": data.labels},
        )
    except RuntimeError as exc:
        lc_ok = False
        print(f"  LangChain skipped: {exc}")
    queries = data.queries[:n_queries]
    results = []
    raw = connect_raw(url)
    for label in pick_labels(data.labels):
        members = np.flatnonzero(data.labels == label)
        truth = [
            [int(members[j]) for j in row]
            for row in exact_neighbours(data.rows[members], queries, min(K, len(members)), data.metric)
        ]
        flt = json.dumps({"label": label})
        methods: dict[str, Any] = {}

        methods["vectorpg auto"] = lambda q, label=label: [int(h.id) for h in docs.search(q, K, where={"label": label})]
        methods["pgvector defaults"] = _sql_method(raw, statement, flt, [])
        methods["pgvector iterative"] = _sql_method(
            raw, statement, flt, ["SET LOCAL hnsw.iterative_scan = relaxed_order"]
        )
        methods["exact"] = _sql_method(raw, statement, flt, ["SET LOCAL enable_indexscan = off"])
        row: dict[str, Any] = {
            "label": label,
            "matching": len(members),
            "selectivity": len(members) / len(data.rows),
            "methods": {},
        }
        for name, call in methods.items():
            found = [call(q) for q in queries]
            position = iter(range(10**9))
            micros = latencies(
                lambda call=call, position=position: call(queries[next(position) % len(queries)]),
                len(queries),
                warmup=3,
            )
            row["methods"][name] = {
                "recall": _recall(found, truth),
                "rows": float(np.mean([len(f) for f in found])),
                "p50": float(np.median(micros)),
            }
        if lc_ok:
            out = peers.langchain(
                {"op": "search", "url": url, "k": K, "metric": data.metric, "collection": "filtered"},
                {"queries": queries, "labels": np.full(len(queries), label)},
            )
            row["methods"]["LangChain"] = {
                "recall": _recall(out["ids"], truth),
                "rows": float(np.mean([len(f) for f in out["ids"]])),
                "p50": float(np.median(out["micros"])),
            }
        results.append(row)
    raw.close()
    db.close()
    return {"dataset": data.name, "rows": len(data.rows), "filters": results}


def _sql_method(raw: Any, statement: str, flt: str, settings: list[str]) -> Any:
    """The filtered query through raw psycopg, with ``settings`` for its transaction."""

    def call(query: np.ndarray) -> list[int]:
        for setting in settings:
            raw.execute(setting)
        found = [int(r[0]) for r in raw.execute(statement, [flt, query]).fetchall()]
        raw.rollback()
        return found

    return call


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]))


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    return render({"runs": [run_dataset(ctx, d) for d in datasets if d.labels is not None]})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, goals, plots) from the measurements."""
    measured = data["runs"]
    rows, goals = [], []
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, max(1, len(measured)), figsize=(6 * max(1, len(measured)), 8), squeeze=False)
    for column, m in enumerate(measured):
        worst_recall, short = 1.0, 0
        for f in m["filters"]:
            for name, r in f["methods"].items():
                rows.append(
                    [
                        m["dataset"],
                        f"{f['selectivity']:.2%} ({f['matching']:,})",
                        name,
                        r["recall"],
                        r["rows"],
                        r["p50"],
                    ]
                )
            ours = f["methods"]["vectorpg auto"]
            worst_recall = min(worst_recall, ours["recall"])
            short += ours["rows"] < min(K, f["matching"])
        goals.append(
            Goal(
                f"filtered recall and k rows ({m['dataset']})",
                ">= 0.97 and k rows everywhere",
                f"worst recall {worst_recall:.3f}, {short} filters short",
                worst_recall >= 0.97 and short == 0,
                "",
            )
        )
        # filters of the same size (Fashion-MNIST's classes are all 10%) are averaged into one point
        by_size: dict[float, list[dict[str, Any]]] = {}
        for f in m["filters"]:
            by_size.setdefault(f["selectivity"], []).append(f)
        sizes = sorted(by_size)
        for name in m["filters"][0]["methods"]:
            for row, (key, label) in enumerate((("recall", "recall@10"), ("p50", "p50 latency (ms, log scale)"))):
                scale = 1000 if key == "p50" else 1
                values = [np.mean([f["methods"][name][key] for f in by_size[x]]) / scale for x in sizes]
                axes[row][column].plot(sizes, values, marker="o", label=name)
                axes[row][column].set_ylabel(label)
        axes[0][column].set_ylim(-0.02, 1.02)
        axes[1][column].set_yscale("log")
        for row in (0, 1):
            axes[row][column].set_xscale("log")
            axes[row][column].set_xlabel("share of rows the filter keeps (log scale)")
            axes[row][column].legend(fontsize=7)
        axes[0][column].set_title(f"{m['dataset']}: filtered recall and latency")
    markdown = (
        "k=10, HNSW m=16 ef_construction=64 at default settings except where named; rows: results returned "
        "on average (10 unless fewer match).\n\n"
        + table(["dataset", "filter keeps", "method", "recall@10", "rows", "p50 µs"], rows)
    )
    return Section("3. Filtered search", markdown, {"runs": measured}, [save(fig, "filtered_peers.png")], goals)

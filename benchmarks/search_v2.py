"""Search v2 side by side: vectorpg's filtered search against hand-tuned raw pgvector plans, same rows, same run.

Data: clustered synthetic 384-d rows (:func:`benchmarks.datasets.clustered`) with natural-looking metadata:
``tag`` (VectorDBBench's label shares 0.1% ... 50%), ``size`` (uniform 0-999: a range filter), ``public``
(a boolean: a conjunction). Queries are drawn from the same distribution and are not rows.

vectorpg: ``Collection.search(q, 10, where=...)`` on a collection opened with field indexes on the three
keys; no ``create_index`` call ("as shipped": the collection builds its HNSW index itself past its
threshold) and no ``tune`` call.

Raw plans, psycopg with ``prepare_threshold=None``, each filter on the same typed expressions with the same
btrees, the same HNSW index (m=16, ef_construction=64):
- ``exact``: ``ORDER BY (embedding <=> q) + 0`` through the btree;
- ``hnsw``: pgvector defaults (ef_search 40);
- ``iter-N``: ``hnsw.iterative_scan = relaxed_order`` at ef_search N, 4k rows re-sorted exactly.

Recall@10 against exact NumPy search over the matching rows. For each filter the baseline is the fastest
raw plan whose recall is at least vectorpg's minus 0.01. Goal: recall >= 0.97 and p50 <= 1.3x the baseline
(or within +0.1 ms). Run: ``python -m benchmarks.search_v2 [--rows N] [--queries N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from typing import Any

import numpy as np

import vectorpg
from benchmarks.common import RESULTS, connect_raw, figure, save, table
from benchmarks.datasets import clustered

K = 10
SHARES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]


def _metadata(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    names = [f"s{s * 100:g}" for s in SHARES]
    tags = rng.choice([*names, "rest"], size=n, p=[*SHARES, 1 - sum(SHARES)])
    sizes = rng.integers(0, 1000, size=n)
    return [{"tag": str(t), "size": int(s), "public": bool(i % 3 == 0)} for i, (t, s) in enumerate(zip(tags, sizes))]


def _filters() -> list[tuple[str, dict[str, Any] | None, str, dict[str, Any]]]:
    """(label, vectorpg filter, raw SQL condition, raw parameters)."""
    tag = "(metadata -> 'tag') = %(v)s::jsonb"
    out: list[tuple[str, dict[str, Any] | None, str, dict[str, Any]]] = [
        (f"tag = s{s * 100:g} ({s:.1%})", {"tag": f"s{s * 100:g}"}, tag, {"v": json.dumps(f"s{s * 100:g}")})
        for s in SHARES
    ]
    size = "CASE WHEN jsonb_typeof(metadata -> 'size') = 'number' THEN (metadata -> 'size')::numeric END"
    out.append(("size < 30 (3%)", {"size": {"$lt": 30}}, f"{size} < %(v)s", {"v": 30}))
    out.append(
        (
            "tag = s20 and public (6.7%)",
            {"tag": "s20", "public": True},
            f"{tag} AND (metadata -> 'public') = 'true'::jsonb",
            {"v": json.dumps("s20")},
        )
    )
    out.append(("no filter", None, "true", {}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    data = clustered(args.rows, queries=args.queries, seed=3)
    meta = _metadata(len(data.rows), np.random.default_rng(4))
    db = vectorpg.connect()
    db.drop_collection("bench_v2")
    fields = {"tag": "keyword", "size": "integer", "public": "boolean"}
    docs = db.collection("bench_v2", dimension=384, embedder=None, field_indexes=fields)
    started = time.perf_counter()
    for i in range(0, len(meta), 10_000):
        ids = [str(j) for j in range(i, min(i + 10_000, len(meta)))]
        docs.add(vectors=data.rows[i : i + 10_000], ids=ids, metadata=meta[i : i + 10_000])
    load = time.perf_counter() - started
    (index,) = docs.indexes(refresh=True)
    with db.psycopg_connection() as raw:
        raw.execute("ANALYZE vectorpg.documents")
    table_name = "vectorpg." + docs.partition.name
    conn = connect_raw(db.url, autocommit=True, prepare_threshold=None)
    norms = np.linalg.norm(data.rows, axis=1)
    results = []
    for label, where, condition, params in _filters():
        allowed = np.array([i for i, m in enumerate(meta) if _matches(where, m)])
        truth = []
        for q in data.queries:
            dist = 1 - data.rows[allowed] @ q / (norms[allowed] * np.linalg.norm(q))
            truth.append(set(allowed[np.argsort(dist)[:K]].tolist()))
        row: dict[str, Any] = {"filter": label, "rows": len(allowed), "share": len(allowed) / len(meta)}
        row["vectorpg"] = _measure(partial(_ours, docs, where), data.queries, truth)
        plan = docs.explain(data.queries[0], K, where=where)
        row["vectorpg"]["plan"] = plan.strategy
        for name, sql_text, settings in _raw_plans(table_name, condition):
            row[name] = _measure(partial(_raw, conn, sql_text, params, settings), data.queries, truth)
        results.append(row)
        print(label, {k: (v["p50_ms"], v["recall"]) for k, v in row.items() if isinstance(v, dict)}, flush=True)
    started = time.perf_counter()
    docs.search_many(data.queries, K)
    batch = time.perf_counter() - started
    started = time.perf_counter()
    for q in data.queries:
        docs.search(q, K)
    single = time.perf_counter() - started
    summary = {
        "rows": len(meta),
        "queries": len(data.queries),
        "load_s": round(load, 1),
        "auto_index": index.name,
        "search_many_qps": round(len(data.queries) / batch),
        "search_qps": round(len(data.queries) / single),
        "results": results,
    }
    _write(summary)


def _raw_plans(table_name: str, condition: str) -> list[tuple[str, str, dict[str, str]]]:
    # the table name and conditions are this script's own constants; values are bound parameters
    vec = "embedding::vector(384)"
    exact = f"SELECT id FROM {table_name} WHERE {condition} ORDER BY (embedding <=> %(q)s) + 0 LIMIT {K}"  # noqa: S608
    hnsw = f"SELECT id FROM {table_name} WHERE {condition} ORDER BY {vec} <=> %(q)s LIMIT {K}"  # noqa: S608
    relaxed = (
        f"WITH c AS MATERIALIZED (SELECT id, {vec} <=> %(q)s AS d FROM {table_name} WHERE {condition} "  # noqa: S608
        f"ORDER BY {vec} <=> %(q)s LIMIT {4 * K}) SELECT id FROM c ORDER BY d LIMIT {K}"
    )
    plans = [("exact", exact, {}), ("hnsw", hnsw, {})]
    for ef in (40, 100, 400):
        plans.append((f"iter-{ef}", relaxed, {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": str(ef)}))
    return plans


def _ours(docs: Any, where: dict[str, Any] | None, q: np.ndarray) -> list[int]:
    return [int(h.id) for h in docs.search(q, K, where=where)]


def _raw(conn: Any, sql_text: str, params: dict[str, Any], settings: dict[str, str], q: np.ndarray) -> list[int]:
    params = {**params, "q": q}
    if not settings:
        return [r[0] for r in conn.execute(sql_text, params).fetchall()]
    with conn.transaction(force_rollback=True):
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        return [int(r[0]) for r in conn.execute(sql_text, params).fetchall()]


def _measure(call: Any, queries: np.ndarray, truth: list[set[int]]) -> dict[str, Any]:
    for q in queries[:5]:
        call(q)
    times, recalls, short = [], [], 0
    for q, want in zip(queries, truth):
        started = time.perf_counter()
        got = call(q)
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len(set(got) & want) / max(1, len(want)))
        short += len(got) < min(K, len(want))
    return {"p50_ms": round(float(np.median(times)), 3), "recall": round(float(np.mean(recalls)), 3), "short": short}


def _matches(where: dict[str, Any] | None, meta: dict[str, Any]) -> bool:
    if where is None:
        return True
    for key, want in where.items():
        if isinstance(want, dict):
            if not meta[key] < want["$lt"]:
                return False
        elif meta[key] != want:
            return False
    return True


def _write(summary: dict[str, Any]) -> None:
    raw_names = ["exact", "hnsw", "iter-40", "iter-100", "iter-400"]
    rows, misses = [], []
    for r in summary["results"]:
        ours = r["vectorpg"]
        fair = [n for n in raw_names if r[n]["recall"] >= ours["recall"] - 0.01 and r[n]["short"] == 0]
        best = min(fair, key=lambda n: r[n]["p50_ms"]) if fair else None
        ratio = ours["p50_ms"] / r[best]["p50_ms"] if best else None
        ok = ours["recall"] >= 0.97 and ours["short"] == 0
        ok = ok and (
            best is None or (ratio is not None and (ratio <= 1.3 or ours["p50_ms"] - r[best]["p50_ms"] <= 0.1))
        )
        r["baseline"], r["ratio"], r["met"] = best, ratio, ok
        rows.append([
            r["filter"], r["rows"], ours["plan"], ours["p50_ms"], ours["recall"], best or "-",
            r[best]["p50_ms"] if best else "-", f"{ratio:.2f}x" if ratio else "-", "yes" if ok else "NO",
            *(f"{r[n]['p50_ms']} / {r[n]['recall']}" for n in raw_names),
        ])  # fmt: skip
        if not ok:
            misses.append(r["filter"])
    headers = ["filter", "rows", "plan", "p50 ms", "recall", "baseline", "baseline ms", "ratio", "goal met"]
    text = table(headers + [f"{n} (ms / recall)" for n in raw_names], rows)
    summary["misses"] = misses
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_v2.json").write_text(json.dumps(summary, indent=1))
    fig, (left, right) = figure(12, 4.5, ncols=2)
    shares = [max(r["share"], 1e-4) for r in summary["results"]]
    for name in ["vectorpg", *raw_names]:
        left.plot(
            shares, [r[name]["p50_ms"] for r in summary["results"]], "o-" if name == "vectorpg" else ".--", label=name
        )
        right.plot(
            shares, [r[name]["recall"] for r in summary["results"]], "o-" if name == "vectorpg" else ".--", label=name
        )
    for ax, what in ((left, "p50 latency (ms)"), (right, "recall@10")):
        ax.set_xscale("log")
        ax.set_xlabel("share of rows matching the filter")
        ax.set_ylabel(what)
    left.set_yscale("log")
    right.axhline(0.97, color="grey", lw=0.8)
    left.legend(fontsize=7)
    plot = save(fig, "search_v2.png")
    report = (
        f"# Search v2 side by side ({summary['rows']} rows, 384-d, {summary['queries']} queries)\n\n"
        f"Load {summary['load_s']} s (the HNSW index `{summary['auto_index']}` was built by `add` itself). "
        f"search_many: {summary['search_many_qps']} QPS vs {summary['search_qps']} QPS one at a time.\n\n"
        f"{text}\n\n![latency and recall vs selectivity]({plot})\n\nMisses: {', '.join(misses) or 'none'}\n"
    )
    (RESULTS / "search_v2.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()

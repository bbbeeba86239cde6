"""Embedding backends side by side: PyTorch (sentence-transformers) and ONNX Runtime, float and int8.

On the same paragraphs of the Python documentation (``benchmarks.corpus``), in one run:

- **throughput**: texts/s of each backend, the backends interleaved round by round (``--repeat``), median;
- **accuracy**: cosine of each text's vector to PyTorch's (mean, 1st percentile, lowest), and how often each
  paragraph's 10 nearest others are PyTorch's 10 nearest (recall@10: what a search sees);
- **cold start**: a new process's time from ``import vectorpg`` to its first vector (the ONNX export cached);
- **the export**: how long the one-off export takes, into an empty cache;
- **ingest end to end**: ``Collection.upload(texts=...)`` rows/s against the embedder's own rate on the same
  texts (embedding overlaps writing, so the first should approach the second).

``python -m benchmarks.embedding_backends [--texts 1000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

import vectorpg
from benchmarks.common import RESULTS, figure, save, table
from benchmarks.corpus import python_docs_paragraphs
from vectorpg.embeddings import OnnxEmbedder, SentenceTransformerEmbedder


def _texts(n: int) -> list[str]:
    paragraphs = python_docs_paragraphs()
    step = max(1, len(paragraphs) // n)
    return [p["text"] for p in paragraphs[::step][:n]]


def _first_vector(backend: str, cache: str | None = None) -> float:
    code = (
        "import time; t = time.perf_counter(); import vectorpg\n"
        "vectorpg.default_embedder().embed(['hello world']); print(time.perf_counter() - t)\n"
    )
    env = {**os.environ, "VECTORPG_EMBED_BACKEND": backend, **({"VECTORPG_CACHE_DIR": cache} if cache else {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.split()[-1])


def _nearest(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each text's ``k`` nearest other texts (cosine; the vectors are unit length)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1)[:, :k]


def run(n: int, repeat: int) -> dict[str, Any]:
    texts = _texts(n)
    backends: dict[str, Any] = {
        "PyTorch": SentenceTransformerEmbedder(),
        "ONNX fp32": OnnxEmbedder(quantize=False),
        "ONNX int8": OnnxEmbedder(),
    }
    for model in backends.values():
        model.embed(texts[:32])  # load and warm
    seconds: dict[str, list[float]] = {name: [] for name in backends}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        for name, model in backends.items():
            start = time.perf_counter()
            vectors[name] = model.embed(texts)
            seconds[name].append(time.perf_counter() - start)
    ref = vectors["PyTorch"]
    nearest = _nearest(ref, 10)
    rows = {}
    for name, got in vectors.items():
        cosines = (got * ref).sum(axis=1)
        found = _nearest(got, 10)
        same = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, nearest, strict=True)]))
        rows[name] = {
            "texts_per_s": n / statistics.median(seconds[name]),
            "mean_cosine": float(cosines.mean()),
            "p1_cosine": float(np.percentile(cosines, 1)),
            "min_cosine": float(cosines.min()),
            "recall_at_10": same,
        }
    cold = {"PyTorch": _first_vector("torch"), "ONNX (cached export)": _first_vector("onnx")}
    with tempfile.TemporaryDirectory() as cache:
        export = _first_vector("onnx", cache)
    ingest = run_ingest(texts, backends["ONNX int8"])
    return {"texts": n, "repeat": repeat, "backends": rows, "cold_start_s": cold, "export_s": export, "ingest": ingest}


def run_ingest(texts: list[str], model: OnnxEmbedder) -> dict[str, float]:
    """Upload of ``texts`` (embedded by ``model``) against ``model.embed`` alone, interleaved twice."""
    db = vectorpg.connect()
    embed_s, upload_s = [], []
    for round_ in range(2):
        start = time.perf_counter()
        model.embed(texts)
        embed_s.append(time.perf_counter() - start)
        db.drop_collection("bench_embed_ingest")
        docs = db.collection("bench_embed_ingest", embedder=model, auto_index=False)
        start = time.perf_counter()
        fresh = [f"{t} ({round_})" for t in texts]  # not in the embedding cache
        docs.upload(texts=fresh, ids=[f"t{i}" for i in range(len(texts))], batch_size=128)
        upload_s.append(time.perf_counter() - start)
    db.drop_collection("bench_embed_ingest")
    embed, upload = len(texts) / min(embed_s), len(texts) / min(upload_s)
    return {"embed_texts_per_s": embed, "upload_rows_per_s": upload, "ratio": upload / embed}


def write(result: dict[str, Any]) -> str:
    rows = result["backends"]
    base = rows["PyTorch"]["texts_per_s"]
    lines = [
        "# Embedding backends",
        "",
        f"{result['texts']:,} paragraphs of the Python documentation (120-1,000 characters), all-MiniLM-L6-v2, "
        f"2 cores, median of {result['repeat']} interleaved rounds. Cosine to PyTorch's vectors, and recall@10 of each "
        "paragraph's 10 nearest other paragraphs against PyTorch's 10 nearest (what a search over them sees).",
        "",
        table(
            ["backend", "texts/s", "vs PyTorch", "mean cosine", "1st pct cosine", "lowest cosine", "recall@10"],
            [
                [
                    name,
                    r["texts_per_s"],
                    f"{r['texts_per_s'] / base:.2f}x",
                    round(r["mean_cosine"], 4),
                    round(r["p1_cosine"], 4),
                    round(r["min_cosine"], 4),
                    f"{r['recall_at_10']:.3f}",
                ]
                for name, r in rows.items()
            ],
        ),
        "",
        "Time from a new process's `import vectorpg` to its first vector: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in result["cold_start_s"].items())
        + f"; the one-off export into an empty cache (torch loaded, export, fusions, int8, its check): "
        f"{result['export_s']:.1f} s.",
        "",
    ]
    ingest = result["ingest"]
    lines += [
        f"Ingest end to end (`Collection.upload(texts=...)`, ONNX int8, embedding overlapping the writes): "
        f"{ingest['upload_rows_per_s']:,.0f} rows/s against {ingest['embed_texts_per_s']:,.0f} texts/s for the "
        f"embedder alone on the same texts: **{ingest['ratio']:.2f}x** of the embedder's own rate.",
        "",
    ]
    fig, (left, right) = figure(10, 4, ncols=2)
    names = list(rows)
    left.bar(names, [rows[n]["texts_per_s"] for n in names], color=["#888", "#4a7", "#27a"])
    left.set_ylabel("texts/s (higher is better)")
    left.set_title("throughput, 2 cores")
    cold = result["cold_start_s"]
    right.bar(list(cold), list(cold.values()), color=["#888", "#27a"])
    right.set_ylabel("seconds to the first vector")
    right.set_title("cold start of a new process")
    lines += [f"![backends]({save(fig, 'embedding_backends.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "embedding_backends.md").write_text(report)
    (RESULTS / "embedding_backends.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(write(run(args.texts, args.repeat)))


if __name__ == "__main__":
    main()

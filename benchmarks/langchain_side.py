"""LangChain's PGVector, driven by the benchmark suite from its own virtualenv (see ``benchmarks/peers.py``).

langchain-postgres pins ``pgvector<0.4`` and vectorpg needs ``>= 0.4.1``, so the two cannot share an
environment: this script runs in ``benchmarks/.peers`` and reads one JSON command from stdin:

- ``{"op": "ingest", "url", "vectors": path.npy, "labels": path.npy, "metric", "collection"}`` →
  ``{"seconds", "rows"}`` for ``PGVector.add_embeddings`` of every row (text ``"row <i>"``, metadata
  ``{"label": <label>}``);
- ``{"op": "search", "url", "queries": path.npy, "labels": path.npy | null, "k", "metric", "collection"}`` →
  ``{"ids": [[...]], "micros": [...]}`` for ``similarity_search_with_score_by_vector`` with
  ``filter={"label": <query's label>}`` when labels are given.
"""

import json
import sys
import time

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector
from langchain_postgres.vectorstores import DistanceStrategy


class Precomputed(Embeddings):
    """The vectors are given: LangChain never embeds here."""

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        raise RuntimeError("not used")

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        raise RuntimeError("not used")


def store(command, fresh):  # type: ignore[no-untyped-def]
    url = command["url"].replace("postgresql://", "postgresql+psycopg://", 1)
    strategy = DistanceStrategy.EUCLIDEAN if command["metric"] == "l2" else DistanceStrategy.COSINE
    return PGVector(
        Precomputed(),
        connection=url,
        collection_name=command["collection"],
        distance_strategy=strategy,
        pre_delete_collection=fresh,
        use_jsonb=True,
    )


def main() -> None:
    command = json.load(sys.stdin)
    if command["op"] == "ingest":
        vectors = np.load(command["vectors"])
        labels = np.load(command["labels"])
        vs = store(command, fresh=True)
        texts = [f"row {i}" for i in range(len(vectors))]
        metadatas = [{"label": int(label)} for label in labels]
        ids = [str(i) for i in range(len(vectors))]
        start = time.perf_counter()
        for s in range(0, len(vectors), 1000):  # LangChain's own batching is per call; 1,000 rows per call
            vs.add_embeddings(
                texts[s : s + 1000], vectors[s : s + 1000].tolist(), metadatas[s : s + 1000], ids[s : s + 1000]
            )
        print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(vectors)}))
    else:
        queries = np.load(command["queries"])
        labels = np.load(command["labels"]) if command.get("labels") else None
        vs = store(command, fresh=False)
        found, micros = [], []
        for i, q in enumerate(queries):
            where = {"label": int(labels[i])} if labels is not None else None
            start = time.perf_counter_ns()
            hits = vs.similarity_search_with_score_by_vector(q.tolist(), k=command["k"], filter=where)
            micros.append((time.perf_counter_ns() - start) / 1000)
            found.append([int(doc.id) for doc, _ in hits])
        print(json.dumps({"ids": found, "micros": micros}))


if __name__ == "__main__":
    main()

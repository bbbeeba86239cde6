"""Comparison 1: ingest of precomputed vectors, rows/s, on the same server and the same rows.

- raw psycopg binary ``COPY`` (pgvector's binary dumper): the limit;
- vectorpg ``Repository.add`` (binary COPY in one transaction, every row validated first);
- vectorpg ``Collection.add`` (the store API: ids, JSONB metadata, partitioned table);
- pgvector-python's SQLAlchemy ORM: ``session.add_all`` of mapped objects, one commit;
- LangChain ``PGVector.add_embeddings`` (langchain-postgres, in its own virtualenv), 1,000 rows per call.

Goals: vectorpg >= 0.8x raw COPY, >= 10x the ORM, >= 5x LangChain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Integer, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from benchmarks import peers
from benchmarks.common import Context, Goal, Section, connect_raw, figure, save, table, timer
from benchmarks.datasets import Dataset
from vectorpg import Repository, vector_column


def _raw_copy(url: str, data: Dataset) -> float:
    dim = data.rows.shape[1]
    with connect_raw(url) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_items")
        conn.execute(f"CREATE TABLE raw_items (id bigint PRIMARY KEY, label int, embedding vector({dim}))")
        conn.commit()
        with timer() as elapsed:
            with conn.cursor().copy("COPY raw_items (id, label, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int4", "vector"])
                for i, vector in enumerate(data.rows):
                    copy.write_row((i, int(data.labels[i]) if data.labels is not None else 0, vector))
            conn.commit()
        return elapsed()


def _models(dim: int) -> tuple[type[Any], type[Any]]:
    from pgvector.sqlalchemy import Vector

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "vectorpg_items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        label: Mapped[int] = mapped_column(Integer)
        embedding = vector_column(dim)

    class OrmItem(Base):
        __tablename__ = "orm_items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        label: Mapped[int] = mapped_column(Integer)
        embedding = mapped_column(Vector(dim))

    return Item, OrmItem


def run_dataset(ctx: Context, data: Dataset) -> dict[str, Any]:
    url = ctx.database("bench_ingest")
    dim = data.rows.shape[1]
    labels = data.labels if data.labels is not None else np.zeros(len(data.rows), dtype=np.int64)
    n = len(data.rows)
    results: dict[str, float] = {}
    results["raw psycopg COPY"] = n / _raw_copy(url, data)

    db = vectorpg.connect(url)
    item, orm_item = _models(dim)
    item.metadata.create_all(db.engine)
    repo = Repository(item, db)
    rows = [{"id": i, "label": int(labels[i]), "embedding": data.rows[i]} for i in range(n)]
    with timer() as elapsed:
        repo.add(rows)
    results["vectorpg Repository.add"] = n / elapsed()

    store = db.collection("bench", dimension=dim, metric=data.metric, embedder=None)
    meta = [{"label": int(label)} for label in labels]
    ids = [str(i) for i in range(n)]
    with timer() as elapsed:
        store.add(vectors=data.rows, ids=ids, metadata=meta)
    results["vectorpg Collection.add"] = n / elapsed()
    db.close()

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with timer() as elapsed, Session(engine) as session:
        session.add_all(orm_item(id=i, label=int(labels[i]), embedding=data.rows[i]) for i in range(n))
        session.commit()
    results["pgvector SQLAlchemy ORM"] = n / elapsed()
    engine.dispose()

    try:
        out = peers.langchain(
            {"op": "ingest", "url": url, "metric": data.metric, "collection": "bench"},
            {"vectors": data.rows, "labels": labels},
        )
        results["LangChain PGVector.add_embeddings"] = out["rows"] / out["seconds"]
    except RuntimeError as exc:
        results["LangChain PGVector.add_embeddings"] = float("nan")
        print(f"  LangChain skipped: {exc}")
    return {"dataset": data.name, "rows": n, "dim": dim, "rows_per_s": results}


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    return render({"runs": [run_dataset(ctx, d) for d in datasets]})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, goals, plots) from the measurements."""
    measured = data["runs"]
    rows = []
    goals = []
    for m in measured:
        r = m["rows_per_s"]
        ours = r["vectorpg Repository.add"]
        for method, rate in r.items():
            rows.append([m["dataset"], m["rows"], method, rate, ours / rate if rate == rate else "n/a"])
        for peer, target in (
            ("raw psycopg COPY", 0.8),
            ("pgvector SQLAlchemy ORM", 10.0),
            ("LangChain PGVector.add_embeddings", 5.0),
        ):
            ratio = ours / r[peer] if r[peer] == r[peer] else float("nan")
            why = ""
            if ratio < target and peer == "raw psycopg COPY":
                why = (
                    f"vectorpg spends {1e6 / ours:.0f} µs a row, raw COPY {1e6 / r[peer]:.0f}: the row-oriented "
                    "API's Python (rows as dicts laid out as tuples, every vector validated: finite, dimension, "
                    "zero under cosine; duplicate keys) before one NumPy-encoded COPY, where raw COPY streams "
                    "rows with no checks at all"
                )
            elif ratio < target:
                why = (
                    f"vectorpg spends {1e6 / ours:.0f} µs a row, the peer {1e6 / r[peer]:.0f}: with "
                    f"{m['dim']} dimensions the floats themselves (validation, encoding, the server's COPY) "
                    "weigh more than the peer's per-object overhead"
                )
            goals.append(
                Goal(
                    f"ingest vs {peer} ({m['dataset']})",
                    f">= {target}x",
                    f"{ratio:.2f}x",
                    ratio >= target,
                    why,
                )
            )
    markdown = (
        "Precomputed vectors written into an empty table with a primary key, no vector index; rows/s "
        "(higher is better). Ratio: vectorpg Repository.add ÷ the method.\n\n"
        + table(["dataset", "rows", "method", "rows/s", "vectorpg ÷ it"], rows)
    )
    fig, ax = figure(9, 0.6 + 0.5 * len(rows))
    labels = [f"{r[0]}: {r[2]}" for r in rows][::-1]
    values = [r[3] if r[3] == r[3] else 0 for r in rows][::-1]
    ax.barh(labels, values, color=["#c44e52" if "vectorpg" in lbl else "#4c72b0" for lbl in labels])
    ax.set_xscale("log")
    ax.set_xlabel("rows per second (log scale, higher is better)")
    ax.set_title("Ingest of precomputed vectors")
    return Section(
        "1. Ingest of precomputed vectors", markdown, {"runs": measured}, [save(fig, "ingest_peers.png")], goals
    )

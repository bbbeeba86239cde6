"""Comparison 2: what a search costs on top of its SQL. Same table, same HNSW index, same query vectors,
same statement (``SELECT id, label, embedding, embedding <=> q AS distance ... ORDER BY distance LIMIT 10``):

- raw psycopg (pgvector's binary dumper, psycopg's defaults: statements prepared after 5 runs);
- vectorpg ``Repository.search(q, 10)`` (validation, planner, transaction, rows mapped to objects);
- plain SQLAlchemy ORM with pgvector-python's comparator, ``session.execute(select(Item, distance)...)``.

p50 / p95 in microseconds over >= 1,000 queries each, interleaved in rounds so that drift hits all alike.
Goal: vectorpg <= 1.15x raw psycopg.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Integer, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from benchmarks.common import Context, Goal, Section, connect_raw, figure, latencies, save, table
from benchmarks.datasets import Dataset
from vectorpg import HNSW, Repository, vector_column, vector_index


def run_dataset(ctx: Context, data: Dataset, queries: int) -> dict[str, Any]:
    from pgvector.sqlalchemy import Vector

    url = ctx.database("bench_query")
    dim = data.rows.shape[1]
    metric = data.metric

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        label: Mapped[int] = mapped_column(Integer)
        embedding = vector_column(dim)
        __table_args__ = (vector_index("embedding", HNSW(), metric=metric, dimension=dim),)

    class PlainBase(DeclarativeBase):
        pass

    class OrmItem(PlainBase):  # the same table, mapped the plain pgvector-python way (its own metadata)
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        label: Mapped[int] = mapped_column(Integer)
        embedding = mapped_column(Vector(dim))

    db = vectorpg.connect(url)
    Base.metadata.create_all(db.engine)
    repo = Repository(Item, db, metric=metric)
    labels = data.labels if data.labels is not None else np.zeros(len(data.rows), dtype=np.int64)
    repo.add({"id": i, "label": int(labels[i]), "embedding": data.rows[i]} for i in range(len(data.rows)))
    with connect_raw(url, autocommit=True) as conn:
        conn.execute("ANALYZE items")
    operator = {"l2": "<->", "cosine": "<=>"}[metric]
    statement = (
        f"SELECT id, label, embedding, embedding {operator} %s AS distance FROM items ORDER BY distance LIMIT 10"  # noqa: S608
    )
    qs = [q for q in data.queries] * (queries // len(data.queries) + 1)
    raw = connect_raw(url, autocommit=True)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    session = Session(engine)
    distance = OrmItem.embedding.l2_distance if metric == "l2" else OrmItem.embedding.cosine_distance
    position = {"raw": 0, "vectorpg": 0, "orm": 0}

    def next_query(name: str) -> Any:
        q = qs[position[name] % len(qs)]
        position[name] += 1
        return q

    calls = {
        "raw psycopg": lambda: raw.execute(statement, [next_query("raw")]).fetchall(),
        "vectorpg Repository.search": lambda: repo.search(next_query("vectorpg"), 10),
        "SQLAlchemy ORM + pgvector": lambda: session.execute(
            select(OrmItem, distance(next_query("orm")).label("d")).order_by("d").limit(10)
        ).all(),
    }
    # the same answers (ids) from all three, for the first queries
    q0 = data.queries[0]
    ids = {
        "raw": [r[0] for r in raw.execute(statement, [q0]).fetchall()],
        "vectorpg": [row.id for row, _ in repo.search(q0, 10)],
    }
    assert ids["raw"] == ids["vectorpg"], ids
    samples: dict[str, list[np.ndarray]] = {name: [] for name in calls}
    rounds = 5
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(latencies(call, queries // rounds, warmup=10))
    session.close()
    engine.dispose()
    raw.close()
    db.close()
    stats = {}
    for name, parts in samples.items():
        values = np.concatenate(parts)
        stats[name] = {
            "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)),
            "n": len(values),
        }
    return {"dataset": data.name, "rows": len(data.rows), "dim": dim, "latency_us": stats}


def run(ctx: Context, datasets: list[Dataset]) -> Section:
    queries = 300 if ctx.quick else 1500
    return render({"runs": [run_dataset(ctx, d, queries) for d in datasets]})


def render(data: dict[str, Any]) -> Section:
    """The section of RESULTS.md (tables, goals, plots) from the measurements."""
    measured = data["runs"]
    rows, goals = [], []
    for m in measured:
        s = m["latency_us"]
        base = s["raw psycopg"]["p50"]
        for name, v in s.items():
            rows.append([m["dataset"], name, v["n"], v["p50"], v["p95"], v["p50"] / base])
        ratio = s["vectorpg Repository.search"]["p50"] / base
        overhead = s["vectorpg Repository.search"]["p50"] - base
        goals.append(
            Goal(
                f"query overhead vs raw psycopg ({m['dataset']})",
                "<= 1.15x (p50)",
                f"{ratio:.2f}x (+{overhead:.0f} µs)",
                ratio <= 1.15,
                ""
                if ratio <= 1.15
                else "a fixed cost per search, not a factor: mapping rows to ORM objects (the plain SQLAlchemy ORM "
                "row pays most of it too), validating the query vector, the planner and a pool checkout with a "
                "liveness ping; raw psycopg also runs a server-side prepared statement after 5 calls",
            )
        )
    markdown = (
        "Latency per search in microseconds (lower is better), k=10, HNSW (m=16, ef_construction=64) at "
        "the default ef_search. Ratio: p50 ÷ raw psycopg's p50.\n\n"
        + table(["dataset", "method", "queries", "p50 µs", "p95 µs", "p50 ÷ raw"], rows)
    )
    fig, ax = figure(12, 4.5)
    labels = [f"{r[0]}\n{r[1].replace(' ', chr(10), 1)}" for r in rows]
    ax.bar(range(len(rows)), [r[3] for r in rows], color=["#c44e52" if "vectorpg" in r[1] else "#4c72b0" for r in rows])
    ax.errorbar(
        range(len(rows)),
        [r[3] for r in rows],
        yerr=[[0] * len(rows), [r[4] - r[3] for r in rows]],
        fmt="none",
        ecolor="black",
        capsize=4,
    )
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("µs per search (bar: p50, whisker: p95)")
    ax.set_title("Query overhead over the same SQL")
    return Section("2. Query overhead", markdown, {"runs": measured}, [save(fig, "query_overhead.png")], goals)

"""Write path v2 side by side: vectorpg's bulk writes against raw psycopg binary COPY of the same rows, same run.

For each dimension (384, 768, 1536) the same ``N`` rows (unit vectors, four metadata keys) are written by:

- **raw COPY**: psycopg's binary ``COPY ... FROM STDIN`` with pgvector's binary dumper, one transaction,
  into a table with the same columns and indexes as the target (``LIKE ... INCLUDING INDEXES``), no checks;
- **raw staged upsert**: binary COPY into a temporary table, then ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``
  (the fastest upsert of many rows PostgreSQL has), over rows that all exist;
- **Collection.add / upsert** (``auto_index=False``: the index build is measured apart), every row validated
  (ids, metadata JSON and limits, vectors finite, right size, non-zero under cosine);
- **Repository.add / upsert** on a typed model (id, three typed columns, vector), every row validated.

Each write runs ``--repeat`` times (adds on a fresh table, upserts over what the add wrote), vectorpg's and the
raw writes interleaved round by round, a CHECKPOINT before each (untimed); the table reports the medians
of rows/s and of each round's ratio.
Goal: inserts >= 0.8x raw
COPY, upserts >= 0.8x the raw staged upsert (rows/s ratios).

``python -m benchmarks.write_v2 [--rows N] [--dims 384,768,1536] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from benchmarks.common import RESULTS, connect_raw, figure, save, table
from vectorpg import Repository, vector_column

GOAL = 0.8


def _rows(n: int, dim: int, seed: int) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"doc-{i}" for i in range(n)]
    sections = ["library", "tutorial", "howto", "faq", "reference"]
    meta = [
        {
            "section": sections[i % 5],
            "page": f"page/{i // 40}",
            "length": int(rng.integers(10, 2000)),
            "public": i % 3 == 0,
        }
        for i in range(n)
    ]
    return vectors, ids, meta


def _model(dim: int) -> type[Any]:
    class Base(DeclarativeBase):
        pass

    class Row(Base):
        __tablename__ = f"write_v2_{dim}"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        section: Mapped[str] = mapped_column(String)
        length: Mapped[int] = mapped_column(Integer)
        page: Mapped[str] = mapped_column(String)
        embedding: Mapped[Any] = vector_column(dim)

    return Row


Step = tuple[str, Callable[[], Any], Callable[[], Any]]  # (name, untimed setup, timed write)


def _rounds(sides: list[list[Step]], repeat: int, settle: Callable[[], Any]) -> dict[str, list[float]]:
    """Seconds of every write, round by round: each side's steps run in order (an add, then the upsert over
    what it wrote), the sides interleaved round by round, which goes first alternating (the VM drifts).
    ``settle`` runs untimed before each write (a CHECKPOINT: a write of 1536-d rows is ~120 MB of WAL, and a
    checkpoint that the previous write started would otherwise land in the next one's time)."""
    times: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            for name, setup, write in side:
                setup()
                settle()
                start = time.perf_counter()
                write()
                times.setdefault(name, []).append(time.perf_counter() - start)
    return times


def _raw_copy(conn: Any, target: str, columns: list[str], types: list[str], rows: Callable[[], Any]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(target), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.transaction(), conn.cursor().copy(statement) as copy:
        copy.set_types(types)
        for row in rows():
            copy.write_row(row)


def _raw_upsert(conn: Any, target: str, key: list[str], columns: list[str], types: list[str], rows: Any) -> None:
    # the benchmark's own table and column names, not input: plain SQL text as a user would write it
    with conn.transaction():
        conn.execute(
            f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {target} WITH NO DATA"  # noqa: S608
        )
        with conn.cursor().copy(f"COPY stage ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows():
                copy.write_row(row)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
        conn.execute(
            f"INSERT INTO {target} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM stage "  # noqa: S608
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )


def run_dimension(db: vectorpg.Database, conn: Any, n: int, dim: int, repeat: int) -> dict[str, Any]:
    vectors, ids, meta = _rows(n, dim, seed=dim)
    moved = vectors[::-1].copy()  # the upserts' new vectors

    # -- Collection vs raw COPY into a table like its partition ----------------------------------------
    name = f"write_v2_{dim}"
    holder: dict[str, Any] = {}

    def fresh_collection() -> None:  # an empty partition, as TRUNCATE gives the raw table
        db.drop_collection(name)
        holder["docs"] = db.collection(name, dimension=dim, embedder=None, auto_index=False)

    fresh_collection()
    partition = f"vectorpg.{holder['docs'].partition.name}"
    conn.execute("DROP TABLE IF EXISTS raw_docs")
    conn.execute(f"CREATE TABLE raw_docs (LIKE {partition} INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS)")
    doc_columns = ["collection", "id", "metadata", "embedding"]
    doc_types = ["text", "text", "jsonb", "vector"]

    def doc_rows(vs: np.ndarray) -> Callable[[], Any]:
        return lambda: ((name, ids[i], Jsonb(meta[i]), vs[i]) for i in range(n))

    seconds = _rounds(
        [
            [
                ("Collection.add", fresh_collection,
                 lambda: holder["docs"].add(vectors=vectors, ids=ids, metadata=meta)),
                ("Collection.upsert", lambda: None,
                 lambda: holder["docs"].upsert(vectors=moved, ids=ids, metadata=meta)),
            ],
            [
                ("raw COPY (collection rows)", lambda: conn.execute("TRUNCATE raw_docs"),
                 lambda: _raw_copy(conn, "raw_docs", doc_columns, doc_types, doc_rows(vectors))),
                ("raw staged upsert (collection rows)", lambda: None,
                 lambda: _raw_upsert(conn, "raw_docs", ["collection", "id"], doc_columns, doc_types, doc_rows(moved))),
            ],
        ],
        repeat,
        lambda: conn.execute("CHECKPOINT"),
    )  # fmt: skip

    # -- Repository vs raw COPY into a table like the model's ------------------------------------------
    model = _model(dim)
    conn.execute("DROP TABLE IF EXISTS raw_rows")
    model.metadata.drop_all(db.engine)
    model.metadata.create_all(db.engine)
    repo = Repository(model, db)
    table_name = model.__tablename__
    mappings = [
        {
            "id": i,
            "section": meta[i]["section"],
            "length": meta[i]["length"],
            "page": meta[i]["page"],
            "embedding": vectors[i],
        }
        for i in range(n)
    ]
    moved_mappings = [{**m, "embedding": moved[i]} for i, m in enumerate(mappings)]

    def fresh_table() -> None:
        with db.engine.begin() as c:
            c.execute(text(f"TRUNCATE {table_name}"))

    conn.execute("DROP TABLE IF EXISTS raw_rows")
    conn.execute(f"CREATE TABLE raw_rows (LIKE {table_name} INCLUDING INDEXES INCLUDING CONSTRAINTS)")
    row_columns = ["id", "section", "length", "page", "embedding"]
    row_types = ["int4", "text", "int4", "text", "vector"]

    def model_rows(vs: np.ndarray) -> Callable[[], Any]:
        return lambda: ((i, meta[i]["section"], meta[i]["length"], meta[i]["page"], vs[i]) for i in range(n))

    seconds |= _rounds(
        [
            [
                ("Repository.add", fresh_table, lambda: repo.add(mappings)),
                ("Repository.upsert", lambda: None, lambda: repo.upsert(moved_mappings)),
            ],
            [
                ("raw COPY (model rows)", lambda: conn.execute("TRUNCATE raw_rows"),
                 lambda: _raw_copy(conn, "raw_rows", row_columns, row_types, model_rows(vectors))),
                ("raw staged upsert (model rows)", lambda: None,
                 lambda: _raw_upsert(conn, "raw_rows", ["id"], row_columns, row_types, model_rows(moved))),
            ],
        ],
        repeat,
        lambda: conn.execute("CHECKPOINT"),
    )  # fmt: skip
    out = {name: n / statistics.median(values) for name, values in seconds.items()}
    # each round's vectorpg write against the raw one run beside it (same server state), median over rounds
    ratios = {ours: statistics.median(r / o for o, r in zip(seconds[ours], seconds[raw])) for ours, raw in PAIRS}
    conn.execute("DROP TABLE raw_docs, raw_rows")
    model.metadata.drop_all(db.engine)
    db.drop_collection(name)
    return {"dim": dim, "rows": n, "rows_per_s": out, "ratios": ratios, "seconds": seconds}


def run_upload(db: vectorpg.Database, n: int, dim: int) -> dict[str, Any]:
    """``Collection.upload`` of ``n`` rows from a generator: atomic, and committing on 1-4 connections."""
    vectors, ids, meta = _rows(n, dim, seed=7)
    out: dict[str, float] = {}
    for label, atomic, parallel in [("atomic", True, 1), *((f"{p} connection(s)", False, p) for p in (1, 2, 3, 4))]:
        name = f"upload_v2_{parallel}"
        db.drop_collection(name)
        docs = db.collection(name, dimension=dim, embedder=None, auto_index=False)
        start = time.perf_counter()
        docs.upload((v for v in vectors), ids=iter(ids), metadata=iter(meta), atomic=atomic, parallel=parallel,
                    progress=False)  # fmt: skip
        out[label] = n / (time.perf_counter() - start)
        db.drop_collection(name)
        print(f"upload {label}: {out[label]:,.0f} rows/s", flush=True)
    return {"rows": n, "dim": dim, "rows_per_s": out}


_STREAM = """
import resource, sys, time
import numpy as np
import vectorpg
path, n, dim, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def rows():
    with open(path, "rb") as f:
        while block := f.read(4096 * dim * 4):
            yield from np.frombuffer(block, dtype=np.float32).reshape(-1, dim)
db = vectorpg.connect()
db.drop_collection("upload_v2_stream")
docs = db.collection("upload_v2_stream", dimension=dim, embedder=None, auto_index=False)
start = time.perf_counter()
written = docs.upload(rows(), ids=(f"s{i}" for i in range(n)), atomic=True, progress=False)
seconds = time.perf_counter() - start
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024  # peak RSS since exec
print(written, seconds, peak, docs.count())
db.drop_collection("upload_v2_stream")
"""


def run_stream(n: int, dim: int, limit_mb: int) -> dict[str, Any]:
    """An upload of a dataset larger than the process may hold: a child process with ``RLIMIT_AS`` below the
    dataset's size reads it from a file as it goes."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.f32")
        rng = np.random.default_rng(8)
        with open(path, "wb") as f:
            for start in range(0, n, 50_000):
                f.write(rng.standard_normal((min(50_000, n - start), dim)).astype(np.float32).tobytes())
        size = os.path.getsize(path)
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        done = subprocess.run(
            [sys.executable, "-c", _STREAM, path, str(n), str(dim), str(limit_mb << 20)],
            capture_output=True, text=True, env=env, timeout=1800,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the streaming upload failed: {done.stderr[-2000:]}")
    written, seconds, peak, count = done.stdout.split()[-4:]
    out = {"rows": n, "dim": dim, "dataset_mb": size / 2**20, "limit_mb": limit_mb, "written": int(written),
           "stored": int(count), "rows_per_s": int(written) / float(seconds),
           "peak_rss_mb": int(peak) / 2**20}  # fmt: skip
    print(f"stream: {out}", flush=True)
    return out


PAIRS = [
    ("Collection.add", "raw COPY (collection rows)"),
    ("Collection.upsert", "raw staged upsert (collection rows)"),
    ("Repository.add", "raw COPY (model rows)"),
    ("Repository.upsert", "raw staged upsert (model rows)"),
]


def write(
    runs: list[dict[str, Any]], uploads: dict[str, Any] | None = None, stream: dict[str, Any] | None = None
) -> str:
    lines = [
        "# Write path v2 side by side",
        "",
        f"`python -m benchmarks.write_v2`: {runs[0]['rows']:,} rows per write, "
        f"{len(runs[0]['seconds']['Collection.add'])} rounds; rows/s is the median over the rounds, the ratio the "
        "median of each round's ratio (vectorpg's"
        f" write against the raw one run beside it). Goal: every vectorpg write >= {GOAL}x its raw baseline.",
        "",
    ]
    body = []
    for run in runs:
        r = run["rows_per_s"]
        for ours, raw in PAIRS:
            ratio = run["ratios"][ours]
            rounds = [b / a for a, b in zip(run["seconds"][ours], run["seconds"][raw])]
            body.append(
                [
                    run["dim"],
                    ours,
                    round(r[ours]),
                    raw,
                    round(r[raw]),
                    f"{ratio:.2f}x",
                    f"{min(rounds):.2f}-{max(rounds):.2f}x",
                    "yes" if ratio >= GOAL else "NO",
                ]
            )
    lines.append(table(["dim", "vectorpg", "rows/s", "baseline", "rows/s", "ratio", "rounds", "goal"], body))
    fig, ax = figure(8, 4.5)
    width = 0.2
    dims = [run["dim"] for run in runs]
    for j, (ours, _raw) in enumerate(PAIRS):
        ratios = [run["ratios"][ours] for run in runs]
        ax.bar([d + (j - 1.5) * width for d in range(len(dims))], ratios, width, label=ours)
    ax.axhline(GOAL, color="black", linestyle="--", linewidth=1, label=f"goal {GOAL}x")
    ax.set_xticks(range(len(dims)), [f"{d}-d" for d in dims])
    ax.set_ylabel("rows/s, vectorpg / raw")
    ax.legend(fontsize=8)
    lines += ["", f"![ratios]({save(fig, 'write_v2.png')})", ""]
    if uploads is not None:
        r = uploads["rows_per_s"]
        lines += [
            f"## Streaming upload: {uploads['rows']:,} rows of {uploads['dim']}-d from a generator",
            "",
            "`Collection.upload(generator, ids=..., metadata=...)`, 2,000 rows a batch: one transaction (atomic),"
            " or a commit per batch on 1-4 connections (2 cores here: the server and the client share them).",
            "",
            table(
                ["mode", "rows/s", "vs 1 connection"],
                [[k, round(v), f"{v / r['1 connection(s)']:.2f}x"] for k, v in r.items()],
            ),
            "",
        ]
    if stream is not None:
        lines += [
            "## A dataset larger than the process's memory limit",
            "",
            f"{stream['rows']:,} rows of {stream['dim']}-d ({stream['dataset_mb']:,.0f} MB of float32) uploaded by a "
            f"process limited to {stream['limit_mb']} MB of address space (`RLIMIT_AS`), reading the rows from a "
            f"file as it goes: {stream['written']:,} written, {stream['stored']:,} stored, "
            f"{stream['rows_per_s']:,.0f} rows/s, peak RSS {stream['peak_rss_mb']:,.0f} MB.",
            "",
        ]
    report = "\n".join(lines)
    (RESULTS / "write_v2.md").write_text(report)
    (RESULTS / "write_v2.json").write_text(json.dumps({"writes": runs, "upload": uploads, "stream": stream}, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", default="384,768,1536")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--upload-rows", type=int, default=100_000, help="0: skip the upload scaling")
    parser.add_argument("--stream-rows", type=int, default=400_000, help="0: skip the memory-limited upload")
    parser.add_argument("--stream-limit-mb", type=int, default=512)
    args = parser.parse_args()
    db = vectorpg.connect()
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = connect_raw(url, autocommit=True, prepare_threshold=None)
    runs = []
    for dim in (int(d) for d in args.dims.split(",")):
        runs.append(run_dimension(db, conn, args.rows, dim, args.repeat))
        print(json.dumps(runs[-1]), flush=True)
    uploads = run_upload(db, args.upload_rows, 384) if args.upload_rows else None
    stream = run_stream(args.stream_rows, 384, args.stream_limit_mb) if args.stream_rows else None
    print(write(runs, uploads, stream))


if __name__ == "__main__":
    main()

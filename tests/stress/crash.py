"""Crash durability: kill -9 the PostgreSQL postmaster while a client ingests acknowledged batches, restart it,
and check that every acknowledged batch is whole, no batch is partial, a retry duplicates nothing, and the
indexes still answer.

    python -m tests.stress.crash --rounds 50        # prints the figures (the suite runs a few rounds)

The server is the embedded PostgreSQL run by ``vectorpg serve`` on a TCP port (its own process tree); the
writer is another process that adds batches of 100 rows (ids ``<batch>:<row>``) with ``Collection.add`` and
appends a batch's number to an acknowledgement file (fsync'ed) only after ``add`` returned.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BATCH = 100
DIM = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """``vectorpg serve`` in the background; returns the process and the URL once it accepts connections."""
    for _ in range(50):  # after a crash, orphaned backends may hold the data directory for a moment
        process = subprocess.Popen(
            [sys.executable, "-m", "vectorpg.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening" in line:
            return process, line.split(": ", 1)[1].strip()
        process.wait()
        time.sleep(0.5)
    raise RuntimeError(f"the server did not start again: {process.stderr.read() if process.stderr else ''}")


def writer(url: str, ack: str) -> None:
    """Add batches forever; acknowledge each one after it is committed (run in its own process)."""
    import numpy as np

    import vectorpg

    db = vectorpg.connect(url)
    docs = db.collection("crash", embedder=None, create=False)
    with open(ack, "a") as out:
        batch = sum(1 for _ in open(ack))
        while True:
            vectors = np.random.default_rng(batch).normal(size=(BATCH, DIM))
            docs.add(vectors=vectors, ids=[f"{batch}:{i}" for i in range(BATCH)], metadata=[{"batch": batch}] * BATCH)
            out.write(f"{batch}\n")
            out.flush()
            os.fsync(out.fileno())
            batch += 1


def one_round(data_dir: Path, rng: random.Random) -> dict[str, Any]:
    import numpy as np
    import psycopg

    import vectorpg
    from vectorpg import HNSW

    port = free_port()
    server, url = start_server(data_dir, port)
    db = vectorpg.connect(url)
    if "crash" not in db.collections():
        db.collection("crash", dimension=DIM, embedder=None).create_index(HNSW())
    db.close()
    ack = data_dir.parent / "acks.txt"
    ack.touch()
    client = subprocess.Popen(
        [sys.executable, "-c", f"from tests.stress.crash import writer; writer({url!r}, {str(ack)!r})"],
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(1.0, 3.0))
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)  # the crash: no shutdown, no checkpoint
    client.wait(timeout=60)
    server.wait(timeout=60)

    server, url = start_server(data_dir, port)  # crash recovery replays the WAL
    acked = sorted({int(line) for line in ack.read_text().split()})
    with psycopg.connect(url) as conn:
        per_batch = dict(
            conn.execute(
                "SELECT (metadata->>'batch')::int, count(*) FROM vectorpg.documents_crash GROUP BY 1"
            ).fetchall()
        )
    lost = [b for b in acked if per_batch.get(b, 0) != BATCH]
    partial = [b for b, n in per_batch.items() if n != BATCH]
    # the client retries the batch it was writing when the server died (the one after the last ack)
    retry = (acked[-1] + 1) if acked else 0
    db = vectorpg.connect(url)
    docs = db.collection("crash", embedder=None, create=False)
    docs.add(
        vectors=np.random.default_rng(retry).normal(size=(BATCH, DIM)),
        ids=[f"{retry}:{i}" for i in range(BATCH)],
        metadata=[{"batch": retry}] * BATCH,
    )
    rows = docs.count()
    batches = len({b for b in per_batch} | {retry})
    duplicates = rows - batches * BATCH
    with ack.open("a") as out:
        out.write(f"{retry}\n")
    # the HNSW index answers after recovery: its results are real rows, nearly the exact ones
    q = np.random.default_rng(999).normal(size=DIM)
    ann = [h.id for h in docs.search(q, 10, strategy="ann")]
    exact = [h.id for h in docs.search(q, 10, strategy="exact")]
    with psycopg.connect(url) as conn:
        valid = conn.execute(
            "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'vectorpg.documents_crash'::regclass"
        ).fetchone()[0]
        amcheck = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'").fetchone()[0]
        if amcheck:
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            conn.execute(
                "SELECT bt_index_check(i.indexrelid, true) FROM pg_index i JOIN pg_class c ON "
                "c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' "
                "AND i.indrelid = 'vectorpg.documents_crash'::regclass"
            )
            btree = "amcheck"
        else:  # the embedded server ships no amcheck: the primary key index must agree with the heap
            conn.execute("SET enable_seqscan = off")
            by_index = conn.execute("SELECT count(*) FROM vectorpg.documents_crash WHERE id >= ''").fetchone()[0]
            conn.execute("RESET enable_seqscan; SET enable_indexscan = off; SET enable_bitmapscan = off")
            by_heap = conn.execute("SELECT count(*) FROM vectorpg.documents_crash WHERE id >= ''").fetchone()[0]
            btree = "index = heap" if by_index == by_heap == rows else f"MISMATCH {by_index} vs {by_heap}"
    db.close()
    server.send_signal(signal.SIGINT)
    server.wait(timeout=60)
    return {
        "acked": len(acked),
        "lost": lost,
        "partial": partial,
        "duplicates": duplicates,
        "index_valid": bool(valid),
        "ann_in_rows": set(ann) <= set(exact) or len(set(ann) & set(exact)) >= 8,
        "btree": btree,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir or tmp) / "pg"
        rng = random.Random(0)
        results = []
        for n in range(args.rounds):
            result = one_round(data_dir, rng)
            results.append(result)
            print(f"round {n + 1}: {json.dumps(result)}", flush=True)
    acked = results[-1]["acked"] if results else 0
    lost = sum(len(r["lost"]) for r in results)
    partial = sum(len(r["partial"]) for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    print(
        f"{args.rounds} rounds of kill -9: {acked} batches ({acked * BATCH} rows) acknowledged in all, "
        f"{lost} acknowledged batches lost, {partial} partial batches, {duplicates} duplicate rows after retries"
    )
    return 0 if lost == partial == duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""reembed() online: a reader and a writer with ``lock_timeout = 1s`` run through the whole re-embedding,
swap included. Not one lock timeout, every read answered, every write kept, and at the end every row's
vector is the new model's vector of its current text."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import text

import vectorpg
from tests.fix_embedders import HashEmbedder

N = 15_000
#: the writer's statements apply only while the re-embedding runs (the swap clears next_embedder in its own
#: transaction), so each row it touched has a text the new model must have embedded
RUNNING = "EXISTS (SELECT 1 FROM vectorpg.collections WHERE name = 'kb' AND next_embedder IS NOT NULL)"


class SlowModel(HashEmbedder):
    def embed(self, texts: Any) -> np.ndarray:
        time.sleep(0.02)  # a real model's pace, so the reader and writer interleave with every phase
        return super().embed(texts)


class Load:
    """A reader and a writer on their own connections, counting what they did and every error."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.reads = self.short_reads = 0
        self.errors: list[str] = []
        self.deleted: set[str] = set()
        self.inserted: set[str] = set()
        self.metadata: dict[str, int] = {}

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute("SET lock_timeout = '1s'")
        return conn

    def read(self) -> None:
        with self.connect() as conn:
            while not self.stop.is_set():
                try:
                    rows = conn.execute(
                        "SELECT id FROM vectorpg.documents_kb ORDER BY embedding <=> "
                        "(SELECT embedding FROM vectorpg.documents_kb WHERE id = '5') LIMIT 5"
                    ).fetchall()
                    conn.execute("SELECT count(*) FROM vectorpg.documents_kb").fetchone()
                    self.reads += 1
                    self.short_reads += len(rows) != 5
                except psycopg.Error as exc:
                    self.errors.append(f"read: {type(exc).__name__}: {exc}")

    def write(self) -> None:
        with self.connect() as conn:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    target = str((i * 37) % (N - 100) + 10)
                    if conn.execute(f"UPDATE vectorpg.documents_kb SET content = %s WHERE id = %s AND {RUNNING}",
                                    [f"rewritten text {i} about cats", target]).rowcount:  # fmt: skip
                        pass
                    if conn.execute(f"UPDATE vectorpg.documents_kb SET metadata = %s WHERE id = %s AND {RUNNING}",
                                    [psycopg.types.json.Jsonb({"v": i}), str(i % 10)]).rowcount:  # fmt: skip
                        self.metadata[str(i % 10)] = i
                    victim = str(N - 1 - i)
                    if conn.execute(
                        f"DELETE FROM vectorpg.documents_kb WHERE id = %s AND {RUNNING}", [victim]
                    ).rowcount:
                        self.deleted.add(victim)
                    new = f"new-{i}"
                    if conn.execute(
                        "INSERT INTO vectorpg.documents_kb (collection, id, content, embedding) "
                        f"SELECT 'kb', %s, %s, d.embedding FROM vectorpg.documents_kb d WHERE d.id = '5' AND {RUNNING}",
                        [new, f"a new document {i} about dogs"],
                    ).rowcount:
                        self.inserted.add(new)
                except psycopg.Error as exc:
                    self.errors.append(f"write: {type(exc).__name__}: {exc}")
                time.sleep(0.002)


def test_reembed_online_under_a_concurrent_reader_and_writer(
    db: vectorpg.Database, hash_embedder: HashEmbedder
) -> None:
    docs = db.collection("kb", embedder=hash_embedder)
    docs.add([f"document {i} about topic {i % 9}" for i in range(N)], ids=[str(i) for i in range(N)])
    docs.create_index()
    load = Load(db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    threads = [threading.Thread(target=load.read), threading.Thread(target=load.write)]
    for thread in threads:
        thread.start()
    try:
        new_model = SlowModel(dimension=48, name="hash-48")
        swapped = docs.reembed(new_model, batch_size=500, progress=False)
        time.sleep(0.3)  # reads and (no-op) writes after the swap too
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)
    assert load.errors == [], load.errors[:5]  # not one lock timeout, nor any other error
    assert load.reads > 20 and load.short_reads == 0
    assert load.deleted and load.inserted and load.metadata  # the writer did write during the run

    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, content, metadata, embedding FROM vectorpg.documents_kb")).all()
    ids = {r.id for r in rows}
    assert ids == ({str(i) for i in range(N)} - load.deleted) | load.inserted
    by_id = {r.id: r for r in rows}
    assert all(by_id[k].metadata == {"v": v} for k, v in load.metadata.items() if k in by_id)
    expected = HashEmbedder(dimension=48).embed([r.content for r in rows])
    stored = np.stack([np.asarray(r.embedding.to_numpy(), dtype=np.float32) for r in rows])
    wrong = [r.id for row, r in enumerate(rows) if not np.allclose(stored[row], expected[row], atol=1e-3)]
    assert wrong == [], f"{len(wrong)} rows with a vector of another text or model: {wrong[:5]}"
    assert swapped.dimension == 48 and [i.spec.dimension for i in swapped.indexes()] == [48]
    assert swapped.search("a new document about dogs", 3, strategy="ann")[0].distance < 0.2

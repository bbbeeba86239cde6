"""Streaming upload on the real server: iterables of any size in batches, bounded memory, the atomicity
contracts (all-or-nothing; per-batch commits with the position to resume from), parallel connections."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vectorpg

DIM = 8


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def test_an_upload_takes_generators_arrays_and_memmaps(db: vectorpg.Database, tmp_path: Path) -> None:
    docs = db.collection("upload_kinds", dimension=DIM, embedder=None, auto_index=False)
    data = _rows(2_500)
    generated = (row for row in data)  # no len(): one batch at a time
    assert docs.upload(generated, ids=(f"g{i}" for i in range(2_500)), metadata=({"i": i} for i in range(2_500)),
                       batch_size=300) == 2_500  # fmt: skip
    path = tmp_path / "rows.f32"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape)
    assert docs.upload(mapped, ids=[f"m{i}" for i in range(2_500)], batch_size=1_000) == 2_500
    assert docs.count() == 5_000
    got = docs.get(["g0", "g2499", "m1234"])
    np.testing.assert_array_equal(got[1].embedding, data[2_499])
    np.testing.assert_array_equal(got[2].embedding, data[1_234])
    assert got[0].metadata == {"i": 0}
    # an upload is an upsert: running it again replaces, nothing doubles
    assert docs.upload(data[:10], ids=[f"g{i}" for i in range(10)], metadata=[{"again": True}] * 10) == 10
    assert docs.count() == 5_000 and docs.get(["g3"])[0].metadata == {"again": True}


def test_an_atomic_upload_is_all_or_nothing_and_names_the_row(db: vectorpg.Database) -> None:
    docs = db.collection("upload_atomic", dimension=DIM, embedder=None, auto_index=False)
    data = _rows(1_000)
    data[777] = np.nan

    with pytest.raises(vectorpg.InvalidVectorError) as caught:
        docs.upload(iter(data), ids=(f"a{i}" for i in range(1_000)), batch_size=100)
    assert caught.value.row == 777 and "row 777" in str(caught.value)
    assert docs.count() == 0  # batches 0-6 were written inside the transaction, and rolled back
    with pytest.raises(vectorpg.InvalidInputError, match="ids ended at row 500"):
        docs.upload(_rows(1_000), ids=[f"b{i}" for i in range(500)], batch_size=200)
    with pytest.raises(vectorpg.InvalidInputError, match="vectors ended at row 40"):
        docs.upload(_rows(40), ids=[f"c{i}" for i in range(50)], batch_size=25)
    assert docs.count() == 0


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_committing_upload_keeps_what_it_wrote_and_says_where_to_resume(db: vectorpg.Database, parallel: int) -> None:
    docs = db.collection(f"upload_resume_{parallel}", dimension=DIM, embedder=None, auto_index=False)
    data = _rows(3_000, seed=parallel)
    ids = [f"r{i}" for i in range(3_000)]
    meta: list[Any] = [{"i": i} for i in range(3_000)]
    meta[2_345] = {"bad": float("inf")}  # refused when its batch is prepared
    with pytest.raises(vectorpg.InvalidInputError) as caught:
        docs.upload(data, ids=ids, metadata=meta, batch_size=200, atomic=False, parallel=parallel)
    committed = caught.value.committed  # type: ignore[attr-defined]
    assert caught.value.row == 2_345 and f"position {committed}" in str(caught.value)
    assert committed == 2_200  # batches are 200 rows: every one before the bad row's
    stored = {d.id for d in docs.get(ids)}
    assert {f"r{i}" for i in range(committed)} <= stored
    assert not stored & {f"r{i}" for i in range(2_200, 2_400)}  # the bad batch wrote nothing
    meta[2_345] = {"i": 2_345}
    resumed = docs.upload(data[committed:], ids=ids[committed:], metadata=itertools.islice(meta, committed, None),
                          batch_size=200, atomic=False, parallel=parallel)  # fmt: skip
    assert resumed == 3_000 - committed and docs.count() == 3_000
    assert docs.search(data[2_999], 1)[0].id == "r2999"


def test_upload_arguments(db: vectorpg.Database) -> None:
    docs = db.collection("upload_args", dimension=DIM, embedder=None)
    for kwargs, message in (
        ({}, "nothing to upload"),
        ({"vectors": _rows(2), "batch_size": 0}, "batch_size"),
        ({"vectors": _rows(2), "parallel": 2}, "atomic=False"),
        ({"vectors": _rows(2), "parallel": 99, "atomic": False}, "parallel"),
        ({"vectors": _rows(2), "ids": "ab"}, "iterables of rows"),
    ):
        with pytest.raises(vectorpg.VectorPgError, match=message):
            docs.upload(**kwargs)
    assert docs.count() == 0


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_write_failing_mid_stream_stops_the_upload(
    db: vectorpg.Database, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    """A batch whose write fails (here: the driver raises for the batch at row 1,200) stops the upload:
    a typed error, nothing of that batch stored, ``committed`` a prefix the stored rows cover."""
    import psycopg

    from vectorpg.store import streaming

    docs = db.collection(f"upload_fail_{parallel}", dimension=DIM, embedder=None, auto_index=False)
    real = streaming.write_batch

    def failing(session: Any, collection: Any, batch: Any) -> None:
        if batch.ids[0] == "f1200":
            raise psycopg.OperationalError("injected: the server went away")
        real(session, collection, batch)

    monkeypatch.setattr(streaming, "write_batch", failing)
    ids = [f"f{i}" for i in range(3_000)]
    with pytest.raises(vectorpg.VectorPgError, match="injected") as caught:
        docs.upload(_rows(3_000), ids=ids, batch_size=200, atomic=False, parallel=parallel)
    committed = caught.value.committed  # type: ignore[attr-defined]
    stored = {d.id for d in docs.get(ids)}
    assert committed <= 1_200 and {f"f{i}" for i in range(committed)} <= stored
    if parallel == 1:
        assert committed == 1_200  # in order: every batch before the failing one
    assert not stored & {f"f{i}" for i in range(1_200, 1_400)}
    assert len(stored) <= 1_200 + 2 * parallel * 200  # it stopped: at most the batches in flight went in


class _SlowStart:
    """An embedder whose second call sets ``second_embed``: proof that it ran while batch 1 was written."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0
        self.second_embed = threading.Event()
        self.name, self.dimension = inner.name, inner.dimension

    def embed(self, texts: Any) -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            self.second_embed.set()
        return self.inner.embed(texts)


@pytest.mark.parametrize("fail", [False, True])
def test_an_atomic_upload_embeds_the_next_batch_while_writing_one(
    db: vectorpg.Database, monkeypatch: pytest.MonkeyPatch, hash_embedder: Any, fail: bool
) -> None:
    """Batch 1's write waits until batch 2 is being embedded (it would wait in vain, 10 s, were they run one
    after the other); a write failing later rolls the whole upload back and raises a typed error."""
    import psycopg

    from vectorpg.store import streaming

    embedder = _SlowStart(hash_embedder)
    docs = db.collection(f"upload_overlap_{fail}", embedder=embedder, auto_index=False)
    real, seen = streaming.write_batch, []

    def write(session: Any, collection: Any, batch: Any) -> None:
        if batch.ids[0] == "t0":
            seen.append((threading.current_thread().name, embedder.second_embed.wait(10)))
        if fail and batch.ids[0] == "t200":
            raise psycopg.OperationalError("injected: the server went away")
        real(session, collection, batch)

    monkeypatch.setattr(streaming, "write_batch", write)
    texts = (f"document number {i} about topic {i % 7}" for i in range(500))
    ids = (f"t{i}" for i in range(500))
    if fail:
        with pytest.raises(vectorpg.VectorPgError, match="injected"):
            docs.upload(texts=texts, ids=ids, batch_size=100)
        assert docs.count() == 0
    else:
        assert docs.upload(texts=texts, ids=ids, batch_size=100) == 500
        assert docs.count() == 500 and docs.get(["t499"])[0].content == "document number 499 about topic 2"
    assert seen and seen[0][0].startswith("vectorpg-write") and seen[0][1] is True

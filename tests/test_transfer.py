"""Export and import: a collection to JSONL or Parquet and back, exactly (ids, content, metadata, bit-identical
vectors, the model), all or nothing; through the Python API, the async API and the command line."""

from __future__ import annotations

import asyncio
import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vectorpg
import vectorpg.aio
from tests.fix_embedders import HashEmbedder
from vectorpg.cli.main import main as cli

N = 1234


def _stored(docs: Any) -> dict[str, tuple[Any, Any, bytes]]:
    return {d.id: (d.content, d.metadata, np.asarray(d.embedding, np.float32).tobytes()) for d in docs.scan()}


@pytest.fixture
def source(db: vectorpg.Database, hash_embedder: HashEmbedder) -> Any:
    docs = db.collection("source", embedder=hash_embedder, metric="l2")
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((N, hash_embedder.dimension)).astype(np.float32)
    vectors[0, :3] = [1e-45, 3.4e38, -0.0]  # a subnormal, float32's largest, a negative zero: all kept exactly
    texts = [f"doc {i}: naïve café ☕ {'x' * (i % 7)}" for i in range(N)]
    meta = [
        {"n": i, "f": i / 3, "tags": ["a", str(i % 5)], "nested": {"ok": i % 2 == 0, "none": None}} for i in range(N)
    ]
    docs.add(texts, vectors=vectors, ids=[f"id-{i:05d}" for i in range(N)], metadata=meta)
    return docs


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_round_trip_is_exact(db: vectorpg.Database, source: Any, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"export.{suffix}"
    assert source.export(path) == N
    copy = db.import_collection(path, collection="copy")
    assert (copy.dimension, copy.metric.metric.value, copy.embedder_name) == (source.dimension, "l2", "hash-embedder")
    assert _stored(copy) == _stored(source)
    again = db.import_collection(path, collection="copy")  # upserts: the same rows, nothing doubled
    assert again.count() == N


def test_vector_only_and_mixed_documents(db: vectorpg.Database, tmp_path: Path) -> None:
    docs = db.collection("mixed", dimension=4)
    docs.add(vectors=np.eye(4, dtype=np.float32), ids=["v0", "v1", "v2", "v3"], metadata=[{"k": i} for i in range(4)])
    docs.add(["with text"], vectors=[[1, 2, 3, 4]], ids=["t0"])
    docs.export(tmp_path / "mixed.jsonl")
    copy = db.import_collection(tmp_path / "mixed.jsonl", collection="mixed_copy")
    assert copy.embedder_name is None and _stored(copy) == _stored(docs)


def test_bad_files_write_nothing(db: vectorpg.Database, source: Any, tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    source.export(path)
    lines = path.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*lines[:500], '{"id": "x", "embedding": "not a vector"}', *lines[500:]]) + "\n")
    with pytest.raises(vectorpg.InvalidInputError):
        db.import_collection(broken, collection="broken")
    assert db.collection("broken", embedder=None, create=False).count() == 0  # the 500 rows before it: rolled back
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("\n".join([lines[0], lines[1].replace('"embedding":[', '"embedding":[1.0,'), *lines[2:]]) + "\n")
    with pytest.raises(vectorpg.DimensionMismatchError):
        db.import_collection(wrong, collection="wrong")
    db.collection("taken", dimension=3)
    with pytest.raises(vectorpg.CollectionMismatchError, match="dimension"):
        db.import_collection(path, collection="taken")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(vectorpg.InvalidArgumentError, match=r"jsonl or \.parquet"):
        db.import_collection(tmp_path / "notes.txt")
    (tmp_path / "plain.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(vectorpg.InvalidInputError, match="not a vectorpg export"):
        db.import_collection(tmp_path / "plain.jsonl")


def test_the_command_line_and_the_async_api(
    db: vectorpg.Database, source: Any, tmp_path: Path, database_url: str
) -> None:
    out = io.StringIO()
    path = tmp_path / "cli.parquet"
    with redirect_stdout(out):
        assert cli(["export", "source", str(path), "--url", database_url, "--quiet"]) == 0
        assert cli(["import", str(path), "--collection", "from_cli", "--url", database_url, "--quiet"]) == 0
    text = out.getvalue()
    assert f"exported {N:,} documents" in text and "next: vectorpg import" in text and "'from_cli'" in text
    assert _stored(db.collection("from_cli", embedder=None, create=False)) == _stored(source)

    async def main() -> int:
        adb = await vectorpg.aio.connect(database_url)
        try:
            adocs = await adb.collection("source", embedder=None)
            await adocs.export(tmp_path / "async.jsonl")
            copy = await adb.import_collection(tmp_path / "async.jsonl", collection="from_async")
            return int(await copy.count())
        finally:
            await adb.close()

    assert asyncio.run(main()) == N
    header = json.loads((tmp_path / "async.jsonl").read_text().splitlines()[0])
    assert header == {"vectorpg_export": 1, "collection": "source", "dimension": source.dimension, "metric": "l2",
                      "model": "hash-embedder"}  # fmt: skip

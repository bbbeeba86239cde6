"""Re-ingest of unchanged files on the real server: a file whose size and mtime are as ingest left them is
not read; one whose bytes are the same under a new mtime is read but not chunked (and its facts are
brought up to date); changed bytes or changed chunking settings chunk it again."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

import vectorpg
from tests.fix_embedders import HashEmbedder
from vectorpg.rag.chunking import Chunker

ingest_module = importlib.import_module("vectorpg.rag.ingest")  # the package's ``ingest`` is the function


def _corpus(root: Path) -> Path:
    root.mkdir()
    for i in range(5):
        (root / f"doc{i}.md").write_text(f"# Doc {i}\n\n" + f"Paragraph {i} about topic {i}. " * 30 + "\n")
    return root


def test_unchanged_files_are_recognised_before_chunking(
    db: vectorpg.Database, hash_embedder: HashEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _corpus(tmp_path / "docs")
    docs = db.collection("reingest", embedder=hash_embedder)
    first = docs.ingest(root, progress=False)
    assert first.files == 5 and first.unchanged_files == 0 and first.new == first.chunks > 5
    reads: list[str] = []
    splits: list[str] = []
    real_read, real_split = ingest_module.read_document, Chunker.split

    def counting_read(path: Any) -> Any:
        reads.append(str(path))
        return real_read(path)

    def counting_split(self: Chunker, text: str, source: str = "", fmt: str = "text") -> Any:
        splits.append(source)
        return real_split(self, text, source, fmt)

    monkeypatch.setattr(ingest_module, "read_document", counting_read)
    monkeypatch.setattr(Chunker, "split", counting_split)

    again = docs.ingest(root, progress=False)
    assert (reads, splits) == ([], [])  # size and mtime as ingest left them: not even read
    assert again.unchanged_files == 5 and again.unchanged == again.chunks == first.chunks and again.new == 0
    assert "5 unchanged (not chunked again)" in str(again)

    touched = root / "doc1.md"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    after_touch = docs.ingest(root, progress=False)
    assert len(reads) == 1 and splits == [] and after_touch.unchanged_files == 5  # read and hashed, not chunked
    reads.clear()
    docs.ingest(root, progress=False)
    assert reads == []  # its facts were brought up to date: the new mtime is known now

    (root / "doc2.md").write_text("# Doc 2\n\nSomething else entirely.\n")
    changed = docs.ingest(root, progress=False)
    assert [Path(s).name for s in splits] == ["doc2.md"] and changed.unchanged_files == 4
    assert changed.new >= 1 and changed.removed >= 1
    splits.clear()
    rechunked = docs.ingest(root, progress=False, max_tokens=64)  # other chunking settings
    assert len(splits) == 5 and rechunked.unchanged_files == 0
    assert docs.count() == rechunked.chunks  # the old settings' chunks were replaced

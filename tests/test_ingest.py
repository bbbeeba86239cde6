"""Ingesting files and folders, the embedding cache, sync without orphans, model registry, reembed and
retrieval for prompts, on the embedded server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

import vectorpg
from tests.fix_embedders import HashEmbedder
from vectorpg.rag.chunking import Chunker
from vectorpg.rag.ingest import html_to_text, read_document
from vectorpg.rag.retrieval import build_prompt

GUIDE = """# Guide

PostgreSQL keeps the vectors next to the rows they describe.

## Install

Install the package with pip. The embedded server needs no root and no Docker.

## Search

Filtered search returns k rows whenever k rows match. Hybrid search fuses full text and vectors.
"""

PAGE = """<html><head><title>t</title><script>var secret = "not text";</script><style>p {}</style></head>
<body><nav>menu</nav><h1>Refunds</h1><p>Refunds are paid within <b>14 days</b>.</p>
<h2>Exceptions</h2><ul><li>Gift cards are final.</li><li>Sale items are final.</li></ul>
<pre># not a heading
print("code")</pre></body></html>"""


def corpus(root: Path) -> Path:
    """A folder of mixed files: Markdown, RST, HTML, text, nested, hidden, binary, not UTF-8, empty, broken."""
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "guide.md").write_text(GUIDE)
    (root / "sub" / "notes.rst").write_text("Notes\n=====\n\nThe planner counts matching rows.\n")
    (root / "refunds.html").write_text(PAGE)
    (root / "plain.txt").write_text("A plain text file about cats and dogs.\n")
    (root / ".hidden" / "secret.md").write_text("# never ingested\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "empty.md").write_text("  \n")
    os.symlink(root / "missing.md", root / "broken.md")
    return root


def chunk_rows(db: vectorpg.Database, name: str) -> dict[str, dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, content, metadata FROM vectorpg.documents WHERE collection = :c"), {"c": name}
        )
        return {r.id: {"content": r.content, **r.metadata} for r in rows}


def expected_ids(files: list[Path]) -> set[str]:
    chunker = Chunker()
    ids: set[str] = set()
    for path in files:
        document = read_document(path)
        ids |= {c.id for c in chunker.split(document.text, document.source, document.fmt)}
    return ids


def test_html_text_extraction_keeps_structure_and_drops_scripts() -> None:
    extracted = html_to_text(PAGE)
    assert "# Refunds" in extracted and "## Exceptions" in extracted
    assert "Refunds are paid within 14 days." in extracted
    assert "secret" not in extracted and "menu" not in extracted
    assert '```\n# not a heading\nprint("code")\n```' in extracted


def test_ingest_a_mixed_folder(db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    root = corpus(tmp_path / "docs")
    docs = db.collection("kb", embedder=hash_embedder)
    report = docs.ingest(root, progress=False)
    assert report.files == 4
    assert sorted((Path(p).name, reason.split(" ")[0]) for p, reason in report.skipped) == [
        ("broken.md", "cannot"),
        ("empty.md", "empty"),
        ("latin1.txt", "not"),
        ("logo.png", "binary"),
    ]
    rows = chunk_rows(db, "kb")
    assert len(rows) == report.chunks == report.new == report.embedded > 4
    assert not any("never ingested" in r["content"] for r in rows.values())
    readable = [root / "guide.md", root / "sub" / "notes.rst", root / "refunds.html", root / "plain.txt"]
    assert set(rows) == expected_ids(readable)
    for row in rows.values():  # every chunk links back to its file
        assert Path(row["source"]).exists() and row["source"].startswith(str(root.resolve()))
        assert {"chunk", "start", "end", "heading", "tokens"} <= set(row)
    install = next(r for r in rows.values() if "pip" in r["content"])
    assert install["heading"] == "Guide > Install"
    assert GUIDE[install["start"] : install["end"]] == install["content"]
    hit = docs.search("gift cards final", 1)[0]
    assert hit.metadata["source"].endswith("refunds.html") and hit.metadata["heading"] == "Refunds > Exceptions"


def test_re_ingest_writes_and_embeds_nothing(
    db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    root = corpus(tmp_path / "docs")
    docs = db.collection("kb", embedder=hash_embedder)
    first = docs.ingest(root, progress=False)
    calls = hash_embedder.calls
    with db.engine.connect() as conn:
        stamp = conn.execute(text("SELECT max(updated_at), count(*) FROM vectorpg.documents")).one()
    again = docs.ingest(root, progress=False)
    assert hash_embedder.calls == calls  # not one text embedded
    assert (again.new, again.updated, again.removed, again.unchanged) == (0, 0, 0, first.chunks)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT max(updated_at), count(*) FROM vectorpg.documents")).one() == stamp


def test_sync_after_edit_delete_and_add(db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    root = corpus(tmp_path / "docs")
    docs = db.collection("kb", embedder=hash_embedder)
    docs.ingest(root, progress=False)
    (root / "guide.md").write_text(GUIDE.replace("Install the package with pip.", "Install it with uv or pip."))
    (root / "plain.txt").unlink()
    (root / "sub" / "new.md").write_text("# New\n\nA brand new page about partitions.\n")
    embedded_before = hash_embedder.texts_embedded
    report = docs.ingest(root, sync=True, progress=False)
    current = [root / "guide.md", root / "sub" / "notes.rst", root / "refunds.html", root / "sub" / "new.md"]
    assert set(chunk_rows(db, "kb")) == expected_ids(current)  # exactly the chunks of the files there now
    assert report.removed >= 2  # the edited section's old chunk and the deleted file's chunk
    assert hash_embedder.texts_embedded - embedded_before == report.embedded == 2  # the edited and the new chunk
    assert not docs.search("cats and dogs plain text", 10, where={"source": str((root / "plain.txt").resolve())})


def test_without_sync_deleted_files_stay_but_changed_files_never_leave_stale_chunks(
    db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    root = corpus(tmp_path / "docs")
    docs = db.collection("kb", embedder=hash_embedder)
    docs.ingest(root, progress=False)
    (root / "guide.md").write_text("# Guide\n\nEverything changed.\n")
    (root / "plain.txt").unlink()
    docs.ingest(root, progress=False)
    rows = chunk_rows(db, "kb")
    guide = [r for r in rows.values() if r["source"].endswith("guide.md")]
    assert [r["content"] for r in guide] == ["Everything changed."]
    assert any(r["source"].endswith("plain.txt") for r in rows.values())
    docs.ingest(root, sync=True, progress=False)
    assert not any(r["source"].endswith("plain.txt") for r in chunk_rows(db, "kb").values())


def test_the_cache_spans_collections_and_runs(
    db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    root = corpus(tmp_path / "docs")
    first = db.collection("one", embedder=hash_embedder).ingest(root, progress=False)
    calls = hash_embedder.calls
    other = HashEmbedder(name=hash_embedder.name)  # the same model in another process, say
    second = db.collection("two", embedder=other).ingest(root, progress=False)
    assert other.calls == 0 and hash_embedder.calls == calls
    assert second.cached == second.chunks == first.chunks and second.embedded == 0
    third = db.collection("three", embedder=HashEmbedder(name="another-model")).ingest(root, progress=False)
    assert third.embedded == third.chunks  # another model embeds for itself
    docs = db.collection("one", embedder=hash_embedder)
    seen = next(iter(chunk_rows(db, "one").values()))["content"]
    docs.add([seen], ids=["dup"])  # a text this model embedded before, under another id
    assert hash_embedder.calls == calls
    docs.add([seen + " And a new sentence."], ids=["new"])
    assert hash_embedder.calls == calls + 1


def test_model_and_dimension_are_recorded_and_enforced(db: vectorpg.Database, hash_embedder: HashEmbedder) -> None:
    db.collection("kb", embedder=hash_embedder)
    with pytest.raises(vectorpg.CollectionMismatchError, match="hash-embedder") as caught:
        db.collection("kb", embedder=HashEmbedder(name="other-model"))
    assert "other-model" in str(caught.value)
    with pytest.raises(vectorpg.CollectionMismatchError, match="dimension"):
        db.collection("kb", embedder=HashEmbedder(dimension=16))
    docs = db.collection("kb", embedder=hash_embedder)
    with pytest.raises(vectorpg.DimensionMismatchError):
        docs.add(vectors=[[0.1] * 16])


class FailingEmbedder(HashEmbedder):
    """Fails on its ``fail_on``-th call: a model server going away in the middle of a long job."""

    def __init__(self, fail_on: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_on = fail_on

    def embed(self, texts: Any) -> np.ndarray:
        if self.calls + 1 == self.fail_on:
            self.calls += 1
            raise RuntimeError("the model server went away")
        return super().embed(texts)


def test_reembed_a_populated_collection_resumably(db: vectorpg.Database, hash_embedder: HashEmbedder) -> None:
    docs = db.collection("kb", embedder=hash_embedder)
    texts = [f"document {i} about {'cats' if i % 2 else 'dogs'} number {i}" for i in range(300)]
    docs.add(texts, ids=[str(i) for i in range(300)], metadata=[{"n": i} for i in range(300)])
    docs.create_index()
    before = [round(h.distance, 5) for h in docs.search("cats number 7", 5, strategy="exact")]

    failing = FailingEmbedder(3, dimension=48, name="hash-48")
    with pytest.raises(RuntimeError, match="went away"):
        docs.reembed(failing, batch_size=100, progress=False)
    # the collection still answers with the old model and dimension: nothing swapped
    assert [round(h.distance, 5) for h in docs.search("cats number 7", 5, strategy="exact")] == before
    with db.engine.connect() as conn:
        done = conn.execute(text("SELECT count(embedding_next) FROM vectorpg.documents_kb")).scalar()
    assert done == 200  # two batches committed before the failure

    resumed = HashEmbedder(dimension=48, name="hash-48")
    new = docs.reembed(resumed, batch_size=100, progress=False)
    assert resumed.texts_embedded == 100  # only the rows left; the first 200 are not embedded again
    assert (new.dimension, new.embedder_name) == (48, "hash-48")
    reopened = db.collection("kb", embedder=resumed)
    assert reopened.dimension == 48
    with db.engine.connect() as conn:
        dims = conn.execute(text("SELECT DISTINCT vector_dims(embedding) FROM vectorpg.documents_kb")).all()
        leftovers = conn.execute(text("SELECT count(embedding_next) FROM vectorpg.documents_kb")).scalar()
    assert dims == [(48,)] and leftovers == 0
    (index,) = reopened.indexes()
    assert index.spec.dimension == 48 and index.valid
    query = "document 7 about cats number 7"
    found = reopened.search(query, 5, strategy="ann")  # through the rebuilt index
    exact = reopened.search(query, 5, strategy="exact")
    assert found[0].distance < 1e-6 and np.allclose([h.distance for h in found], [h.distance for h in exact])
    with pytest.raises(vectorpg.DimensionMismatchError):
        reopened.add(vectors=[[0.1] * 32])


def test_retrieve_within_a_token_budget_and_build_a_prompt(
    db: vectorpg.Database, tmp_path: Path, hash_embedder: HashEmbedder
) -> None:
    root = corpus(tmp_path / "docs")
    docs = db.collection("kb", embedder=hash_embedder)
    docs.ingest(root, progress=False)
    everything = docs.retrieve("how are refunds paid", k=10, diversity=None)
    assert len(everything) >= 5
    budget = sum(c.tokens for c in everything[:2])
    chunks = docs.retrieve("how are refunds paid", k=10, max_tokens=budget, diversity=None)
    assert sum(c.tokens for c in chunks) <= budget and chunks[:2] == everything[:2]
    assert all(c.source and Path(c.source).exists() for c in chunks)
    diverse = docs.retrieve("how are refunds paid", k=4, diversity=0.9)
    assert len(diverse) == 4
    prompt = build_prompt("How are refunds paid?", chunks)
    assert "[1] (" in prompt and "[2] (" in prompt and prompt.rstrip().endswith("Answer:")
    assert chunks[0].text.strip() in prompt and "Question: How are refunds paid?" in prompt
    with pytest.raises(vectorpg.InvalidArgumentError):
        build_prompt("q", chunks, template="no placeholders")


def test_ingest_text_replaces_a_sources_chunks(db: vectorpg.Database, hash_embedder: HashEmbedder) -> None:
    docs = db.collection("kb", embedder=hash_embedder)
    first = docs.ingest_text(GUIDE, "https://example.com/guide", fmt="markdown")
    second = docs.ingest_text("# Guide\n\nShorter now.\n", "https://example.com/guide", fmt="markdown")
    assert len(first) > len(second) == 1
    assert set(chunk_rows(db, "kb")) == set(second)


def test_the_report_names_new_and_changed_files(db: vectorpg.Database, tmp_path: Path, hash_embedder: Any) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nfirst part about cats.\n\n## B\n\nsecond part about dogs.\n")
    (folder / "c.md").write_text("# C\n\nanother file.\n")
    docs = db.collection("named", embedder=hash_embedder)
    first = docs.ingest(folder, progress=False)
    assert sorted(Path(p).name for p in first.new_files) == ["a.md", "c.md"] and first.changed_files == []
    (folder / "a.md").write_text("# A\n\nfirst part about cats, edited.\n\n## B\n\nsecond part about dogs.\n")
    (folder / "d.txt").write_text("a new file")
    second = docs.ingest(folder, progress=False)
    assert [Path(p).name for p in second.changed_files] == ["a.md"] and [Path(p).name for p in second.new_files] == [
        "d.txt"
    ]
    shown = str(second)
    assert "1 new; 1 changed" in shown and "changed: " in shown and "a.md" in shown and "new: " in shown
    assert "an edited passage is a new chunk" in shown


def test_the_progress_bar_moves_as_chunks_are_embedded(
    db: vectorpg.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar's counts move with each model batch (the embedder's own progress), not once per group of files."""
    import sys

    ingest_module = sys.modules["vectorpg.rag.ingest"]  # (vectorpg.rag.ingest the name is the function)
    seen: list[dict[str, Any]] = []

    class Recorder:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

        def set_postfix(self, **counts: Any) -> None:
            seen.append(counts)

        def close(self) -> None:
            pass

    class Batched(HashEmbedder):
        def embed(self, texts: Any, progress: Any = None) -> np.ndarray:
            out = super().embed(texts)
            for start in range(0, len(texts), 32):  # as the packaged models report, a batch at a time
                if progress is not None:
                    progress(min(32, len(texts) - start))
            return out

    monkeypatch.setattr(ingest_module, "progress_bar", lambda **_: Recorder())
    words = " ".join(f"word{j}" for j in range(40))
    (tmp_path / "big.md").write_text("\n\n".join(f"Paragraph {i} about topic {i % 7}: {words}." for i in range(400)))
    docs = db.collection("bar", embedder=Batched())
    report = docs.ingest(tmp_path, progress=True, batch_size=10_000)  # one group: the counts still move
    embedded = [c["embedded"] for c in seen]
    assert len(embedded) >= 3 and embedded == sorted(embedded) and embedded[-1] == report.embedded

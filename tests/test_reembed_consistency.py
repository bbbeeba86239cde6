"""reembed() under concurrent writes, crashes and stale handles (issue 12, finding 3).

Before the fix: a document updated (same id, new text) while the backfill ran kept the vector of its OLD
text after the swap; a crash between the swap and the index rebuild left the collection without a vector
index and a second reembed() refused ("already embedded by ..."); handles opened before the swap got raw
DataError / IntegrityError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

import vectorpg
from tests.fix_embedders import HashEmbedder

N = 300


def _populate(db: vectorpg.Database, embedder: HashEmbedder) -> vectorpg.Collection:
    docs = db.collection("kb", embedder=embedder)
    docs.add([f"document {i} about topic {i % 9}" for i in range(N)], ids=[str(i) for i in range(N)])
    docs.create_index()
    return docs


def _stored(db: vectorpg.Database) -> dict[str, tuple[str, np.ndarray]]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, content, embedding FROM vectorpg.documents_kb")).all()
    return {r.id: (r.content, np.asarray(r.embedding.to_numpy(), dtype=np.float32)) for r in rows}


class WritesWhileEmbedding(HashEmbedder):
    """The new model; on its second batch another handle (the application) rewrites two documents: one
    already re-embedded by the first batch, one in the batch being embedded right now."""

    def __init__(self, writer: vectorpg.Collection, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writer = writer

    def embed(self, texts: Any) -> np.ndarray:
        if self.calls == 1:  # second call: batch 2 (ids 100..199 in id order) is being embedded
            self.writer.upsert(["rewritten first batch text", "rewritten second batch text"], ids=["1", "150"])
        return super().embed(texts)


def test_documents_rewritten_during_the_backfill_get_vectors_of_their_new_text(
    db: vectorpg.Database, hash_embedder: HashEmbedder
) -> None:
    _populate(db, hash_embedder)
    app = db.collection("kb", embedder=hash_embedder)  # the application's own handle
    new_model = WritesWhileEmbedding(app, dimension=48, name="hash-48")
    db.collection("kb", embedder=hash_embedder).reembed(new_model, batch_size=100, progress=False)
    stored = _stored(db)
    assert stored["1"][0] == "rewritten first batch text" and stored["150"][0] == "rewritten second batch text"
    reference = HashEmbedder(dimension=48)
    ids = sorted(stored)
    expected = reference.embed([stored[i][0] for i in ids])
    wrong = [i for row, i in enumerate(ids) if not np.allclose(stored[i][1], expected[row], atol=1e-3)]
    assert wrong == [], f"vectors of another text than the current one: {wrong}"


def test_a_crash_before_the_swap_changes_nothing_and_is_resumed(
    db: vectorpg.Database, hash_embedder: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies while the shadow's index is built (the longest step): the collection is as it was,
    old model, old index, searchable; the next run finishes the job without embedding anything again."""
    docs = _populate(db, hash_embedder)
    import vectorpg.store.partition_swap as module

    def crash(*args: Any, **kwargs: Any) -> str:
        raise SystemExit("the process died while the shadow's index was built")  # kill -9 in the worst place

    with monkeypatch.context() as patched:
        patched.setattr(module, "create_vector_index", crash)
        with pytest.raises(SystemExit):
            docs.reembed(HashEmbedder(dimension=48, name="hash-48"), batch_size=100, progress=False)
    unchanged = db.collection("kb", embedder=hash_embedder)
    assert unchanged.dimension == 32 and [i.spec.dimension for i in unchanged.indexes()] == [32]
    hits = unchanged.search("document 7 about topic 7", 3, strategy="ann")
    assert hits[0].distance < 1e-6 and unchanged.count() == N

    new_model = HashEmbedder(dimension=48, name="hash-48")
    resumed = unchanged.reembed(new_model, progress=False)  # the same target again: finish the job
    assert new_model.texts_embedded == 0  # every vector came from the first run's backfill
    (index,) = resumed.indexes()
    assert index.valid and index.spec.dimension == 48
    with db.engine.connect() as conn:
        names = dict(
            conn.execute(text("SELECT relname, relkind FROM pg_class WHERE relname LIKE '%documents_kb%'")).all()
        )
    # no shadow left; the partition's indexes under their own names again
    assert names == {"documents_kb": "r", "documents_kb_pkey": "i", "documents_kb_metadata_idx": "i",
                     "documents_kb_embedding_cosine_idx": "i"}  # fmt: skip
    hits = resumed.search("document 7 about topic 7", 3, strategy="ann")  # through the rebuilt index
    exact = resumed.search("document 7 about topic 7", 3, strategy="exact")
    assert hits[0].distance < 1e-6 and np.allclose([h.distance for h in hits], [h.distance for h in exact])
    with pytest.raises(vectorpg.InvalidArgumentError, match="already embedded"):
        resumed.reembed(new_model, progress=False)


def test_handles_opened_before_the_swap_get_a_typed_error_and_write_nothing(
    db: vectorpg.Database, hash_embedder: HashEmbedder
) -> None:
    _populate(db, hash_embedder)
    stale = db.collection("kb", embedder=hash_embedder)
    db.collection("kb", embedder=hash_embedder).reembed(HashEmbedder(dimension=48, name="hash-48"), progress=False)
    before = _stored(db)
    for attempt in (
        lambda: stale.add(["a new text"], ids=["new"]),
        lambda: stale.add(["document 3 changed"], ids=["3"]),
        lambda: stale.add(vectors=[[0.5] * 32], ids=["v"]),
    ):
        with pytest.raises(vectorpg.CollectionMismatchError, match=r"Reopen it: db.collection\('kb'\)"):
            attempt()
    with pytest.raises(vectorpg.VectorPgError):
        stale.search("document 3", 3)
    assert _stored(db).keys() == before.keys()

    # the same model name at the same dimension cannot hide a swap either
    same_shape = db.collection("kb", embedder=HashEmbedder(dimension=48, name="hash-48"))
    db.collection("kb", embedder=HashEmbedder(dimension=48, name="hash-48")).reembed(
        HashEmbedder(dimension=48, name="hash-48-v2"), progress=False
    )
    with pytest.raises(vectorpg.CollectionMismatchError, match="embedder='hash-48-v2'"):
        same_shape.add(["text"], ids=["x"])

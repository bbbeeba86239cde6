"""The default embedder: the packaged all-MiniLM-L6-v2, loaded offline, on small input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import vectorpg
from vectorpg.embeddings import SentenceTransformerEmbedder, check_texts, default_embedder

pytestmark = pytest.mark.embedder


def test_packaged_model_embeds_offline() -> None:
    model = default_embedder()
    assert model.name == "all-MiniLM-L6-v2" and model.dimension == 384
    texts = ["How do I sort a list in Python?", "Sorting a Python list", "The cat sat on the mat"]
    vectors = model.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3  # meaning, not noise
    # Order and batching do not change results (int8's activation scales are per batch: near, not equal).
    small_batches = type(model)(batch_size=1).embed(texts[::-1])[::-1]
    assert (small_batches * vectors).sum(axis=1).min() > 0.995
    assert isinstance(model, vectorpg.Embedder)


def test_default_collection_uses_the_packaged_model(db: vectorpg.Database) -> None:
    docs = db.collection("minilm")
    assert docs.dimension == 384 and docs.embedder_name == "all-MiniLM-L6-v2"
    docs.add(["PostgreSQL is a relational database", "Bananas are yellow fruit"], ids=["pg", "banana"])
    assert docs.search("which database should I use?", k=1)[0].id == "pg"
    assert db.collection("minilm").embedder is default_embedder()  # reopened with its model


def test_importing_vectorpg_loads_no_model() -> None:
    code = "import sys, vectorpg; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_pytorch_model_is_batched_alike() -> None:
    texts = ["How do I sort a list in Python?", "Sorting a Python list", "The cat sat on the mat"]
    vectors = SentenceTransformerEmbedder().embed(texts)
    np.testing.assert_allclose(SentenceTransformerEmbedder(batch_size=1).embed(texts[::-1])[::-1], vectors, atol=1e-5)


def test_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(vectorpg.MissingDependencyError, match=r"vectorpg\[embed\]") as info:
        SentenceTransformerEmbedder().embed(["text"])
    assert info.value.extra == "embed" and isinstance(info.value, ImportError)


def test_texts_are_checked() -> None:
    with pytest.raises(vectorpg.InvalidInputError) as info:
        check_texts(["fine", "", "fine"])
    assert info.value.row == 1

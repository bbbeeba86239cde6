"""Fixtures (a pytest plugin): embedders that need no model, for store tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


class HashEmbedder:
    """A deterministic stand-in model for store tests: bag of hashed words, normalised.

    It is not a mock of the database; it counts its calls, so tests can prove text is not embedded twice.
    """

    def __init__(self, dimension: int = 32, name: str = "hash-embedder") -> None:
        self._dimension = dimension
        self._name = name
        self.calls = 0
        self.texts_embedded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Any) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % self._dimension] += 1.0
            out[row, 0] += 1e-3  # never the zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()

"""A sentence-transformers model run by PyTorch on the CPU (the fallback when ONNX Runtime is missing).

sentence-transformers and torch are imported only when the model is first used; without them the error
names the extra to install.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vectorpg.embeddings.base import check_texts, model_name, packaged_model_path
from vectorpg.errors import MissingDependencyError


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily, batched, with L2-normalised output.

    ``model`` is a local path or a model name already in the local cache; the default is the packaged
    all-MiniLM-L6-v2. Normalised output makes cosine distance, inner product and L2 rank alike.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 16,
        normalize: bool = True,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        self._model_ref = model
        self._name = model_name(model, name)
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def _load(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingDependencyError("sentence-transformers", "embed", "embedding text") from exc
            path = packaged_model_path() if self._model_ref is None else self._model_ref
            self._model = SentenceTransformer(str(path), device=self.device)
            return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size``; ``progress(n)`` is called as chunks finish."""
        items = check_texts(texts)
        model = self._load()
        if not items:
            return np.empty((0, self.dimension), dtype=np.float32)
        # Longest first, in chunks of a few batches: similar lengths share a batch, so less padding.
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        out = np.empty((len(items), self.dimension), dtype=np.float32)
        step = self.batch_size * 4
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            out[chunk] = model.encode(
                [items[i] for i in chunk],
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress is not None:
                progress(len(chunk))
        return out

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads, in its tokens (without the two special tokens); longer is cut."""
        return max(1, int(self._load().max_seq_length) - 2)

    def count_tokens(self, text: str) -> int:
        """Number of the model's tokens in ``text`` (what chunking measures chunks in)."""
        tokenizer = self._load().tokenizer
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self._name!r})"

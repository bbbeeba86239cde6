"""The embedding cache: text a model embedded once is never embedded again by it.

Vectors are kept in ``vectorpg.embedding_cache`` by (model name, sha256 of the text), for every collection
and every run. :func:`embed_cached` looks the texts up, embeds only the missing ones (validating what the
model returns before anything is stored) and adds them to the cache.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from vectorpg import validation
from vectorpg.awaiting import off_loop
from vectorpg.db import writes
from vectorpg.errors import InvalidVectorError
from vectorpg.metrics import MetricSpec
from vectorpg.own_schema.tables import embedding_cache_table

if TYPE_CHECKING:
    from vectorpg.embeddings import Embedder


def content_hash(text: str) -> str:
    """sha256 of the UTF-8 text, hex: the key that decides whether text must be embedded again."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Embedded:
    """Vectors for a list of texts, and how many of them the model had to compute."""

    vectors: np.ndarray
    computed: int
    cached: int


def embed_cached(
    engine: Engine,
    embedder: Embedder,
    texts: Sequence[str],
    *,
    dimension: int,
    metric: MetricSpec | None,
    progress: Callable[[int], None] | None = None,
) -> Embedded:
    """Vectors of ``texts`` (rows in order): from the cache where the model embedded the text before, from
    ``embedder`` otherwise. A bad vector from the model raises :class:`InvalidVectorError` naming the row
    of ``texts``, and nothing is cached."""
    hashes = [content_hash(t) for t in texts]
    table = embedding_cache_table
    unique = list(dict.fromkeys(hashes))
    found: dict[str, Any] = {}
    with Session(engine) as session:
        stmt = select(table.c.content_hash, table.c.embedding).where(
            table.c.model == embedder.name, writes.key_in(table.c.content_hash, unique)
        )
        for key, vector in session.execute(stmt):
            if len(vector) == dimension:
                found[key] = vector
    missing = [i for i, h in enumerate(hashes) if h not in found]
    first_of = {hashes[i]: i for i in reversed(missing)}  # a text repeated in the batch is embedded once
    to_embed = sorted(first_of.values())
    if to_embed:
        texts_to_embed = [texts[i] for i in to_embed]
        if progress is not None and _accepts_progress(embedder):
            produced = off_loop(embedder.embed, texts_to_embed, progress=progress)
        else:
            produced = off_loop(embedder.embed, texts_to_embed)
            if progress is not None:
                progress(len(texts_to_embed))
        try:
            checked = validation.dense_vectors(produced, dimension=dimension, metric=metric)
        except InvalidVectorError as exc:  # name the row of `texts`, not of the embedded subset
            if exc.row is not None:
                point_at_row(exc, to_embed[exc.row])
            raise
        rows = [(embedder.name, hashes[i], checked[n]) for n, i in enumerate(to_embed)]
        with Session(engine) as session, session.begin():
            writes.write_rows(
                session,
                table,
                ["model", "content_hash", "embedding"],
                rows,
                on_conflict="nothing",
                conflict_columns=["model", "content_hash"],
            )
        for n, i in enumerate(to_embed):
            found[hashes[i]] = checked[n]
    vectors = np.stack([np.asarray(found[h], dtype=np.float32) for h in hashes]) if hashes else np.empty((0, dimension))
    return Embedded(vectors.astype(np.float32, copy=False), computed=len(to_embed), cached=len(texts) - len(missing))


def point_at_row(exc: InvalidVectorError, row: int) -> None:
    """Point an error about a vector the embedder returned at ``row`` of the caller's batch."""
    reason = re.sub(r"^(the embedder returned a bad vector for )?row \d+: ", "", str(exc.args[0]))
    exc.row = row
    exc.args = (f"the embedder returned a bad vector for row {row}: {reason}",)


def _accepts_progress(embedder: Embedder) -> bool:
    try:
        return "progress" in inspect.signature(embedder.embed).parameters
    except (TypeError, ValueError):
        return False

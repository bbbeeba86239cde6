"""Maximal marginal relevance: re-order nearest candidates so that near-duplicates crowd out less."""

from __future__ import annotations

import numpy as np

from vectorpg.errors import InvalidArgumentError


def mmr_order(query: np.ndarray, candidates: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance: pick ``k`` of ``candidates`` (rows, nearest first), trading relevance
    for novelty. ``diversity`` 0 keeps the nearest-first order; 1 only avoids what was already picked.

    Each step takes ``argmax (1 - diversity) * sim(query, d) - diversity * max over picked p of sim(d, p)``,
    with cosine similarity. Returns indices into ``candidates``.
    """
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity <= 1:
        raise InvalidArgumentError(f"diversity must be a number from 0 to 1, got {diversity!r}")
    if len(candidates) == 0:
        return []
    matrix = np.asarray(candidates, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1)
    unit = matrix / np.where(norms == 0, 1, norms)[:, None]
    q = np.asarray(query, dtype=np.float64)
    relevance = unit @ (q / (np.linalg.norm(q) or 1))
    picked: list[int] = []
    redundancy = np.full(len(unit), -np.inf)
    for _ in range(min(k, len(unit))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = (1 - diversity) * relevance - diversity * penalty
        score[picked] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        redundancy = np.maximum(redundancy, unit @ unit[best])
    return picked

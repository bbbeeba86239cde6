"""Search: ONE search surface per table, and everything it is made of.

- :mod:`~vectorpg.search.surface`: :class:`SearchSurface`, which runs nearest-neighbour search (with the
  planner's choice and its fallbacks, and MMR), ``explain``, hybrid search and the tuning hooks;
- :mod:`~vectorpg.search.face`: :class:`Searchable`, the ``search`` / ``explain`` / ``hybrid_search`` /
  ``tune`` / ``recall`` verbs that :class:`~vectorpg.Collection` and :class:`~vectorpg.Repository` share;
- :mod:`~vectorpg.search.planner` decides (exact over the matching rows, or the vector index with an
  iterative scan); :mod:`~vectorpg.search.statements` builds all of a search's SQL;
- :mod:`~vectorpg.search.hybrid` (full text + vector, fused in SQL), :mod:`~vectorpg.search.tuning`
  (recall against exact search, stored knobs), :mod:`~vectorpg.search.mmr`.
"""

from vectorpg.search.face import Searchable
from vectorpg.search.hybrid import HybridOptions, HybridScore, text_index
from vectorpg.search.mmr import mmr_order
from vectorpg.search.planner import PlannerConfig, SearchPlan
from vectorpg.search.statements import QueryOptions
from vectorpg.search.surface import SearchSurface
from vectorpg.search.tuning import TuningResult, recall, tune

__all__ = [
    "HybridOptions",
    "HybridScore",
    "PlannerConfig",
    "QueryOptions",
    "SearchPlan",
    "SearchSurface",
    "Searchable",
    "TuningResult",
    "mmr_order",
    "recall",
    "text_index",
    "tune",
]

"""The search verbs that :class:`~vectorpg.Collection` and :class:`~vectorpg.Repository` share.

:class:`Searchable` gives both the same ``search``, ``explain`` (the same arguments, plus ``analyze``),
``hybrid_search``, ``tune`` and ``recall``, each a mapping onto the owner's
:class:`~vectorpg.search.surface.SearchSurface`. An owner says only how its own arguments and rows look:
how a query becomes a vector, how ``where`` becomes SQL conditions, and what a hit is.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from vectorpg import validation
from vectorpg.db.routing import current_server, routed
from vectorpg.db.translate import translating
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import VectorIndex
from vectorpg.metrics import MetricSpec
from vectorpg.search.hybrid import HybridOptions, HybridPlan, hybrid_plan
from vectorpg.search.planner import SearchPlan
from vectorpg.search.runner import statement_runner
from vectorpg.search.statements import QueryOptions
from vectorpg.search.surface import Row, SearchSurface
from vectorpg.search.tuning import DEFAULT_RECALL, TuningResult, recall, tune

MAX_BATCH_QUERIES = 10_000
WhereT = TypeVar("WhereT")
HitT = TypeVar("HitT")
HybridT = TypeVar("HybridT")


class Searchable(Generic[WhereT, HitT, HybridT]):
    """Search verbs over :attr:`surface`; subclasses supply the hooks below."""

    #: where reads go when the database has read replicas (:class:`vectorpg.db.routing.ReadRouter`)
    router: Any = None

    #: the search surface of the rows this object holds
    surface: SearchSurface

    def _query_vector(self, query: Any, metric: MetricSpec) -> Any:
        """The validated query vector for ``query`` (a vector, or a text to embed)."""
        raise NotImplementedError

    def _conditions(self, where: WhereT | None) -> list[ColumnElement[bool]]:
        """``where`` as SQL conditions on :attr:`surface`'s table."""
        raise NotImplementedError

    def _where_key(self, where: WhereT | None) -> Hashable | None:
        """A key that names ``where`` across calls (the same key: the same SQL conditions), or ``None``
        when it cannot be named; a search with a key keeps its statement for the next one."""
        return "" if where is None else None

    def _planned_conditions(self, where: WhereT | None) -> tuple[list[ColumnElement[bool]], bool]:
        """``where`` as SQL conditions, and whether PostgreSQL estimates them from statistics (typed
        columns: yes), from one compilation of the filter."""
        return self._conditions(where), True

    def _hit(self, row: Row) -> HitT:
        raise NotImplementedError

    def _hybrid_hit(self, row: Row) -> HybridT:
        raise NotImplementedError

    def _text_column(self, name: str | None) -> str:
        """The column the full-text leg of :meth:`hybrid_search` reads."""
        raise NotImplementedError

    def _arguments(
        self,
        query: Any,
        k: int,
        where: WhereT | None,
        metric: str | None,
    ) -> dict[str, Any]:
        """The arguments every surface call shares: the query vector, ``k``, the conditions, the metric."""
        spec = self.surface.metric_for(metric)
        return {
            "vector": self._query_vector(query, spec),
            "k": validation.positive_k(k),
            "where": self._conditions(where),
            "metric": spec,
        }

    @routed
    @translating("searching")
    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        where: WhereT | None = None,
        metric: str | None = None,
        index: VectorIndex | str | None = "auto",
        overfetch: int | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        iterative_scan: str | None = None,
        max_scan_tuples: int | None = None,
        strategy: str = "auto",
        diversity: float | None = None,
        fetch_k: int | None = None,
        recall: float | None = None,
        max_distance: float | None = None,
    ) -> list[HitT]:
        """The ``k`` hits nearest to ``query`` (a vector, or a text with an embedder) that match ``where``,
        nearest first. Distances are exact distances on the stored vectors, whatever the path;
        ``max_distance`` keeps only the hits at most that far (in the metric's distance: for
        ``inner_product``, the negative inner product), so fewer than ``k`` may come back.

        ``strategy="auto"`` lets the planner (:mod:`vectorpg.search.planner`) choose per query: an exact
        scan of the matching rows when few match, else the vector index with an iterative scan; a short
        ANN result is completed exactly, so fewer than ``k`` hits come back only when fewer than ``k`` rows
        match. ``"exact"`` and ``"ann"`` force a path. ``metric`` overrides the default distance.
        ``index="auto"`` uses an index for the metric: a plain one, else a halfvec-cast one, else a
        binary-quantized one, whose ``k * overfetch`` candidates are re-ranked exactly (``None``: no index).
        ``ef_search``, ``probes``, ``iterative_scan`` and ``max_scan_tuples`` apply to this query only.
        ``diversity`` (0 to 1) re-orders the ``fetch_k`` nearest by maximal marginal relevance. ``recall``
        picks the knob values :meth:`tune` stored for that target (default: the values tuned for 0.95, if any).
        """
        options = QueryOptions(ef_search, probes, iterative_scan, max_scan_tuples)
        limit = validation.max_distance(max_distance)
        spec = self.surface.metric_for(metric)
        vector = self._query_vector(query, spec)  # once: a text query is embedded here
        where_key = self._where_key(where) if diversity is None and fetch_k is None else None
        key = None if where_key is None else (where_key, k, metric, index, overfetch, options, strategy, recall)
        if key is not None:
            kept = self.surface.remembered_search(key, vector)
            if kept is not None:
                return [self._hit(row) for row in _within(kept, limit)]
        conditions, reliable = self._planned_conditions(where)
        found = self.surface.search(
            vector,
            validation.positive_k(k),
            where=conditions,
            metric=spec,
            estimate_reliable=reliable,
            remember_as=key,
            options=options,
            index=index,
            overfetch=overfetch,
            strategy=strategy,
            diversity=diversity,
            fetch_k=fetch_k,
            recall=recall,
        )
        return [self._hit(row) for row in _within(found, limit)]

    @routed
    @translating("searching (batch)")
    def search_many(
        self,
        queries: Sequence[Any],
        k: int = 10,
        *,
        where: WhereT | None = None,
        metric: str | None = None,
        strategy: str = "auto",
        max_distance: float | None = None,
    ) -> list[list[HitT]]:
        """The ``k`` nearest hits of each query (vectors, or texts with an embedder) that match ``where``,
        answered in one SQL statement (a LATERAL join over the unnested query vectors): for evaluation
        runs and recommendations. One list per query, in order, each nearest first (at most
        ``max_distance`` away, as in :meth:`search`). At most 10,000 queries."""
        limit = validation.max_distance(max_distance)
        spec = self.surface.metric_for(metric)
        items = list(queries)
        if len(items) > MAX_BATCH_QUERIES:
            raise InvalidArgumentError(f"search_many takes at most {MAX_BATCH_QUERIES} queries, got {len(items)}")
        vectors = [self._query_vector(query, spec) for query in items]
        conditions, reliable = self._planned_conditions(where)
        found = self.surface.search_many(
            vectors, validation.positive_k(k), where=conditions, metric=spec, strategy=strategy,
            estimate_reliable=reliable,
        )  # fmt: skip
        return [[self._hit(row) for row in _within(rows, limit)] for rows in found]

    @routed
    @translating("explaining a search")
    def explain(
        self,
        query: Any,
        k: int = 10,
        *,
        where: WhereT | None = None,
        metric: str | None = None,
        index: VectorIndex | str | None = "auto",
        overfetch: int | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        iterative_scan: str | None = None,
        max_scan_tuples: int | None = None,
        strategy: str = "auto",
        diversity: float | None = None,
        fetch_k: int | None = None,
        recall: float | None = None,
        max_distance: float | None = None,
        analyze: bool = False,
    ) -> SearchPlan:
        """What :meth:`search` with the same arguments would do: the strategy and why, the row estimates,
        the settings, the SQL and PostgreSQL's ``EXPLAIN`` (``analyze=True`` runs the query).
        ``max_distance`` is checked as :meth:`search` checks it; it filters the hits afterwards and
        changes nothing in the plan."""
        validation.max_distance(max_distance)
        spec = self.surface.metric_for(metric)
        conditions, reliable = self._planned_conditions(where)
        plan = self.surface.explain(
            self._query_vector(query, spec),
            validation.positive_k(k),
            where=conditions,
            metric=spec,
            estimate_reliable=reliable,
            options=QueryOptions(ef_search, probes, iterative_scan, max_scan_tuples),
            index=index,
            overfetch=overfetch,
            strategy=strategy,
            diversity=diversity,
            fetch_k=fetch_k,
            recall=recall,
            analyze=analyze,
        )
        return replace(plan, server=current_server() or "primary")

    @routed
    @translating("searching (hybrid)")
    def hybrid_search(
        self,
        text: str,
        k: int = 10,
        *,
        where: WhereT | None = None,
        vector: Any = None,
        text_column: str | None = None,
        metric: str | None = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: tuple[float, float] = (1.0, 1.0),
        config: str = "english",
        candidates: int | None = None,
    ) -> list[HybridT]:
        """Full-text + vector search fused in one SQL statement, best first (:mod:`vectorpg.search.hybrid`).

        Both legs apply ``where``. The vector leg uses ``vector`` or the embedding of ``text``.
        ``fusion="rrf"`` (reciprocal rank fusion, ``rrf_k``) or ``"weighted"`` (min-max normalised, with
        ``weights`` = (vector, text)); ``config`` is the text search configuration, ``candidates`` the rows
        each leg contributes. A GIN index on the same column and config serves the text leg.
        """
        options = HybridOptions(fusion, rrf_k, weights, config, candidates)
        found = self.surface.run(self._hybrid_statement(text, k, where, vector, text_column, metric, options))
        return [self._hybrid_hit(row) for row in found]

    @routed
    @translating("explaining a hybrid search")
    def explain_hybrid(
        self,
        text: str,
        k: int = 10,
        *,
        where: WhereT | None = None,
        vector: Any = None,
        text_column: str | None = None,
        metric: str | None = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: tuple[float, float] = (1.0, 1.0),
        config: str = "english",
        candidates: int | None = None,
        analyze: bool = False,
    ) -> HybridPlan:
        """What :meth:`hybrid_search` with the same arguments runs: its SQL, PostgreSQL's plan
        (``analyze=True`` runs it), and the index that serves the full-text leg, or a hint that says how to
        build one (without it, the text leg reads the text of every row the filter keeps)."""
        options = HybridOptions(fusion, rrf_k, weights, config, candidates)
        stmt = self._hybrid_statement(text, k, where, vector, text_column, metric, options)
        with statement_runner(self.surface.reader) as run:
            return hybrid_plan(run, stmt, self.surface.source, self._text_column(text_column), config, analyze=analyze)

    def _hybrid_statement(
        self, text: str, k: int, where: Any, vector: Any, text_column: str | None, metric: str | None, options: Any
    ) -> Any:
        arguments = self._arguments(vector if vector is not None else text, k, where, metric)
        column = self._text_column(text_column)
        return self.surface.hybrid_statement(text, **arguments, text_column=column, options=options)

    @translating("tuning")
    def tune(
        self, target: float = DEFAULT_RECALL, *, k: int = 10, sample: int = 50, queries: Sequence[Any] | None = None
    ) -> TuningResult:
        """Find and store the smallest ``ef_search`` / ``probes`` of the index whose recall@k against exact
        search reaches ``target``; ``queries``: real queries to tune on (see :func:`vectorpg.tune`)."""
        return tune(self, target, k=k, sample=sample, queries=queries)

    @translating("measuring recall")
    def recall(self, *, k: int = 10, sample: int = 50, queries: Sequence[Any] | None = None, **search: Any) -> float:
        """Mean recall@k of index search with the current settings (or ``search``'s knobs), over
        ``queries`` or synthetic ones (see :func:`vectorpg.recall`)."""
        return recall(self, k=k, sample=sample, queries=queries, **search)


def clause_key(where: Any) -> Hashable | None:
    """A key naming SQLAlchemy conditions (one or a list) with their bound values, for
    :meth:`Searchable._where_key`: SQLAlchemy's cache key names the SQL, the values complete it (the
    plan depends on them). ``None`` for anything without one (:meth:`_conditions` says what is wrong)."""
    if where is None:
        return ""
    if isinstance(where, Mapping) or not isinstance(where, (ClauseElement, list, tuple)):
        return None
    keys = []
    for clause in [where] if isinstance(where, ClauseElement) else where:
        found = clause._generate_cache_key() if isinstance(clause, ClauseElement) else None
        if found is None:
            return None
        keys.append((found.key, tuple(_frozen(p.effective_value) for p in found.bindparams)))
    try:
        hash(tuple(keys))
    except TypeError:
        return None
    return tuple(keys)


def _frozen(value: Any) -> Any:
    """A bound value as a hashable key part (the items of a list or tuple, as for ``IN``)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _within(rows: Sequence[Row], limit: float | None) -> Sequence[Row]:
    """The rows (distance last, nearest first) at most ``limit`` away."""
    return rows if limit is None else [row for row in rows if float(row[-1]) <= limit]

"""The search surface: ONE object per table (or collection partition) that runs every kind of search.

:class:`SearchSurface` holds what a search needs to know about the rows (the table, its vector column,
what a result row carries, the declared or built vector indexes) and runs nearest-neighbour search (the
planner's exact / ANN choice, the fallbacks, MMR), ``explain``, hybrid search, and the hooks of
:mod:`vectorpg.search.tuning`. :class:`~vectorpg.Collection` and :class:`~vectorpg.Repository` each hold
one and only map their own arguments (JSON filters or SQLAlchemy expressions, texts, result types) onto it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import Engine, Table, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause, Select
from sqlalchemy.types import TypeEngine

from vectorpg.db.citus import is_distributed
from vectorpg.db.routing import read_bind
from vectorpg.errors import InvalidArgumentError, PerformanceWarning
from vectorpg.indexes import VectorIndex
from vectorpg.metrics import MetricSpec, check_metric
from vectorpg.search.hybrid import HybridOptions, hybrid_statement
from vectorpg.search.mmr import mmr_order
from vectorpg.search.planner import (
    DEFAULT_CONFIG,
    PlannerConfig,
    Runner,
    SearchPlan,
    SearchRequest,
    exact_plan,
    exact_statement,
    forget_estimates,
    plan_batch,
    plan_search,
    table_size,
)
from vectorpg.search.runner import StatementMemory, statement_runner
from vectorpg.search.statements import (
    Explain,
    QueryOptions,
    batch_queries,
    batch_statement,
    check_strategy,
    choose_index,
)
from vectorpg.search.tuning import with_tuning
from vectorpg.sqltypes import VectorType, describe

Row = tuple[Any, ...]
#: tables a large-table warning was given for (once per process)
_warned: set[str] = set()
#: the declared or built vector indexes of the table, as (name, spec)
IndexSource = Callable[[], Sequence[tuple[str, VectorIndex]]]


class SearchSurface:
    """Search over one table: nearest neighbours, explain, hybrid, and the tuning hooks.

    ``source`` is the table (or one partition of it); ``vector_column`` and ``id_column`` name its
    columns. ``columns(rows, with_vectors)`` says what a result row carries, read from ``rows`` (the
    table itself or a subquery of it); ``id_of`` / ``vector_of`` read the id and the vector back from a
    result row (for tuning and MMR). ``indexes`` lists the vector indexes a search may use. ``bind`` is an
    Engine (a connection per search) or a Session (the caller's transaction). Creating one runs no SQL.
    """

    def __init__(
        self,
        source: Table,
        *,
        vector_column: str,
        id_column: str,
        metric: MetricSpec,
        bind: Engine | Session,
        columns: Callable[[FromClause, bool], Sequence[Any]],
        id_of: Callable[[Row], Any],
        vector_of: Callable[[Row], Any],
        indexes: IndexSource,
        query_type: TypeEngine[Any] | None = None,
        planner: PlannerConfig = DEFAULT_CONFIG,
        orm: bool = False,
        index_hint: str = "Build one: create_index(HNSW()).",
    ) -> None:
        self.source = source
        self.vector_column = vector_column
        self.id_column = id_column
        self.metric = metric
        self.bind = bind
        self.columns = columns
        self.id_of = id_of
        self.vector_of = vector_of
        self.indexes = indexes
        self.query_type = query_type if query_type is not None else source.c[vector_column].type
        described = describe(source.c[vector_column].type)
        self.vector_type: VectorType = described[0] if described else VectorType.VECTOR
        self.dimension = described[1] if described else None
        #: what the large-table warning tells the user to do
        self.index_hint = index_hint
        self._remembered = StatementMemory()
        self.planner = planner
        self.orm = orm

    @property
    def engine(self) -> Engine:
        bind = self.bind.get_bind() if isinstance(self.bind, Session) else self.bind
        assert isinstance(bind, Engine)
        return bind

    @property
    def reader(self) -> Engine | Session:
        """Where reads run: the server a routed read chose (:mod:`vectorpg.db.routing`), else :attr:`bind`."""
        return read_bind(self.bind)  # type: ignore[no-any-return]

    def _query_parameter(self, vector: Any) -> ColumnElement[Any]:
        """The query vector as a bound parameter; cast to its type in the SQL on a Citus distributed table,
        where an untyped ``$1`` of a pushed-down ``ORDER BY ... LIMIT`` fails (citus#7078)."""
        param = bindparam("query_vector", vector, type_=self.query_type)
        reader = self.reader  # the server this read runs on (its catalog: the primary may be gone)
        distributed = isinstance(reader, Engine) and is_distributed(reader, self.source.fullname)
        return cast(param, self.query_type) if distributed else param

    @property
    def cache_key(self) -> str:
        """Names these rows across calls (server, database, table): the key of the planner's kept estimates."""
        return f"{self.engine.url}|{self.source.fullname}"

    def metric_for(self, name: str | None) -> MetricSpec:
        """The metric ``name`` on this column (the surface's own when ``None``)."""
        return self.metric if name is None else check_metric(name, self.vector_type)

    def run(self, stmt: Any, settings: dict[str, str] | None = None) -> list[Any]:
        """Run one statement (with ``set_config`` settings) and return its rows."""
        with statement_runner(self.reader, orm=self.orm) as run:
            return run(stmt, settings or {})

    # -- nearest neighbours -------------------------------------------------------------------------

    def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        metric: MetricSpec | None = None,
        index: VectorIndex | str | None = "auto",
        overfetch: int | None = None,
        options: QueryOptions | None = None,
        strategy: str = "auto",
        diversity: float | None = None,
        fetch_k: int | None = None,
        recall: float | None = None,
        estimate_reliable: bool = True,
        remember_as: Hashable | None = None,
    ) -> list[Row]:
        """The ``k`` rows nearest to ``vector`` (validated by the caller), nearest first: each row is
        ``columns(...)`` then the exact distance. See :mod:`vectorpg.search.planner` for ``strategy``;
        ``diversity`` re-orders ``fetch_k`` nearest rows by maximal marginal relevance. ``remember_as``
        keeps the search's statement under that key when it was one statement decided without a probe
        (:meth:`remembered_search` then answers the same search for another vector)."""
        request = self._request(
            vector, k, where, metric, index, overfetch, options, recall, diversity, fetch_k, estimate_reliable
        )
        with statement_runner(self.reader, orm=self.orm) as run:
            rows, plan = self._nearest(request, strategy, run)
        if remember_as is not None and diversity is None and plan.counted_rows is None:
            self._remembered.keep(remember_as, run, plan.strategy, request.k)
        if diversity is not None and rows:
            vectors = np.stack([np.asarray(self.vector_of(row), dtype=np.float64) for row in rows])
            picked = mmr_order(np.asarray(request.vector, dtype=np.float64), vectors, k, diversity)
            rows = [rows[i] for i in picked]
        return rows

    def explain(
        self,
        vector: Any,
        k: int = 10,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        metric: MetricSpec | None = None,
        index: VectorIndex | str | None = "auto",
        overfetch: int | None = None,
        options: QueryOptions | None = None,
        strategy: str = "auto",
        diversity: float | None = None,
        fetch_k: int | None = None,
        recall: float | None = None,
        analyze: bool = False,
        estimate_reliable: bool = True,
    ) -> SearchPlan:
        """What :meth:`search` with the same arguments would do: the strategy and why, the estimates, the
        settings, the SQL text and PostgreSQL's ``EXPLAIN`` (``ANALYZE`` runs the query)."""
        request = self._request(
            vector, k, where, metric, index, overfetch, options, recall, diversity, fetch_k, estimate_reliable
        )
        with statement_runner(self.reader, orm=self.orm) as run:
            plan, stmt, _ = plan_search(request, check_strategy(strategy), self.planner, run)
            lines = run(Explain(stmt, analyze=analyze), plan.settings)
        sql = str(stmt.compile(dialect=psycopg_dialect()))  # type: ignore[no-untyped-call]
        return replace(plan, sql=sql, plan="\n".join(str(r[0]) for r in lines))

    def _request(
        self,
        vector: Any,
        k: int,
        where: Sequence[ColumnElement[bool]],
        metric: MetricSpec | None,
        index: VectorIndex | str | None,
        overfetch: int | None,
        options: QueryOptions | None,
        recall: float | None,
        diversity: float | None,
        fetch_k: int | None,
        estimate_reliable: bool = True,
    ) -> SearchRequest:
        spec = metric or self.metric
        if index != "auto" and index is not None and not isinstance(index, VectorIndex):
            raise InvalidArgumentError("index is 'auto', None or a VectorIndex")
        chosen, name = self._index_for(spec, index)
        tuned = with_tuning(options or QueryOptions(), self.engine, self.source.fullname, name, recall)
        if diversity is not None:
            wanted = fetch_k if fetch_k is not None else max(4 * k, 20)
            if isinstance(wanted, bool) or not isinstance(wanted, int) or not k <= wanted <= 100_000:
                raise InvalidArgumentError(f"fetch_k must be an integer from k ({k}) to 100000, got {fetch_k!r}")
            k = wanted
        return SearchRequest(
            source=self.source,
            vector_column=self.vector_column,
            columns=lambda rows: self.columns(rows, diversity is not None),
            cache_key=self.cache_key,
            metric=spec,
            query=self._query_parameter(vector),
            vector=vector,
            k=k,
            where=list(where),
            index=chosen,
            options=tuned,
            overfetch=overfetch,
            estimate_reliable=estimate_reliable,
            inline_settings=not isinstance(self.bind, Session),
        )

    def remembered_search(self, key: Hashable, vector: Any) -> list[Row] | None:
        """The rows of a search kept by :meth:`search` (``remember_as=key``) for ``vector``: the same
        statement, plan and settings, one statement and no planning; ``None`` when nothing is kept (or it
        is older than the planner's ``estimate_seconds``) or an ANN result came back short."""
        return self._remembered.run(key, self.reader, vector, self.planner.estimate_seconds)

    def forget(self) -> None:
        """Drop kept statements and estimates of this table (after its indexes change)."""
        self._remembered.clear()
        forget_estimates(self.cache_key)

    def _nearest(self, request: SearchRequest, strategy: str, run: Runner) -> tuple[list[Row], SearchPlan]:
        """Plan and run; continue or re-run exactly when an ANN result comes back short."""
        check_strategy(strategy)
        if request.index is None and strategy == "auto" and self.source.fullname not in _warned:
            self._warn_if_large(request, run)
        plan, stmt, rows = plan_search(request, strategy, self.planner, run)
        if rows is None:
            rows = [tuple(row) for row in run(stmt, plan.settings)]
        short = plan.strategy == "ann" and strategy == "auto" and len(rows) < request.k
        options = request.options
        if short and not request.where:
            if options.ef_search is not None or options.probes is not None or options.iterative_scan is not None:
                short = False  # the caller's own knobs, applied as given
            else:
                # Dead rows (deleted or updated, not yet vacuumed) use up an index scan's candidates: go on
                # scanning the index past them (relaxed order, so re-sorted here).
                retry = replace(request, options=replace(options, iterative_scan="relaxed_order"))
                plan, stmt, _ = plan_search(retry, strategy, self.planner, run)
                rows = sorted((tuple(row) for row in run(stmt, plan.settings)), key=lambda row: row[-1])
                short = len(rows) < request.k
        if short:
            plan, stmt = exact_plan(request, "the ANN result was short")
            rows = [tuple(row) for row in run(stmt, plan.settings)]
        return rows, plan

    def search_many(
        self,
        vectors: Sequence[Any],
        k: int = 10,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        metric: MetricSpec | None = None,
        strategy: str = "auto",
        estimate_reliable: bool = True,
    ) -> list[list[Row]]:
        """The ``k`` nearest rows of each of ``vectors`` (validated by the caller), in ONE statement: a
        LATERAL join of the nearest-neighbour query over ``unnest`` of the query vectors.

        The planner decides once for the batch (the filter is the same for every query): exact when few
        rows match or no index fits, else the index with the filtered-scan settings of :meth:`search`.
        Results are in the order of ``vectors``; each list is nearest first.
        """
        check_strategy(strategy)
        if not vectors:
            return []
        queries = batch_queries(vectors, self.query_type)
        single = self._request(None, k, where, metric, "auto", None, None, None, None, None, estimate_reliable)
        # each query of the batch is a row of ``queries``; no in-statement settings inside the LATERAL join
        request = replace(single, query=queries.c.vec, inline_settings=False)
        with statement_runner(self.reader, orm=self.orm) as run:
            plan = plan_batch(request, strategy, self.planner, run)
            if plan.index is None:
                inner, settings = exact_statement(request)
            else:
                inner, settings = request.nearest(plan.k, plan.options)
            found = run(batch_statement(queries, inner, k), {**settings, **plan.settings})
        groups: list[list[Row]] = [[] for _ in vectors]
        for row in found:
            groups[int(row[0]) - 1].append(tuple(row[1:]))
        return groups

    def _warn_if_large(self, request: SearchRequest, run: Runner) -> None:
        """A :class:`PerformanceWarning`, once per table, when a search scans a large table exactly for want
        of a vector index."""
        rows = table_size(run, request, self.planner)
        threshold = self.planner.auto_index_rows(self.dimension or 1)
        if threshold and rows >= threshold:
            _warned.add(self.source.fullname)
            warnings.warn(
                f"{self.source.fullname} has about {rows} rows and no vector index for the "
                f"{request.metric.metric.value} metric on {self.vector_column!r}: every search scans it exactly. "
                f"{self.index_hint}",
                PerformanceWarning,
                stacklevel=5,
            )

    # -- hybrid --------------------------------------------------------------------------------------

    def hybrid_statement(
        self,
        text: str,
        vector: Any,
        k: int,
        text_column: str,
        where: Sequence[ColumnElement[bool]] = (),
        metric: MetricSpec | None = None,
        options: HybridOptions | None = None,
    ) -> Select[Any]:
        """Full-text + vector search fused in one statement (:mod:`vectorpg.search.hybrid`): rows of
        ``columns(...)`` then ``score, vector_rank, vector_distance, text_rank, text_score``, best first
        (what a searchable's ``hybrid_search`` runs and ``explain_hybrid`` explains)."""
        fused = hybrid_statement(
            self.source,
            id_column=self.id_column,
            text_column=text_column,
            vector_column=self.vector_column,
            query_text=text,
            query_vector=self._query_parameter(vector),
            metric=metric or self.metric,
            k=k,
            where=list(where),
            options=options or HybridOptions(),
        ).subquery("fused")
        return (
            select(*self.columns(self.source, False), *(c for c in fused.c if c.name != "id"))
            .join(fused, self.source.c[self.id_column] == fused.c.id)
            .order_by(fused.c.score.desc(), fused.c.id)
        )

    # -- tuning hooks (vectorpg.search.tuning) -------------------------------------------------------

    def tuning_key(self) -> tuple[Engine, str, str | None, VectorIndex | None]:
        """(engine, table, index name, index spec) of the index a default search uses."""
        spec, name = self._index_for(self.metric, "auto")
        return self.engine, self.source.fullname, name, spec

    def _index_for(self, metric: MetricSpec, index: VectorIndex | str | None) -> tuple[VectorIndex | None, str | None]:
        """The index a search uses (``"auto"``: the one that fits ``metric``) and its name, if it is built."""
        declared = list(self.indexes())
        chosen = choose_index([s for _, s in declared], self.vector_column, metric) if index == "auto" else index
        assert chosen is None or isinstance(chosen, VectorIndex)
        return chosen, next((n for n, s in declared if chosen is not None and s == chosen), None)

    def sample_rows(self, n: int) -> list[tuple[Any, Any]]:
        """``n`` random (id, vector) pairs of the table: the queries of a recall measurement."""
        source = self.source
        stmt = select(source.c[self.id_column], source.c[self.vector_column]).order_by(func.random()).limit(n)
        with statement_runner(self.reader) as run:
            return [(row[0], row[1]) for row in run(stmt, {})]

    def nearest_ids(self, vector: Any, k: int, **search: Any) -> list[Any]:
        """The ids of the ``k`` rows nearest to a stored ``vector`` (``search`` as for :meth:`search`,
        index knobs by name: ``ef_search=...``)."""
        knobs = {n: search.pop(n) for n in ("ef_search", "probes", "iterative_scan", "max_scan_tuples") if n in search}
        return [self.id_of(row) for row in self.search(vector, k, options=QueryOptions(**knobs), **search)]

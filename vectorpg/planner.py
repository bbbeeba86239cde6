"""The filter-aware search planner: exact over the matching rows when few match, ANN with an iterative scan
otherwise, and never a short result when at least ``k`` rows match.

pgvector's HNSW scan takes its ``ef_search`` nearest rows and filters them afterwards, so a selective
filter leaves fewer than ``k`` rows; an iterative scan goes on, but at low selectivity it must visit
``k / selectivity`` tuples. An exact scan over the few matching rows (through a btree/GIN bitmap on the
filter, or the partition) is both exact and fast there. Per query, the planner:

1. asks PostgreSQL for its estimate of the matching rows; if it is far above ``exact_max_rows``, goes
   to the index directly. Otherwise one "exact-first" statement computes the exact answer over at most
   ``exact_max_rows + 1`` matching rows and counts them (estimates of rare values are often far off);
2. ``exact`` when at most ``exact_max_rows`` rows match or no vector index fits; else ``ann``: the index
   with ``iterative_scan = relaxed_order`` and ``max_scan_tuples`` scaled to ``k / selectivity``, results
   re-sorted by exact distance in a MATERIALIZED CTE;
3. if the ANN result is short (a selective filter, or dead rows not yet vacuumed using up the index's
   candidates), continues the index scan iteratively when no filter was given, and runs the exact plan
   if that is still short. Without a filter, knobs the caller set (``ef_search``...) are applied as given.

Filters that fix a partition key are pruned by PostgreSQL itself: the estimate, the count and the scan
then concern only that partition (and its own index).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import func, literal, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from .distance import MetricSpec, distance
from .errors import InvalidArgumentError
from .indexes import Quantization, VectorIndex
from .search import (
    ANN_SETTINGS,
    EXACT_SETTINGS,
    Explain,
    QueryOptions,
    check_strategy,
    mmr_order,
    nearest_statement,
)


@dataclass(frozen=True)
class PlannerConfig:
    """Thresholds of the planner (see ``benchmarks/filtered.py`` for the measurements behind them)."""

    #: at most this many matching rows: scan them exactly. Measured (benchmarks/filtered.py, 25k 384-d
    #: rows, 2 cores): exact beats an iterative HNSW scan up to about 1,700 matching rows (3-4.7 ms vs
    #: 6-11 ms between 400 and 1,600 rows; level at 1,682; 9.3 vs 2.5 ms at 4,761).
    exact_max_rows: int = 2_000
    #: skip the exact-first probe when PostgreSQL estimates more than this many times ``exact_max_rows``
    #: matching rows (after ANALYZE its estimates are close for frequent values and low for rare ones)
    skip_probe_factor: float = 2.0
    #: tuples an iterative scan may visit: ``k / selectivity * scan_safety``, clamped to the range below
    scan_safety: float = 4.0
    min_scan_tuples: int = 20_000
    max_scan_tuples: int = 2_000_000
    #: a filtered ANN scan (relaxed order) takes ``relaxed_fetch * k`` rows before the exact re-sort
    relaxed_fetch: int = 4

    def __post_init__(self) -> None:
        if (
            self.exact_max_rows < 0
            or self.min_scan_tuples < 1
            or self.max_scan_tuples < self.min_scan_tuples
            or self.relaxed_fetch < 1
        ):
            raise InvalidArgumentError("invalid planner thresholds")


DEFAULT_CONFIG = PlannerConfig()

#: runs one statement with settings applied (``set_config(..., true)``) and returns its rows
Runner = Callable[[Any, dict[str, str]], list[Any]]


@dataclass(frozen=True)
class SearchPlan:
    """What :meth:`search` will do for a query, and why (from ``explain(...)``)."""

    strategy: str
    reason: str
    index: VectorIndex | None
    estimated_rows: int | None
    counted_rows: int | None
    settings: dict[str, str]
    sql: str = ""
    plan: str = ""


@dataclass
class SearchTarget:
    """What the planner needs to know about the rows to search (built by Repository and Collection)."""

    source: FromClause
    vector_column: str
    #: what a result row holds, read from the rows (the table or a subquery of it)
    project: Callable[[FromClause], Sequence[Any]]
    metric: MetricSpec
    indexes: Sequence[VectorIndex]
    #: opens one transaction and yields a runner: ``run(statement, settings) -> rows``
    connect: Callable[[], AbstractContextManager[Runner]]
    #: identifies the rows across calls (database and table), for the cached table size
    cache_key: str
    #: the vector of a result row (for MMR)
    vector_of: Callable[[Any], Any] = field(default=lambda row: None)


@dataclass(frozen=True)
class SearchRequest:
    """One nearest-neighbour query, validated: what the planner plans and runs."""

    target: SearchTarget
    #: the query vector as a bound parameter of the column's type
    query: ColumnElement[Any]
    #: the validated query vector itself (for MMR)
    vector: Any
    k: int
    where: Sequence[ColumnElement[bool]]
    index: VectorIndex | None
    options: QueryOptions
    overfetch: int | None = None


def _estimate(run: Runner, target: SearchTarget, where: Sequence[ColumnElement[bool]]) -> int:
    rows = run(Explain(select(literal(1)).select_from(target.source).where(*where), json=True), {})
    return int(rows[0][0][0]["Plan"]["Plan Rows"])


_sizes: dict[str, tuple[float, int]] = {}


def _table_size(run: Runner, target: SearchTarget) -> int:
    """PostgreSQL's estimate of the rows in the table (cached for a minute: it only scales scan limits)."""
    cached = _sizes.get(target.cache_key)
    if cached is not None and time.monotonic() - cached[0] < 60:
        return cached[1]
    size = max(1, _estimate(run, target, []))
    _sizes[target.cache_key] = (time.monotonic(), size)
    return size


def _exact_first(
    target: SearchTarget, query: ColumnElement[Any], k: int, where: Sequence[ColumnElement[bool]], cap: int
) -> Any:
    """Exact top-k over at most ``cap`` matching rows, each row also carrying how many matched (``<= cap``).

    One scan of the filter both counts the matches and, when there are few, answers the query.
    """
    dist = distance(target.source.c[target.vector_column], query, target.metric.metric)
    matching = select(target.source, dist.label("distance")).where(*where).limit(cap).subquery("matching")
    return (
        select(*target.project(matching), matching.c.distance, func.count().over().label("matched"))
        .order_by(matching.c.distance)
        .limit(k)
    )


def plan_search(
    request: SearchRequest, strategy: str, config: PlannerConfig, run: Runner
) -> tuple[SearchPlan, Any, list[Any] | None]:
    """Choose the strategy for one query (planning statements go through ``run``).

    Returns the plan, the statement, and the result rows when planning already produced them: a filtered
    ``auto`` search first runs the exact query over at most ``exact_max_rows + 1`` matching rows, which is
    the answer whenever no more rows match.
    """
    target, query, k, where, index, overfetch, options = (
        request.target,
        request.query,
        request.k,
        request.where,
        request.index,
        request.overfetch,
        request.options,
    )
    check_strategy(strategy)
    estimated = counted = None
    if strategy == "exact" or index is None:
        reason = "asked for exact" if strategy == "exact" else "no vector index fits this metric and column"
        return (*_exact(target, query, k, where, options, reason), None)
    if not where:
        reason = "no filter"
    else:
        estimated = _estimate(run, target, where)
        if strategy == "ann":
            reason = "asked for ann"
        elif estimated > config.skip_probe_factor * config.exact_max_rows:
            reason = f"PostgreSQL estimates {estimated} matching rows"
        else:
            first = _exact_first(target, query, k, where, config.exact_max_rows + 1)
            rows = run(first, {})
            counted = int(rows[0][-1]) if rows else 0
            if counted <= config.exact_max_rows:
                why = f"{counted} rows match (<= {config.exact_max_rows})"
                plan = SearchPlan("exact", why, None, estimated, counted, {})
                return plan, first, [tuple(row[:-1]) for row in rows]
            reason = f"more than {config.exact_max_rows} rows match"
        matching = max(estimated or 0, counted or 0, 1)
        selectivity = min(1.0, matching / _table_size(run, target))
        options = _filtered_ann_options(options, k, selectivity, config)
    if where and index.quantization is Quantization.NONE:
        # relaxed_order yields rows only nearly sorted: take more than k, re-sort them exactly, keep k.
        fetch = k * config.relaxed_fetch
        inner, settings = nearest_statement(
            target.source,
            target.vector_column,
            lambda rows: [rows],
            query,
            target.metric,
            fetch,
            where,
            index,
            overfetch,
            options,
        )
        nearest = inner.cte("nearest").prefix_with("MATERIALIZED")
        stmt = select(*target.project(nearest), nearest.c.distance).order_by(nearest.c.distance).limit(k)
    else:
        stmt, settings = nearest_statement(
            target.source,
            target.vector_column,
            target.project,
            query,
            target.metric,
            k,
            where,
            index,
            overfetch,
            options,
        )
    if strategy == "ann":
        settings = {**settings, **ANN_SETTINGS}
    plan = SearchPlan("ann", reason, index, estimated, counted, settings)
    return plan, stmt, None


def _filtered_ann_options(options: QueryOptions, k: int, selectivity: float, config: PlannerConfig) -> QueryOptions:
    scan = options.max_scan_tuples
    if scan is None:
        wanted = math.ceil(k / selectivity * config.scan_safety)
        scan = max(config.min_scan_tuples, min(config.max_scan_tuples, wanted))
    return replace(options, iterative_scan=options.iterative_scan or "relaxed_order", max_scan_tuples=scan)


def _exact(
    target: SearchTarget,
    query: ColumnElement[Any],
    k: int,
    where: Sequence[ColumnElement[bool]],
    options: QueryOptions,
    reason: str,
) -> tuple[SearchPlan, Any]:
    stmt, settings = nearest_statement(
        target.source, target.vector_column, target.project, query, target.metric, k, where, None, None, options
    )
    # An index on the bare column could serve this ORDER BY, and it may exist without being declared on the
    # model: switch index scans off for this transaction (filters keep their bitmap index scans).
    settings = {**settings, **EXACT_SETTINGS}
    return SearchPlan("exact", reason, None, None, None, settings), stmt


def run_search(
    request: SearchRequest,
    strategy: str,
    diversity: float | None = None,
    fetch_k: int | None = None,
    config: PlannerConfig = DEFAULT_CONFIG,
) -> list[Any]:
    """Plan, run, fall back to exact if an ANN result is short, and apply MMR if ``diversity`` is set."""
    k = request.k
    if diversity is not None:
        wanted = fetch_k if fetch_k is not None else max(4 * k, 20)
        if isinstance(wanted, bool) or not isinstance(wanted, int) or not k <= wanted <= 100_000:
            raise InvalidArgumentError(f"fetch_k must be an integer from k ({k}) to 100000, got {fetch_k!r}")
        request = replace(request, k=wanted)
    target = request.target
    with target.connect() as run:
        plan, stmt, rows = plan_search(request, strategy, config, run)
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
                plan, stmt, _ = plan_search(retry, strategy, config, run)
                rows = sorted((tuple(row) for row in run(stmt, plan.settings)), key=lambda row: row[-1])
                short = len(rows) < request.k
        if short:
            plan, stmt = _exact(
                target, request.query, request.k, request.where, request.options, "the ANN result was short"
            )
            rows = [tuple(row) for row in run(stmt, plan.settings)]
    if diversity is not None and rows:
        vectors = np.stack([np.asarray(target.vector_of(row), dtype=np.float64) for row in rows])
        rows = [rows[i] for i in mmr_order(np.asarray(request.vector, dtype=np.float64), vectors, k, diversity)]
    return rows


def explain_search(request: SearchRequest, strategy: str, config: PlannerConfig, *, analyze: bool) -> SearchPlan:
    """What :func:`run_search` would do, with the SQL text and PostgreSQL's ``EXPLAIN`` output attached."""
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    with request.target.connect() as run:
        plan, stmt, _ = plan_search(request, strategy, config, run)
        lines = run(Explain(stmt, analyze=analyze), plan.settings)
    sql = str(stmt.compile(dialect=dialect()))  # type: ignore[no-untyped-call]
    return replace(plan, sql=sql, plan="\n".join(str(r[0]) for r in lines))

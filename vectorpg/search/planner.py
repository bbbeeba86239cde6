"""The filter-aware search planner: it decides, per query, between exact search over the matching rows (when
few match) and the ANN index with an iterative scan (otherwise). The statements themselves come from
:mod:`vectorpg.search.statements`; the search surface runs them and completes a short ANN result.

pgvector's HNSW scan takes its ``ef_search`` nearest rows and filters them afterwards, so a selective
filter leaves fewer than ``k`` rows; an iterative scan goes on, but at low selectivity it must visit
``k / selectivity`` tuples. An exact scan over the few matching rows (through a btree/GIN bitmap on the
filter, or the partition) is both exact and fast there. Per query, the planner:

1. takes PostgreSQL's estimate of the matching rows (an ``EXPLAIN``, kept for a minute per filter and
   values, so a repeated filter costs no planning round trip). When the estimate comes from real
   statistics (typed columns, field indexes: the request says so) it decides from it alone: ``exact`` at
   most ``exact_max_rows`` estimated rows, else ``ann``. Otherwise (JSONB containment is estimated by a
   fixed guess) it goes to the index above ``skip_probe_factor * exact_max_rows`` estimated rows, and
   below that one "exact-first" statement computes the exact answer over at most ``exact_max_rows + 1``
   matching rows and counts them;
2. ``exact`` when at most ``exact_max_rows`` rows match or no vector index fits; else ``ann``: the index
   with ``iterative_scan = relaxed_order``, ``max_scan_tuples`` scaled to ``k / selectivity`` and
   ``ef_search`` widened as the filter gets more selective (:func:`filtered_ef_search`), under planner
   settings that keep PostgreSQL on the vector index; results re-sorted by exact distance in a
   MATERIALIZED CTE;
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
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from vectorpg.db.citus import plan_rows
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import Quantization, VectorIndex
from vectorpg.metrics import MetricSpec
from vectorpg.search.statements import (
    ANN_SETTINGS,
    QueryOptions,
    check_strategy,
    estimate_statement,
    exact_first_statement,
    nearest_statement,
    resorted,
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
    #: a filtered ANN scan (relaxed order) takes ``relaxed_fetch * k`` rows before the exact re-sort.
    #: Measured (benchmarks/search_v2.py, clustered 60k 384-d, 5-50% filters): taking 4k rows instead of
    #: k raised recall@10 by at most 0.002 and cost up to 1.8x the time (a scan stops after
    #: ``fetch / selectivity`` tuples); pgvector's own example re-sorts exactly the k rows it takes.
    relaxed_fetch: int = 1
    #: ef_search of a filtered scan before widening when ``tune()`` stored none (see filtered_ef_search)
    filtered_ef_search: int = 100
    #: a collection of at least this many rows x dimensions (and at least 2,000 rows) gets its HNSW index
    #: built automatically. Measured (benchmarks/search_v2.py): an exact scan of 384-d rows costs about
    #: 0.8 us a row on 2 cores, an HNSW search 1-1.5 ms, so exact stops being fastest near 2,000 rows;
    #: lower-dimensional rows are cheaper to scan.
    auto_index_cells: int = 800_000
    #: seconds a PostgreSQL row estimate (per filter and values) and a table size are kept
    estimate_seconds: float = 60.0

    def __post_init__(self) -> None:
        if (
            self.exact_max_rows < 0
            or self.min_scan_tuples < 1
            or self.max_scan_tuples < self.min_scan_tuples
            or self.relaxed_fetch < 1
            or not 1 <= self.filtered_ef_search <= 1000
        ):
            raise InvalidArgumentError("invalid planner thresholds")

    def auto_index_rows(self, dimension: int) -> int:
        """The row count from which a collection of ``dimension``-d vectors is indexed by default (0: never)."""
        if self.auto_index_cells <= 0:
            return 0
        return max(2_000, math.ceil(self.auto_index_cells / max(1, dimension)))


DEFAULT_CONFIG = PlannerConfig()
_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]

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
    #: where the search ran: "primary", or "replica N (host:port)" with read replicas (vectorpg.db.routing)
    server: str = ""


@dataclass(frozen=True)
class SearchRequest:
    """One nearest-neighbour query, validated: what the planner plans (built by the search surface)."""

    #: the rows to search: a table or a partition, and its vector column
    source: FromClause
    vector_column: str
    #: what a result row holds, read from the rows (the table or a subquery of it)
    columns: Callable[[FromClause], Sequence[Any]]
    #: identifies the rows across calls (database and table), for the cached table size
    cache_key: str
    metric: MetricSpec
    #: the query vector as a bound parameter of the column's type, and the validated vector itself
    query: ColumnElement[Any]
    vector: Any
    k: int
    where: Sequence[ColumnElement[bool]]
    index: VectorIndex | None
    options: QueryOptions
    overfetch: int | None = None
    #: PostgreSQL estimates ``where`` from real statistics (typed columns, field indexes), not a fixed guess
    estimate_reliable: bool = False
    #: statements run in an autocommit connection: index-scan settings may be set inside the statement
    inline_settings: bool = False

    def nearest(self, k: int, options: QueryOptions, *, columns: Any = None) -> tuple[Any, dict[str, str]]:
        """:func:`~vectorpg.search.statements.nearest_statement` for this request (settings inline when
        the statement needs no planner settings: no filter)."""
        return nearest_statement(
            self.source, self.vector_column, columns or self.columns, self.query, self.metric, k, self.where,
            self.index, self.overfetch, options, inline=self.inline_settings and not self.where,
        )  # fmt: skip


_estimates: dict[tuple[str, str, str], tuple[float, int]] = {}
_MAX_ESTIMATES = 4096


def _estimate(run: Runner, request: SearchRequest, where: Sequence[ColumnElement[bool]], config: PlannerConfig) -> int:
    """PostgreSQL's estimate of the rows matching ``where``, kept ``estimate_seconds`` per filter text and
    values (estimates move only as ANALYZE runs)."""
    statement = estimate_statement(request.source, where)
    key = (request.cache_key, *_statement_key(statement.statement))
    now = time.monotonic()
    cached = _estimates.get(key)
    if cached is not None and now - cached[0] < config.estimate_seconds:
        return cached[1]
    rows = run(statement, {})
    found = plan_rows(rows[0][0][0]["Plan"])  # (on Citus: the shards' estimate, not the coordinator's guess)
    if len(_estimates) >= _MAX_ESTIMATES:
        _estimates.clear()
    _estimates[key] = (now, found)
    return found


def _statement_key(statement: Any) -> tuple[Any, str]:
    """The statement's structure and parameter values, hashable: SQLAlchemy's own cache key (no SQL
    compilation), or the compiled SQL text for a statement without one."""
    found = statement._generate_cache_key()
    if found is not None:
        return found.key, repr([b.effective_value for b in found.bindparams])
    compiled = statement.compile(dialect=_DIALECT)
    return str(compiled), repr(sorted(compiled.params.items(), key=lambda kv: kv[0]))


def forget_estimates(cache_key: str) -> None:
    """Drop the kept estimates of one table (after a bulk write or a new index)."""
    for key in [k for k in _estimates if k[0] == cache_key]:
        del _estimates[key]


def table_size(run: Runner, request: SearchRequest, config: PlannerConfig) -> int:
    """PostgreSQL's estimate of the rows in the table (it only scales scan limits)."""
    return max(1, _estimate(run, request, [], config))


_COUNTED_NOTE = (
    "; counted by a probe, since PostgreSQL has no statistics for this filter (a field index on its keys, "
    "create_field_index(key), lets the estimate decide in the search's own statement)"
)


def plan_search(
    request: SearchRequest, strategy: str, config: PlannerConfig, run: Runner
) -> tuple[SearchPlan, Any, list[Any] | None]:
    """Choose the strategy for one query (planning statements go through ``run``).

    Returns the plan, the statement, and the result rows when planning already produced them: a filtered
    ``auto`` search first runs the exact query over at most ``exact_max_rows + 1`` matching rows, which is
    the answer whenever no more rows match.
    """
    k, where, index, options = request.k, request.where, request.index, request.options
    check_strategy(strategy)
    estimated = counted = None
    if strategy == "exact" or index is None:
        reason = "asked for exact" if strategy == "exact" else "no vector index fits this metric and column"
        return (*exact_plan(request, reason), None)
    if not where:
        reason = "no filter"
    else:
        estimated = _estimate(run, request, where, config)
        if strategy == "ann":
            reason = "asked for ann"
        elif request.estimate_reliable and estimated <= config.exact_max_rows:
            plan, stmt = exact_plan(request, f"PostgreSQL estimates {estimated} matching rows (from statistics)")
            return replace(plan, estimated_rows=estimated), stmt, None
        elif request.estimate_reliable or estimated > config.skip_probe_factor * config.exact_max_rows:
            reason = f"PostgreSQL estimates {estimated} matching rows"
        else:
            first = exact_first_statement(
                request.source, request.vector_column, request.columns, request.query, request.metric, k, where,
                config.exact_max_rows + 1,
            )  # fmt: skip
            rows = run(first, {})
            counted = int(rows[0][-1]) if rows else 0
            counted_note = "" if request.estimate_reliable else _COUNTED_NOTE
            if counted <= config.exact_max_rows:
                why = f"{counted} rows match (<= {config.exact_max_rows}){counted_note}"
                plan = SearchPlan("exact", why, None, estimated, counted, {})
                return plan, first, [tuple(row[:-1]) for row in rows]
            reason = f"more than {config.exact_max_rows} rows match{counted_note}"
        matching = max(estimated or 0, counted or 0, 1)
        selectivity = min(1.0, matching / table_size(run, request, config))
        options = _filtered_ann_options(options, k, selectivity, config)
    if where and index.quantization is Quantization.NONE:
        # relaxed_order yields rows only nearly sorted: take more than k, re-sort them exactly, keep k.
        inner, settings = request.nearest(k * config.relaxed_fetch, options, columns=lambda rows: [rows])
        stmt = resorted(inner, request.columns, k)
    else:
        stmt, settings = request.nearest(k, options)
    if strategy == "ann" or where:
        settings = {**settings, **ANN_SETTINGS}  # the plan is what it says: the vector index, not a bitmap
    plan = SearchPlan("ann", reason, index, estimated, counted, settings)
    return plan, stmt, None


def filtered_ef_search(base: int, k: int, selectivity: float, config: PlannerConfig) -> int:
    """``ef_search`` for a filtered iterative scan: ``base`` (the value ``tune()`` stored for the recall
    target, at least ``filtered_ef_search``) times ``1 + log10(0.5 / selectivity)`` below 50% selectivity, at
    least the ``relaxed_fetch * k`` rows the scan must return, at most pgvector's 1,000.

    Measured (clustered 384-d rows, HNSW m=16 ef_construction=64): recall@10 of relaxed iterative scans at
    ef_search 200 is 0.968 unfiltered and 0.967 at 50%, but 0.948 at 20% and 0.942 at 5%; 400 reaches
    0.985 at 20% and 0.967 at 5%. The widening keeps recall at the unfiltered level across selectivities.
    """
    widen = max(1.0, 1.0 + math.log10(0.5 / max(selectivity, 1e-9)))
    return max(min(1000, config.relaxed_fetch * k), min(1000, math.ceil(base * widen)))


def _filtered_ann_options(options: QueryOptions, k: int, selectivity: float, config: PlannerConfig) -> QueryOptions:
    scan = options.max_scan_tuples
    if scan is None:
        wanted = math.ceil(k / selectivity * config.scan_safety)
        scan = max(config.min_scan_tuples, min(config.max_scan_tuples, wanted))
    ef = options.ef_search
    if ef is None:
        base = max(options.tuned_ef_search or 0, config.filtered_ef_search)
        ef = filtered_ef_search(base, k, selectivity, config)
    return replace(
        options, iterative_scan=options.iterative_scan or "relaxed_order", max_scan_tuples=scan, ef_search=ef
    )


@dataclass(frozen=True)
class BatchPlan:
    """How :meth:`~vectorpg.search.surface.SearchSurface.search_many` answers a batch of queries."""

    index: VectorIndex | None
    #: rows each query fetches (more than k for a relaxed-order scan, re-ranked afterwards)
    k: int
    options: QueryOptions
    settings: dict[str, str]


def plan_batch(request: SearchRequest, strategy: str, config: PlannerConfig, run: Runner) -> BatchPlan:
    """The plan of a batch of queries that share a filter: exact, or the index (filtered: relaxed iterative
    scan, widened ``ef_search``, planner settings that keep the index), decided from the estimate alone."""
    index, where, k = request.index, request.where, request.k
    if strategy == "exact" or index is None:
        return BatchPlan(None, k, request.options, {})
    if not where:
        return BatchPlan(index, k, request.options, {})
    estimated = _estimate(run, request, where, config)
    if strategy == "auto" and estimated <= config.exact_max_rows:
        return BatchPlan(None, k, request.options, {})
    selectivity = min(1.0, max(estimated, 1) / table_size(run, request, config))
    options = _filtered_ann_options(request.options, k, selectivity, config)
    fetch = k * config.relaxed_fetch if index.quantization is Quantization.NONE else k
    return BatchPlan(index, fetch, options, dict(ANN_SETTINGS))


def exact_statement(request: SearchRequest) -> tuple[Any, dict[str, str]]:
    """The exact statement of ``request``: every matching row, by exact distance."""
    return nearest_statement(
        request.source, request.vector_column, request.columns, request.query, request.metric, request.k,
        request.where, None, None, request.options,
    )  # fmt: skip


def exact_plan(request: SearchRequest, reason: str) -> tuple[SearchPlan, Any]:
    """The exact plan: every matching row, ordered by exact distance (an ORDER BY no vector index serves)."""
    stmt, settings = exact_statement(request)
    return SearchPlan("exact", reason, None, None, None, settings), stmt

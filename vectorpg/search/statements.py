"""All of a search's SQL: per-query index knobs, and the statements that let an index serve the ORDER BY.

Knobs (``ef_search``, ``probes``, ``iterative_scan``, ``max_scan_tuples``) are applied with
``set_config(name, value, true)`` inside the query's transaction: never session-wide, because a session
setting leaks through a connection pooler to the next user of the connection. When the caller owns the
transaction (a Session-bound repository) the previous values are restored right after the query.

A quantized index serves an expression, so the ORDER BY must be that same expression:
``embedding::halfvec(n) <=> q::halfvec(n)`` or ``binary_quantize(embedding)::bit(n) <~> binary_quantize(q)``.
Those candidates (``k * overfetch`` of them) are then re-ranked exactly on the full vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, bindparam, cast, func, literal, literal_column, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import HNSW, IVFFlat, Quantization, VectorIndex
from vectorpg.metrics import Metric, MetricSpec, distance

ITERATIVE_SCAN_MODES = ("off", "strict_order", "relaxed_order")
DEFAULT_EF_SEARCH = 40  # pgvector's default hnsw.ef_search
STRATEGIES = ("auto", "exact", "ann")

#: Make the planner use the vector index even where it would not (``strategy="ann"``).
ANN_SETTINGS = {
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "enable_sort": "off",
    "plan_cache_mode": "force_custom_plan",
}
#: (both) a cached generic plan of a prepared statement would ignore the planner settings: plan afresh


def check_strategy(strategy: str) -> str:
    """``auto`` (ANN index when one fits, exact re-run if a filtered ANN result comes back short),
    ``exact`` (always scan the matching rows) or ``ann`` (the index only, as is)."""
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


#: Candidates fetched per result from a quantized index before exact re-ranking. Measured recall@10 of
#: binary quantization + re-rank: 0.998 at 10x and 20x on all-MiniLM-L6-v2 embeddings of the quickstart
#: corpus; 0.69 at 10x and 0.94 at 20x on noisy clustered synthetic 384-d data. Re-ranking 20x is cheap.
DEFAULT_OVERFETCH = {Quantization.HALFVEC: 2, Quantization.BINARY: 20}


@dataclass(frozen=True)
class QueryOptions:
    """Per-query index settings; ``None`` leaves the server's value."""

    ef_search: int | None = None
    probes: int | None = None
    iterative_scan: str | None = None
    max_scan_tuples: int | None = None
    #: values stored by vectorpg.tune(): defaults, used where the caller set nothing
    tuned_ef_search: int | None = None
    tuned_probes: int | None = None

    def __post_init__(self) -> None:
        for name, low, high in (("ef_search", 1, 1000), ("probes", 1, 32768), ("max_scan_tuples", 1, 2**31 - 1)):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
            ):
                raise InvalidArgumentError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        if self.iterative_scan is not None and self.iterative_scan not in ITERATIVE_SCAN_MODES:
            raise InvalidArgumentError(f"iterative_scan must be one of {', '.join(ITERATIVE_SCAN_MODES)}")

    def settings(self) -> dict[str, str]:
        """The ``hnsw.*`` / ``ivfflat.*`` settings to apply (both methods: only the used index reads them)."""
        out: dict[str, str] = {}
        if self.ef_search is not None:
            out["hnsw.ef_search"] = str(self.ef_search)
        if self.probes is not None:
            out["ivfflat.probes"] = str(self.probes)
        if self.iterative_scan is not None:
            out["hnsw.iterative_scan"] = self.iterative_scan
            out["ivfflat.iterative_scan"] = self.iterative_scan
        if self.max_scan_tuples is not None:
            out["hnsw.max_scan_tuples"] = str(self.max_scan_tuples)
        return out


def apply_settings(executor: Session | Connection, settings: dict[str, str], *, remember: bool) -> dict[str, str]:
    """``set_config(name, value, true)`` for every setting, in one statement; return the previous values
    (read in one statement before) if ``remember``."""
    if not settings:
        return {}
    names = list(settings)
    previous: dict[str, str] = {}
    if remember:
        current = [func.current_setting(bindparam(f"name_{i}", n)) for i, n in enumerate(names)]
        previous = dict(zip(names, (str(v) for v in executor.execute(select(*current)).one())))
    changes = [
        func.set_config(bindparam(f"name_{i}", n), bindparam(f"value_{i}", settings[n]), true())
        for i, n in enumerate(names)
    ]
    executor.execute(select(*changes))
    return previous


def choose_index(indexes: Sequence[VectorIndex], column: str, metric: MetricSpec) -> VectorIndex | None:
    """The declared index that can serve ``metric`` on ``column``: a plain one, else halfvec, else binary."""
    usable = [i for i in indexes if i.column == column]
    for quantization in (Quantization.NONE, Quantization.HALFVEC):
        for index in usable:
            if index.quantization is quantization and index.metric is metric.metric:
                return index
    if metric.metric not in (Metric.HAMMING, Metric.JACCARD):
        for index in usable:
            if index.quantization is Quantization.BINARY:
                return index
    return None


def candidate_order(
    index: VectorIndex, column: ColumnElement[Any], query: ColumnElement[Any], metric: MetricSpec
) -> ColumnElement[float]:
    """The ORDER BY expression that matches the quantized ``index`` (so the planner can use it)."""
    if index.quantization is Quantization.NONE:
        raise InvalidArgumentError("a plain index needs no candidate expression")
    return distance(index.expression(column), index.expression(query), index.metric)


def order_expression(
    index: VectorIndex | None, column: ColumnElement[Any], query: ColumnElement[Any], metric: MetricSpec
) -> ColumnElement[float]:
    """Exact distance, written as the (unquantized) ``index`` expects it: ``column::vector(n)`` for a cast
    index, the bare column otherwise."""
    target = index.expression(column) if index is not None and index.cast else column
    return distance(target, query, metric.metric)


def candidate_limit(k: int, index: VectorIndex, overfetch: int | None) -> int:
    """How many candidates to fetch from a quantized index for ``k`` results."""
    factor = overfetch if overfetch is not None else DEFAULT_OVERFETCH[index.quantization]
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise InvalidArgumentError(f"overfetch must be a positive integer, got {factor!r}")
    return k * factor


def settings_for(index: VectorIndex | None, options: QueryOptions, rows_wanted: int) -> dict[str, str]:
    """The settings of one query: the caller's knobs, plus defaults that fit the index.

    An HNSW scan returns at most ``ef_search`` rows, so ``ef_search`` is raised to the number of rows the
    query needs (``k``, or the candidates of a quantized search; at most pgvector's 1,000) unless the
    caller set ``ef_search``, which is then used as given. A value stored by ``tune()`` replaces the
    default 40. An IVFFlat scan defaults to the tuned ``probes``, else ``sqrt(lists)``, pgvector's suggested
    starting point (its server default of 1 probe misses many neighbours).
    """
    settings = options.settings()
    if index is None:
        return settings
    if isinstance(index.method, HNSW) and options.ef_search is None:
        # a tuned value replaces pgvector's default 40 upwards only: below it, recall of new queries
        # drops faster than the tuning sample shows
        default = max(options.tuned_ef_search or 0, DEFAULT_EF_SEARCH)
        wanted = max(default, min(1000, rows_wanted))
        if wanted != DEFAULT_EF_SEARCH:
            settings["hnsw.ef_search"] = str(wanted)
    elif isinstance(index.method, IVFFlat) and options.probes is None:
        settings["ivfflat.probes"] = str(options.tuned_probes or max(1, math.isqrt(index.method.lists)))
    return settings


class Explain(Executable, ClauseElement):
    """``EXPLAIN [ANALYZE] <statement>`` as an executable construct (parameters bound as usual)."""

    inherit_cache = False

    def __init__(self, statement: Any, *, analyze: bool = False, json: bool = False) -> None:
        self.statement = statement
        self.analyze = analyze
        self.json = json


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    options = [name for name, wanted in (("ANALYZE", element.analyze), ("FORMAT JSON", element.json)) if wanted]
    prefix = f"EXPLAIN ({', '.join(options)}) " if options else "EXPLAIN "
    return prefix + str(compiler.process(element.statement, **kw))


def nearest_statement(
    source: FromClause,
    vector_column: str,
    columns: Callable[[FromClause], Sequence[Any]],
    query: ColumnElement[Any],
    metric: MetricSpec,
    k: int,
    where: Sequence[ColumnElement[bool]],
    index: VectorIndex | None,
    overfetch: int | None,
    options: QueryOptions,
    inline: bool = False,
) -> tuple[Select[Any], dict[str, str]]:
    """``SELECT project(rows), distance ... ORDER BY distance LIMIT k`` and the settings it runs with.

    With a quantized ``index`` the rows are the ``k * overfetch`` candidates the index orders best,
    re-ranked by exact distance; otherwise the ORDER BY is written as ``index`` (or no index) expects.
    ``columns`` picks what to return from the rows (the table, or the candidate subquery). ``inline``
    (an autocommit connection) sets index-scan settings inside the statement (:func:`with_settings`) and
    returns them as :class:`InStatement` (reported, not set before it).
    """
    column = source.c[vector_column]
    quantized = index is not None and index.quantization is not Quantization.NONE
    candidates = candidate_limit(k, index, overfetch) if index is not None and quantized else k
    settings = settings_for(index, options, candidates)
    order_query = query
    if inline and index is not None and settings and all(n.startswith(EXECUTOR_SETTINGS) for n in settings):
        order_query, settings = with_settings(query, settings), InStatement(settings)
    if index is not None and quantized:
        rows: FromClause = (
            select(source)
            .where(*where)
            .order_by(candidate_order(index, column, order_query, metric))
            .limit(candidates)
            .subquery("candidates")
        )
        dist = distance(rows.c[vector_column], query, metric.metric)
        stmt = select(*columns(rows), dist.label("distance"))
        return stmt.order_by(dist).limit(k), settings
    dist = order_expression(index, column, query, metric)
    # ``distance + 0`` (no index): no vector index can serve this ORDER BY, so the plan is an exact scan of
    # the matching rows (through the filter's own index) whatever indexes exist, with no settings.
    order = dist + literal_column("0") if index is None else order_expression(index, column, order_query, metric)
    # The k nearest are a subquery, and the results read them: what a result reads (``vector_send`` of a
    # vector column, a copy of each vector: vectorpg.sqltypes) is computed for those k rows, not for every
    # row an exact scan sorts.
    nearest = (
        select(source, dist.label("vectorpg_distance"))  # a label no table column has
        .where(*where)
        .correlate_except(source)  # a batch query's vector (search_many) comes from outside
        .order_by(order)
        .limit(k)
        .lateral("nearest")  # LATERAL: inside search_many's join it reads each batch query
    )
    found = nearest.c.vectorpg_distance
    return select(*columns(nearest), found.label("distance")).order_by(found), settings


class InStatement(dict[str, str]):
    """Settings the statement sets itself (:func:`with_settings`): runners report them, never apply them."""


#: settings an index scan reads when it starts scanning, not when the statement is planned
EXECUTOR_SETTINGS = ("hnsw.", "ivfflat.")


def with_settings(query: ColumnElement[Any], settings: dict[str, str]) -> ColumnElement[Any]:
    """``(SELECT :query FROM (SELECT set_config(name, value, true), ...) AS knobs)``: the query vector as an
    InitPlan that applies ``settings`` (index-scan settings only) when the scan evaluates its ORDER BY
    key, before the scan reads them. In an autocommit connection the settings end with the statement, so
    one statement (one round trip) both sets and searches, and nothing leaks to the connection's next user.
    """
    calls = [func.set_config(bindparam(None, n), bindparam(None, v), true()) for n, v in settings.items()]
    return select(query).select_from(select(*calls).subquery("knobs")).scalar_subquery()


def estimate_statement(source: FromClause, where: Sequence[ColumnElement[bool]]) -> Explain:
    """``EXPLAIN (FORMAT JSON)`` of the rows matching ``where``: PostgreSQL's estimate of how many match."""
    return Explain(select(literal(1)).select_from(source).where(*where), json=True)


def exact_first_statement(
    source: FromClause,
    vector_column: str,
    columns: Callable[[FromClause], Sequence[Any]],
    query: ColumnElement[Any],
    metric: MetricSpec,
    k: int,
    where: Sequence[ColumnElement[bool]],
    cap: int,
) -> Select[Any]:
    """Exact top-k over at most ``cap`` matching rows, each row also carrying how many matched (``<= cap``).

    One scan of the filter both counts the matches and, when there are few, answers the query.
    """
    dist = distance(source.c[vector_column], query, metric.metric)
    matching = select(source, dist.label("distance")).where(*where).limit(cap).subquery("matching")
    return (
        select(*columns(matching), matching.c.distance, func.count().over().label("matched"))
        .order_by(matching.c.distance)
        .limit(k)
    )


def batch_queries(vectors: Sequence[Any], element: Any) -> Any:
    """``unnest(:query_vectors) WITH ORDINALITY AS q(vec, ord)``: a batch of query vectors as rows."""
    batch = func.unnest(cast(bindparam("query_vectors", list(vectors), type_=ARRAY(element)), ARRAY(element)))
    return batch.table_valued("vec", with_ordinality="ord").render_derived().alias("q")


def batch_statement(queries: Any, inner: Select[Any], k: int) -> Select[Any]:
    """``inner`` (a nearest-neighbour query on ``queries.c.vec``) as a LATERAL join over the batch: each
    query's ``k`` nearest rows by exact distance, as ``(ord, columns..., distance)`` in query order."""
    hits = inner.lateral("hits")
    rank = func.row_number().over(partition_by=queries.c.ord, order_by=hits.c.distance).label("rank")
    ranked = select(queries.c.ord, hits, rank).select_from(queries).join(hits, true()).subquery("ranked")
    return (
        select(ranked.c.ord, *(c for c in ranked.c if c.name not in ("ord", "rank")))
        .where(ranked.c.rank <= k)
        .order_by(ranked.c.ord, ranked.c.rank)
    )


def resorted(inner: Select[Any], columns: Callable[[FromClause], Sequence[Any]], k: int) -> Select[Any]:
    """The ``k`` nearest of ``inner``'s rows, sorted by exact distance: ``inner`` (a relaxed-order index
    scan, whose rows come only nearly sorted) runs once, as a MATERIALIZED CTE.

    The sort key is ``distance + 0``: PostgreSQL 17+ carries the CTE's index order (``ORDER BY embedding
    <=> q``) out to its ``distance`` column, so ``ORDER BY distance`` would skip the sort, and the LIMIT
    would take the first ``k`` rows in relaxed order instead of the ``k`` nearest."""
    nearest = inner.cte("nearest").prefix_with("MATERIALIZED")
    resort = nearest.c.distance + literal_column("0")
    return select(*columns(nearest), nearest.c.distance).order_by(resort).limit(k)

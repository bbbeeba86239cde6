"""Recall you can ask for: measure recall@k against exact search and tune ``ef_search`` / ``probes``.

:func:`tune` samples rows of the table as queries (each query's own row is left out of both answers),
computes their exact top-k, and tries ``ef_search`` (HNSW) or ``probes`` (IVFFlat) from small to large
until the mean recall@k reaches the target. The smallest value that does is stored in
``vectorpg.index_tuning`` (per table, index and target), so every process uses it: ``search()`` applies
the value tuned for ``recall=`` (default 0.95) unless the caller sets the knob. :func:`recall` measures the
current settings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from psycopg import sql
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from vectorpg.db.engine import driver_connection
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import HNSW, VectorIndex
from vectorpg.own_schema.tables import SCHEMA, tuning_table
from vectorpg.search.statements import QueryOptions

DEFAULT_RECALL = 0.95
EF_SEARCH_STEPS = (10, 20, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000)
_CACHE_SECONDS = 30.0
_cache: dict[tuple[str, str, str, float], tuple[float, dict[str, int] | None]] = {}


class Tunable(Protocol):
    """What :func:`tune` and :func:`recall` need: a :class:`~vectorpg.search.surface.SearchSurface`."""

    metric: Any

    def tuning_key(self) -> tuple[Engine, str, str | None, VectorIndex | None]: ...

    def forget(self) -> None: ...

    def sample_rows(self, n: int) -> list[tuple[Any, Any]]: ...

    def nearest_ids(self, vector: Any, k: int, **search: Any) -> list[Any]: ...


class HasSurface(Protocol):
    """A :class:`~vectorpg.Collection` or a :class:`~vectorpg.Repository`."""

    @property
    def surface(self) -> Tunable: ...


def _tunable(store: Tunable | HasSurface) -> Tunable:
    return store.surface if hasattr(store, "surface") else store  # type: ignore[return-value]


@dataclass(frozen=True)
class TuningResult:
    """The outcome of :func:`tune`."""

    index: str
    target: float
    knob: str
    value: int
    recall: float
    met: bool
    #: (value, recall) for every value tried
    tried: tuple[tuple[int, float], ...]


def _check(target: float, k: int, sample: int) -> None:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise InvalidArgumentError(f"recall target must be in (0, 1], got {target!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidArgumentError(f"k must be an integer from 1 to 1000, got {k!r}")
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= 10_000:
        raise InvalidArgumentError(f"sample must be an integer from 1 to 10000, got {sample!r}")


def _queries(store: Tunable, sample: int) -> list[tuple[Any, Any]]:
    """``sample`` query vectors like new data: each the midpoint of two random stored rows (a stored row
    itself is an easy query, linked into the graph: tuning on rows chose ef_search 20 where new queries
    needed 100). Rows that cannot be averaged (bit, sparse vectors) are used as they are, own row left out."""
    rows = store.sample_rows(2 * sample)
    out: list[tuple[Any, Any]] = []
    for (first_id, first), (_, second) in zip(rows[0::2], rows[1::2]):
        try:
            a, b = np.asarray(first, dtype=np.float32), np.asarray(second, dtype=np.float32)
        except (TypeError, ValueError):
            out.append((first_id, first))
            continue
        if a.ndim != 1 or a.shape != b.shape or a.dtype.kind != "f":
            out.append((first_id, first))
            continue
        out.append((None, (a + b) / 2))
    return out or rows[:sample]


def _given(store: Tunable | HasSurface, queries: Sequence[Any] | None) -> list[tuple[Any, Any]]:
    """The caller's queries, validated (and embedded, for texts) as the store's searches validate them."""
    if queries is None:
        return []
    if isinstance(queries, (str, bytes)) or not 1 <= len(queries) <= 10_000:
        raise InvalidArgumentError("queries must be a sequence of 1 to 10000 query vectors (or texts)")
    check = getattr(store, "_query_vector", None)
    surface = _tunable(store)
    if check is None:
        raise InvalidArgumentError("queries need a collection or a repository to validate them against")
    return [(None, check(q, surface.metric)) for q in queries]


def _truth(store: Tunable, queries: Sequence[tuple[Any, Any]], k: int) -> list[set[Any]]:
    out = []
    for own_id, vector in queries:
        ids = [i for i in store.nearest_ids(vector, k + 1, strategy="exact") if i != own_id]
        out.append(set(ids[:k]))
    return out


def _measure(
    store: Tunable, queries: Sequence[tuple[Any, Any]], truth: list[set[Any]], k: int, **options: Any
) -> float:
    hits = 0
    for (own_id, vector), expected in zip(queries, truth):
        ids = [i for i in store.nearest_ids(vector, k + 1, **options) if i != own_id][:k]
        hits += len(expected & set(ids))
    return hits / (k * len(queries)) if queries else 1.0


def recall(
    store: Tunable | HasSurface,
    *,
    k: int = 10,
    sample: int = 50,
    queries: Sequence[Any] | None = None,
    **search_options: Any,
) -> float:
    """Mean recall@k of the index search as currently configured (tuned values included), against exact
    search, over ``queries`` (the application's own: the most faithful measure) or ``sample`` synthetic
    queries made from the table's rows (``store``: a collection or a repository)."""
    _check(0.5, k, sample)
    given = _given(store, queries)
    store = _tunable(store)
    queries = given or _queries(store, sample)
    truth = _truth(store, queries, k)
    return _measure(store, queries, truth, k, strategy="ann", **search_options)


def tune(
    store: Tunable | HasSurface,
    target: float = DEFAULT_RECALL,
    *,
    k: int = 10,
    sample: int = 50,
    queries: Sequence[Any] | None = None,
) -> TuningResult:
    """Find and store the smallest ``ef_search`` / ``probes`` whose recall@k meets ``target`` (``store``: a
    collection or a repository).

    ``queries`` (vectors, or texts for a store with an embedder) are real queries to tune on, for example
    a sample of the application's query log. Without them the queries are synthetic (:func:`_queries`):
    safe, but on well-separated clusters harder than real queries, so the value chosen can be higher than
    needed (measured: 600 where held-out queries reached 0.97 at 100)."""
    _check(target, k, sample)
    given = _given(store, queries)
    store = _tunable(store)
    engine, table, index_name, spec = store.tuning_key()
    if spec is None or index_name is None:
        raise InvalidArgumentError("there is no vector index to tune: create one first")
    if isinstance(spec.method, HNSW):
        knob, steps = "ef_search", [v for v in EF_SEARCH_STEPS if v > k] or [1000]
    else:
        knob = "probes"
        lists = spec.method.lists
        steps = sorted({max(1, min(lists, round(lists ** (i / 10)))) for i in range(11)})
    queries = given or _queries(store, sample)
    truth = _truth(store, queries, k)
    tried: list[tuple[int, float]] = []
    chosen, best = steps[-1], -1.0
    for value in steps:
        measured = _measure(store, queries, truth, k, strategy="ann", **{knob: value})
        tried.append((value, measured))
        if measured >= target:
            chosen, best = value, measured
            break
        if measured > best:
            chosen, best = value, measured
    met = best >= target
    _store(engine, table, index_name, target, k, knob, chosen, best, len(queries))
    store.forget()  # statements kept with the old value
    return TuningResult(index_name, target, knob, chosen, best, met, tuple(tried))


def _store(
    engine: Engine, table: str, index: str, target: float, k: int, knob: str, value: int, measured: float, queries: int
) -> None:
    with engine.begin() as conn:
        raw = driver_connection(conn.connection)
        raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        tuning_table.create(conn, checkfirst=True)
        row = {
            "table_name": table,
            "index_name": index,
            "target": float(target),
            "k": k,
            "knob": knob,
            "value": value,
            "measured_recall": measured,
            "queries": queries,
        }
        stmt = pg_insert(tuning_table).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["table_name", "index_name", "target"],
            set_={c: stmt.excluded[c] for c in ("k", "knob", "value", "measured_recall", "queries", "tuned_at")},
        )
        conn.execute(stmt)
    _cache.clear()


def tuned_knobs(engine: Engine, table: str, index: str, target: float) -> dict[str, int] | None:
    """The stored knob for ``index`` with the smallest tuned target >= ``target`` (cached for 30 s)."""
    key = (engine.url.render_as_string(), table, index, float(target))
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < _CACHE_SECONDS:
        return cached[1]
    found: dict[str, int] | None = None
    with engine.connect() as conn:
        exists = conn.exec_driver_sql("SELECT to_regclass('vectorpg.index_tuning') IS NOT NULL").scalar()
        if exists:
            t = tuning_table.c
            row = conn.execute(
                select(t.knob, t.value)
                .where(t.table_name == table, t.index_name == index, t.target >= float(target))
                .order_by(t.target)
                .limit(1)
            ).first()
            found = {str(row[0]): int(row[1])} if row else None
    _cache[key] = (time.monotonic(), found)
    return found


def with_tuning(
    options: QueryOptions, engine: Engine, table: str, index: str | None, target: float | None
) -> QueryOptions:
    """``options`` with the tuned ``ef_search`` / ``probes`` for ``index`` filled in where not set.

    An explicit ``target`` with nothing tuned for it is an error that says how to tune.
    """
    if index is None:
        return options
    knobs = tuned_knobs(engine, table, index, target if target is not None else DEFAULT_RECALL)
    if knobs is None:
        if target is not None:
            raise InvalidArgumentError(
                f"no tuning for recall >= {target} on index {index}: run vectorpg.tune(..., target={target}) once"
            )
        return options
    return replace(options, tuned_ef_search=knobs.get("ef_search"), tuned_probes=knobs.get("probes"))

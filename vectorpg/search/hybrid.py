"""Hybrid search: a full-text leg and a vector leg, run with the same filter and fused in one SQL statement.

::

    WITH vector_leg AS (SELECT id, distance, rank ... ORDER BY distance LIMIT n),
         text_leg   AS (SELECT id, score, rank ... WHERE tsv @@ query ORDER BY score DESC LIMIT n)
    SELECT coalesce(v.id, t.id), fused score, v.rank, v.distance, t.rank, t.score
    FROM vector_leg v FULL OUTER JOIN text_leg t ON v.id = t.id ORDER BY fused score DESC LIMIT k

Fusion ``"rrf"`` (reciprocal rank fusion): ``sum over legs of weight / (rrf_k + rank)``; a leg that did not
find the document adds 0. Fusion ``"weighted"``: ``weight_vector * (1 - d_norm) + weight_text * s_norm``,
with the vector distance and the text score min-max normalised over each leg's candidates.

The full-text leg reads ``to_tsvector(config, text)``; a GIN index on that same expression
(:func:`text_index`) serves it. The text-search configuration is a validated name rendered as a quoted
literal (an index can only match a constant); the query text is a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Index, Integer, bindparam, case, cast, func, literal, select
from sqlalchemy import column as sa_column
from sqlalchemy.dialects.postgresql import REGCONFIG, TSQUERY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause, Select
from sqlalchemy.types import Text

from vectorpg.errors import InvalidArgumentError
from vectorpg.metrics import MetricSpec, distance
from vectorpg.search.planner import Runner
from vectorpg.search.statements import Explain

FUSIONS = ("rrf", "weighted")
_CONFIG = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


@dataclass(frozen=True)
class HybridOptions:
    """How the two legs are run and fused."""

    fusion: str = "rrf"
    rrf_k: int = 60
    #: (vector weight, text weight)
    weights: tuple[float, float] = (1.0, 1.0)
    #: text search configuration (``english``, ``simple``, ``french``...)
    config: str = "english"
    #: candidates taken from each leg before fusion (default ``max(4 * k, 40)``)
    candidates: int | None = None

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise InvalidArgumentError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, int) or not 0 <= self.rrf_k <= 10_000:
            raise InvalidArgumentError(f"rrf_k must be an integer from 0 to 10000, got {self.rrf_k!r}")
        if len(self.weights) != 2 or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1000 for w in self.weights
        ):
            raise InvalidArgumentError(f"weights are two numbers from 0 to 1000, got {self.weights!r}")
        if not isinstance(self.config, str) or not _CONFIG.match(self.config):
            raise InvalidArgumentError(f"invalid text search configuration {self.config!r}")
        count = self.candidates
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000):
            raise InvalidArgumentError(f"candidates must be an integer from 1 to 10000, got {self.candidates!r}")


@dataclass(frozen=True)
class HybridScore:
    """How a hybrid hit scored: the fused score (higher is better) and each leg's rank and raw score.

    A leg that did not return the document has ``None`` rank and score.
    """

    score: float
    vector_rank: int | None
    vector_distance: float | None
    text_rank: int | None
    text_score: float | None

    @classmethod
    def from_row(cls, row: Any) -> HybridScore:
        def opt(value: Any, kind: type) -> Any:
            return None if value is None else kind(value)

        return cls(
            float(row.score),
            opt(row.vector_rank, int),
            opt(row.vector_distance, float),
            opt(row.text_rank, int),
            opt(row.text_score, float),
        )


#: a query written in web-search syntax: "a phrase", -excluded, a OR b
_WEBSEARCH = re.compile(r'"|(^|\s)-\w|\sor\s', re.IGNORECASE)


def text_query(query_text: str, config: str) -> ColumnElement[Any]:
    """The text leg's ``tsquery``: documents sharing any of the query's significant terms (an OR of its
    lexemes, ranked by how many and how often), so that a natural-language question finds the documents that
    use its words; a query in web-search syntax (a quoted phrase, ``-word``, ``OR``) means what it says
    (``websearch_to_tsquery``)."""
    param: ColumnElement[str] = bindparam("query_text", query_text)
    if _WEBSEARCH.search(query_text):
        return func.websearch_to_tsquery(_config(config), param)
    # plainto_tsquery's lexemes joined by & (each quoted, so the replace touches only the operators)
    all_terms = cast(func.plainto_tsquery(_config(config), param), Text)
    return cast(func.replace(all_terms, " & ", " | "), TSQUERY)


def _config(name: str) -> ColumnElement[Any]:
    # Rendered inline (quoted by SQLAlchemy) so that a GIN index on the same expression matches.
    return cast(bindparam("ts_config", name, literal_execute=True), REGCONFIG)


def tsvector(text_column: ColumnElement[Any], config: str = "english") -> ColumnElement[Any]:
    """``to_tsvector(config, coalesce(text, ''))``: the expression the full-text leg and its index use."""
    return func.to_tsvector(_config(config), func.coalesce(text_column, ""))


def text_index(name: str, text_column: Any, config: str = "english") -> Index:
    """A GIN index on :func:`tsvector` of ``text_column``, for ``__table_args__`` or ``Index.create``."""
    HybridOptions(config=config)  # validates the name
    column = sa_column(text_column) if isinstance(text_column, str) else text_column
    return Index(name, tsvector(column, config), postgresql_using="gin")


def hybrid_statement(
    source: FromClause,
    *,
    id_column: str,
    text_column: str,
    vector_column: str,
    query_text: str,
    query_vector: ColumnElement[Any],
    metric: MetricSpec,
    k: int,
    where: Sequence[ColumnElement[bool]],
    options: HybridOptions,
) -> Select[Any]:
    """The fused statement; columns: ``id, score, vector_rank, vector_distance, text_rank, text_score``."""
    if not isinstance(query_text, str) or not query_text.strip() or "\x00" in query_text:
        raise InvalidArgumentError("hybrid search needs a non-empty query text")
    n = options.candidates or max(4 * k, 40)
    ident = source.c[id_column]
    dist = distance(source.c[vector_column], query_vector, metric.metric)
    vector_inner = select(ident.label("id"), dist.label("distance")).where(*where).order_by(dist).limit(n).subquery()
    vector_leg = select(
        vector_inner.c.id,
        vector_inner.c.distance,
        func.row_number().over(order_by=vector_inner.c.distance).label("rank"),
    ).cte("vector_leg")

    query = text_query(query_text, options.config)
    document = tsvector(source.c[text_column], options.config)
    score = func.ts_rank_cd(document, query)
    text_inner = (
        select(ident.label("id"), score.label("score"))
        .where(*where, document.op("@@")(query))
        .order_by(score.desc())
        .limit(n)
        .subquery()
    )
    text_leg = select(
        text_inner.c.id,
        text_inner.c.score,
        func.row_number().over(order_by=text_inner.c.score.desc()).label("rank"),
    ).cte("text_leg")

    w_vector, w_text = (literal(float(w), Float) for w in options.weights)
    if options.fusion == "rrf":
        rrf_k = literal(options.rrf_k, Integer)
        fused = func.coalesce(w_vector / (rrf_k + vector_leg.c.rank), 0.0) + func.coalesce(
            w_text / (rrf_k + text_leg.c.rank), 0.0
        )
    else:
        d_min, d_max = func.min(vector_leg.c.distance).over(), func.max(vector_leg.c.distance).over()
        s_min, s_max = func.min(text_leg.c.score).over(), func.max(text_leg.c.score).over()
        vector_part = case(
            (vector_leg.c.distance.is_(None), 0.0),
            (d_max == d_min, 1.0),
            else_=(d_max - vector_leg.c.distance) / (d_max - d_min),
        )
        text_part = case(
            (text_leg.c.score.is_(None), 0.0),
            (s_max == s_min, 1.0),
            else_=(text_leg.c.score - s_min) / (s_max - s_min),
        )
        fused = w_vector * vector_part + w_text * text_part
    fused_score = fused.label("score")
    return (
        select(
            func.coalesce(vector_leg.c.id, text_leg.c.id).label("id"),
            fused_score,
            vector_leg.c.rank.label("vector_rank"),
            vector_leg.c.distance.label("vector_distance"),
            text_leg.c.rank.label("text_rank"),
            text_leg.c.score.label("text_score"),
        )
        .select_from(vector_leg.join(text_leg, vector_leg.c.id == text_leg.c.id, full=True))
        .order_by(fused_score.desc(), func.coalesce(vector_leg.c.id, text_leg.c.id))
        .limit(k)
    )


@dataclass(frozen=True)
class HybridPlan:
    """What :meth:`hybrid_search` with the same arguments runs (from ``explain_hybrid(...)``)."""

    #: the index that serves the text leg's match, or ``None``: it reads the text of every row the filter keeps
    text_index: str | None
    #: what to do when nothing serves the text leg ("" when an index does)
    hint: str
    sql: str
    plan: str


_INDEX_SCAN = re.compile(r"Index Scan (?:using|on) (\S+)")


def hybrid_plan(
    run: Runner, stmt: Select[Any], source: FromClause, text_column: str, config: str, *, analyze: bool = False
) -> HybridPlan:
    """The :class:`HybridPlan` of ``stmt`` (:func:`hybrid_statement` over ``source``): PostgreSQL's ``EXPLAIN``
    of it, and the index that can serve its text leg: the one PostgreSQL reads for the leg's match when
    sequential scans are off (a small table is often scanned even when an index exists)."""
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    document = tsvector(source.c[text_column], config)
    probe = select(literal(1)).select_from(source).where(document.op("@@")(func.to_tsquery(_config(config), "probe")))
    found = (_INDEX_SCAN.search(str(r[0])) for r in run(Explain(probe), {"enable_seqscan": "off"}))
    index = next((m.group(1) for m in found if m), None)
    hint = (
        ""
        if index
        else f"no GIN index on to_tsvector('{config}', coalesce({text_column}, '')): the text leg reads the text of "
        "every row the filter keeps. Build it with Collection.create_text_index() (vectorpg index create NAME "
        f"--text), or on a model of your own with vectorpg.text_index('<name>', Model.{text_column}, '{config}')"
    )
    lines = run(Explain(stmt, analyze=analyze), {})
    sql = str(stmt.compile(dialect=dialect()))  # type: ignore[no-untyped-call]
    return HybridPlan(index, hint, sql, "\n".join(str(r[0]) for r in lines))

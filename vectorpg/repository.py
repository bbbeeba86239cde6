"""``Repository``: add, upsert, get, delete, count and nearest-neighbour search over any model with a vector column.

::

    repo = Repository(Article, db)               # or an Engine, or a Session (then the caller commits)
    repo.add_many([Article(id=1, body="...", embedding=vec), ...])
    for article, distance in repo.search(query_vector, k=5, where=Article.lang == "en"):
        ...

Creating a repository runs no SQL. Writes validate the whole batch first (dimension, NaN/infinity,
empty, zero under cosine, duplicate keys) and then go in one transaction: all rows or none. Batches of
``bulk.COPY_THRESHOLD`` rows or more go through binary COPY.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Engine, Table, bindparam, delete, func, inspect, select, tuple_
from sqlalchemy.orm import Mapper, Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from . import bulk, validation
from .connection import ensure_vector_types
from .distance import MetricSpec, check_metric
from .errors import InvalidArgumentError, InvalidInputError, InvalidVectorError
from .failures import translating
from .hybrid import HybridOptions, HybridScore, hybrid_statement
from .indexes import VectorIndex
from .planner import (
    DEFAULT_CONFIG,
    PlannerConfig,
    Runner,
    SearchPlan,
    SearchRequest,
    SearchTarget,
    explain_search,
    run_search,
)
from .search import (
    QueryOptions,
    apply_settings,
    autocommit_runner,
    choose_index,
)
from .tuning import with_tuning
from .types import VectorType, describe

if TYPE_CHECKING:
    from .connection import Database
    from .embeddings import Embedder

ModelT = TypeVar("ModelT")


class Repository(Generic[ModelT]):
    """Vector-store operations over the SQLAlchemy model ``model``.

    ``bind`` is a :class:`~vectorpg.Database`, an :class:`~sqlalchemy.Engine` (each call is its own
    transaction) or a :class:`~sqlalchemy.orm.Session` (calls join the session's transaction inside a
    savepoint; the caller commits). ``vector_column`` names the vector attribute when the model has more
    than one. ``metric`` is the default distance for :meth:`search`. ``embedder`` lets :meth:`search`
    take text. ``text_column`` names the text attribute that :meth:`hybrid_search` searches.
    """

    def __init__(
        self,
        model: type[ModelT],
        bind: Engine | Session | Database,
        *,
        vector_column: str | None = None,
        metric: str = "cosine",
        embedder: Embedder | None = None,
        text_column: str | None = None,
        planner: PlannerConfig = DEFAULT_CONFIG,
    ) -> None:
        mapper: Mapper[ModelT] = inspect(model)
        if not isinstance(mapper.local_table, Table):
            raise InvalidArgumentError(f"{model.__name__} is not mapped to a table")
        self.model = model
        self.table: Table = mapper.local_table
        self._mapper = mapper
        self._attr_to_column = {attr.key: attr.columns[0].name for attr in mapper.column_attrs}
        self._column_to_attr = {v: k for k, v in self._attr_to_column.items()}
        vector_attrs = {
            key: described
            for key, name in self._attr_to_column.items()
            if (described := describe(self.table.c[name].type)) is not None
        }
        if vector_column is None:
            if len(vector_attrs) != 1:
                found = ", ".join(vector_attrs) or "none"
                raise InvalidArgumentError(
                    f"{model.__name__} has {len(vector_attrs)} vector columns ({found}); "
                    "name the one to use with vector_column=..."
                )
            vector_column = next(iter(vector_attrs))
        if vector_column not in vector_attrs:
            raise InvalidArgumentError(f"{model.__name__}.{vector_column} is not a pgvector column")
        self.vector_attribute = vector_column
        self.vector_type: VectorType
        self.dimension: int | None
        self.vector_type, self.dimension = vector_attrs[vector_column]
        self._vector_column_name = self._attr_to_column[vector_column]
        self.metric: MetricSpec = check_metric(metric, self.vector_type)
        self.embedder = embedder
        self.text_column = text_column
        self.planner = planner
        self._primary_key = list(mapper.primary_key)
        from .connection import Database

        if isinstance(bind, Database):
            bind = bind.engine
        self._bind = bind
        self._names: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._factory = sessionmaker(bind, expire_on_commit=False) if isinstance(bind, Engine) else None

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        if isinstance(self._bind, Session):
            ensure_vector_types(self._bind.connection().connection)
            if write:
                with self._bind.begin_nested():
                    yield self._bind
            else:
                yield self._bind
            return
        assert self._factory is not None
        with self._factory() as session, session.begin():
            ensure_vector_types(session.connection().connection)  # an application's own engine, too
            yield session

    @property
    def vector_column(self) -> ColumnElement[Any]:
        """The SQLAlchemy column that holds the vectors."""
        column: ColumnElement[Any] = self.table.c[self._vector_column_name]
        return column

    def _to_dict(self, item: object, row: int) -> dict[str, Any]:
        """Column name -> value for a model instance or a mapping keyed by attribute or column name."""
        if isinstance(item, self.model):
            state = inspect(item).dict
            return {self._attr_to_column[k]: v for k, v in state.items() if k in self._attr_to_column}
        if isinstance(item, Mapping):
            keys = tuple(item)
            names = self._names.get(keys)  # rows of a batch share their keys: map them once
            if names is None:
                mapped = []
                for key in keys:
                    name = self._attr_to_column.get(key, key if key in self._column_to_attr else None)
                    if name is None:
                        raise InvalidInputError(f"{self.model.__name__} has no column {key!r}", row=row)
                    mapped.append(name)
                names = self._names[keys] = tuple(mapped)
            return dict(zip(names, item.values()))
        raise InvalidInputError(f"expected a {self.model.__name__} or a mapping, got {type(item).__name__}", row=row)

    def _prepare(self, items: Iterable[object]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Validate a batch and lay it out as (columns, rows); raises before anything is written."""
        dicts = [self._to_dict(item, row) for row, item in enumerate(items)]
        if not dicts:
            return [], []
        present = {name for d in dicts for name in d}
        columns = [c.name for c in self.table.columns if c.name in present or c.default is not None]
        vec = self._vector_column_name
        if vec not in present:
            raise InvalidInputError(f"no value for the vector column {self.vector_attribute!r}", row=0)
        for d in dicts:
            for name in columns:
                if name not in d:
                    d[name] = self._default(name)
        # A nullable vector column may hold NULL; every other value is validated as a vector.
        nullable = bool(self.table.c[vec].nullable)
        positions = [i for i, d in enumerate(dicts) if not (nullable and d[vec] is None)]
        try:
            checked = validation.vectors(
                [dicts[i][vec] for i in positions],
                vector_type=self.vector_type,
                dimension=self.dimension,
                metric=self.metric,
            )
        except InvalidVectorError as exc:
            if exc.row is not None and positions[exc.row] != exc.row:
                exc.args = (str(exc).replace(f"row {exc.row}:", f"row {positions[exc.row]}:", 1),)
                exc.row = positions[exc.row]
            raise
        for i, v in zip(positions, checked):
            dicts[i][vec] = v
        pk_names = [c.name for c in self._primary_key]
        if all(name in present for name in pk_names):
            bulk.check_unique_keys(
                [tuple(d[n] for n in pk_names) if len(pk_names) > 1 else d[pk_names[0]] for d in dicts],
                "primary key",
            )
        return columns, [tuple(d[name] for name in columns) for d in dicts]

    def _default(self, name: str) -> Any:
        default = self.table.c[name].default
        if default is None:
            return None
        arg = getattr(default, "arg", None)
        if getattr(default, "is_callable", False) and callable(arg):
            return arg(None)
        if getattr(default, "is_scalar", False):
            return arg
        return None

    def _query_vector(self, query: Any, metric: MetricSpec) -> Any:
        if isinstance(query, str):
            if self.embedder is None:
                raise InvalidArgumentError(
                    "a text query needs an embedder: Repository(..., embedder=vectorpg.SentenceTransformerEmbedder())"
                )
            query = self.embedder.embed([query])[0]
        return validation.query_vector(query, vector_type=self.vector_type, dimension=self.dimension, metric=metric)

    # -- writes ------------------------------------------------------------------------------------

    def add(self, item: ModelT | Mapping[str, Any]) -> None:
        """Insert one row; an existing primary key raises :class:`~vectorpg.errors.DuplicateIdError`."""
        self.add_many([item])

    @translating("adding rows")
    def add_many(self, items: Iterable[ModelT | Mapping[str, Any]]) -> int:
        """Insert rows (model instances or mappings) all-or-nothing; return how many were written."""
        columns, rows = self._prepare(items)
        with self._session(write=True) as session:
            bulk.write_rows(session, self.table, columns, rows, on_conflict="error")
        return len(rows)

    @translating("upserting rows")
    def upsert(self, items: Iterable[ModelT | Mapping[str, Any]]) -> int:
        """Insert rows, replacing those whose primary key exists (``ON CONFLICT DO UPDATE``)."""
        columns, rows = self._prepare(items)
        pk_names = [c.name for c in self._primary_key]
        missing = [n for n in pk_names if n not in columns]
        if missing and rows:
            raise InvalidInputError(f"upsert needs the primary key ({', '.join(missing)}) on every row")
        with self._session(write=True) as session:
            bulk.write_rows(session, self.table, columns, rows, on_conflict="update", conflict_columns=pk_names)
        return len(rows)

    @translating("deleting rows")
    def delete(self, ids: Iterable[Any]) -> int:
        """Delete the rows with these primary keys (tuples for a composite key); return how many went."""
        keys = list(ids)
        if not keys:
            return 0
        with self._session(write=True) as session:
            result = session.execute(delete(self.table).where(self._key_in(keys)))
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- reads -------------------------------------------------------------------------------------

    def _key_in(self, keys: list[Any]) -> ColumnElement[bool]:
        if len(self._primary_key) == 1:
            return bulk.key_in(self._primary_key[0], keys)
        return tuple_(*self._primary_key).in_(keys)  # composite keys: one parameter per key part

    def get(self, id: Any) -> ModelT | None:
        """The row with this primary key, or ``None``."""
        with self._session() as session:
            return session.get(self.model, id)

    @translating("reading rows")
    def get_many(self, ids: Iterable[Any]) -> list[ModelT]:
        """The rows with these primary keys that exist (in no particular order)."""
        keys = list(ids)
        if not keys:
            return []
        with self._session() as session:
            return list(session.scalars(select(self.model).where(self._key_in(keys))))

    @translating("counting rows")
    def count(self, where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None = None) -> int:
        """Number of rows (matching ``where``)."""
        stmt = select(func.count()).select_from(self.table)
        stmt = stmt.where(*_conditions(where))
        with self._session() as session:
            return int(session.scalar(stmt) or 0)

    @property
    def vector_indexes(self) -> list[VectorIndex]:
        """The vector indexes declared on the model (``vector_index(...)`` in ``__table_args__``)."""
        return [i.info["vectorpg"] for i in self.table.indexes if isinstance(i.info.get("vectorpg"), VectorIndex)]

    @translating("searching")
    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None = None,
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
    ) -> list[tuple[ModelT, float]]:
        """The ``k`` rows nearest to ``query``, nearest first, as ``(row, distance)`` pairs.

        ``query`` is a vector (list, NumPy array, pgvector value) or, with an embedder, a text. ``where``
        is a SQLAlchemy boolean expression (or a list of them) on the model. ``metric`` overrides the
        repository's default. The query vector is validated like stored vectors and sent in binary.
        Distances are always exact distances on the stored vectors.

        ``strategy="auto"`` lets the planner (:mod:`vectorpg.planner`) choose per query: an exact scan of
        the matching rows when few match, else the vector index with an iterative scan; a filtered ANN
        result that comes back short is re-run exactly, so a result has fewer than ``k`` rows only when
        fewer than ``k`` rows match. ``"exact"`` and ``"ann"`` force a path.

        ``index="auto"`` uses a declared index for this metric: a plain one, else a halfvec-cast one, else
        a binary-quantized one, whose ``k * overfetch`` candidates are re-ranked exactly. ``ef_search``,
        ``probes``, ``iterative_scan`` and ``max_scan_tuples`` apply to this query only. ``diversity``
        (0 to 1) re-orders ``fetch_k`` nearest candidates by maximal marginal relevance. ``recall`` picks
        the ``ef_search`` / ``probes`` that :func:`vectorpg.tune` stored for that target (default: the
        value tuned for 0.95, if any).
        """
        request = self._request(
            query,
            k,
            where,
            metric,
            index,
            overfetch,
            QueryOptions(ef_search, probes, iterative_scan, max_scan_tuples),
            recall,
        )
        rows = run_search(request, strategy, diversity, fetch_k, self.planner)
        return [(row, float(d)) for row, d in rows]

    @translating("explaining a search")
    def explain(
        self,
        query: Any,
        k: int = 10,
        *,
        where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None = None,
        metric: str | None = None,
        index: VectorIndex | str | None = "auto",
        overfetch: int | None = None,
        strategy: str = "auto",
        analyze: bool = False,
        recall: float | None = None,
        **knobs: Any,
    ) -> SearchPlan:
        """What :meth:`search` would do: the strategy and why, the estimates, the SQL and ``EXPLAIN``."""
        request = self._request(query, k, where, metric, index, overfetch, QueryOptions(**knobs), recall)
        return explain_search(request, strategy, self.planner, analyze=analyze)

    @contextmanager
    def _runner(self) -> Iterator[Runner]:
        """One transaction for all the statements of a search. Settings are transaction-local; in the
        caller's own transaction (a Session-bound repository) they are restored at the end."""
        if not isinstance(self._bind, Session):
            with autocommit_runner(self._bind) as (conn, prepare):
                ensure_vector_types(conn.connection)  # an application's own engine, too
                with Session(bind=conn, expire_on_commit=False) as session:

                    def run_mapped(stmt: Any, settings: dict[str, str]) -> list[Any]:
                        prepare(settings)
                        return list(session.execute(stmt).all())

                    yield run_mapped
            return
        with self._session() as session:
            remember = isinstance(self._bind, Session)
            restore: dict[str, str] = {}

            def run(stmt: Any, settings: dict[str, str]) -> list[Any]:
                previous = apply_settings(session, settings, remember=remember)
                for name, value in previous.items():
                    restore.setdefault(name, value)
                return list(session.execute(stmt).all())

            try:
                yield run
            except BaseException:
                if restore:  # the session may be broken: keep the error that got us here
                    with suppress(Exception):
                        apply_settings(session, restore, remember=False)
                raise
            if restore:
                apply_settings(session, restore, remember=False)

    def _run(self, stmt: Any, settings: dict[str, str]) -> list[Any]:
        with self._runner() as run:
            return run(stmt, settings)

    def _request(
        self,
        query: Any,
        k: int,
        where: Any,
        metric: str | None,
        index: VectorIndex | str | None,
        overfetch: int | None,
        options: QueryOptions,
        recall: float | None = None,
    ) -> SearchRequest:
        k = validation.positive_k(k)
        spec = check_metric(metric, self.vector_type) if metric is not None else self.metric
        vector = self._query_vector(query, spec)
        query_param = bindparam("query_vector", vector, type_=self.vector_column.type)
        chosen: VectorIndex | None
        if index == "auto":
            chosen = choose_index(self.vector_indexes, self._vector_column_name, spec)
        elif index is None or isinstance(index, VectorIndex):
            chosen = index
        else:
            raise InvalidArgumentError("index is 'auto', None or a VectorIndex")
        options = with_tuning(options, self._engine, self.table.fullname, self._index_name(chosen), recall)

        def entities(rows: Any) -> list[Any]:  # the model, or the model read from a subquery of the table
            return [self.model if rows is self.table else aliased(self.model, rows)]

        target = SearchTarget(
            self.table,
            self._vector_column_name,
            entities,
            spec,
            self.vector_indexes,
            self._runner,
            f"{self._engine.url}|{self.table.fullname}",
            vector_of=lambda row: getattr(row[0], self.vector_attribute),
        )
        return SearchRequest(target, query_param, vector, k, _conditions(where), chosen, options, overfetch)

    @translating("searching (hybrid)")
    def hybrid_search(
        self,
        text: str,
        k: int = 10,
        *,
        where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None = None,
        vector: Any = None,
        text_column: str | None = None,
        metric: str | None = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        weights: tuple[float, float] = (1.0, 1.0),
        config: str = "english",
        candidates: int | None = None,
    ) -> list[tuple[ModelT, HybridScore]]:
        """Full-text + vector search fused in one SQL statement; ``(row, HybridScore)`` pairs, best first.

        Both legs run with the same ``where``. The vector leg uses ``vector`` or, if not given, the
        embedding of ``text`` (an embedder is then needed). ``text_column`` names the model's text
        attribute (default: the repository's ``text_column``). See :mod:`vectorpg.hybrid` for the fusions;
        a GIN index from :func:`vectorpg.hybrid.text_index` on the same column and config serves the
        text leg.
        """
        k = validation.positive_k(k)
        options = HybridOptions(fusion, rrf_k, weights, config, candidates)
        attribute = text_column or self.text_column
        if attribute is None or attribute not in self._attr_to_column:
            raise InvalidArgumentError(
                f"hybrid search needs the text attribute of {self.model.__name__}: "
                "Repository(..., text_column='body') or hybrid_search(..., text_column='body')"
            )
        if len(self._primary_key) != 1:
            raise InvalidArgumentError("hybrid search needs a single-column primary key")
        spec = check_metric(metric, self.vector_type) if metric is not None else self.metric
        query_vector = self._query_vector(vector if vector is not None else text, spec)
        fused = hybrid_statement(
            self.table,
            id_column=self._primary_key[0].name,
            text_column=self._attr_to_column[attribute],
            vector_column=self._vector_column_name,
            query_text=text,
            query_vector=bindparam("query_vector", query_vector, type_=self.vector_column.type),
            metric=spec,
            k=k,
            where=_conditions(where),
            options=options,
        ).subquery("fused")
        stmt = (
            select(self.model, fused)
            .join(fused, self._primary_key[0] == fused.c.id)
            .order_by(fused.c.score.desc(), fused.c.id)
        )
        return [(row[0], HybridScore.from_row(row)) for row in self._run(stmt, {})]

    # -- tuning hooks (see vectorpg.tuning) ----------------------------------------------------------

    @property
    def _engine(self) -> Engine:
        bind = self._bind.get_bind() if isinstance(self._bind, Session) else self._bind
        assert isinstance(bind, Engine)
        return bind

    def _index_name(self, spec: VectorIndex | None) -> str | None:
        return next(
            (str(i.name) for i in self.table.indexes if spec is not None and i.info.get("vectorpg") == spec), None
        )

    def _tuning_key(self) -> tuple[Engine, str, str | None, VectorIndex | None]:
        spec = choose_index(self.vector_indexes, self._vector_column_name, self.metric)
        return self._engine, self.table.fullname, self._index_name(spec), spec

    def _sample_rows(self, n: int) -> list[tuple[Any, Any]]:
        pk = self._primary_key[0]
        stmt = select(pk, self.vector_column).order_by(func.random()).limit(n)
        return [(row[0], row[1]) for row in self._run(stmt, {})]

    def _nearest_ids(self, vector: Any, k: int, **options: Any) -> list[Any]:
        key = self._column_to_attr[self._primary_key[0].name]
        return [getattr(row, key) for row, _ in self.search(vector, k, **options)]


def _conditions(where: object) -> list[ColumnElement[bool]]:
    if where is None:
        return []
    if isinstance(where, Mapping):
        raise InvalidArgumentError(
            "Repository.search takes SQLAlchemy expressions (Model.column == value); "
            "JSON filter dicts are for collections; compile one yourself with "
            "vectorpg.compile_filter(spec, Model.metadata_column)"
        )
    if isinstance(where, (list, tuple)):
        return list(where)
    return [where]  # type: ignore[list-item]

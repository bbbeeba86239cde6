"""``Repository``: add, upsert, get, delete, count and nearest-neighbour search over any model with a vector column.

::

    repo = Repository(Article, db)               # or an Engine, or a Session (then the caller commits)
    repo.add([Article(id=1, body="...", embedding=vec), ...])
    for article, distance in repo.search(query_vector, k=5, where=Article.lang == "en"):
        ...

Creating a repository runs no SQL. Writes validate the whole batch first (dimension, NaN/infinity,
empty, zero under cosine, duplicate keys) and then go in one transaction: all rows or none. Batches of
``vectorpg.db.writes.COPY_THRESHOLD`` rows or more go through binary COPY.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, Table, delete, func, inspect, select, tuple_, update
from sqlalchemy.orm import Mapper, Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from vectorpg import validation
from vectorpg.awaiting import off_loop
from vectorpg.db import writes
from vectorpg.db.engine import HasEngine, engine_of, vector_statements
from vectorpg.db.routing import read_bind, routed
from vectorpg.db.rows import LaidOut, layout_rows
from vectorpg.db.translate import translating
from vectorpg.errors import InvalidArgumentError, InvalidInputError
from vectorpg.indexes import VectorIndex
from vectorpg.metrics import MetricSpec, check_metric
from vectorpg.search.face import Searchable, clause_key
from vectorpg.search.hybrid import HybridScore
from vectorpg.search.planner import DEFAULT_CONFIG, PlannerConfig
from vectorpg.search.surface import Row, SearchSurface
from vectorpg.sqltypes import VectorType, describe

if TYPE_CHECKING:
    from vectorpg.embeddings import Embedder

ModelT = TypeVar("ModelT")
#: a SQLAlchemy boolean expression on the model, or a list of them (all must hold)
Where = ColumnElement[bool] | Sequence[ColumnElement[bool]]


class Repository(Searchable[Where, tuple[ModelT, float], tuple[ModelT, HybridScore]]):
    """Vector-store operations over the SQLAlchemy model ``model``.

    ``bind`` is a :class:`~vectorpg.Database`, an :class:`~sqlalchemy.Engine` (each call is its own
    transaction) or a :class:`~sqlalchemy.orm.Session` (calls join the session's transaction inside a
    savepoint; the caller commits). ``vector_attribute`` names the vector attribute when the model has
    more than one (``vector_column=``, its 0.1 spelling, still works). ``metric`` is the default distance
    for :meth:`search`. ``embedder`` lets :meth:`search` take text. ``text_column`` names the text
    attribute that :meth:`hybrid_search` searches. ``search``, ``explain``, ``hybrid_search``, ``tune`` and
    ``recall`` come from :class:`~vectorpg.search.face.Searchable`; their ``where`` is a SQLAlchemy boolean
    expression on the model (or a list of them), and hits are ``(row, distance)`` pairs.
    """

    def __init__(
        self,
        model: type[ModelT],
        bind: Engine | Session | HasEngine,
        *,
        vector_attribute: str | None = None,
        metric: str = "cosine",
        embedder: Embedder | None = None,
        text_column: str | None = None,
        planner: PlannerConfig = DEFAULT_CONFIG,
        vector_column: str | None = None,
    ) -> None:
        if vector_column is not None:
            warnings.warn(
                "Repository(..., vector_column=) is Repository(..., vector_attribute=) now", DeprecationWarning, 2
            )
        attribute = vector_attribute or vector_column
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
        if attribute is None:
            if len(vector_attrs) != 1:
                found = ", ".join(vector_attrs) or "none"
                raise InvalidArgumentError(
                    f"{model.__name__} has {len(vector_attrs)} vector columns ({found}); "
                    "name the one to use with vector_attribute=..."
                )
            attribute = next(iter(vector_attrs))
        if attribute not in vector_attrs:
            raise InvalidArgumentError(f"{model.__name__}.{attribute} is not a pgvector column")
        self.vector_attribute = attribute
        self.vector_type: VectorType
        self.dimension: int | None
        self.vector_type, self.dimension = vector_attrs[attribute]
        self._vector_column_name = self._attr_to_column[attribute]
        self.metric: MetricSpec = check_metric(metric, self.vector_type)
        self.embedder = embedder
        self.text_column = text_column
        self.planner = planner
        self._primary_key = list(mapper.primary_key)
        self._bind: Engine | Session = bind if isinstance(bind, Session) else engine_of(bind)
        self.router = getattr(bind, "router", None)  # a Database's read replicas
        self._names: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._factory = sessionmaker(self._bind, expire_on_commit=False) if isinstance(self._bind, Engine) else None
        self.surface = SearchSurface(
            self.table,
            vector_column=self._vector_column_name,
            id_column=self._primary_key[0].name,
            metric=self.metric,
            bind=self._bind,
            columns=_entities(model, self.table),
            id_of=lambda row: getattr(row[0], self._column_to_attr[self._primary_key[0].name]),
            vector_of=lambda row: getattr(row[0], self.vector_attribute),
            indexes=self._declared_indexes,
            planner=planner,
            orm=True,
            index_hint="Declare one on the model (vector_index(...) in __table_args__) and create it "
            "(metadata.create_all, or an Alembic migration).",
        )

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        if isinstance(self._bind, Session):
            with vector_statements(self._bind.connection().connection):
                if write:
                    with self._bind.begin_nested():
                        yield self._bind
                else:
                    yield self._bind
            return
        assert self._factory is not None
        reader = self._bind if write else read_bind(self._bind)  # a replica, in a routed read
        opened = self._factory() if reader is self._bind else Session(reader, expire_on_commit=False)
        with opened as session, session.begin(), vector_statements(session.connection().connection):
            yield session  # an application's own engine, too

    @property
    def vector_column(self) -> ColumnElement[Any]:
        """The SQLAlchemy column that holds the vectors."""
        column: ColumnElement[Any] = self.table.c[self._vector_column_name]
        return column

    def _to_dict(self, item: object, row: int) -> Mapping[str, Any]:
        """Column name -> value for a model instance or a mapping keyed by attribute or column name (a
        mapping keyed by column names is that mapping itself: it is read, never changed)."""
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
            return item if names is keys or names == keys else dict(zip(names, item.values()))
        raise InvalidInputError(f"expected a {self.model.__name__} or a mapping, got {type(item).__name__}", row=row)

    def _column_keyed(self, keys: set[str]) -> bool:
        """Whether mappings with these keys are keyed by column names already (read as they are)."""
        return all(k in self._column_to_attr and self._attr_to_column.get(k, k) == k for k in keys)

    def _prepare(self, items: Iterable[object]) -> LaidOut:
        """Validate a batch and lay it out for the write; raises before anything is written."""
        batch: list[Any] = items if isinstance(items, list) else list(items)
        plain = bool(batch) and set(map(type, batch)) == {dict} and self._column_keyed(set().union(*batch))
        return layout_rows(
            batch if plain else [self._to_dict(item, row) for row, item in enumerate(batch)],
            self.table,
            vector_column=self._vector_column_name,
            vector_attribute=self.vector_attribute,
            vector_type=self.vector_type,
            dimension=self.dimension,
            metric=self.metric,
            primary_key=[c.name for c in self._primary_key],
        )

    # -- writes ------------------------------------------------------------------------------------

    @translating("adding rows")
    def add(self, items: ModelT | Mapping[str, Any] | Iterable[ModelT | Mapping[str, Any]]) -> int:
        """Insert rows (model instances or mappings; one, or an iterable of them) all-or-nothing; return how
        many were written. An existing primary key raises :class:`~vectorpg.errors.DuplicateIdError`."""
        columns, rows, matrices = self._prepare(self._as_rows(items))
        with self._session(write=True) as session:
            writes.write_rows(session, self.table, columns, rows, on_conflict="error", matrices=matrices)
        return len(rows)

    def add_many(self, items: Iterable[ModelT | Mapping[str, Any]]) -> int:
        """Deprecated spelling of :meth:`add`, which takes a batch now (removed in vectorpg 0.3)."""
        warnings.warn("Repository.add_many() is Repository.add() now", DeprecationWarning, stacklevel=2)
        return self.add(items)

    @translating("upserting rows")
    def upsert(self, items: ModelT | Mapping[str, Any] | Iterable[ModelT | Mapping[str, Any]]) -> int:
        """Insert rows, replacing those whose primary key exists (``ON CONFLICT DO UPDATE``)."""
        columns, rows, matrices = self._prepare(self._as_rows(items))
        pk_names = [c.name for c in self._primary_key]
        missing = [n for n in pk_names if n not in columns]
        if missing and rows:
            raise InvalidInputError(f"upsert needs the primary key ({', '.join(missing)}) on every row")
        with self._session(write=True) as session:
            writes.write_rows(
                session, self.table, columns, rows, on_conflict="update", conflict_columns=pk_names, matrices=matrices
            )
        return len(rows)

    def _as_rows(self, items: Any) -> Iterable[Any]:
        return [items] if isinstance(items, (self.model, Mapping)) else items

    @translating("updating rows")
    def update(
        self,
        ids: Iterable[Any] | None = None,
        *,
        where: Where | None = None,
        set: Mapping[str, Any],
    ) -> int:
        """Set columns (attribute or column names -> values) of the rows chosen by primary key and/or
        ``where`` (``where=[]``: every row) without sending their vectors; return how many changed. A vector
        in ``set`` is validated as :meth:`add` validates it; a primary key cannot be changed here."""
        if ids is None and where is None:
            raise InvalidArgumentError("update() needs ids, where=..., or where=[] to update every row")
        if not isinstance(set, Mapping) or not set:
            raise InvalidArgumentError("update() needs set={column: value, ...} with at least one column")
        values = dict(self._to_dict(set, 0))  # a copy: the vector is replaced by its checked form
        if any(c.name in values for c in self._primary_key):
            raise InvalidInputError("update() does not change primary keys: delete the row and add it again")
        vec = self._vector_column_name
        if values.get(vec) is not None or (vec in values and not self.table.c[vec].nullable):
            values[vec] = validation.query_vector(
                values[vec], vector_type=self.vector_type, dimension=self.dimension, metric=self.metric
            )
        changes = {self.table.c[name]: value for name, value in values.items()}
        return self._on_rows(update(self.table).where(*self._conditions(where)).values(changes), ids)

    @translating("deleting rows")
    def delete(
        self,
        ids: Iterable[Any] | None = None,
        *,
        where: Where | None = None,
    ) -> int:
        """Delete rows by primary key (tuples for a composite key) and/or by ``where``; return how many
        went. ``where=[]`` deletes every row."""
        if ids is None and where is None:
            raise InvalidArgumentError("delete() needs ids, where=..., or where=[] to delete every row")
        return self._on_rows(delete(self.table).where(*self._conditions(where)), ids)

    def _on_rows(self, stmt: Any, ids: Iterable[Any] | None) -> int:
        """Run an UPDATE or DELETE on the rows it matches with these primary keys (any, for ``None``);
        return how many it changed."""
        if ids is not None:
            keys = list(ids)
            if not keys:
                return 0
            stmt = stmt.where(self._key_in(keys))
        with self._session(write=True) as session:
            return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]

    # -- reads -------------------------------------------------------------------------------------

    def _key_in(self, keys: list[Any]) -> ColumnElement[bool]:
        if len(self._primary_key) == 1:
            return writes.key_in(self._primary_key[0], keys)
        return tuple_(*self._primary_key).in_(keys)  # composite keys: one parameter per key part

    def _one_key(self, ids: Any) -> bool:
        """Whether ``ids`` is one primary key (vectorpg 0.1's ``get(id)``) rather than a list of them."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            return True
        return len(self._primary_key) > 1 and isinstance(ids, tuple) and not any(isinstance(p, tuple) for p in ids)

    @routed
    @translating("reading rows")
    def get(self, ids: Iterable[Any]) -> list[ModelT]:
        """The rows with these primary keys, in the order asked (missing keys are left out).

        One key instead of a list (``get(7)``) returns that row or ``None``, as in vectorpg 0.1, with a
        :class:`DeprecationWarning`: pass a list.
        """
        if self._one_key(ids):
            warnings.warn(
                "Repository.get(id) is Repository.get([id]) now (a list, in the order asked); the single-key "
                "form goes in vectorpg 0.3",
                DeprecationWarning,
                stacklevel=3,
            )
            with self._session() as session:
                return session.get(self.model, ids)  # type: ignore[return-value, arg-type]
        keys = list(ids)
        if not keys:
            return []
        with self._session() as session:
            found = list(session.scalars(select(self.model).where(self._key_in(keys))))
        identity = inspect(self.model).primary_key_from_instance
        by_key = {tuple(identity(row)): row for row in found}
        return [by_key[k] for k in (key if isinstance(key, tuple) else (key,) for key in keys) if k in by_key]

    def get_many(self, ids: Iterable[Any]) -> list[ModelT]:
        """Deprecated spelling of :meth:`get` (removed in vectorpg 0.3)."""
        warnings.warn("Repository.get_many() is Repository.get() now", DeprecationWarning, stacklevel=2)
        return self.get(list(ids))

    @routed
    @translating("counting rows")
    def count(self, where: Where | None = None) -> int:
        """Number of rows (matching ``where``)."""
        stmt = select(func.count()).select_from(self.table).where(*self._conditions(where))
        with self._session() as session:
            return int(session.scalar(stmt) or 0)

    @property
    def vector_indexes(self) -> list[VectorIndex]:
        """The vector indexes declared on the model (``vector_index(...)`` in ``__table_args__``)."""
        return [spec for _, spec in self._declared_indexes()]

    def _declared_indexes(self) -> list[tuple[str, VectorIndex]]:
        return [
            (str(i.name), i.info["vectorpg"])
            for i in self.table.indexes
            if isinstance(i.info.get("vectorpg"), VectorIndex)
        ]

    # -- the search surface and its hooks (vectorpg.search.face) ------------------------------------

    def _query_vector(self, query: Any, metric: MetricSpec) -> Any:
        if isinstance(query, str):
            if self.embedder is None:
                raise InvalidArgumentError(
                    "a text query needs an embedder: Repository(..., embedder=vectorpg.SentenceTransformerEmbedder())"
                )
            query = off_loop(self.embedder.embed, [query])[0]
        return validation.query_vector(query, vector_type=self.vector_type, dimension=self.dimension, metric=metric)

    def _conditions(
        self, where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None
    ) -> list[ColumnElement[bool]]:
        if where is None:
            return []
        if isinstance(where, Mapping):
            raise InvalidArgumentError(
                "Repository takes SQLAlchemy expressions (Model.column == value); JSON filter dicts are for "
                "collections; compile one yourself with vectorpg.compile_filter(spec, Model.metadata_column)"
            )
        if isinstance(where, (list, tuple)):
            return list(where)
        return [where]  # type: ignore[list-item]

    def _where_key(self, where: ColumnElement[bool] | Sequence[ColumnElement[bool]] | None) -> Hashable | None:
        return clause_key(where)

    def _hit(self, row: Row) -> tuple[ModelT, float]:
        return row[0], float(row[-1])

    def _hybrid_hit(self, row: Row) -> tuple[ModelT, HybridScore]:
        return row[0], HybridScore.from_row(row)

    def _text_column(self, name: str | None) -> str:
        attribute = name or self.text_column
        if attribute is None or attribute not in self._attr_to_column:
            raise InvalidArgumentError(
                f"hybrid search needs the text attribute of {self.model.__name__}: "
                "Repository(..., text_column='body') or hybrid_search(..., text_column='body')"
            )
        if len(self._primary_key) != 1:
            raise InvalidArgumentError("hybrid search needs a single-column primary key")
        return self._attr_to_column[attribute]


def _entities(model: type[Any], table: Table) -> Callable[[FromClause, bool], list[Any]]:
    """What a search hit reads: the model, or the model read from a subquery of its table."""

    def columns(rows: FromClause, _with_vectors: bool) -> list[Any]:
        return [model if rows is table else aliased(model, rows)]

    return columns

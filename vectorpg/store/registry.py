"""The collection registry: ``vectorpg.collections`` rows and the partition of each collection.

Opening checks a collection's recorded dimension, metric and embedder. Creating and dropping call the SQL
functions ``vectorpg.create_collection`` / ``vectorpg.drop_collection`` (``sql/functions.sql``): the registry
row and the ``vectorpg.documents`` partition (with a CHECK on the dimension) change in one transaction,
under an advisory lock on the name, whether Python or plain SQL does it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import psycopg
from sqlalchemy import Engine, Text, bindparam, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vectorpg import validation
from vectorpg.awaiting import off_loop
from vectorpg.embeddings import DEFAULT_MODEL, Embedder, default_embedder
from vectorpg.errors import CollectionMismatchError, CollectionNotFoundError, InvalidArgumentError
from vectorpg.fields import FieldType
from vectorpg.metrics import MetricSpec, check_metric
from vectorpg.own_schema.install import has_store_schema, setup
from vectorpg.own_schema.tables import collections_table
from vectorpg.sqltypes import VectorType, column_type
from vectorpg.store.collection import Collection

CollectionT = TypeVar("CollectionT", bound=Collection)


def open_collection(
    engine: Engine,
    name: str,
    *,
    dimension: int | None,
    metric: str | None,
    embedder: Embedder | str | None,
    create: bool,
    kind: type[CollectionT],
    auto_index: bool = True,
    field_indexes: Mapping[str, str | FieldType] | None = None,
) -> CollectionT:
    """Open (or create) a collection as a ``kind`` (:class:`Collection` or a subclass); see
    :meth:`vectorpg.Database.collection`."""
    opened = _open(engine, name, dimension, metric, embedder, create, kind)
    opened.auto_index = auto_index
    if field_indexes:
        opened.ensure_field_indexes(field_indexes)
    return opened


def _open(
    engine: Engine,
    name: str,
    dimension: int | None,
    metric: str | None,
    embedder: Embedder | str | None,
    create: bool,
    kind: type[CollectionT],
) -> CollectionT:
    name = validation.collection_name(name)
    spec = check_metric(metric or "cosine", VectorType.VECTOR)
    if dimension is not None:
        column_type(VectorType.VECTOR, dimension)  # validates the range
    if isinstance(embedder, str) and embedder != "default":
        raise InvalidArgumentError(f"embedder is an Embedder object, None or 'default'; got {embedder!r}")
    if not create and not has_store_schema(engine):
        raise CollectionNotFoundError(name)
    setup(engine)
    record = _record(engine, name)
    if record is None:
        if not create:
            raise CollectionNotFoundError(name)
        resolved: Embedder | None
        if embedder == "default":
            resolved = None if dimension is not None else off_loop(default_embedder)
        else:
            resolved = embedder  # type: ignore[assignment]
        if dimension is None:
            if resolved is None:
                raise InvalidArgumentError("a collection without an embedder needs dimension=...")
            dimension = resolved.dimension
        elif resolved is not None and resolved.dimension != dimension:
            raise CollectionMismatchError(name, "dimension", resolved.dimension, dimension)
        try:
            _create(engine, name, dimension, spec, resolved.name if resolved else None)
        except DBAPIError as exc:  # another process created it meanwhile, with other settings
            if not isinstance(exc.orig, psycopg.errors.DuplicateTable) or (found := _record(engine, name)) is None:
                raise
            if found[0] != dimension:
                raise CollectionMismatchError(name, "dimension", found[0], dimension) from exc
            raise CollectionMismatchError(name, "metric", found[1], spec.metric.value) from exc
        return kind(engine, name, dimension=dimension, metric=spec.metric.value, embedder=resolved)

    rec_dimension, rec_metric, rec_embedder = record
    if dimension is not None and dimension != rec_dimension:
        raise CollectionMismatchError(name, "dimension", rec_dimension, dimension)
    if metric is not None and spec.metric.value != rec_metric:
        raise CollectionMismatchError(name, "metric", rec_metric, spec.metric.value)
    if embedder == "default":
        resolved = off_loop(default_embedder) if rec_embedder == DEFAULT_MODEL else None
    elif embedder is None:
        resolved = None
    else:
        assert not isinstance(embedder, str)
        if embedder.name != rec_embedder:
            raise CollectionMismatchError(name, "embedder", rec_embedder, embedder.name)
        if embedder.dimension != rec_dimension:
            raise CollectionMismatchError(name, "dimension", rec_dimension, embedder.dimension)
        resolved = embedder
    return kind(engine, name, dimension=rec_dimension, metric=rec_metric, embedder=resolved, embedder_name=rec_embedder)


def _record(engine: Engine, name: str) -> tuple[int, str, str | None] | None:
    c = collections_table.c
    with Session(engine) as session:
        row = session.execute(select(c.dimension, c.metric, c.embedder).where(c.name == name)).first()
    return (int(row[0]), str(row[1]), row[2]) if row else None


def _create(engine: Engine, name: str, dimension: int, spec: MetricSpec, embedder_name: str | None) -> None:
    # vectorpg.create_collection (sql/functions.sql) inserts the registry row and creates the partition,
    # under an advisory lock on the name; it does nothing if another process created the collection meanwhile.
    with Session(engine) as session, session.begin():
        session.execute(
            select(
                func.vectorpg.create_collection(
                    bindparam("name", name),
                    bindparam("dimension", int(dimension)),
                    bindparam("metric", spec.metric.value),
                    bindparam("embedder", embedder_name, type_=Text),
                )
            )
        )


def list_collections(engine: Engine) -> list[str]:
    """Names of the collections, sorted."""
    if not has_store_schema(engine):
        return []
    with Session(engine) as session:
        return list(session.scalars(select(collections_table.c.name).order_by(collections_table.c.name)))


def drop_collection(engine: Engine, name: str) -> bool:
    """Drop a collection's partition, tuning rows and registry row; return whether it existed."""
    name = validation.collection_name(name)
    if not has_store_schema(engine):
        return False
    with Session(engine) as session, session.begin():
        return bool(session.scalar(select(func.vectorpg.drop_collection(bindparam("name", name)))))

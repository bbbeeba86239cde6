"""Vector indexes as values: build specs, the SQLAlchemy ``Index`` they render to, and catalog read-back.

::

    class Item(Base):
        __tablename__ = "items"
        ...
        embedding: Mapped[np.ndarray] = vector_column(384)
        __table_args__ = (
            vector_index("embedding", HNSW(m=16, ef_construction=64), metric="cosine"),
            vector_index("embedding", HNSW(), metric="cosine", quantization="binary", dimension=384),
        )

A :class:`VectorIndex` is a frozen value (column, metric, build method, quantization, predicate). Declared
indexes live in the table's metadata, so ``create_all`` and Alembic see them; :func:`list_vector_indexes`
reads the same value back from ``pg_index`` / ``pg_am`` / ``pg_opclass`` / ``reloptions`` (never from the
index name). Build methods follow pgvector's limits: HNSW ``m`` 2-100, ``ef_construction`` from ``2*m`` to
1000; IVFFlat ``lists`` 1-32768.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from psycopg import sql
from sqlalchemy import Column, Index, Table, cast, column, event, func, text
from sqlalchemy.dialects.postgresql import dialect
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from vectorpg.errors import InvalidArgumentError, UnsupportedMetricError
from vectorpg.metrics import METRICS, Metric, metric_spec
from vectorpg.sqltypes import BIT, HALFVEC, VECTOR, VectorType, describe
from vectorpg.validation import derived_name, identifier


@dataclass(frozen=True)
class HNSW:
    """Build options of an HNSW graph index (pgvector defaults: m=16, ef_construction=64)."""

    m: int = 16
    ef_construction: int = 64

    method = "hnsw"

    def __post_init__(self) -> None:
        _check_int("m", self.m, 2, 100)
        _check_int("ef_construction", self.ef_construction, 4, 1000)
        if self.ef_construction < 2 * self.m:
            raise InvalidArgumentError(
                f"ef_construction ({self.ef_construction}) must be at least 2 * m ({2 * self.m})"
            )

    def options(self) -> dict[str, int]:
        """The ``WITH (...)`` storage parameters."""
        return {"m": self.m, "ef_construction": self.ef_construction}


@dataclass(frozen=True)
class IVFFlat:
    """Build options of an IVFFlat (k-means lists) index. Rule of thumb: rows/1000 lists up to 1M rows."""

    lists: int = 100

    method = "ivfflat"

    def __post_init__(self) -> None:
        _check_int("lists", self.lists, 1, 32768)

    def options(self) -> dict[str, int]:
        return {"lists": self.lists}

    @staticmethod
    def for_rows(rows: int) -> IVFFlat:
        """pgvector's recommendation: ``rows / 1000`` lists up to 1M rows, ``sqrt(rows)`` beyond."""
        lists = rows // 1000 if rows <= 1_000_000 else int(rows**0.5)
        return IVFFlat(lists=max(1, min(32768, lists)))


Method = HNSW | IVFFlat


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be an integer from {low} to {high}, got {value!r}")


class Quantization(str, Enum):
    """What the index stores instead of the full vector."""

    NONE = "none"
    #: ``embedding::halfvec(n)``: half the index size, dimensions up to 4,000
    HALFVEC = "halfvec"
    #: ``binary_quantize(embedding)::bit(n)`` with hamming distance, re-ranked on the full vectors
    BINARY = "binary"


#: Largest dimension pgvector can index, per indexed type.
INDEX_MAX_DIMENSIONS = {VectorType.VECTOR: 2000, VectorType.HALFVEC: 4000, VectorType.BIT: 64000}


@dataclass(frozen=True)
class VectorIndex:
    """A complete vector index: what is declared, and what :func:`list_vector_indexes` reads back."""

    column: str
    metric: Metric
    method: Method = field(default_factory=HNSW)
    quantization: Quantization = Quantization.NONE
    #: type of the indexed column (vector, halfvec, sparsevec, bit)
    vector_type: VectorType = VectorType.VECTOR
    #: dimension of the column; needed for quantized (expression) indexes
    dimension: int | None = None
    #: predicate of a partial index, as SQL text (as PostgreSQL prints it when read back)
    where: str | None = None
    #: index ``column::vector(dimension)``: for a column declared without a dimension (the store's)
    cast: bool = False

    def __post_init__(self) -> None:
        spec = metric_spec(self.metric)
        indexed = self.indexed_type
        if self.cast and (
            self.quantization is not Quantization.NONE
            or self.vector_type is not VectorType.VECTOR
            or not self.dimension
        ):
            raise InvalidArgumentError("cast=True indexes column::vector(dimension): give a dimension, no quantization")
        if self.quantization is not Quantization.NONE:
            if self.vector_type is not VectorType.VECTOR:
                raise InvalidArgumentError(f"quantized indexes need a vector column, not {self.vector_type.value}")
            if self.dimension is None:
                raise InvalidArgumentError(f"a {self.quantization.value} index needs the column's dimension=...")
        if self.quantization is Quantization.BINARY and spec.metric is not Metric.HAMMING:
            raise InvalidArgumentError(
                "a binary-quantized index orders by hamming distance (metric='hamming'); "
                "the search re-ranks its candidates with the query's own metric"
            )
        search = spec
        if indexed is not VectorType.SPARSEVEC or search.metric is not Metric.L1:
            search.opclass(indexed)  # raises for pairs pgvector does not support
        if isinstance(self.method, IVFFlat) and indexed not in search.ivfflat:
            raise UnsupportedMetricError(
                f"IVFFlat does not support {search.metric.value} on {indexed.value}; use HNSW",
                metric=search.metric.value,
                vector_type=indexed.value,
            )
        limit = INDEX_MAX_DIMENSIONS.get(indexed)
        if limit is not None and self.dimension is not None and self.dimension > limit:
            hint = {
                VectorType.VECTOR: "index a halfvec cast (quantization='halfvec', up to 4,000) or use "
                "binary quantization (quantization='binary', up to 64,000)",
                VectorType.HALFVEC: "use binary quantization (quantization='binary', up to 64,000)",
                VectorType.BIT: "reduce the dimension",
            }[indexed]
            raise InvalidArgumentError(
                f"{self.method.method} indexes on {indexed.value} hold at most {limit:,} dimensions, "
                f"this column has {self.dimension:,}: {hint}"
            )

    @property
    def indexed_type(self) -> VectorType:
        """The type the index stores (the column's, or the quantized one)."""
        return {
            Quantization.NONE: self.vector_type,
            Quantization.HALFVEC: VectorType.HALFVEC,
            Quantization.BINARY: VectorType.BIT,
        }[self.quantization]

    @property
    def opclass(self) -> str:
        return metric_spec(self.metric).opclass(self.indexed_type)

    def expression(self, target: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        """The indexed expression over ``target`` (default: the bare column name)."""
        col: ColumnElement[Any] = target if target is not None else column(self.column)
        if self.quantization is Quantization.HALFVEC:
            return cast(col, HALFVEC(self.dimension))
        if self.quantization is Quantization.BINARY:
            return cast(func.binary_quantize(col), BIT(self.dimension))
        if self.cast:
            return cast(col, VECTOR(self.dimension))
        return col

    def default_name(self, table: str) -> str:
        """``<table>_<column>_<metric>[_<quantization>]_idx``; long names end in a short hash instead."""
        parts = [table, self.column, self.metric.value]
        if self.quantization is not Quantization.NONE:
            parts.append(self.quantization.value)
        return derived_name(*parts, "idx")

    def to_index(self, name: str | None = None) -> Index:
        """A SQLAlchemy :class:`~sqlalchemy.Index` for ``__table_args__`` or ``Index.create()``."""
        label = "vectorpg_expr"
        if self.quantization is Quantization.NONE and not self.cast:
            expr: Any = self.column
            ops = {self.column: self.opclass}
        else:
            expr = self.expression().label(label)
            ops = {label: self.opclass}
        kwargs: dict[str, Any] = {
            "postgresql_using": self.method.method,
            "postgresql_with": self.method.options(),
            "postgresql_ops": ops,
        }
        if self.where is not None:
            kwargs["postgresql_where"] = text(self.where)
        index = Index(name, expr, **kwargs)
        index.info["vectorpg"] = self
        if name is None:

            @event.listens_for(index, "after_parent_attach")
            def _name(idx: Index, table: Table) -> None:
                idx.name = self.default_name(table.name)  # type: ignore[assignment]

        return index


def vector_index(
    column_or_name: str | Column[Any] | Any,
    method: Method | None = None,
    *,
    metric: str | Metric = "cosine",
    quantization: str | Quantization = Quantization.NONE,
    vector_type: str | VectorType | None = None,
    dimension: int | None = None,
    where: str | ColumnElement[bool] | None = None,
    name: str | None = None,
) -> Index:
    """Declare a vector index (HNSW by default) for a model's ``__table_args__`` or a :class:`Table`.

    ``column_or_name`` is a column name (then give ``vector_type`` if it is not ``vector``, and
    ``dimension`` for a quantized index) or a mapped column / attribute, whose type supplies both.
    ``where`` makes a partial index: SQL text, or an expression compiled with literal values.
    ``quantization="binary"`` indexes ``binary_quantize(column)`` by hamming distance (``metric`` is then
    ignored: searches re-rank the candidates with their own metric).
    """
    col = getattr(column_or_name, "expression", column_or_name)
    described = describe(col.type) if isinstance(col, ColumnElement) else None
    col_name = col.name if isinstance(col, ColumnElement) else col
    identifier(col_name, "column")
    vtype = (
        VectorType.parse(vector_type) if vector_type is not None else (described[0] if described else VectorType.VECTOR)
    )
    dim = dimension if dimension is not None else (described[1] if described else None)
    predicate = where
    if isinstance(where, ColumnElement):
        compiled = where.compile(dialect=dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
        predicate = str(compiled)
    quant = Quantization(quantization)
    spec = VectorIndex(
        column=col_name,
        metric=Metric.HAMMING if quant is Quantization.BINARY else metric_spec(metric).metric,
        method=method or HNSW(),
        quantization=quant,
        vector_type=vtype,
        dimension=dim,
        where=predicate,  # type: ignore[arg-type]
    )
    if name is not None:
        identifier(name, "index")
    return spec.to_index(name)


# -- catalog read-back -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexInfo:
    """A vector index as the catalog describes it."""

    name: str
    spec: VectorIndex
    valid: bool
    size_bytes: int


_OPCLASS_TO = {opclass: (spec.metric, vtype) for spec in METRICS.values() for vtype, opclass in spec.opclasses.items()}

_CATALOG_SQL = text(
    """
    SELECT i.relname AS name, am.amname AS method, opc.opcname AS opclass, i.reloptions AS options,
           ix.indexprs IS NOT NULL AS is_expression, pg_get_expr(ix.indpred, ix.indrelid) AS predicate,
           ix.indisvalid AS valid, pg_relation_size(i.oid) AS size, col.attname AS column_name,
           format_type(col.atttypid, col.atttypmod) AS column_type,
           format_type(ia.atttypid, ia.atttypmod) AS indexed_type
    FROM pg_index ix
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_am am ON am.oid = i.relam
    JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
    JOIN pg_attribute ia ON ia.attrelid = ix.indexrelid AND ia.attnum = 1
    -- the indexed vector column: the key column, or the vector column an expression depends on
    LEFT JOIN LATERAL (
        SELECT a.attname, a.atttypid, a.atttypmod
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = ix.indrelid AND t.typname IN ('vector', 'halfvec', 'sparsevec', 'bit')
          AND (a.attnum = ix.indkey[0] OR (ix.indkey[0] = 0 AND a.attnum IN (
                SELECT d.refobjsubid FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = ix.indexrelid AND d.refobjid = ix.indrelid)))
        ORDER BY a.attnum LIMIT 1
    ) col ON true
    WHERE ix.indrelid = to_regclass(:table) AND am.amname IN ('hnsw', 'ivfflat')
    ORDER BY i.relname
    """
)


def _dimension(type_text: str | None) -> int | None:
    if type_text and "(" in type_text:
        return int(type_text.split("(")[1].rstrip(")"))
    return None


def list_vector_indexes(conn: Connection, table: Table | str) -> list[IndexInfo]:
    """The HNSW / IVFFlat indexes of ``table`` with their full spec, validity and size, from the catalog."""
    if isinstance(table, Table):
        raw = conn.connection.driver_connection
        qualified = sql.Identifier(*([table.schema] if table.schema else []), table.name).as_string(raw)
    else:
        qualified = table
    out = []
    for row in conn.execute(_CATALOG_SQL, {"table": qualified}).mappings():
        metric, indexed = _OPCLASS_TO[row["opclass"]]
        options = dict(opt.split("=", 1) for opt in row["options"] or [])
        method: Method
        if row["method"] == "hnsw":
            method = HNSW(m=int(options.get("m", 16)), ef_construction=int(options.get("ef_construction", 64)))
        else:
            method = IVFFlat(lists=int(options.get("lists", 100)))
        column_type = VectorType.parse(str(row["column_type"]).split("(")[0])
        quantization = Quantization.NONE
        if row["is_expression"] and indexed is VectorType.BIT and column_type is VectorType.VECTOR:
            quantization = Quantization.BINARY
        elif row["is_expression"] and indexed is VectorType.HALFVEC and column_type is VectorType.VECTOR:
            quantization = Quantization.HALFVEC
        is_cast = bool(row["is_expression"]) and quantization is Quantization.NONE
        spec = VectorIndex(
            column=row["column_name"],
            metric=metric,
            method=method,
            quantization=quantization,
            vector_type=column_type,
            dimension=_dimension(row["column_type"]) or _dimension(row["indexed_type"]),
            where=row["predicate"],
            cast=is_cast,
        )
        out.append(IndexInfo(row["name"], spec, bool(row["valid"]), int(row["size"])))
    return out

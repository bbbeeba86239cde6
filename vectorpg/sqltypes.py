"""pgvector column types for SQLAlchemy, sent to the server in binary form.

The classes extend pgvector-python's SQLAlchemy types. pgvector's own bind processors turn every vector
into text (``'[0.1,0.2,...]'``); these pass pgvector value objects instead, which the psycopg binary dumpers
registered by :func:`vectorpg.connect` send in binary. Results come back as NumPy arrays (vector, halfvec),
:class:`pgvector.SparseVector` (sparsevec) or a NumPy bool array (bit).

A search's results read a vector or halfvec column as ``vector_send(column)``: pgvector's binary form,
which arrives as bytea (libpq decodes it in C) and becomes a NumPy array with one ``frombuffer``. Read
as text, every element is a decimal to parse: 0.2 ms per 384-d row, more than the whole search of ten
rows costs the server (``benchmarks/search_v2.py``). Only a search's own result subqueries
(:data:`RESULT_SOURCES`) are read so: PostgreSQL evaluates ``vector_send`` (a cheap function, to its
planner) below a sort, for every row sorted, so an application's ``ORDER BY ... LIMIT`` over many rows
would copy every vector it sorts; there the text form costs only the rows returned.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np
import pgvector
from pgvector import sqlalchemy as pgsa
from sqlalchemy import func
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine, UserDefinedType

from vectorpg.errors import InvalidArgumentError


class VectorType(str, Enum):
    """The four pgvector column types."""

    VECTOR = "vector"
    HALFVEC = "halfvec"
    SPARSEVEC = "sparsevec"
    BIT = "bit"

    @classmethod
    def parse(cls, value: str | VectorType) -> VectorType:
        """Return the member for ``value`` (case-insensitive), or raise :class:`InvalidArgumentError`."""
        if isinstance(value, VectorType):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise InvalidArgumentError(f"unknown vector type {value!r}; use one of: {names}") from None


#: Largest dimension each type can store (pgvector's limits; the bit limit is its varbit length).
MAX_DIMENSIONS = {
    VectorType.VECTOR: 16_000,
    VectorType.HALFVEC: 16_000,
    VectorType.SPARSEVEC: 1_000_000_000,
    VectorType.BIT: 83_886_080,
}


def _to_numpy(value: Any) -> Any:
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, str):  # text result format without a registered loader
        return np.array([float(v) for v in value[1:-1].split(",") if v], dtype=np.float32)
    return np.asarray(value.to_numpy(), dtype=np.float32)


class VectorWire(UserDefinedType[Any]):
    """The result type of ``vector_send(column)`` / ``halfvec_send(column)``: a NumPy float32 array from
    pgvector's binary form (a 4-byte header of dimension and a reserved word, then big-endian elements)."""

    cache_ok = True

    def __init__(self, element: str = ">f4") -> None:
        self.element = element

    def get_col_spec(self, **kw: Any) -> str:
        return "BYTEA"

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return wire_reader(self.element)


def wire_reader(element: str) -> Callable[[Any], Any]:
    """bytes in pgvector's binary form -> a float32 NumPy array (``None`` stays ``None``)."""
    dtype = np.dtype(element)

    def read(value: Any) -> Any:
        if value is None:
            return None
        return np.frombuffer(value, dtype=dtype, offset=4).astype(np.float32)

    return read


#: the subqueries of vectorpg's search statements (:mod:`vectorpg.search.statements`) whose rows are the
#: rows a search returns (or its few re-ranked candidates): vectors read from them come in binary form
RESULT_SOURCES = frozenset({"nearest", "candidates", "ranked"})


def _wire(colexpr: Any, function: Any, element: str) -> Any:
    """``function(colexpr)`` read as :class:`VectorWire` for a column of a search's result rows."""
    if getattr(getattr(colexpr, "table", None), "name", None) in RESULT_SOURCES:
        return function(colexpr, type_=VectorWire(element))
    return colexpr


class VECTOR(pgsa.VECTOR):
    """``vector(dim)``: single-precision floats."""

    cache_ok = True
    value_class: Any = pgvector.Vector

    def bind_processor(self, dialect: Dialect) -> Any:
        value_class = self.value_class

        def process(value: Any) -> Any:
            if value is None or isinstance(value, value_class):
                return value
            return value_class(np.asarray(value, dtype=np.float32))

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return _to_numpy

    def column_expression(self, colexpr: Any) -> Any:
        return _wire(colexpr, func.vector_send, ">f4")


class HALFVEC(pgsa.HALFVEC):
    """``halfvec(dim)``: half-precision floats (half the storage, dimension up to 4,000 in an index)."""

    cache_ok = True
    bind_processor = VECTOR.bind_processor
    value_class: Any = pgvector.HalfVector

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        return _to_numpy

    def column_expression(self, colexpr: Any) -> Any:
        return _wire(colexpr, func.halfvec_send, ">f2")


class SPARSEVEC(pgsa.SPARSEVEC):
    """``sparsevec(dim)``: only non-zero elements are stored."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        dim = self.dim

        def process(value: Any) -> Any:
            if value is None or isinstance(value, pgvector.SparseVector):
                return value
            if isinstance(value, dict):
                if dim is None:
                    raise InvalidArgumentError("a dict sparse vector needs a column with a dimension")
                return pgvector.SparseVector(value, dim)
            return pgvector.SparseVector(np.asarray(value, dtype=np.float32))

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        def process(value: Any) -> Any:
            if value is None or isinstance(value, pgvector.SparseVector):
                return value
            return pgvector.SparseVector.from_text(value)

        return process


class BIT(pgsa.BIT):
    """``bit(length)``: binary vectors for hamming and jaccard distance."""

    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.dim = length

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or isinstance(value, pgvector.Bit):
            return value
        if isinstance(value, np.ndarray) and value.dtype != np.bool_:
            value = value.astype(bool)
        return pgvector.Bit(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, pgvector.Bit):
            return value.to_numpy()
        return np.array([c == "1" for c in str(value)], dtype=bool)


class EncodedVector(bytes):
    """A vector already in pgvector's binary wire format (``vector`` or ``halfvec``): COPY sends it as is."""


def encode_block(
    matrix: np.ndarray, *, half: bool = False, field: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """Rows of a float matrix in pgvector's binary format, encoded in one NumPy pass, as a ``(n, 4 + width)``
    byte matrix: a big-endian int16 dimension, an int16 0, then big-endian float32 (``vector``) or float16
    (``halfvec``) values. ``field``: each row as a binary COPY field, its int32 length in front. ``out``:
    a ``uint8`` matrix of that shape (a slice of a larger one, say) to write into instead of a new one."""
    n, dim = matrix.shape
    width = (2 if half else 4) * dim
    at = 4 if field else 0
    block = np.empty((n, at + 4 + width), dtype=np.uint8) if out is None else out
    if field:
        block[:, :4] = np.frombuffer(np.array([4 + width], dtype=">i4").tobytes(), dtype=np.uint8)
    block[:, at : at + 4] = np.frombuffer(np.array([dim, 0], dtype=">u2").tobytes(), dtype=np.uint8)
    block[:, at + 4 :].view(">f2" if half else ">f4")[...] = matrix  # converted straight into place
    return block


_SQLALCHEMY_TYPES: dict[VectorType, Callable[[int | None], TypeEngine[Any]]] = {
    VectorType.VECTOR: VECTOR,
    VectorType.HALFVEC: HALFVEC,
    VectorType.SPARSEVEC: SPARSEVEC,
    VectorType.BIT: BIT,
}


def column_type(vector_type: str | VectorType, dimension: int | None) -> TypeEngine[Any]:
    """The SQLAlchemy type for a pgvector column of ``vector_type`` with ``dimension`` elements."""
    vtype = VectorType.parse(vector_type)
    if dimension is not None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise InvalidArgumentError(f"dimension must be a positive integer, got {dimension!r}")
        if dimension > MAX_DIMENSIONS[vtype]:
            raise InvalidArgumentError(
                f"{vtype.value} columns hold at most {MAX_DIMENSIONS[vtype]:,} dimensions, got {dimension:,}"
            )
    return _SQLALCHEMY_TYPES[vtype](dimension)


def describe(sa_type: TypeEngine[Any]) -> tuple[VectorType, int | None] | None:
    """``(vector type, dimension)`` of a SQLAlchemy column type, or ``None`` if it is no pgvector type."""
    checks: list[tuple[type[Any], VectorType]] = [
        (pgsa.VECTOR, VectorType.VECTOR),
        (pgsa.HALFVEC, VectorType.HALFVEC),
        (pgsa.SPARSEVEC, VectorType.SPARSEVEC),
        (pgsa.BIT, VectorType.BIT),
    ]
    for cls, vtype in checks:
        if isinstance(sa_type, cls):
            if vtype is VectorType.BIT:
                return vtype, getattr(sa_type, "dim", None) or getattr(sa_type.impl, "length", None)
            return vtype, sa_type.dim
    return None

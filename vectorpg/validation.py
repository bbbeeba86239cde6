"""Checks that run on every vector before anything reaches the server.

A batch is checked whole before any row is written; the first bad row raises a typed error that names
its index. Dense vectors come out as one C-contiguous float32 matrix (cheap to send in binary).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pgvector

from vectorpg.errors import DimensionMismatchError, InvalidArgumentError, InvalidIdentifierError, InvalidVectorError
from vectorpg.metrics import MetricSpec
from vectorpg.sqltypes import VectorType

# Largest finite magnitude per storage type: float4 for vector/sparsevec, float16 for halfvec.
_FLOAT_LIMIT = {
    VectorType.VECTOR: float(np.finfo(np.float32).max),
    VectorType.SPARSEVEC: float(np.finfo(np.float32).max),
    VectorType.HALFVEC: float(np.finfo(np.float16).max),
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COLLECTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


def identifier(name: object, kind: str = "identifier", *, max_length: int = 63) -> str:
    """Return ``name`` if it is a plain SQL identifier (letters, digits, ``_``; 63 bytes at most).

    Names are still quoted with ``psycopg.sql.Identifier`` or SQLAlchemy when they reach SQL; this check
    exists so that a hostile or accidental name is refused with a clear error instead of creating
    something unexpected.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or len(name.encode()) > max_length:
        raise InvalidIdentifierError(
            f"invalid {kind} name {name!r}: use letters, digits and underscores, starting with a letter "
            f"or underscore, at most {max_length} characters",
            name=name,
            kind=kind,
        )
    return name


def json_too_large(value: object, *, max_depth: int, max_bytes: int) -> str | None:
    """Why ``value`` (dicts, lists, scalars) exceeds ``max_depth`` levels or about ``max_bytes`` of JSON text,
    or ``None``. Walks without recursion: a 100,000-deep value is an answer, not a ``RecursionError``."""
    stack: list[tuple[object, int]] = [(value, 0)]
    size = 0
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, Mapping):
            size += 2 + 4 * len(item)
            for key, child in item.items():
                size += len(str(key).encode("utf-8", "replace"))
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            size += 2 + 2 * len(item)
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            size += len(item.encode("utf-8", "replace")) + 2
        else:
            size += len(repr(item))
        if size > max_bytes:
            return f"more than {max_bytes} bytes of JSON"
    return None


def derived_name(*parts: str) -> str:
    """A name vectorpg makes for an object (an index of a table): the parts joined by ``_``, always a valid
    identifier of at most 63 bytes. When a part has other characters (``my-docs``) or the name is too
    long, it is cut and ends in a hash of the full name, so two different sources never share a name."""
    name = "_".join(parts)
    if _IDENTIFIER.match(name) and len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    head, tail = ("_".join(parts[:-1]), parts[-1][:4]) if len(parts) > 1 else (name, "")
    clean = re.sub(r"[^A-Za-z0-9_]", "_", head)
    if not (clean[:1].isalpha() or clean[:1] == "_"):
        clean = "x" + clean
    return "_".join(p for p in (clean[:50], digest, re.sub(r"[^A-Za-z0-9_]", "_", tail)) if p)


def collection_name(name: object) -> str:
    """Validate a collection name: a letter, then letters, digits, ``_`` or ``-``; 48 characters at most."""
    if not isinstance(name, str) or not _COLLECTION.match(name) or len(name) > 48:
        raise InvalidIdentifierError(
            f"invalid collection name {name!r}: use a letter followed by letters, digits, '_' or '-', "
            "at most 48 characters",
            name=name,
            kind="collection",
        )
    return name


def positive_k(k: object) -> int:
    """Validate the number of neighbours asked for."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if k > 100_000:
        raise InvalidArgumentError(f"k={k} is too large; ask for at most 100000 neighbours")
    return int(k)


def max_distance(value: object) -> float | None:
    """A search's ``max_distance``: ``None``, or a finite number (a distance in the metric's own terms)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidArgumentError(f"max_distance must be a finite number (a distance), got {value!r}")
    return float(value)


def _row_array(value: Any, row: int | None) -> np.ndarray:
    """One vector as a 1-d float64 array, or a precise error about why it is not one."""
    if isinstance(value, (pgvector.Vector, pgvector.HalfVector)):
        value = value.to_numpy()
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise InvalidVectorError(f"expected a sequence of numbers, got {type(value).__name__}", row=row, reason="type")
    try:
        arr = np.asarray(value)
    except ValueError:
        raise InvalidVectorError("ragged or nested values", row=row, reason="ragged") from None
    if arr.dtype.kind not in "fiu":
        raise InvalidVectorError("non-numeric values (numbers expected)", row=row, reason="type")
    if arr.ndim != 1:
        raise InvalidVectorError(f"expected a flat vector, got an array of shape {arr.shape}", row=row, reason="shape")
    return arr.astype(np.float64, copy=False)


def _check_dense_row(
    arr: np.ndarray, row: int | None, dimension: int | None, spec: MetricSpec | None, vtype: VectorType
) -> None:
    if arr.size == 0:
        raise InvalidVectorError("empty vector", row=row, reason="empty")
    if dimension is not None and arr.size != dimension:
        raise DimensionMismatchError(expected=dimension, actual=int(arr.size), row=row)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidVectorError(
            f"element {bad} is {arr[bad]} (NaN and infinity cannot be stored)", row=row, reason="nonfinite"
        )
    limit = _FLOAT_LIMIT.get(vtype)
    if limit is not None and np.any(np.abs(arr) > limit):
        bad = int(np.flatnonzero(np.abs(arr) > limit)[0])
        raise InvalidVectorError(
            f"element {bad} = {arr[bad]:g} is out of range for {vtype.value} (|x| <= {limit:g})",
            row=row,
            reason="range",
        )
    if spec is not None and spec.rejects_zero and not np.any(arr):
        raise InvalidVectorError(
            f"zero vector has no direction, so {spec.metric.value} distance is undefined for it",
            row=row,
            reason="zero",
        )


def dense_vectors(
    values: Any,
    *,
    dimension: int | None,
    metric: MetricSpec | None = None,
    vector_type: VectorType = VectorType.VECTOR,
) -> np.ndarray:
    """Validate a batch of dense vectors; return a float32 matrix of shape ``(n, dimension)``.

    Raises :class:`InvalidVectorError` (or :class:`DimensionMismatchError`) naming the first bad row.
    """
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype.kind in "fiu":
        matrix = values
    elif _uniform_arrays(values):  # a list of equal-length numeric arrays: one copy, no per-row work
        matrix = np.array(values)
    else:
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise InvalidArgumentError(f"expected a sequence of vectors, got {type(values).__name__}")
        rows = [_row_array(v, i) for i, v in enumerate(values)]
        if not rows:
            return np.empty((0, dimension or 0), dtype=np.float32)
        expected = dimension if dimension is not None else rows[0].size
        for i, r in enumerate(rows):
            if r.size == 0:
                raise InvalidVectorError("empty vector", row=i, reason="empty")
            if r.size != expected:
                raise DimensionMismatchError(expected=expected, actual=int(r.size), row=i)
        matrix = np.stack(rows)
    if matrix.shape[0] == 0:
        return np.empty((0, dimension or 0), dtype=np.float32)
    size_ok = matrix.shape[1] > 0 and (dimension is None or matrix.shape[1] == dimension)
    limit = _FLOAT_LIMIT.get(vector_type, np.inf)
    if size_ok and matrix.dtype == np.float32 and limit >= np.finfo(np.float32).max and _plainly_good(matrix):
        return np.ascontiguousarray(matrix)
    # One vectorised pass finds whether any row is bad; only then look for which one.
    finite = np.isfinite(matrix).all(axis=1)
    in_range: np.ndarray
    if matrix.dtype.kind == "f" and np.finfo(matrix.dtype).max <= limit:
        in_range = np.ones(len(matrix), bool)  # every finite value of this dtype fits
    else:
        wide = matrix.astype(np.float64, copy=False)
        in_range = np.asarray((np.abs(np.where(np.isfinite(wide), wide, 0)) <= limit).all(axis=1))
    nonzero = matrix.any(axis=1) if metric is not None and metric.rejects_zero else np.ones(len(matrix), bool)
    if not size_ok or not (finite.all() and in_range.all() and nonzero.all()):
        bad_rows = np.flatnonzero(~(finite & in_range & nonzero)) if size_ok else [0]
        first_bad = int(bad_rows[0]) if len(bad_rows) else 0
        _check_dense_row(matrix[first_bad].astype(np.float64), first_bad, dimension, metric, vector_type)
    return np.ascontiguousarray(matrix, dtype=np.float32)


def _plainly_good(matrix: np.ndarray) -> bool:
    """Whether every row of a float32 matrix is finite and non-zero, told by one pass over it (its rows'
    squared norms): a NaN or an infinity makes a row's NaN or infinite, and only a zero row (or values
    whose squares overflow or underflow float32) makes it 0 or infinite otherwise. ``False`` is not a
    verdict: the exact checks then look."""
    squares = np.einsum("ij,ij->i", matrix, matrix)
    return bool(np.isfinite(squares).all() and (squares > 0).all())


def _uniform_arrays(values: Any) -> bool:
    if not isinstance(values, (list, tuple)) or not values:
        return False
    first = values[0]
    if type(first) is not np.ndarray or first.ndim != 1 or first.size == 0:
        return False
    size, kind = first.size, "fiu"
    return all(type(v) is np.ndarray and v.ndim == 1 and v.size == size and v.dtype.kind in kind for v in values)


def sparse_vectors(
    values: Sequence[Any], *, dimension: int | None, metric: MetricSpec | None = None
) -> list[pgvector.SparseVector]:
    """Validate sparse vectors given as :class:`pgvector.SparseVector`, ``{index: value}`` dicts or dense lists."""
    out: list[pgvector.SparseVector] = []
    for row, value in enumerate(values):
        if isinstance(value, pgvector.SparseVector):
            vec = value
        elif isinstance(value, dict):
            if dimension is None:
                raise InvalidVectorError("a {index: value} sparse vector needs a dimension", row=row)
            for index in value:
                if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                    raise InvalidVectorError(f"index {index!r} is not an integer", row=row, reason="type")
                if not 0 <= index < dimension:
                    raise InvalidVectorError(f"index {index} is outside 0..{dimension - 1}", row=row, reason="range")
            dense = _row_array(list(value.values()), row) if value else np.zeros(0)
            _check_finite_sparse(dense, row)
            vec = pgvector.SparseVector({int(k): float(v) for k, v in value.items()}, dimension)
        else:
            arr = _row_array(value, row)
            _check_dense_row(arr, row, dimension, None, VectorType.SPARSEVEC)
            vec = pgvector.SparseVector(arr.astype(np.float32))
        if vec.dimensions() == 0:
            raise InvalidVectorError("empty vector", row=row, reason="empty")
        if dimension is not None and vec.dimensions() != dimension:
            raise DimensionMismatchError(expected=dimension, actual=vec.dimensions(), row=row)
        _check_finite_sparse(np.asarray(vec.values(), dtype=np.float64), row)
        if metric is not None and metric.rejects_zero and not any(vec.values()):
            raise InvalidVectorError(
                f"zero vector has no direction, so {metric.metric.value} distance is undefined for it",
                row=row,
                reason="zero",
            )
        out.append(vec)
    return out


def _check_finite_sparse(values: np.ndarray, row: int) -> None:
    if not np.all(np.isfinite(values)):
        raise InvalidVectorError("NaN and infinity cannot be stored", row=row, reason="nonfinite")
    if np.any(np.abs(values) > _FLOAT_LIMIT[VectorType.SPARSEVEC]):
        raise InvalidVectorError("value out of range for a 4-byte float", row=row, reason="range")


def bit_vectors(
    values: Sequence[Any], *, dimension: int | None, metric: MetricSpec | None = None
) -> list[pgvector.Bit]:
    """Validate bit vectors given as ``'0101'`` strings, bool / 0-1 sequences or :class:`pgvector.Bit`."""
    out: list[pgvector.Bit] = []
    for row, value in enumerate(values):
        try:
            if isinstance(value, pgvector.Bit):
                bits = value.to_numpy()
            elif isinstance(value, str):
                if not set(value) <= {"0", "1"}:
                    raise ValueError
                bits = np.array([c == "1" for c in value], dtype=bool)
            else:
                arr = np.asarray(value)
                if arr.ndim != 1 or arr.dtype.kind not in "biu" or (arr.size and arr.max() > 1):
                    raise ValueError
                bits = arr.astype(bool)
        except (ValueError, TypeError):
            raise InvalidVectorError(
                "bit vectors are '0101' strings or sequences of booleans / 0-1 integers",
                row=row,
                reason="type",
            ) from None
        if bits.size == 0:
            raise InvalidVectorError("empty vector", row=row, reason="empty")
        if dimension is not None and bits.size != dimension:
            raise DimensionMismatchError(expected=dimension, actual=int(bits.size), row=row)
        if metric is not None and metric.rejects_zero and not bits.any():
            raise InvalidVectorError(
                f"all-zero bit vector: {metric.metric.value} distance is undefined for it",
                row=row,
                reason="zero",
            )
        out.append(pgvector.Bit(bits))
    return out


def vectors(values: Any, *, vector_type: VectorType, dimension: int | None, metric: MetricSpec | None) -> Any:
    """Validate a batch for a column of ``vector_type``: a float32 matrix, or a list of pgvector values."""
    if vector_type is VectorType.SPARSEVEC:
        return sparse_vectors(list(values), dimension=dimension, metric=metric)
    if vector_type is VectorType.BIT:
        return bit_vectors(list(values), dimension=dimension, metric=metric)
    return dense_vectors(values, dimension=dimension, metric=metric, vector_type=vector_type)


def query_vector(value: Any, *, vector_type: VectorType, dimension: int | None, metric: MetricSpec | None) -> Any:
    """Validate one query vector; errors name no row."""
    if (  # the common case, a float32 array of the right size: three NumPy checks, no batch built
        type(value) is np.ndarray
        and value.dtype == np.float32
        and value.ndim == 1
        and value.size == dimension
        and vector_type in (VectorType.VECTOR, VectorType.HALFVEC)
        and bool(np.isfinite(value).all())
        and (vector_type is VectorType.VECTOR or bool((np.abs(value) <= _FLOAT_LIMIT[vector_type]).all()))
        and not (metric is not None and metric.rejects_zero and not value.any())
    ):
        return value.copy()  # C-contiguous, and not the caller's array
    try:
        batch = vectors([value], vector_type=vector_type, dimension=dimension, metric=metric)
    except InvalidVectorError as exc:
        exc.row = None
        exc.args = (str(exc).removeprefix("row 0: "),)
        raise
    return batch[0]

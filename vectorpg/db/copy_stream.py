"""The binary COPY stream of a batch, built column by column in NumPy passes (:func:`binary_stream`), and
:class:`JsonDocument`, JSON encoded once, which the stream and parameters send as it is."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
from psycopg.abc import Buffer
from psycopg.types.json import Jsonb

from vectorpg.sqltypes import encode_block


def _as_is(encoded: bytes) -> bytes:
    return encoded


class JsonDocument(Jsonb):
    """A JSON value encoded once (UTF-8 JSON text): psycopg sends the bytes as they are (``jsonb`` parameters
    and COPY), and :meth:`value` decodes them as PostgreSQL stores them (tuples as lists, keys as strings)."""

    __slots__ = ()

    def __init__(self, encoded: bytes) -> None:  # what Jsonb's own does, without the call to it
        self.obj = encoded
        self.dumps = _as_is

    def value(self) -> Any:
        return json.loads(self.obj)


#: fixed-width types the vectorised encoder writes: oid -> NumPy big-endian dtype
_FIXED = {20: ">i8", 23: ">i4", 21: ">i2", 701: ">f8", 700: ">f4", 16: "u1"}
#: text, varchar, bpchar, name; bytea; jsonb
_TEXT = {25, 1043, 1042, 19}
_BYTEA, _JSONB = 17, 3802
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_LENGTH = struct.Struct(">i").pack
_NULL = _LENGTH(-1)


#: about this many bytes of COPY data are built at a time
CHUNK_BYTES = 4 << 20


def binary_stream(
    oids: list[int], rows: list[Any], blocks: dict[int, tuple[np.ndarray, bool]]
) -> tuple[list[int], Iterator[Buffer]] | None:
    """The binary COPY stream in chunks of about :data:`CHUNK_BYTES`, built column by column: dense vector
    matrices and fixed-width numbers in NumPy passes, text, bytea and encoded JSON (:class:`JsonDocument`)
    with their lengths, NULLs as such; ``None`` when a column holds anything else (psycopg then formats row
    by row, with its own checks). Every value is checked before the first chunk: a stream that starts ends.

    Returns the order of the columns in the stream with it: the fixed-width ones first, so that each row's
    field count and fixed fields are one block (one piece a row, not one a field, to join)."""
    n = len(rows)
    fixed: list[tuple[int, int, Fill]] = []  # (position, bytes a row, fill)
    variable: list[tuple[int, list[bytes]]] = []
    for position, oid in enumerate(oids):
        if position in blocks:
            matrix, half = blocks[position]
            fixed.append((position, 8 + matrix.shape[1] * (2 if half else 4), partial(_vector_fields, matrix, half)))
            continue
        values = [row[position] for row in rows]
        if oid in _FIXED:
            array = _fixed_column(oid, values)
            if array is None:
                return None
            fixed.append((position, array.shape[1], partial(_sliced, array)))
        else:
            strings = _variable_column(oid, values)
            if strings is None:
                return None
            variable.append((position, strings))
    fixed_width = 2 + sum(w for _, w, _ in fixed)
    step = max(1, CHUNK_BYTES // (fixed_width + 20 * len(variable)))
    header = np.frombuffer(struct.pack(">h", len(oids)), dtype=np.uint8)

    def chunk(start: int, stop: int) -> Buffer:
        """Rows ``start:stop``: their fixed fields written in place into one byte matrix (no copy of it
        made), then each row's piece of it joined with its variable fields."""
        block = np.empty((stop - start, fixed_width), dtype=np.uint8)
        block[:, :2] = header
        at = 2
        for _, width, fill in fixed:
            fill(start, stop, block[:, at : at + width])
            at += width
        view = block.data.cast("B")
        if not variable:
            return view
        pieces = [view[i : i + fixed_width] for i in range(0, len(view), fixed_width)]
        return memoryview(b"".join(chain.from_iterable(zip(pieces, *[v[start:stop] for _, v in variable]))))

    order = [p for p, _, _ in fixed] + [p for p, _ in variable]
    return order, chain((_SIGNATURE,), (chunk(a, min(a + step, n)) for a in range(0, n, step)), (b"\xff\xff",))


#: writes rows ``start:stop`` of a column's fields into a ``(stop - start, width)`` byte matrix
Fill = Callable[[int, int, np.ndarray], None]


def _vector_fields(matrix: np.ndarray, half: bool, start: int, stop: int, out: np.ndarray) -> None:
    encode_block(matrix[start:stop], half=half, field=True, out=out)


def _sliced(column: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
    out[...] = column[start:stop]


def _prefixed(block: np.ndarray) -> np.ndarray:
    """``(n, width)`` bytes with each row's int32 length in front."""
    out = np.empty((block.shape[0], 4 + block.shape[1]), dtype=np.uint8)
    out[:, :4] = np.frombuffer(_LENGTH(block.shape[1]), dtype=np.uint8)
    out[:, 4:] = block
    return out


def _fixed_column(oid: int, values: list[Any]) -> np.ndarray | None:
    if not all(k in (int, float, bool) or issubclass(k, np.generic) for k in set(map(type, values))):
        return None  # NULLs or other types
    try:
        array = np.asarray(values, dtype=_FIXED[oid])
    except (OverflowError, ValueError, TypeError):
        return None
    if oid != 16 and array.dtype.kind in "iu" and not np.array_equal(array, np.asarray(values)):
        return None  # out of range for the column's integer width: let PostgreSQL say so
    return _prefixed(array.reshape(len(values), 1).view(np.uint8))


def _variable_column(oid: int, values: list[Any]) -> list[bytes] | None:
    if oid in _TEXT and set(map(type, values)) == {str}:  # the usual text column: no Python loop a value
        if "\x00" in "".join(values):
            return None  # psycopg says what is wrong with the string
        try:
            encoded = list(map(str.encode, values))
        except UnicodeEncodeError:
            return None
        return list(map(bytes.__add__, map(_LENGTH, map(len, encoded)), encoded))
    out = []
    try:
        for value in values:
            if value is None:
                out.append(_NULL)
                continue
            if oid in _TEXT and type(value) is str and "\x00" not in value:
                data = value.encode("utf-8")
            elif oid == _JSONB and type(value) is JsonDocument:
                data = b"\x01" + value.obj
            elif oid == _BYTEA and type(value) is bytes:
                data = value
            else:
                return None
            out.append(_LENGTH(len(data)) + data)
    except UnicodeEncodeError:
        return None  # psycopg says what is wrong with the string
    return out

"""Field indexes: typed btree indexes on metadata keys, so that PostgreSQL plans JSON filters like columns.

A JSONB containment filter (``metadata @> '{"section": "libs"}'``) is served by the GIN index, but
PostgreSQL estimates it with a fixed guess (the same row count for every value), and the GIN bitmap scan
has a fixed cost of its own. A *field index* is a btree on one typed expression of one key::

    keyword   metadata -> 'section'                                        equality and $in of any scalar
    number    CASE WHEN jsonb_typeof(metadata -> 'size') = 'number'
                   THEN (metadata -> 'size')::numeric END                  ranges, equality and $in of numbers
    text      CASE WHEN jsonb_typeof(metadata -> 'day') = 'string'
                   THEN metadata -> 'day' #>> '{}' END COLLATE "C"          ranges of strings (ISO dates) by code point

``ANALYZE`` keeps statistics on each expression (most common values, histogram), and the filter compiler
(:mod:`vectorpg.filters`) writes a condition on an indexed key as exactly that expression: the estimate and
the scan are then as good as a typed column's, and the results are the same as without the index (each
expression matches precisely the rows the filter language says). ``integer`` and ``float`` are names of
``number``; ``boolean`` of ``keyword``; ``timestamp`` and ``date`` of ``text``.

An index expression needs the key as a constant: keys are validated identifiers (the filter language's
own rule) and are written as a quoted literal by :class:`psycopg.sql.Literal`; values stay bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from psycopg import sql
from sqlalchemy import Numeric, Text, case, func, literal_column
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from vectorpg.errors import InvalidArgumentError

#: a metadata key: identifiers joined by dots (the filter language's rule, :mod:`vectorpg.filters`)
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,15}\Z")


class FieldType(str, Enum):
    """The kind of a field index (see the module docstring)."""

    KEYWORD = "keyword"
    NUMBER = "number"
    TEXT = "text"


_ALIASES = {
    "keyword": FieldType.KEYWORD,
    "boolean": FieldType.KEYWORD,
    "bool": FieldType.KEYWORD,
    "number": FieldType.NUMBER,
    "integer": FieldType.NUMBER,
    "int": FieldType.NUMBER,
    "float": FieldType.NUMBER,
    "text": FieldType.TEXT,
    "timestamp": FieldType.TEXT,
    "date": FieldType.TEXT,
}

#: field indexes of one table: dotted key -> type
Fields = Mapping[str, FieldType]


def field_type(value: str | FieldType) -> FieldType:
    """The :class:`FieldType` for a name (``"keyword"``, ``"integer"``, ...); an error naming the choices."""
    if isinstance(value, FieldType):
        return value
    found = _ALIASES.get(str(value).lower()) if isinstance(value, str) else None
    if found is None:
        raise InvalidArgumentError(f"field index type must be one of {', '.join(_ALIASES)}; got {value!r}")
    return found


@dataclass(frozen=True)
class FieldIndex:
    """One field index of a table, as read from the catalog."""

    name: str
    key: str
    type: FieldType
    valid: bool = True


def key_parts(key: object) -> list[str]:
    """The parts of a metadata key (``"author.name"``), or :class:`InvalidArgumentError` if it is not one."""
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidArgumentError(
            f"invalid metadata key {key!r}: use identifiers (letters, digits, '_') joined by '.'"
        )
    return key.split(".")


def _constant(text: str) -> ColumnElement[Any]:
    return literal_column(sql.Literal(text).as_string(None), type_=Text)


def value_at(column: ColumnElement[Any], parts: list[str]) -> ColumnElement[Any]:
    """``column -> 'a' -> 'b'``: the JSONB value at a key path, the key written as a constant."""
    value = column
    for part in parts:
        value = value.op("->", return_type=JSONB)(_constant(part))
    return value


def expression(column: ColumnElement[Any], parts: list[str], kind: FieldType) -> ColumnElement[Any]:
    """The indexed expression of a key path (the same text in the index and in every filter on it)."""
    value = value_at(column, parts)
    if kind is FieldType.KEYWORD:
        return value
    if kind is FieldType.NUMBER:
        return case((func.jsonb_typeof(value) == _constant("number"), value.cast(Numeric)))
    as_text = value.op("#>>", return_type=Text)(literal_column("'{}'::text[]"))
    return case((func.jsonb_typeof(value) == _constant("string"), as_text)).collate("C")

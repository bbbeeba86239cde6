"""The JSON filter language of the store API, compiled to SQLAlchemy expressions with bound parameters.

A filter is a dict. Keys are metadata paths (``"lang"``, ``"author.name"``: plain identifiers joined by
dots) or logical operators; values are scalars (implicit ``$eq``) or ``{"$op": value}`` dicts::

    {"lang": "en", "year": {"$gte": 2020}, "$or": [{"tag": {"$in": ["a", "b"]}}, {"draft": {"$exists": False}}]}

Operators and their meaning (``v`` is the value at the path):

=========== ====================================================================================
``$eq``     ``v`` equals the scalar (numbers compare numerically: 1 equals 1.0; ``true`` is not 1)
``$ne``     not ``$eq`` (also true when the path is missing)
``$in``     ``v`` equals one of a non-empty list of scalars
``$nin``    not ``$in`` (also true when the path is missing)
``$lt`` ... ``v`` and the bound are both numbers, or both strings (compared by code point);
``$gte``    a value of another type never matches
``$exists`` the path is present (``True``) or absent (``False``); ``null`` counts as present
``$between`` ``[low, high]``: ``$gte`` low and ``$lte`` high (both numbers, or both strings)
``$like``   ``v`` is a string matching the SQL ``LIKE`` pattern (``%`` any run, ``_`` one character,
            a backslash escapes them); ``$ilike``: the same, ignoring case
``$contains`` ``v`` is an array holding the scalar (or every scalar of a non-empty list)
``$and``    all of a non-empty list of filters; ``$or``: any of them; ``$not``: the filter is false
=========== ====================================================================================

Every key is validated and every value becomes a bound parameter: nothing from the filter's values is
ever written into SQL text. A condition on a key with a field index (:mod:`vectorpg.fields`) is written on
the indexed expression instead (the key a quoted constant, the value still bound), with the same result.
Unknown operators, malformed keys and unsupported values raise :class:`~vectorpg.errors.FilterError`
before any SQL runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, and_, any_, bindparam, case, false, func, not_, or_, true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Numeric, Text

from vectorpg.errors import FilterError
from vectorpg.fields import KEY, Fields, FieldType, expression
from vectorpg.validation import json_too_large

MAX_DEPTH = 32
MAX_LIST = 10_000
MAX_STRING = 65_536
# Limits on a whole filter, the same in sql/functions.sql. They keep the server's planning memory and time
# bounded (a filter at every limit plans in under 64 MiB) and are checked before any SQL is built.
MAX_FILTER_BYTES = 262_144  # of its JSON text
MAX_CONDITIONS = 256  # field conditions in all ($in of 10,000 values is one)
MAX_ARITY = 256  # filters in one $and / $or
MAX_KEYS = 64  # keys in one object

_COMPARISONS = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
_PATTERNS = {"$like": "LIKE", "$ilike": "ILIKE"}
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", "$between", "$contains", *_PATTERNS, *_COMPARISONS}
_LOGICAL_OPS = {"$and", "$or", "$not"}

Scalar = str | int | float | bool | None


def _check_key(key: object, path: str) -> list[str]:
    if not isinstance(key, str) or not KEY.match(key):
        raise FilterError(
            f"invalid metadata key {key!r}: use identifiers (letters, digits, '_') joined by '.', "
            "or one of the operators $and, $or, $not",
            path=path or "top level",
        )
    return key.split(".")


def _scalar(value: object, path: str) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 10**300:
            raise FilterError("integer too large", path=path)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{value} cannot be compared (use a finite number)", path=path)
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise FilterError("strings may not contain NUL characters", path=path)
        if len(value) > MAX_STRING:
            raise FilterError(f"string longer than {MAX_STRING} characters", path=path)
        if not _encodable(value):
            raise FilterError("the string is not valid Unicode (a lone surrogate)", path=path)
        return value
    raise FilterError(
        f"unsupported value {value!r} of type {type(value).__name__}: use a string, number, boolean or null",
        path=path,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nest(parts: list[str], value: Scalar | list[Scalar]) -> dict[str, Any]:
    doc: Any = value
    for part in reversed(parts):
        doc = {part: doc}
    result: dict[str, Any] = doc
    return result


def check_filter_size(spec: object) -> None:
    """Raise :class:`FilterError` if ``spec`` is nested too deep or larger than ``MAX_FILTER_BYTES`` of JSON.

    Walks the value without recursion, so a hostile 100,000-deep filter is an error, not a ``RecursionError``.
    """
    # each level of a filter is an object and, at most, one list or operator dict below it
    problem = json_too_large(spec, max_depth=3 * MAX_DEPTH, max_bytes=MAX_FILTER_BYTES)
    if problem is not None and problem.startswith("nested"):
        raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels", path="top level")
    if problem is not None:
        raise FilterError(
            f"the filter is more than {MAX_FILTER_BYTES} bytes of JSON; split the query or use fewer values",
            path="top level",
        )


class _Compiler:
    def __init__(self, column: ColumnElement[Any], fields: Fields) -> None:
        self.column = column
        self.fields = fields
        self.conditions = 0
        #: inside a $not: an indexed expression is NULL where the key is missing, and NOT NULL is not true
        self.negated = 0
        #: conditions not written on a field index (PostgreSQL estimates those with a fixed guess)
        self.unindexed = 0

    def _indexed(self, key: str, parts: list[str], op: str, value: Any) -> ColumnElement[bool] | None:
        """The condition on the field index of ``key``, when it has one that serves ``op`` with ``value``."""
        kind = self.fields.get(key)
        if kind is None or self.negated:
            return None
        values = value if op == "$in" else [value]
        sql_type: Any
        if kind is FieldType.KEYWORD and op in ("$eq", "$in"):
            sql_type = JSONB
        elif kind is FieldType.NUMBER and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            sql_type = Numeric
        elif kind is FieldType.TEXT and all(isinstance(v, str) for v in values):
            sql_type = Text
        else:
            return None
        if sql_type is Numeric:  # one type for the list (psycopg dumps no mixed int/float list), exactly
            values = [Decimal(v) if isinstance(v, int) else Decimal(repr(v)) for v in values]
            value = values if op == "$in" else values[0]
        param = bindparam(None, value, type_=ARRAY(sql_type) if op == "$in" else sql_type)
        target = expression(self.column, parts, kind)
        if op == "$in":
            return target.op("=", return_type=Boolean)(any_(param))
        return target.op("=" if op == "$eq" else _COMPARISONS[op], return_type=Boolean)(param)

    def _positive(self, key: str, parts: list[str], op: str, value: Any, path: str) -> ColumnElement[bool]:
        """``$eq``, ``$in`` or a comparison: on the field index of ``key`` when one serves it."""
        if op in _COMPARISONS and (isinstance(value, bool) or value is None):
            raise FilterError(f"{op} needs a number or a string, got {value!r}", path=path)
        indexed = self._indexed(key, parts, op, value)
        if indexed is not None:
            return indexed
        self.unindexed += 1
        if op == "$eq":
            return self._eq(parts, value)
        return self._in(parts, value) if op == "$in" else self._compare(parts, op, value)

    def _value_at(self, parts: list[str]) -> ColumnElement[Any]:
        return self.column.op("#>", return_type=JSONB)(bindparam(None, parts, type_=ARRAY(Text)))

    def _eq(self, parts: list[str], value: Scalar) -> ColumnElement[bool]:
        # Containment of {"a": {"b": v}} is equality of the scalar at a.b, and a GIN index can serve it.
        return self.column.op("@>", return_type=Boolean)(bindparam(None, _nest(parts, value), type_=JSONB))

    def _in(self, parts: list[str], values: list[Scalar]) -> ColumnElement[bool]:
        docs = [_nest(parts, v) for v in values]
        return self.column.op("@>", return_type=Boolean)(any_(bindparam(None, docs, type_=ARRAY(JSONB))))

    def _compare(self, parts: list[str], op: str, bound: str | float) -> ColumnElement[bool]:
        value = self._value_at(parts)
        sql_op = _COMPARISONS[op]
        if isinstance(bound, str):
            as_text = value.op("#>>", return_type=Text)(bindparam(None, [], type_=ARRAY(Text)))
            typed: ColumnElement[Any] = case((func.jsonb_typeof(value) == "string", as_text)).collate("C")
            bound_param = bindparam(None, bound, type_=Text)
        else:
            typed = case((func.jsonb_typeof(value) == "number", value.cast(Numeric)))
            bound_param = bindparam(None, bound, type_=Numeric)
        # coalesce: a value of another type is "false", not NULL, so that $not of it is true.
        return func.coalesce(typed.op(sql_op, return_type=Boolean)(bound_param), false())

    def _like(self, parts: list[str], op: str, pattern: Scalar, path: str) -> ColumnElement[bool]:
        if not isinstance(pattern, str):
            raise FilterError(f"{op} needs a string pattern, got {pattern!r}", path=path)
        if (len(pattern) - len(pattern.rstrip("\\"))) % 2:
            raise FilterError(f"{op} pattern ends with a lone backslash (the escape character): double it", path=path)
        value = self._value_at(parts)
        as_text = value.op("#>>", return_type=Text)(bindparam(None, [], type_=ARRAY(Text)))
        typed: ColumnElement[Any] = case((func.jsonb_typeof(value) == "string", as_text))
        matched = typed.op(_PATTERNS[op], return_type=Boolean)(bindparam(None, pattern, type_=Text))
        return func.coalesce(matched, false())

    def _between(self, key: str, parts: list[str], arg: object, path: str) -> ColumnElement[bool]:
        if not isinstance(arg, (list, tuple)) or len(arg) != 2:
            raise FilterError("$between needs a list of two bounds, [low, high]", path=path)
        low, high = (_scalar(v, path) for v in arg)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers and not all(isinstance(v, str) for v in (low, high)):
            raise FilterError(f"$between needs two numbers or two strings, got {list(arg)!r}", path=path)
        return and_(self._positive(key, parts, "$gte", low, path), self._positive(key, parts, "$lte", high, path))

    def _contains(self, parts: list[str], arg: object, path: str) -> ColumnElement[bool]:
        if isinstance(arg, (list, tuple)):
            if not arg or len(arg) > MAX_LIST:
                raise FilterError(f"$contains needs a scalar or a list of 1 to {MAX_LIST} scalars", path=path)
            values = [_scalar(v, path) for v in arg]
        else:
            values = [_scalar(arg, path)]
        # containment of {"a": [v, ...]}: the array at a holds every v (JSON equality), served by a GIN index
        return self.column.op("@>", return_type=Boolean)(bindparam(None, _nest(parts, values), type_=JSONB))

    def _count(self, path: str) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(
                f"more than {MAX_CONDITIONS} conditions in one filter; use $in for a list of values", path=path
            )

    def field(self, key: str, condition: object, path: str) -> ColumnElement[bool]:
        parts = _check_key(key, path)
        if not isinstance(condition, Mapping):
            self._count(path)
            return self._positive(key, parts, "$eq", _scalar(condition, path), path)
        if not condition:
            raise FilterError("empty operator dict", path=path)
        if len(condition) > MAX_KEYS:
            raise FilterError(f"more than {MAX_KEYS} keys in one object", path=path)
        clauses = []
        for op, arg in condition.items():
            here = f"{path}.{op}"
            self._count(here)
            if op not in _FIELD_OPS:
                raise FilterError(
                    f"unknown operator {op!r}; field operators are {', '.join(sorted(_FIELD_OPS))}", path=here
                )
            if op == "$eq":
                clauses.append(self._positive(key, parts, op, _scalar(arg, here), here))
            elif op == "$ne":
                self.unindexed += 1
                clauses.append(not_(self._eq(parts, _scalar(arg, here))))
            elif op in ("$in", "$nin"):
                if not isinstance(arg, (list, tuple)) or not arg:
                    raise FilterError(f"{op} needs a non-empty list", path=here)
                if len(arg) > MAX_LIST:
                    raise FilterError(f"{op} list longer than {MAX_LIST}", path=here)
                values = [_scalar(v, here) for v in arg]
                if op == "$in":
                    clauses.append(self._positive(key, parts, "$in", values, here))
                else:
                    self.unindexed += 1
                    clauses.append(not_(self._in(parts, values)))
            elif op == "$exists":
                if not isinstance(arg, bool):
                    raise FilterError("$exists needs true or false", path=here)
                self.unindexed += 1
                present = self._value_at(parts).is_not(None)
                clauses.append(present if arg else not_(present))
            elif op in _PATTERNS:
                self.unindexed += 1
                clauses.append(self._like(parts, op, _scalar(arg, here), here))
            elif op == "$between":
                clauses.append(self._between(key, parts, arg, here))
            elif op == "$contains":
                self.unindexed += 1
                clauses.append(self._contains(parts, arg, here))
            else:
                clauses.append(self._positive(key, parts, op, _scalar(arg, here), here))
        return and_(*clauses) if len(clauses) > 1 else clauses[0]

    def compile(self, spec: object, path: str = "", depth: int = 0) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels", path=path)
        if not isinstance(spec, Mapping):
            raise FilterError(f"a filter is a dict, got {type(spec).__name__}", path=path or "top level")
        if len(spec) > MAX_KEYS:
            raise FilterError(f"more than {MAX_KEYS} keys in one object", path=path or "top level")
        clauses: list[ColumnElement[bool]] = []
        for key, arg in spec.items():
            here = f"{path}.{key}" if path else str(key)
            if key in ("$and", "$or"):
                if not isinstance(arg, (list, tuple)) or not arg:
                    raise FilterError(f"{key} needs a non-empty list of filters", path=here)
                if len(arg) > MAX_ARITY:
                    raise FilterError(f"{key} has more than {MAX_ARITY} filters", path=here)
                parts = [self.compile(s, f"{here}[{i}]", depth + 1) for i, s in enumerate(arg)]
                clauses.append(and_(*parts) if key == "$and" else or_(*parts))
            elif key == "$not":
                self.negated += 1
                clauses.append(not_(self.compile(arg, here, depth + 1)))
                self.negated -= 1
            elif isinstance(key, str) and key.startswith("$"):
                raise FilterError(f"unknown logical operator {key!r}; use $and, $or or $not at this level", path=here)
            else:
                clauses.append(self.field(key, arg, here))
        if not clauses:
            return true()
        return and_(*clauses) if len(clauses) > 1 else clauses[0]


def compile_filter(
    spec: Mapping[str, Any] | None, column: ColumnElement[Any], fields: Fields | None = None
) -> ColumnElement[bool]:
    """Compile a JSON filter over the JSONB ``column`` into a SQLAlchemy boolean expression.

    ``None`` and ``{}`` match everything. ``fields`` are the keys with a field index (and their types):
    conditions on them are written on the indexed expression. Raises :class:`FilterError` on anything
    malformed.
    """
    return _compile(spec, column, fields)[0]


def compile_filter_estimable(
    spec: Mapping[str, Any] | None, column: ColumnElement[Any], fields: Fields | None = None
) -> tuple[ColumnElement[bool], bool]:
    """:func:`compile_filter`, and whether every condition is on a field index (so PostgreSQL estimates
    the filter from statistics rather than a fixed guess)."""
    return _compile(spec, column, fields)


def _compile(
    spec: Mapping[str, Any] | None, column: ColumnElement[Any], fields: Fields | None
) -> tuple[ColumnElement[bool], bool]:
    if spec is None:
        return true(), True
    check_filter_size(spec)
    compiler = _Compiler(column, fields or {})
    clause = compiler.compile(spec)
    return clause, compiler.unindexed == 0

"""A pure-Python evaluation of vectorpg's JSON filter language, written from its documented semantics
(vectorpg/filters.py), independent of the SQL it compiles to: the oracle of test_filters and the fuzz tests.

Equality is JSON equality of the value at the path: numbers compare numerically (1 == 1.0), ``true`` is
not 1, and a stored array or object equals no scalar (as JSONB containment of a nested path behaves).
"""

from __future__ import annotations

import math
import re
from typing import Any

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,15}\Z")
FIELD_OPS = {
    "$eq",
    "$ne",
    "$in",
    "$nin",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$exists",
    "$between",
    "$like",
    "$ilike",
    "$contains",
}
MISSING = object()


class Invalid(Exception):
    """The filter is not valid: vectorpg must refuse it (FilterError) before running any SQL."""


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and ("\x00" in value or len(value) > 65_536 or not _utf8(value)):
            raise Invalid
        return value
    if isinstance(value, int):
        if abs(value) >= 10**300:
            raise Invalid
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise Invalid


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _at(metadata: dict[str, Any], key: str) -> Any:
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def _equal(stored: Any, wanted: Any) -> bool:
    if stored is MISSING:
        return False
    if _kind(stored) != _kind(wanted):
        return False
    return bool(stored == wanted)


def _compare(stored: Any, op: str, bound: Any) -> bool:
    if _kind(stored) != _kind(bound) or _kind(bound) not in ("number", "string"):
        return False
    if isinstance(bound, str):
        a, b = stored.encode("utf-8"), bound.encode("utf-8")  # code point order = UTF-8 byte order
    else:
        a, b = stored, bound
    return {"$lt": a < b, "$lte": a <= b, "$gt": a > b, "$gte": a >= b}[op]


def _ends_in_escape(pattern: str) -> bool:
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1


def _like(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE as a regular expression: % any run, _ one character, a backslash escapes the next one."""
    out, chars = [], iter(pattern)
    for c in chars:
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(next(chars)) if c == "\\" else re.escape(c))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def check(spec: Any, depth: int = 0) -> None:
    """Raise :class:`Invalid` if vectorpg must refuse ``spec``."""
    if depth > 32 or not isinstance(spec, dict):
        raise Invalid
    for key, arg in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(arg, (list, tuple)) or not arg:
                raise Invalid
            for sub in arg:
                check(sub, depth + 1)
        elif key == "$not":
            check(arg, depth + 1)
        elif not isinstance(key, str) or key.startswith("$") or not KEY.match(key):
            raise Invalid
        elif isinstance(arg, dict):
            if not arg:
                raise Invalid
            for op, value in arg.items():
                if op not in FIELD_OPS:
                    raise Invalid
                if op in ("$in", "$nin"):
                    if not isinstance(value, (list, tuple)) or not value or len(value) > 10_000:
                        raise Invalid
                    for v in value:
                        _scalar(v)
                elif op == "$exists":
                    if not isinstance(value, bool):
                        raise Invalid
                elif op in ("$lt", "$lte", "$gt", "$gte"):
                    if _scalar(value) is None or isinstance(value, bool):
                        raise Invalid
                elif op == "$between":
                    if not isinstance(value, (list, tuple)) or len(value) != 2:
                        raise Invalid
                    kinds = {_kind(_scalar(v)) for v in value}
                    if len(kinds) != 1 or kinds - {"number", "string"}:
                        raise Invalid
                elif op in ("$like", "$ilike"):
                    if not isinstance(_scalar(value), str) or _ends_in_escape(value):
                        raise Invalid
                elif op == "$contains":
                    items = value if isinstance(value, (list, tuple)) else [value]
                    if not items or len(items) > 10_000:
                        raise Invalid
                    for v in items:
                        _scalar(v)
                else:
                    _scalar(value)
        else:
            _scalar(arg)


def matches(spec: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether ``metadata`` satisfies the (valid) filter ``spec``."""
    for key, arg in spec.items():
        if key == "$and":
            ok = all(matches(s, metadata) for s in arg)
        elif key == "$or":
            ok = any(matches(s, metadata) for s in arg)
        elif key == "$not":
            ok = not matches(arg, metadata)
        else:
            stored = _at(metadata, key)
            conditions = arg if isinstance(arg, dict) else {"$eq": arg}
            ok = True
            for op, value in conditions.items():
                if op == "$eq":
                    ok &= _equal(stored, value)
                elif op == "$ne":
                    ok &= not _equal(stored, value)
                elif op == "$in":
                    ok &= any(_equal(stored, v) for v in value)
                elif op == "$nin":
                    ok &= not any(_equal(stored, v) for v in value)
                elif op == "$exists":
                    ok &= (stored is not MISSING) == value
                elif op == "$between":
                    ok &= _compare(stored, "$gte", value[0]) and _compare(stored, "$lte", value[1])
                elif op in ("$like", "$ilike"):
                    ok &= isinstance(stored, str) and _like(value, op == "$ilike").fullmatch(stored) is not None
                elif op == "$contains":
                    wanted = value if isinstance(value, (list, tuple)) else [value]
                    ok &= isinstance(stored, list) and all(any(_equal(e, v) for e in stored) for v in wanted)
                else:
                    ok &= _compare(stored, op, value)
        if not ok:
            return False
    return True

"""A model's rows laid out for a write: the columns present, Python-side defaults, every vector validated,
and primary keys given twice refused (:func:`layout_rows`, which :class:`vectorpg.Repository` writes with)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table

from vectorpg import validation
from vectorpg.db.writes import check_unique_keys
from vectorpg.errors import InvalidInputError, InvalidVectorError
from vectorpg.metrics import MetricSpec
from vectorpg.sqltypes import VectorType


def layout_rows(
    dicts: list[dict[str, Any]],
    table: Table,
    *,
    vector_column: str,
    vector_attribute: str,
    vector_type: VectorType,
    dimension: int | None,
    metric: MetricSpec,
    primary_key: Sequence[str],
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Rows of a model (column name -> value) validated and laid out as ``(columns, tuples)`` for a write:
    missing columns get their Python-side defaults, every vector is validated (a nullable vector column
    may hold NULL), and a primary key given twice is refused. Raises before anything is written."""
    if not dicts:
        return [], []
    present = {name for d in dicts for name in d}
    columns = [c.name for c in table.columns if c.name in present or c.default is not None]
    if vector_column not in present:
        raise InvalidInputError(f"no value for the vector column {vector_attribute!r}", row=0)
    for d in dicts:
        for name in columns:
            if name not in d:
                d[name] = _default(table, name)
    nullable = bool(table.c[vector_column].nullable)
    positions = [i for i, d in enumerate(dicts) if not (nullable and d[vector_column] is None)]
    try:
        checked = validation.vectors(
            [dicts[i][vector_column] for i in positions], vector_type=vector_type, dimension=dimension, metric=metric
        )
    except InvalidVectorError as exc:
        if exc.row is not None and positions[exc.row] != exc.row:
            exc.args = (str(exc).replace(f"row {exc.row}:", f"row {positions[exc.row]}:", 1),)
            exc.row = positions[exc.row]
        raise
    for i, v in zip(positions, checked):
        dicts[i][vector_column] = v
    if all(name in present for name in primary_key):
        check_unique_keys(
            [tuple(d[n] for n in primary_key) if len(primary_key) > 1 else d[primary_key[0]] for d in dicts],
            "primary key",
        )
    pick = itemgetter(*columns)  # one C call a row
    return columns, [pick(d) for d in dicts] if len(columns) > 1 else [(d[columns[0]],) for d in dicts]


def _default(table: Table, name: str) -> Any:
    default = table.c[name].default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if getattr(default, "is_callable", False) and callable(arg):
        return arg(None)
    if getattr(default, "is_scalar", False):
        return arg
    return None

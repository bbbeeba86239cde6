"""A model's rows laid out for a write: the columns present, Python-side defaults, every vector validated
(a dense batch kept as one matrix), and primary keys given twice refused (:func:`layout_rows`, which
:class:`vectorpg.Repository` writes with)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Table

from vectorpg import validation
from vectorpg.db.writes import check_unique_keys
from vectorpg.errors import InvalidInputError, InvalidVectorError
from vectorpg.metrics import MetricSpec
from vectorpg.sqltypes import VectorType


class LaidOut(NamedTuple):
    """A batch ready for :func:`vectorpg.db.writes.write_rows`."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: the vector column as one validated matrix, when the batch's vectors are dense and none is NULL
    matrices: dict[str, np.ndarray]


def layout_rows(
    dicts: Sequence[Mapping[str, Any]],
    table: Table,
    *,
    vector_column: str,
    vector_attribute: str,
    vector_type: VectorType,
    dimension: int | None,
    metric: MetricSpec,
    primary_key: Sequence[str],
) -> LaidOut:
    """Rows of a model (column name -> value; left as they are) validated and laid out column by column
    for a write: missing columns get their Python-side defaults, every vector is validated (a nullable
    vector column may hold NULL), and a primary key given twice is refused. Raises before anything is
    written."""
    if not dicts:
        return LaidOut([], [], {})
    present = set().union(*dicts)
    columns = [c.name for c in table.columns if c.name in present or c.default is not None]
    if vector_column not in present:
        raise InvalidInputError(f"no value for the vector column {vector_attribute!r}", row=0)
    values: dict[str, list[Any]] = {}
    for name in columns:
        try:
            values[name] = list(map(itemgetter(name), dicts))  # every row has it (the usual batch): one C loop
        except KeyError:
            values[name] = [d[name] if name in d else _default(table, name) for d in dicts]
    given = values[vector_column]
    nullable = bool(table.c[vector_column].nullable)
    positions = [i for i, v in enumerate(given) if v is not None] if nullable else range(len(given))
    try:
        checked = validation.vectors(
            [given[i] for i in positions] if nullable else given,
            vector_type=vector_type,
            dimension=dimension,
            metric=metric,
        )
    except InvalidVectorError as exc:
        if exc.row is not None and positions[exc.row] != exc.row:
            exc.args = (str(exc).replace(f"row {exc.row}:", f"row {positions[exc.row]}:", 1),)
            exc.row = positions[exc.row]
        raise
    matrices: dict[str, np.ndarray] = {}
    if isinstance(checked, np.ndarray) and len(positions) == len(given):
        matrices[vector_column] = checked  # not split into rows: the write sends it in one pass
        values[vector_column] = [None] * len(given)
    else:
        for i, v in zip(positions, checked):
            given[i] = v
    if all(name in present for name in primary_key):
        keys = values[primary_key[0]] if len(primary_key) == 1 else list(zip(*(values[n] for n in primary_key)))
        check_unique_keys(keys, "primary key")
    return LaidOut(columns, list(zip(*(values[c] for c in columns))), matrices)


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

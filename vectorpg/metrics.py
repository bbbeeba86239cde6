"""The one table that maps a distance metric to pgvector's operator, opclasses and SQL function.

Nobody else in vectorpg spells an operator: search, indexes, migrations and the SQL functions all read
:data:`METRICS`. Distances follow pgvector: smaller is nearer. For ``inner_product`` pgvector's ``<#>``
returns the *negative* inner product, so that ordering ascending still puts the best match first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Float
from sqlalchemy.sql.elements import ColumnElement

from vectorpg.errors import UnknownMetricError, UnsupportedMetricError
from vectorpg.sqltypes import VectorType


class Metric(str, Enum):
    """Distance metrics supported by pgvector."""

    L2 = "l2"
    COSINE = "cosine"
    INNER_PRODUCT = "inner_product"
    L1 = "l1"
    HAMMING = "hamming"
    JACCARD = "jaccard"


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is spelled in SQL, per vector type and index method."""

    metric: Metric
    operator: str
    function: str
    #: index operator class per vector type (HNSW supports all of them)
    opclasses: dict[VectorType, str]
    #: vector types whose opclass IVFFlat supports
    ivfflat: frozenset[VectorType]
    #: the metric is undefined for an all-zero vector (cosine, jaccard)
    rejects_zero: bool = False

    def opclass(self, vector_type: VectorType | str) -> str:
        """The index operator class for ``vector_type``; raises if the pair is unsupported."""
        vtype = VectorType.parse(vector_type)
        try:
            return self.opclasses[vtype]
        except KeyError:
            supported = ", ".join(t.value for t in self.opclasses)
            raise UnsupportedMetricError(
                f"metric {self.metric.value!r} does not apply to {vtype.value} columns (it supports: {supported})",
                metric=self.metric.value,
                vector_type=vtype.value,
            ) from None


_FLOAT_TYPES = (VectorType.VECTOR, VectorType.HALFVEC, VectorType.SPARSEVEC)


def _float_opclasses(suffix: str) -> dict[VectorType, str]:
    return {t: f"{t.value}_{suffix}_ops" for t in _FLOAT_TYPES}


METRICS: dict[Metric, MetricSpec] = {
    Metric.L2: MetricSpec(
        Metric.L2,
        "<->",
        "l2_distance",
        _float_opclasses("l2"),
        frozenset({VectorType.VECTOR, VectorType.HALFVEC}),
    ),
    Metric.INNER_PRODUCT: MetricSpec(
        Metric.INNER_PRODUCT,
        "<#>",
        "inner_product",
        _float_opclasses("ip"),
        frozenset({VectorType.VECTOR, VectorType.HALFVEC}),
    ),
    Metric.COSINE: MetricSpec(
        Metric.COSINE,
        "<=>",
        "cosine_distance",
        _float_opclasses("cosine"),
        frozenset({VectorType.VECTOR, VectorType.HALFVEC}),
        rejects_zero=True,
    ),
    Metric.L1: MetricSpec(Metric.L1, "<+>", "l1_distance", _float_opclasses("l1"), frozenset()),
    Metric.HAMMING: MetricSpec(
        Metric.HAMMING,
        "<~>",
        "hamming_distance",
        {VectorType.BIT: "bit_hamming_ops"},
        frozenset({VectorType.BIT}),
    ),
    Metric.JACCARD: MetricSpec(
        Metric.JACCARD,
        "<%>",
        "jaccard_distance",
        {VectorType.BIT: "bit_jaccard_ops"},
        frozenset(),
        rejects_zero=True,
    ),
}

_ALIASES = {
    "euclidean": Metric.L2,
    "ip": Metric.INNER_PRODUCT,
    "dot": Metric.INNER_PRODUCT,
    "inner": Metric.INNER_PRODUCT,
    "manhattan": Metric.L1,
    "taxicab": Metric.L1,
}


def metric_spec(metric: str | Metric) -> MetricSpec:
    """The :class:`MetricSpec` for a metric name (``"l2"``, ``"cosine"``, ``"ip"``...) or member."""
    if isinstance(metric, Metric):
        return METRICS[metric]
    if isinstance(metric, str):
        key = metric.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _ALIASES:
            return METRICS[_ALIASES[key]]
        for member in Metric:
            if member.value == key:
                return METRICS[member]
    raise UnknownMetricError(metric, [m.value for m in Metric])


def check_metric(metric: str | Metric, vector_type: VectorType | str) -> MetricSpec:
    """Resolve ``metric`` and make sure it applies to ``vector_type``."""
    spec = metric_spec(metric)
    spec.opclass(vector_type)
    return spec


def distance(left: ColumnElement[Any], right: Any, metric: str | Metric) -> ColumnElement[float]:
    """The SQL expression ``left <op> right`` for ``metric`` (smaller is nearer)."""
    spec = metric_spec(metric)
    return left.op(spec.operator, return_type=Float)(right)

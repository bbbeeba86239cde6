"""Offline checks of the SQL vectorpg generates (no database): operators, types, binds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

import vectorpg
from vectorpg.metrics import METRICS, Metric, distance, metric_spec
from vectorpg.own_schema.tables import collections_table, documents_table
from vectorpg.sqltypes import VectorType, column_type

DIALECT = postgresql.dialect()


@pytest.mark.parametrize("metric", list(Metric))
def test_each_metric_compiles_to_its_operator(metric: Metric) -> None:
    expr = distance(column("embedding"), bindparam("q"), metric)
    operator = METRICS[metric].operator.replace("%", "%%")  # pyformat escapes jaccard's <%>
    assert str(expr.compile(dialect=DIALECT)) == f"embedding {operator} %(q)s"


def test_operator_table_matches_pgvector() -> None:
    assert {m.value: s.operator for m, s in METRICS.items()} == {
        "l2": "<->",
        "cosine": "<=>",
        "inner_product": "<#>",
        "l1": "<+>",
        "hamming": "<~>",
        "jaccard": "<%>",
    }
    assert metric_spec("cosine").opclass("halfvec") == "halfvec_cosine_ops"
    assert metric_spec("ip").opclass(VectorType.SPARSEVEC) == "sparsevec_ip_ops"
    assert metric_spec("hamming").opclass("bit") == "bit_hamming_ops"
    assert metric_spec("euclidean") is METRICS[Metric.L2]


@pytest.mark.parametrize(("metric", "vtype"), [("hamming", "vector"), ("cosine", "bit"), ("jaccard", "halfvec")])
def test_unsupported_pairs(metric: str, vtype: str) -> None:
    with pytest.raises(vectorpg.UnsupportedMetricError) as info:
        metric_spec(metric).opclass(vtype)
    assert (info.value.metric, info.value.vector_type) == (metric, vtype)


@pytest.mark.parametrize(
    ("vtype", "dim", "ddl"),
    [
        ("vector", 384, "VECTOR(384)"),
        ("halfvec", 4000, "HALFVEC(4000)"),
        ("sparsevec", 30000, "SPARSEVEC(30000)"),
        ("bit", 1024, "BIT(1024)"),
    ],
)
def test_column_types_render(vtype: str, dim: int, ddl: str) -> None:
    assert column_type(vtype, dim).compile(dialect=DIALECT) == ddl


@pytest.mark.parametrize(
    ("vtype", "dim"), [("vector", 0), ("vector", 16001), ("halfvec", -1), ("vector", 2.5), ("nope", 3)]
)
def test_bad_column_types(vtype: str, dim: Any) -> None:
    with pytest.raises(vectorpg.InvalidArgumentError):
        column_type(vtype, dim)


def test_built_in_schema_ddl() -> None:
    ddl = str(CreateTable(documents_table).compile(dialect=DIALECT))
    assert "PARTITION BY LIST (collection)" in ddl
    assert "PRIMARY KEY (collection, id)" in ddl
    assert "embedding VECTOR NOT NULL" in ddl
    assert "vectorpg.collections" in str(CreateTable(collections_table).compile(dialect=DIALECT))


def test_search_statement_binds_the_vector() -> None:
    t = documents_table
    dist = distance(t.c.embedding, bindparam("query_vector", [1.0, 2.0], type_=vectorpg.VECTOR(2)), "cosine")
    sql = str(select(t.c.id).order_by(dist).limit(3).compile(dialect=DIALECT))
    assert "vectorpg.documents.embedding <=> %(query_vector)s" in sql
    assert "1.0" not in sql

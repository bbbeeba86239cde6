"""The JSON filter language: compiled SQL carries no user data, and results equal a Python evaluation."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql

import vectorpg
from vectorpg.filters import compile_filter
from vectorpg.own_schema.tables import documents_table

from . import filter_oracle

# -- data and filters ------------------------------------------------------------------------------

LANGS = ["en", "fr", "de", "ÉN", "en "]
VALUES: list[Any] = [0, 1, 1.0, 2.5, -3, 2020, 2021, "2020", "a", "b", "z", "", True, False, None]


def make_docs(rng: random.Random, n: int = 200) -> list[dict[str, Any]]:
    docs = []
    for _ in range(n):
        doc: dict[str, Any] = {}
        if rng.random() < 0.9:
            doc["lang"] = rng.choice(LANGS)
        if rng.random() < 0.8:
            doc["year"] = rng.choice([2019, 2020, 2021, 2020.0, 2020.5, "2020", None, True])
        if rng.random() < 0.7:
            doc["score"] = rng.choice(VALUES)
        if rng.random() < 0.5:
            doc["tags"] = rng.sample(["a", "b", "c"], rng.randint(0, 3))
        if rng.random() < 0.5:
            doc["author"] = {"name": rng.choice(["ann", "bob", "Ann"]), "age": rng.choice([30, 40, "40"])}
        docs.append(doc)
    return docs


KEYS = ["lang", "year", "score", "tags", "author", "author.name", "author.age", "missing", "author.missing"]


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        op = rng.choice(["$and", "$or"])
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and roll < 0.35:
        return {"$not": random_filter(rng, depth + 1)}
    key = rng.choice(KEYS)
    pool = LANGS + VALUES + ["ann", "bob", 30, 40, "40"]
    op = rng.choice(
        [
            *("implicit", "$eq", "$ne", "$in", "$nin", "$exists", "$lt", "$lte", "$gt", "$gte"),
            *("$between", "$like", "$ilike", "$contains"),
        ]
    )
    if op == "$between":
        return {key: {op: rng.choice([[2019, 2020], [2020, 2020.5], [0, 1], [30, 40], ["a", "b"], ["ann", "bob"]])}}
    if op in ("$like", "$ilike"):  # ASCII patterns: case folding beyond ASCII is the database's ctype
        return {key: {op: rng.choice(["en%", "%n", "_n", "e_", "a%", "%", "b", "2020", "%\\%%", "EN%", "AN_", "%B"])}}
    if op == "$contains":
        return {key: {op: rng.choice(["a", "b", ["a", "b"], ["c"], 1, ["a", "z"]])}}
    if op == "implicit":
        return {key: rng.choice(pool)}
    if op in ("$in", "$nin"):
        return {key: {op: rng.sample(pool, rng.randint(1, 4))}}
    if op == "$exists":
        return {key: {op: rng.random() < 0.5}}
    if op in ("$lt", "$lte", "$gt", "$gte"):
        return {key: {op: rng.choice([2020, 2020.5, 1, 35, "b", "en", "ann", "Ann"])}}
    return {key: {op: rng.choice(pool)}}


def test_filter_results_equal_python_evaluation(db: vectorpg.Database) -> None:
    rng = random.Random(1234)
    docs_data = make_docs(rng)
    docs = db.collection("filters", dimension=2)
    ids = [str(i) for i in range(len(docs_data))]
    docs.add(vectors=[[1.0, float(i)] for i in range(len(docs_data))], ids=ids, metadata=docs_data)
    checked = 0
    nonempty = 0
    for _ in range(300):
        spec = random_filter(rng)
        expected = {ids[i] for i, d in enumerate(docs_data) if filter_oracle.matches(spec, d)}
        got = {h.id for h in docs.search([1.0, 0.0], k=len(docs_data), where=spec)}
        assert got == expected, spec
        assert docs.count(spec) == len(expected)
        checked += 1
        nonempty += bool(expected) and len(expected) < len(docs_data)
    assert checked == 300 and nonempty > 60  # many filters select a proper, non-empty subset


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"year": 2020}, {"int", "float"}),
        ({"year": "2020"}, {"str"}),
        ({"year": True}, {"bool"}),
        ({"year": None}, {"null"}),
        ({"year": {"$gte": 2020}}, {"int", "float"}),
        ({"year": {"$exists": True}}, {"int", "float", "str", "bool", "null"}),
        ({"year": {"$exists": False}}, {"missing"}),
        ({"year": {"$ne": 2020}}, {"str", "bool", "null", "missing"}),
        ({"$not": {"year": {"$gt": 1}}}, {"str", "bool", "null", "missing"}),
        ({"year": {"$in": [2020, "2020"]}}, {"int", "float", "str"}),
        ({"year": {"$nin": [2020, None]}}, {"str", "bool", "missing"}),
        ({"year": {"$between": [2019, 2020]}}, {"int", "float"}),
        ({"year": {"$between": ["2019", "2021"]}}, {"str"}),
        ({"year": {"$like": "20%"}}, {"str"}),
        ({"year": {"$ilike": "2_2_"}}, {"str"}),
        ({"$not": {"year": {"$like": "%"}}}, {"int", "float", "bool", "null", "missing"}),
    ],
)
def test_type_semantics(db: vectorpg.Database, spec: dict[str, Any], expected: set[str]) -> None:
    docs = db.collection("types", dimension=2)
    rows = {
        "int": {"year": 2020},
        "float": {"year": 2020.0},
        "str": {"year": "2020"},
        "bool": {"year": True},
        "null": {"year": None},
        "missing": {},
    }
    docs.add(vectors=[[1, 1]] * len(rows), ids=list(rows), metadata=list(rows.values()))
    assert {h.id for h in docs.search([1, 1], k=10, where=spec)} == expected


HOSTILE_VALUES = [
    "x' OR '1'='1",
    "'; DROP TABLE vectorpg.documents; --",
    "$1",
    ") OR (1=1",
    "\\",
    "%s",
    "%(x)s",
    "$.a[*] ? (@ > 1)",
    "🙂 ünïcödé",
    "a" * 10_000,
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_values_never_appear_in_sql_text(value: str) -> None:
    spec = {"lang": value, "a.b": {"$in": [value, 1]}, "c": {"$lt": value}, "$not": {"d": {"$ne": value}}}
    compiled = compile_filter(spec, documents_table.c.metadata).compile(dialect=postgresql.dialect())
    text = str(compiled)
    assert value not in text
    assert any(value in str(v) for v in compiled.params.values())


HOSTILE_KEYS = [
    "lang'; DROP TABLE x; --",
    "a->>'b'",
    "a b",
    "",
    "$where",
    "$eq",
    "a..b",
    ".a",
    "a.",
    "1abc",
    "a-b",
    "a[0]",
    "$.a",
    "a\x00b",
    "é",
    "a" * 64,
    ".".join(["a"] * 17),
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused_before_sql(key: str) -> None:
    with pytest.raises(vectorpg.FilterError):
        compile_filter({key: "x"}, documents_table.c.metadata)
    with pytest.raises(vectorpg.FilterError):
        compile_filter({"$or": [{"ok": 1}, {key: {"$eq": 1}}]}, documents_table.c.metadata)


@pytest.mark.parametrize(
    "spec",
    [
        {"a": {"$regex": "x"}},
        {"a": {"$in": []}},
        {"a": {"$in": "abc"}},
        {"a": {"$exists": "yes"}},
        {"a": {"$lt": True}},
        {"a": {"$lt": None}},
        {"a": {"$eq": [1, 2]}},
        {"a": {"$eq": {"b": 1}}},
        {"a": float("nan")},
        {"a": float("inf")},
        {"a": {}},
        {"$and": []},
        {"$or": {"a": 1}},
        {"$not": [1]},
        {"$nor": [{"a": 1}]},
        {"a": b"bytes"},
        {"a": "nul\x00"},
        {"a": {"$like": 3}},
        {"a": {"$ilike": "ends in escape\\"}},
        {"a": {"$between": [1]}},
        {"a": {"$between": [1, "b"]}},
        {"a": {"$between": [True, False]}},
        {"a": {"$contains": []}},
        {"a": {"$contains": [[1]]}},
    ],
)
def test_malformed_filters_are_typed_errors(spec: dict[str, Any]) -> None:
    with pytest.raises(vectorpg.FilterError):
        compile_filter(spec, documents_table.c.metadata)


def test_deep_nesting_is_bounded() -> None:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(40):
        spec = {"$not": spec}
    with pytest.raises(vectorpg.FilterError, match="deeper"):
        compile_filter(spec, documents_table.c.metadata)


def test_filter_error_says_where(db: vectorpg.Database) -> None:
    docs = db.collection("errs", dimension=2)
    with pytest.raises(vectorpg.FilterError) as info:
        docs.search([1, 0], k=1, where={"$or": [{"a": 1}, {"b": {"$bogus": 1}}]})
    assert "$bogus" in str(info.value) and "$or[1].b" in info.value.path

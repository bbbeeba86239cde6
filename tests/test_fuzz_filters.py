"""Property-based tests of the JSON filter language with hostile keys and values, through the Python API and
the SQL functions. Oracles:

(a) user data never appears in the SQL text, only in bound parameters;
(b) the rows returned equal a pure-Python evaluation of the filter (tests/filter_oracle.py) over the same
    rows, and a filter the oracle refuses is refused by vectorpg before any SQL runs;
(c) a canary table survives, and no statement the server receives carries a payload (``pg_sleep`` among
    them): durations are measured by the stress script, not asserted here.

CI runs a bounded number of examples; ``python -m tests.stress.fuzz_filters`` runs 100,000 or more.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.dialects import postgresql

import vectorpg
from vectorpg.filters import compile_filter
from vectorpg.own_schema.tables import documents_table

from . import filter_oracle

#: every string value and key the strategies make contains this marker: oracle (a) looks for it in SQL text
MARK = "Zq"
PAYLOADS = [
    "'; DROP TABLE canary; --",
    "') OR 1=1 --",
    "x' OR pg_sleep(5) IS NULL OR '",
    "$$; SELECT pg_sleep(5); $$",
    "\\'; DELETE FROM vectorpg.documents; --",
    "metadata->>'a'",
    "$.a ? (@ > 1)",
    "lang') OR true --",  # LlamaIndex, CVE-2025-1793
    "') UNION SELECT * FROM pg_shadow --",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ — ü",
    "a" * 1000,
]
KEYS = ["a", "b", "flag", "n", "nested.x", "nested.y", "missing", "tag"]
HOSTILE_KEYS = [
    "a'; DROP TABLE canary; --",
    "a') OR 1=1 --",
    "metadata->>'a'",  # LangChain4j, CVE-2026-55405
    "a;b",
    "a)b",
    "$where",
    "$gt",
    "a..b",
    ".a",
    "1a",
    "a b",
    "a\x00b",
    "é",
    "a" * 70,
    "a." * 17 + "a",
    "",
]


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rng.random() < 0.85:
        meta["a"] = rng.choice([0, 1, 2, 3, 1.5, -1, "1", "x", None, True, False])
    if rng.random() < 0.85:
        meta["b"] = MARK + rng.choice([*PAYLOADS[:6], "alpha", "beta", "Beta", "é"])
    if rng.random() < 0.7:
        meta["flag"] = rng.random() < 0.5
    if rng.random() < 0.7:
        meta["n"] = rng.choice([0, 1, 2.5, 10, -3, 1e20, 100])
    if rng.random() < 0.6:
        meta["nested"] = {"x": rng.randint(0, 3), "y": rng.choice(["p", "q", MARK + "r"])}
    if rng.random() < 0.3:
        meta["tag"] = rng.choice(["t1", "t2", None])
    return meta


ROWS = [_row(i, random.Random(i)) for i in range(300)]

strings = st.one_of(
    st.sampled_from(PAYLOADS), st.text(max_size=40), st.sampled_from(["alpha", "beta", "Beta", "é", "x", "1"])
).map(lambda s: MARK + s)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([1.5, 2.5, 1e20, -3.0, 10]),
    strings,
    st.sampled_from(["x", "1", "p", "q"]),
)
bad_values = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just({"nested": "object"}),
    st.just([1, 2]),
    st.just(MARK + "nul\x00"),
    st.just(10**400),
    st.just(object()),
)
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(HOSTILE_KEYS), st.text(max_size=12))
operators = st.sampled_from(
    [
        *("$eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte", "$exists", "$regex", "$where", "$like", "eq"),
        *("$between", "$contains"),
    ]
)


@st.composite
def conditions(draw: Any) -> Any:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return draw(scalars)
    if kind == 4:
        return draw(bad_values)
    op = draw(operators)
    if op in ("$in", "$nin"):
        value: Any = draw(st.lists(st.one_of(scalars, bad_values) if draw(st.booleans()) else scalars, max_size=4))
    elif op == "$exists":
        value = draw(st.one_of(st.booleans(), scalars))
    elif op == "$between":
        value = draw(st.lists(st.one_of(scalars, bad_values) if kind == 5 else scalars, min_size=0, max_size=3))
    elif op == "$contains":
        value = draw(st.one_of(scalars, st.lists(scalars, max_size=3)))
    else:
        value = draw(st.one_of(scalars, bad_values) if kind == 5 else scalars)
    return {op: value}


filters = st.recursive(
    st.dictionaries(keys, conditions(), max_size=3),
    lambda children: st.one_of(
        st.dictionaries(st.sampled_from(["$and", "$or"]), st.lists(children, max_size=3), min_size=1, max_size=1),
        st.dictionaries(st.just("$not"), children, min_size=1, max_size=1),
        st.dictionaries(st.sampled_from(["$nor", "$xor", "$"]), children, min_size=1, max_size=1),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def fuzz_db(module_database_url: str) -> Iterator[tuple[vectorpg.Database, Any, dict[str, Any]]]:
    db = vectorpg.connect(module_database_url)
    docs = db.collection("fuzz", dimension=4, embedder=None)
    rng = np.random.default_rng(0)
    docs.add(vectors=rng.normal(size=(len(ROWS), 4)) + 0.01, ids=[str(i) for i in range(len(ROWS))], metadata=ROWS)
    with db.psycopg_connection() as raw:
        raw.execute("CREATE TABLE canary (x int)")
        raw.execute("INSERT INTO canary VALUES (1), (2), (3)")
    stats: dict[str, Any] = {"statements": 0, "texts": []}

    @event.listens_for(db.engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        stats["statements"] += 1
        stats["texts"].append(statement)

    yield db, docs, stats
    db.close()


def expected_ids(spec: dict[str, Any]) -> set[str]:
    return {str(i) for i, meta in enumerate(ROWS) if filter_oracle.matches(spec, meta)}


def _canary_intact(db: vectorpg.Database) -> bool:
    with db.psycopg_connection() as raw:
        return raw.execute("SELECT count(*) FROM canary").fetchone() == (3,)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=filters)
def test_python_api_against_the_oracle(fuzz_db: Any, spec: Any) -> None:
    db, docs, stats = fuzz_db
    try:
        filter_oracle.check(spec)
        valid = True
    except filter_oracle.Invalid:
        valid = False
    before = stats["statements"]
    if not valid:
        with pytest.raises(vectorpg.FilterError):
            docs.count(spec)
        assert stats["statements"] == before  # refused before any SQL ran
        return
    # (a) no marked value or key in the SQL text: they are bound parameters
    compiled = str(compile_filter(spec, documents_table.c.metadata).compile(dialect=postgresql.dialect()))
    assert MARK not in compiled
    # (b) the rows equal the oracle's
    got = {h.id for h in docs.search([1, 1, 1, 1], len(ROWS), where=spec, strategy="exact")}
    assert got == expected_ids(spec)
    # (c) what reached the server: no payload (pg_sleep among them) in any statement text, canary intact
    assert not any(MARK in text for text in stats["texts"])
    stats["texts"].clear()
    assert _canary_intact(db)


def _as_sql_argument(spec: Any) -> tuple[bool, str | None]:
    """(the oracle accepts the filter, its JSON text for a SQL function or None when it has none)."""
    try:
        filter_oracle.check(spec)
        return True, json.dumps(spec)
    except (filter_oracle.Invalid, TypeError, ValueError):
        try:
            return False, json.dumps(spec, allow_nan=False)
        except (TypeError, ValueError):
            return False, None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=filters)
def test_sql_functions_against_the_oracle(fuzz_db: Any, module_database_url: str, spec: Any) -> None:
    db, _, _ = fuzz_db
    valid, text = _as_sql_argument(spec)
    if text is None:
        return  # not JSON at all: nothing a SQL caller could send
    with psycopg.connect(module_database_url) as conn:
        clause, _ = (
            conn.execute("SELECT clause, params FROM vectorpg.filter_sql(%s)", [text]).fetchone()
            if valid
            else (
                "",
                None,
            )
        )
        assert MARK not in clause
        if not valid:
            with pytest.raises(psycopg.DataError):
                conn.execute("SELECT * FROM vectorpg.search('fuzz', '[1,1,1,1]', 1000, %s)", [text])
            return
        rows = conn.execute("SELECT id FROM vectorpg.search('fuzz', '[1,1,1,1]', 1000, %s)", [text]).fetchall()
    assert {r[0] for r in rows} == expected_ids(spec)
    assert _canary_intact(db)


@settings(max_examples=200, deadline=None)
@given(name=st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE_KEYS)))
def test_hostile_names_are_refused_before_sql(name: str) -> None:
    """Collection, table, column and index names: valid identifiers or an error, nothing in between."""
    from vectorpg.validation import collection_name, identifier

    for check in (collection_name, identifier):
        try:
            accepted = check(name)
        except vectorpg.InvalidIdentifierError:
            continue
        assert accepted == name and name.isascii() and "'" not in name and ";" not in name and " " not in name


@pytest.fixture(scope="module")
def fuzz_table(fuzz_db: Any, module_database_url: str) -> str:
    """ROWS as an application's own table: typed columns b, flag, n, tag and the jsonb column nested (``a``,
    of mixed types, has no column: filters on it are refused)."""
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE fuzz_rows (id int PRIMARY KEY, b text, flag boolean, n float8, nested jsonb, tag text,"
            " embedding vector(4))"
        )
        with conn.cursor().copy("COPY fuzz_rows FROM STDIN") as copy:
            for i, meta in enumerate(ROWS):
                nested = json.dumps(meta["nested"]) if "nested" in meta else None
                row = [meta.get("b"), meta.get("flag"), meta.get("n"), nested, meta.get("tag")]
                copy.write_row([i, *row, "[1,1,1,1]"])
    return module_database_url


def _as_table_row(meta: dict[str, Any]) -> dict[str, Any]:
    """What the table holds of a row, as the oracle reads it: its columns, NULL as a missing key."""
    return {k: v for k, v in meta.items() if k in ("b", "flag", "n", "nested", "tag") and v is not None}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=filters)
def test_table_search_against_the_oracle(fuzz_db: Any, fuzz_table: str, spec: Any) -> None:
    """vectorpg.search_table: the oracle's rows over the table's columns, or (a filter the table's types
    cannot answer: a column that is not there, a value of another type, NULL) a 22023 error saying so."""
    valid, text = _as_sql_argument(spec)
    if text is None:
        return
    with psycopg.connect(fuzz_table) as conn:
        try:
            clause = conn.execute("SELECT clause FROM vectorpg.filter_sql(%s, 'fuzz_rows')", [text]).fetchone()[0]  # type: ignore[index]
            rows = conn.execute(
                "SELECT (row_data->>'id')::int FROM vectorpg.search_table('fuzz_rows', 'embedding', '[1,1,1,1]',"
                " 1000, %s, metric => 'l2')",
                [text],
            ).fetchall()
        except psycopg.DataError as error:
            # refused: every filter the oracle refuses, and valid ones only with the filter language's own error
            assert not valid or (error.sqlstate == "22023" and str(error).startswith("invalid filter at ")), str(error)
            return
    assert valid, "a filter the oracle refuses was run"
    assert MARK not in clause
    assert {r[0] for r in rows} == {
        i for i, meta in enumerate(ROWS) if filter_oracle.matches(spec, _as_table_row(meta))
    }
    assert _canary_intact(fuzz_db[0])

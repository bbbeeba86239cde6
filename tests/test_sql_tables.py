"""vectorpg.search_table and vectorpg.hybrid_search_table: the SQL functions over an application's own table
(its columns, its indexes), checked against exact NumPy search over the same rows; the filter language over
typed columns (a column's btree index serves it), and every wrong table, column, type or value refused with
SQLSTATE 22023 / 42703 naming what was wrong."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

import vectorpg
from vectorpg.db.server import postgres_binary

N = 3000
DIM = 8
LANGS = ["en", "de", "fr", "es", "it"]
WORDS = ["signal", "process", "socket", "memory", "file", "thread", "pipe", "timer"]


def _row(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "lang": LANGS[i % 5],
        "stock": i % 100,
        "price": round((i * 7919 % 1000) / 10, 2),
        "active": i % 3 != 0,
        "launched": date(2020 + i % 5, 1 + i % 12, 1),
        "tags": [WORDS[i % 8], WORDS[(i // 8) % 8]],
        "meta": {"brand": f"b{i % 7}", "size": {"w": i % 4}},
        "body": f"{WORDS[i % 8]} {WORDS[(i * 3) % 8]} notes number {i}",
        "note": None if i % 10 == 0 else f"n{i % 4}",
    }


ROWS = [_row(i) for i in range(N)]

#: typed filters over the table's columns, each with the Python predicate of its rows
FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"lang": "de"}, lambda r: r["lang"] == "de"),
    ({"lang": {"$in": ["en", "fr"]}, "active": True}, lambda r: r["lang"] in ("en", "fr") and r["active"]),
    ({"stock": {"$gte": 10, "$lt": 20}}, lambda r: 10 <= r["stock"] < 20),
    ({"stock": 7.0}, lambda r: r["stock"] == 7),
    ({"stock": {"$lt": 2.5}}, lambda r: r["stock"] < 2.5),
    ({"price": {"$between": [10, 20.5]}}, lambda r: 10 <= r["price"] <= 20.5),
    ({"launched": {"$gte": "2023-01-01"}}, lambda r: r["launched"] >= date(2023, 1, 1)),
    ({"tags": {"$contains": "pipe"}}, lambda r: "pipe" in r["tags"]),
    ({"tags": {"$contains": ["pipe", "timer"]}}, lambda r: {"pipe", "timer"} <= set(r["tags"])),
    ({"meta.brand": "b3"}, lambda r: r["meta"]["brand"] == "b3"),
    ({"meta.size.w": {"$gt": 2}}, lambda r: r["meta"]["size"]["w"] > 2),
    ({"note": {"$exists": False}}, lambda r: r["note"] is None),
    ({"note": {"$ne": "n1"}}, lambda r: r["note"] != "n1"),
    ({"note": {"$nin": ["n1", "n2"]}}, lambda r: r["note"] not in ("n1", "n2")),
    ({"note": {"$like": "n_"}, "lang": {"$ne": "en"}}, lambda r: r["note"] is not None and r["lang"] != "en"),
    ({"lang": {"$ilike": "D%"}}, lambda r: r["lang"] == "de"),
    ({"$or": [{"lang": "it"}, {"stock": {"$lte": 1}}]}, lambda r: r["lang"] == "it" or r["stock"] <= 1),
    ({"$not": {"active": False}, "id": {"$lt": 40}}, lambda r: r["active"] and r["id"] < 40),  # few rows: exact
    ({"$not": {"note": "n1"}}, lambda r: r["note"] != "n1"),  # a NULL column is a missing key: NOT matches it
    (
        {"$not": {"note": {"$in": ["n1", "n2"]}}, "lang": "fr"},
        lambda r: r["note"] not in ("n1", "n2") and r["lang"] == "fr",
    ),
]


@pytest.fixture(scope="module")
def table(module_database_url: str) -> Iterator[tuple[str, np.ndarray]]:
    db = vectorpg.connect(module_database_url)
    db.setup()
    db.close()
    vectors = np.random.default_rng(3).normal(size=(N, DIM)).astype(np.float32)
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(
            "CREATE TABLE products (id int PRIMARY KEY, lang text, stock int, price numeric(10, 2), active boolean,"
            " launched date, tags text[], meta jsonb, body text, note text, embedding vector(8),"
            " small halfvec(8), words tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED)"
        )
        columns = [*ROWS[0], "embedding", "small"]
        with conn.cursor().copy(f"COPY products ({', '.join(columns)}) FROM STDIN") as copy:
            for r, v in zip(ROWS, vectors, strict=True):
                vector = "[" + ",".join(map(str, v.tolist())) + "]"
                copy.write_row([*(json.dumps(x) if isinstance(x, dict) else x for x in r.values()), vector, vector])
        conn.execute("CREATE INDEX ON products USING hnsw (embedding vector_cosine_ops)")
        conn.execute("CREATE INDEX products_lang ON products (lang)")
        conn.execute("CREATE INDEX products_body ON products USING gin (to_tsvector('english', body))")
        conn.execute("ANALYZE products")
    yield module_database_url, vectors


def _cosine(vectors: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 1 - (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))


def _search(url: str, q: Any, k: int, where: dict[str, Any], **options: Any) -> list[tuple[dict[str, Any], float]]:
    named = "".join(f", {name} => %({name})s" for name in options)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        return conn.execute(  # type: ignore[return-value]
            "SELECT row_data, distance FROM vectorpg.search_table('products', 'embedding', %(q)s, %(k)s, %(f)s"
            f"{named})",
            {"q": q, "k": k, "f": json.dumps(where), **options},
        ).fetchall()


@pytest.mark.parametrize("where,keep", FILTERS, ids=[json.dumps(f[0]) for f in FILTERS])
def test_search_table_agrees_with_exact_search(table: Any, where: dict[str, Any], keep: Any) -> None:
    url, vectors = table
    matching = np.array([i for i, r in enumerate(ROWS) if keep(r)])
    k = 10
    recalls = []
    for seed in range(5):
        q = np.random.default_rng(100 + seed).normal(size=DIM).astype(np.float32)
        got = _search(url, q, k, where)
        assert len(got) == min(k, len(matching))
        ids = [row["id"] for row, _ in got]
        assert set(ids) <= set(matching.tolist()), "a row that does not match the filter"
        assert "embedding" not in got[0][0] and got[0][0]["lang"] in LANGS
        distances = [d for _, d in got]
        assert distances == sorted(distances)
        assert np.allclose(distances, _cosine(vectors[ids], q), atol=1e-5)
        exact = matching[np.argsort(_cosine(vectors[matching], q), kind="stable")[:k]]
        recalls.append(len(set(ids) & set(exact.tolist())) / len(exact))
    if len(matching) <= 2000:  # the planner answers exactly over few rows
        assert recalls == [1.0] * 5, recalls
    else:
        assert np.mean(recalls) >= 0.9, recalls


def test_a_metric_the_index_does_not_serve_is_answered_exactly(table: Any) -> None:
    url, vectors = table
    q = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    got = _search(url, q, 5, {"lang": "en"}, metric="l2")
    en = np.array([i for i, r in enumerate(ROWS) if r["lang"] == "en"])
    exact = en[np.argsort(np.linalg.norm(vectors[en] - q, axis=1))[:5]]
    assert [row["id"] for row, _ in got] == exact.tolist()


def test_a_halfvec_column(table: Any) -> None:
    url, vectors = table
    q = np.random.default_rng(11).normal(size=DIM).astype(np.float32)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT (row_data->>'id')::int FROM vectorpg.search_table('products', 'small', %s, 3, metric => 'l2')", [q]
        ).fetchall()
    assert [r[0] for r in rows] == np.argsort(np.linalg.norm(vectors - q, axis=1))[:3].tolist()


def test_a_filter_on_an_indexed_column_reads_its_btree(table: Any) -> None:
    url, _ = table
    with psycopg.connect(url) as conn:
        clause, params = conn.execute(
            "SELECT clause, params::text FROM vectorpg.filter_sql(%s, 'products')", [json.dumps({"lang": "fr"})]
        ).fetchone()  # type: ignore[misc]
        assert "fr" not in clause  # the value is a parameter
        conn.execute("SET enable_seqscan = off")  # a tiny table: the question is whether the index can serve
        plan = conn.execute(
            "EXPLAIN WITH filter_params AS MATERIALIZED (SELECT %s::jsonb[] AS p)"
            f" SELECT 1 FROM products d WHERE {clause}",
            [params],
        ).fetchall()
    assert "products_lang" in "\n".join(r[0] for r in plan)


def test_hybrid_search_table(table: Any) -> None:
    url, vectors = table
    q = vectors[5] + 0.01
    with psycopg.connect(url) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT (row_data->>'id')::int, row_data->>'body', vector_rank, text_rank FROM "
            "vectorpg.hybrid_search_table('products', 'embedding', 'body', 'socket pipes', %s, 10, %s)",
            [q, json.dumps({"lang": {"$in": ["en", "de"]}})],
        ).fetchall()
        text_only = conn.execute(
            "SELECT (row_data->>'id')::int, vector_rank FROM vectorpg.hybrid_search_table('products', 'embedding',"
            " 'words', 'socket pipes', NULL, 10)"
        ).fetchall()
        plan = conn.execute(
            "EXPLAIN SELECT 1 FROM products d WHERE to_tsvector('english'::regconfig, d.body) @@ "
            "vectorpg.text_query('english', 'socket pipes')"
        ).fetchall()
    assert len(rows) == 10 and all(ROWS[i]["lang"] in ("en", "de") for i, *_ in rows)
    assert (5, 1) in [(i, v) for i, _, v, _ in rows]  # the nearest row, first of the vector leg
    assert any(t is not None for *_, t in rows) and any(v is not None for *_, v, _ in rows)
    assert all(r[2] is not None or r[3] is not None for r in rows)
    assert len(text_only) == 10 and all(v is None for _, v in text_only)
    assert all({"socket", "pipe"} & set(ROWS[i]["body"].split()) for i, _ in text_only)
    assert "products_body" in "\n".join(r[0] for r in plan)  # the text leg's form is the GIN index's expression


@pytest.mark.parametrize(
    "call,message",
    [
        ("search_table('products', 'embedding', %(q)s, 5, '{\"colour\": \"red\"}')", "has no column colour"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"stock\": \"7\"}')", "compare it with a number"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"lang\": 7}')", "compare it with a string"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"active\": 1}')", "compare it with a boolean"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"note\": null}')", '{"$exists": false}'),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"lang.x\": 1}')", "no path into it"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"lang\": {\"$contains\": \"e\"}}')", "array columns"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"tags\": \"pipe\"}')", "filter it with $contains"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"meta\": {\"$eq\": 1}}')", "a key inside it"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"stock\": {\"$like\": \"1%%\"}}')", "matches text"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"active\": {\"$gt\": true}}')", "does not order"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"embedding\": 1}')", "which filters do not compare"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"x\\u0027) OR 1=1 --\": 1}')", "invalid metadata key"),
        ("search_table('products', 'embedding', %(q)s, 5, '{\"lang\": {\"$regex\": \"e\"}}')", "unknown operator"),
        ("search_table('products', 'body', %(q)s, 5)", "searches vector and halfvec columns"),
        ("search_table('products', 'nosuch', %(q)s, 5)", "has no column nosuch"),
        ("search_table('products', 'embedding', '[1,2,3]', 5)", "the query has 3 dimensions"),
        ("search_table('products', 'embedding', '[0,0,0,0,0,0,0,0]', 5)", "zero query vector"),
        ("search_table('products', 'small', %(q)s, 5)", "metric => 'cosine'"),
        ("search_table('products', 'embedding', %(q)s, 5, metric => 'dot')", "unknown metric"),
        ("search_table('products', 'embedding', %(q)s, 0)", "k must be"),
        ("hybrid_search_table('products', 'embedding', 'stock', 'x', %(q)s, 5)", "reads a text or tsvector column"),
        ("hybrid_search_table('products', 'embedding', 'body', ' ', %(q)s, 5)", "non-empty query text"),
        ("search_table('no_such_table', 'embedding', %(q)s, 5)", "does not exist"),
    ],
)
def test_wrong_calls_name_what_was_wrong(table: Any, call: str, message: str) -> None:
    url, _ = table
    q = np.ones(DIM, dtype=np.float32)
    with psycopg.connect(url) as conn:
        register_vector(conn)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(f"SELECT * FROM vectorpg.{call}", {"q": q})
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (N,)
    error = caught.value
    assert error.sqlstate in ("22023", "42703", "42P01"), (error.sqlstate, str(error))
    assert message in (str(error) + " " + str(error.diag.message_hint)), str(error)


def test_psql_searches_a_table(table: Any, tmp_path: Path) -> None:
    url, vectors = table
    q = "[" + ",".join(map(str, vectors[41].tolist())) + "]"
    script = tmp_path / "search.sql"
    script.write_text(
        "SELECT p.id, p.lang, s.distance < 1e-6 AS itself FROM vectorpg.search_table('products', 'embedding', "
        f"'{q}', 1, '{{\"lang\": \"de\"}}') s, jsonb_populate_record(NULL::products, s.row_data) p;\n"
    )
    out = subprocess.run(
        [str(postgres_binary("psql")), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert out == "41|de|t"  # row 41 is German (41 % 5 = 1), typed again as a products row

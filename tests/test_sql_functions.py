"""The SQL functions of sql/functions.sql, called through plain psycopg (no ORM) and through the embedded
server's psql: same results as the Python store API on the same rows, k rows whenever k match, and hostile
names and filters rejected before any SQL is built from them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
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


def _metadata(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "cat": f"c{i % 20}",
        "n": i % 100,
        "score": (i * 7919 % 1000) / 1000,
        "tag": ["x", "y", "z"][i % 3],
        "flag": bool(i % 2),
        "nested": {"a": {"b": i % 5}},
        "mixed": i % 4 if i % 2 else str((i // 2) % 4),  # a number on odd rows, a string on even rows
    }
    if i % 7 == 0:
        meta["maybe"] = None
    elif i % 7 == 1:
        meta["maybe"] = "here"
    if i % 500 == 0:
        meta["rare"] = "yes"
    return meta


FILTERS: list[dict[str, Any]] = [
    {},
    {"cat": "c3"},
    {"cat": {"$ne": "c3"}},
    {"n": {"$gte": 50, "$lt": 60}},
    {"tag": {"$in": ["x", "z"]}},
    {"tag": {"$nin": ["x"]}},
    {"flag": True},
    {"flag": 1},
    {"n": 1.0},
    {"maybe": None},
    {"maybe": {"$exists": True}},
    {"maybe": {"$exists": False}},
    {"nested.a.b": 3},
    {"nested.a.b": {"$gt": 2}},
    {"mixed": 1},
    {"mixed": "1"},
    {"mixed": {"$lt": 2}},
    {"mixed": {"$lt": "2"}},
    {"$not": {"cat": "c1"}},
    {"$or": [{"cat": "c1"}, {"n": {"$lte": 3}}]},
    {"$and": [{"tag": "x"}, {"$not": {"flag": False}}]},
    {"rare": "yes"},
    {"missing": {"$ne": 5}},
    {"score": {"$gt": 0.5}, "cat": {"$in": ["c1", "c2", "c3"]}},
    {"tag": {"$gte": "y"}, "n": {"$ne": 1}},
    {"n": {"$between": [10, 20]}},
    {"cat": {"$between": ["c1", "c2"]}},
    {"cat": {"$like": "c_"}},
    {"cat": {"$ilike": "C1%"}},
    {"tag": {"$like": "%y%"}, "n": {"$lt": 90}},
    {"$not": {"cat": {"$like": "c1%"}}},
]


@pytest.fixture(scope="module")
def store(module_database_url: str) -> Iterator[tuple[str, vectorpg.Database, np.ndarray]]:
    """Two collections with the same rows: ``plain`` (no index: every search exact) and ``indexed`` (HNSW)."""
    db = vectorpg.connect(module_database_url)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    texts = [
        f"note {i} about {'cats' if i % 3 else 'dogs'} and {'graphs' if i % 5 == 0 else 'lists'}" for i in range(N)
    ]
    for name in ("plain", "indexed"):
        collection = db.collection(name, dimension=DIM, embedder=None)
        collection.add(
            texts, vectors=vectors, ids=[str(i) for i in range(N)], metadata=[_metadata(i) for i in range(N)]
        )
    db.collection("indexed", create=False, embedder=None).create_index()
    with db.psycopg_connection() as raw:
        raw.execute("ANALYZE vectorpg.documents")
    yield module_database_url, db, vectors
    db.close()


@pytest.fixture
def conn(store: tuple[str, vectorpg.Database, np.ndarray]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(store[0]) as connection:
        register_vector(connection)
        yield connection


def _query(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


def sql_search(conn: psycopg.Connection[Any], collection: str, q: Any, k: int, where: Any = None) -> list[Any]:
    rows = conn.execute(
        "SELECT id, distance FROM vectorpg.search(%s, %s, %s, %s)",
        [collection, q, k, json.dumps(where if where is not None else {})],
    ).fetchall()
    conn.rollback()
    return rows


@pytest.mark.parametrize("where", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filters_select_the_same_rows_as_the_python_api(store: Any, conn: Any, where: dict[str, Any]) -> None:
    """Every matching row (k larger than the table), in the same order with the same distances."""
    _, db, _ = store
    q = _query(1)
    got = sql_search(conn, "plain", q, N + 1, where)
    expected = db.collection("plain", embedder=None).search(q, N + 1, where=where, strategy="exact")
    assert [r[0] for r in got] == [h.id for h in expected]
    assert np.allclose([r[1] for r in got], [h.distance for h in expected], atol=1e-6)
    assert 0 < len(got) or where in ({"flag": 1},)  # every filter here matches something, but `true is not 1`


@pytest.mark.parametrize("where", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_indexed_search_returns_k_rows_and_agrees_with_exact(store: Any, conn: Any, where: dict[str, Any]) -> None:
    _, db, _ = store
    k = 10
    matching = db.collection("plain", embedder=None).count(where)
    recalls = []
    for seed in range(5):
        q = _query(100 + seed)
        exact = [h.id for h in db.collection("plain", embedder=None).search(q, k, where=where, strategy="exact")]
        got = [r[0] for r in sql_search(conn, "indexed", q, k, where)]
        python = [h.id for h in db.collection("indexed", embedder=None).search(q, k, where=where)]
        assert len(got) == len(exact)  # k whenever k match, else all that match
        if matching <= 2000:
            assert got == exact  # few matches: the exact plan, like the Python planner's
        if exact:
            recalls.append(len(set(got) & set(exact)) / len(exact))
            recalls.append(len(set(python) & set(exact)) / len(exact))
    if not recalls:
        assert matching == 0
        return
    assert np.mean(recalls) >= 0.9


def test_the_smallest_filter_gets_k_rows_through_the_index(store: Any, conn: Any) -> None:
    """6 of 3,000 rows match: an HNSW scan would see about none of them; the exact path finds all."""
    got = sql_search(conn, "indexed", _query(3), 10, {"rare": "yes"})
    assert sorted(r[0] for r in got) == sorted(str(i) for i in range(0, N, 500))


def test_hybrid_search_equals_the_python_api(store: Any, conn: Any) -> None:
    _, db, _ = store
    q = _query(5)
    for where in ({}, {"tag": "x"}, {"n": {"$lt": 10}}):
        rows = conn.execute(
            "SELECT id, score, vector_rank, text_rank FROM vectorpg.hybrid_search(%s, %s, %s, %s, %s)",
            ["plain", "dogs graphs", q, 10, json.dumps(where)],
        ).fetchall()
        hits = db.collection("plain", embedder=None).hybrid_search("dogs graphs", 10, vector=q, where=where)
        assert [r[0] for r in rows] == [h.id for h in hits]
        assert np.allclose([r[1] for r in rows], [h.score.score for h in hits])
        assert [(r[2], r[3]) for r in rows] == [(h.score.vector_rank, h.score.text_rank) for h in hits]
        assert any(r[3] is not None for r in rows)  # the text leg found something


def test_hybrid_text_leg_alone(conn: Any) -> None:
    rows = conn.execute("SELECT id, text_rank FROM vectorpg.hybrid_search('plain', 'graphs', NULL, 5)").fetchall()
    assert len(rows) == 5 and all(r[1] is not None for r in rows)


def test_settings_are_restored_after_a_search(conn: Any) -> None:
    conn.execute("SET hnsw.ef_search = 77")
    conn.execute("SET enable_indexscan = on")
    for where in ({"tag": "x"}, {"rare": "yes"}, {}):  # the index path, the exact path, no filter
        conn.execute("SELECT count(*) FROM vectorpg.search('indexed', %s, 50, %s)", [_query(9), json.dumps(where)])
        settings = conn.execute(
            "SELECT current_setting('enable_indexscan'), current_setting('hnsw.ef_search'), "
            "current_setting('hnsw.iterative_scan')"
        ).fetchone()
        assert settings == ("on", "77", "off")


def test_collections_made_in_sql_open_in_python_and_back(store: Any, conn: Any) -> None:
    _, db, _ = store
    assert conn.execute("SELECT vectorpg.create_collection('from_sql', 3, 'l2')").fetchone() == (True,)
    assert conn.execute("SELECT vectorpg.create_collection('from_sql', 3, 'l2')").fetchone() == (False,)
    with pytest.raises(psycopg.errors.DuplicateTable, match="exists with dimension 3"):
        conn.execute("SELECT vectorpg.create_collection('from_sql', 4, 'l2')")
    conn.rollback()
    conn.execute("SELECT vectorpg.create_collection('from_sql', 3, 'l2')")
    conn.execute(
        "INSERT INTO vectorpg.documents (collection, id, embedding) VALUES ('from_sql', 'a', '[1,2,3]'), "
        "('from_sql', 'b', '[3,2,1]')"
    )
    conn.commit()
    collection = db.collection("from_sql", embedder=None)
    assert (collection.dimension, collection.metric.metric.value) == (3, "l2")
    assert [h.id for h in collection.search([1, 2, 2.5], 1)] == ["a"]
    assert db.drop_collection("from_sql")
    assert conn.execute("SELECT to_regclass('vectorpg.documents_from_sql')").fetchone() == (None,)
    assert conn.execute("SELECT vectorpg.drop_collection('from_sql')").fetchone() == (False,)


HOSTILE_NAMES = [
    "notes; DROP TABLE vectorpg.documents",
    "x' OR '1'='1",
    'a"b',
    "pla in",
    "plain\n",
    "1plain",
    "",
    "a" * 49,
    "plain\x01",
    "plain OR 1=1",
]

HOSTILE_FILTERS: list[Any] = [
    {"a'; DROP TABLE canary; --": 1},
    {"lang') OR true --": "en"},
    {"metadata->>'x'": 1},
    {"$.a ? (@ > 1)": 1},
    {"a": {"$regex": ".*"}},
    {"$where": "sleep(10)"},
    {"a": {"$eq": {"$gt": 1}}},
    {"a": {"$in": []}},
    {"a": {"$in": "x"}},
    {"a": {"$lt": True}},
    {"a": {"$lt": None}},
    {"a": {"$exists": "yes"}},
    {"a": {}},
    {"a": [1, 2]},
    {"$and": []},
    {"$or": {"a": 1}},
    {"$not": [1]},
    {"a": {"$in": list(range(10_001))}},
    {"": 1},
    {"a..b": 1},
    {"a." + "b" * 64: 1},
    [{"a": 1}],
    "a = 1",
    {"a": "x" * 70_000},
]


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        spec = {"$not": spec}
    return spec


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_collection_names_are_errors(conn: Any, name: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid collection name"):
        conn.execute("SELECT * FROM vectorpg.search(%s, %s, 1)", [name, _query(0)])
    conn.rollback()


def test_a_valid_name_with_dashes_is_a_name_not_a_comment(conn: Any) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable, match="collection 'plain--' does not exist"):
        conn.execute("SELECT * FROM vectorpg.search('plain--', %s, 1)", [_query(0)])
    conn.rollback()


@pytest.mark.parametrize("where", [*HOSTILE_FILTERS, _nested(40)], ids=lambda f: json.dumps(f)[:40])
def test_hostile_filters_are_errors_in_sql_and_in_python(store: Any, conn: Any, where: Any) -> None:
    _, db, _ = store
    conn.execute("CREATE TABLE IF NOT EXISTS canary (x int)")
    conn.commit()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid filter"):
        conn.execute("SELECT * FROM vectorpg.search('plain', %s, 5, %s)", [_query(0), json.dumps(where)])
    conn.rollback()
    with pytest.raises(vectorpg.FilterError):
        db.collection("plain", embedder=None).search(_query(0), 5, where=where)
    assert conn.execute("SELECT to_regclass('canary') IS NOT NULL").fetchone() == (True,)


def test_filter_values_are_parameters_never_sql(conn: Any) -> None:
    payload = "x'); DROP TABLE canary; --"
    clause, params = conn.execute(
        "SELECT clause, params FROM vectorpg.filter_sql(%s)",
        [json.dumps({"a": payload, "b": {"$in": [payload, 3]}, "c": {"$gt": payload}})],
    ).fetchone()
    assert payload not in clause and "DROP" not in clause
    assert payload in json.dumps(params)
    assert conn.execute(
        "SELECT count(*) FROM vectorpg.search('plain', %s, 5, %s)", [_query(0), json.dumps({"a": payload})]
    ).fetchone() == (0,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT * FROM vectorpg.search('nope', %s, 1)", "does not exist"),
        ("SELECT * FROM vectorpg.search('plain', %s, 0)", "k must be"),
        ("SELECT * FROM vectorpg.search('plain', '[1,2]'::vector, 1)", "has 2 dimensions"),
        ("SELECT * FROM vectorpg.search('plain', '[0,0,0,0,0,0,0,0]'::vector, 1)", "zero query vector"),
        ("SELECT * FROM vectorpg.hybrid_search('plain', '  ', %s, 1)", "non-empty query text"),
        ("SELECT * FROM vectorpg.hybrid_search('plain', 'x', %s, 1, '{}', -1)", "rrf_k"),
        ("SELECT vectorpg.create_collection('x', 0)", "dimension must be"),
        ("SELECT vectorpg.create_collection('x', 3, 'dot; drop')", "unknown metric"),
    ],
)
def test_bad_arguments_are_clear_errors(conn: Any, call: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(call, [_query(0)] if "%s" in call else None)
    conn.rollback()


def test_psql_gets_the_python_results(store: Any, tmp_path: Path) -> None:
    """The same searches through `psql -f` (the embedded server's psql), compared with the Python API."""
    url, db, _ = store
    q = _query(11)
    literal = "[" + ",".join(repr(float(x)) for x in q) + "]"
    cases = [({}, "indexed"), ({"tag": "x"}, "indexed"), ({"rare": "yes"}, "indexed"), ({"n": {"$lt": 5}}, "plain")]
    lines = ["\\pset format unaligned", "\\pset tuples_only on"]
    for where, name in cases:
        lines.append(
            f"SELECT string_agg(id, ',') FROM vectorpg.search('{name}', '{literal}', 10, '{json.dumps(where)}');"
        )
    script = tmp_path / "search.sql"
    script.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [str(postgres_binary("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line]
    expected = [",".join(h.id for h in db.collection(name, embedder=None).search(q, 10, where=w)) for w, name in cases]
    assert printed == expected


def test_a_collection_created_meanwhile_with_other_settings(
    store: Any, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the name between our lookup and our create: a clear mismatch error."""
    _, db, _ = store
    conn.execute("SELECT vectorpg.create_collection('raced', 3, 'l2')")
    conn.commit()
    import vectorpg.store.registry as registry

    lookup = registry._record
    seen: list[str] = []

    def not_there_yet(database: Any, name: str) -> Any:
        seen.append(name)
        return None if len(seen) == 1 else lookup(database, name)  # the first lookup ran before the other create

    monkeypatch.setattr(registry, "_record", not_there_yet)
    with pytest.raises(vectorpg.CollectionMismatchError, match="dimension"):
        db.collection("raced", dimension=4, embedder=None)
    assert len(seen) == 2


def test_the_sql_planner_uses_the_python_planners_threshold() -> None:
    from vectorpg.own_schema.scripts import read_script
    from vectorpg.search.planner import DEFAULT_CONFIG

    assert f"exact_max_rows constant int := {DEFAULT_CONFIG.exact_max_rows};" in read_script("functions.sql")

"""Filter size limits (issue 12, finding 2): a filter at every limit plans and runs in bounded server memory
through the SQL functions and the Python API, and a filter over a limit is refused before SQL is built.

Before the fix, ``vectorpg.search`` with ``{"i": {"$in": [0..N]}}`` peaked at 461 MiB of backend memory for
N = 4,000 and 2,727 MiB for N = 10,000 (each ``$in`` value referenced the whole parameter array, which the
planner copied once per reference).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vectorpg
from vectorpg import FilterError
from vectorpg import filters as F
from vectorpg.own_schema.tables import documents_table

N = 2000
DIM = 8
PEAK_LIMIT_MIB = 64


def _peak_mib(conn: psycopg.Connection[Any]) -> float:
    """VmHWM (the peak resident set) of this connection's backend, in MiB."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    for line in Path(f"/proc/{row[0]}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture(scope="module")
def limits_db(module_database_url: str) -> Iterator[tuple[str, vectorpg.Database]]:
    db = vectorpg.connect(module_database_url)
    collection = db.collection("limits", dimension=DIM, metric="l2", embedder=None)
    rng = np.random.default_rng(3)
    collection.add(
        [f"row {i}" for i in range(N)],
        vectors=rng.normal(size=(N, DIM)).astype(np.float32),
        ids=[str(i) for i in range(N)],
        metadata=[{"i": i, "j": i % 7, "s": f"s{i % 13}"} for i in range(N)],
    )
    yield module_database_url, db
    db.close()


# The largest filters the limits allow, one per shape that stresses the planner differently.
LARGEST = {
    "one $in of 10,000 values": {"i": {"$in": list(range(F.MAX_LIST))}},
    "$or of two $in of 10,000": {
        "$or": [{"i": {"$in": list(range(F.MAX_LIST))}}, {"j": {"$in": list(range(F.MAX_LIST, 2 * F.MAX_LIST))}}]
    },
    "256 $eq of 950-character strings": {"$or": [{"s": f"{n:04d}" + "x" * 946} for n in range(F.MAX_CONDITIONS)]},
    "256 range conditions": {"$and": [{"i": {"$gte": -n}} for n in range(F.MAX_CONDITIONS)]},
    "200 $in of 150 values": {"$or": [{"i": {"$in": list(range(n * 150, n * 150 + 150))}} for n in range(200)]},
}


@pytest.mark.parametrize("shape", list(LARGEST))
def test_largest_allowed_filter_stays_under_64_mib(limits_db: tuple[str, vectorpg.Database], shape: str) -> None:
    url, db = limits_db
    spec = LARGEST[shape]
    F.check_filter_size(spec)  # allowed by every limit
    query = np.zeros(DIM, dtype=np.float32).tolist()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '60s'")
        rows = conn.execute(
            "SELECT id FROM vectorpg.search('limits', %s::real[]::vector, 5, %s::jsonb)", [query, json.dumps(spec)]
        ).fetchall()
        peak = _peak_mib(conn)
    assert peak < PEAK_LIMIT_MIB, f"{shape}: backend peak {peak:.0f} MiB"
    # the same filter through the Python API gives the same rows
    python_ids = [hit.id for hit in db.collection("limits", embedder=None).search(query, k=5, where=spec)]
    assert [r[0] for r in rows] == python_ids


OVER = {
    "a $in of 10,001 values": ({"i": {"$in": list(range(F.MAX_LIST + 1))}}, "longer than 10000"),
    "257 conditions": (
        {"$or": [{"i": n, "j": n} for n in range(F.MAX_CONDITIONS // 2)] + [{"s": "x"}]},
        "more than 256 conditions",
    ),
    "an $or of 257 filters": ({"$or": [{"$and": [{"i": n}]} for n in range(F.MAX_ARITY + 1)]}, "more than 256"),
    "65 keys in one object": ({f"k{n}": n for n in range(F.MAX_KEYS + 1)}, "more than 64 keys"),
    "300 KB of JSON": ({"$or": [{"s": "x" * 60_000} for _ in range(5)]}, "bytes of JSON"),
}


@pytest.mark.parametrize("case", list(OVER))
def test_filter_over_a_limit_is_refused_in_python_and_sql(limits_db: tuple[str, vectorpg.Database], case: str) -> None:
    url, db = limits_db
    spec, message = OVER[case]
    with pytest.raises(FilterError, match=message):
        db.collection("limits", embedder=None).search([0.0] * DIM, k=3, where=spec)
    with psycopg.connect(url, autocommit=True) as conn:
        # refused while the filter is compiled, before any statement over the documents is planned
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute("SELECT * FROM vectorpg.filter_sql(%s::jsonb)", [json.dumps(spec)])


def test_deep_filter_is_a_filter_error_not_a_recursion_error(limits_db: tuple[str, vectorpg.Database]) -> None:
    _, db = limits_db
    spec: dict[str, Any] = {"i": 1}
    for _ in range(100_000):
        spec = {"$not": spec}
    with pytest.raises(FilterError, match="deeper than 32"):
        db.collection("limits", embedder=None).search([0.0] * DIM, k=3, where=spec)


def test_statement_timeout_holds_for_the_largest_filter(limits_db: tuple[str, vectorpg.Database]) -> None:
    url, _ = limits_db
    spec = LARGEST["$or of two $in of 10,000"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '50ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(
                "SELECT id FROM vectorpg.search('limits', %s::real[]::vector, 5, %s::jsonb)",
                [[0.0] * DIM, json.dumps(spec)],
            )


@st.composite
def near_the_limits(draw: Any) -> dict[str, Any]:
    """Filters around every limit: conditions, arity, keys per object, $in length, bytes."""
    shape = draw(st.sampled_from(["conditions", "arity", "keys", "list", "bytes"]))
    if shape == "conditions":
        n = draw(st.integers(F.MAX_CONDITIONS - 3, F.MAX_CONDITIONS + 3))
        pairs = [{"i": {"$gte": j}, "j": j % 7} for j in range((n + 1) // 2)]
        spec: dict[str, Any] = {"$and": pairs[: F.MAX_ARITY]}
        if n % 2:
            spec["s"] = "x"
        return spec
    if shape == "arity":
        return {"$or": [{"i": j} for j in range(draw(st.integers(F.MAX_ARITY - 2, F.MAX_ARITY + 2)))]}
    if shape == "keys":
        return {f"k{j}": j for j in range(draw(st.integers(F.MAX_KEYS - 2, F.MAX_KEYS + 2)))}
    if shape == "list":
        return {"i": {"$in": list(range(draw(st.integers(F.MAX_LIST - 2, F.MAX_LIST + 2))))}}
    size = draw(st.integers(F.MAX_FILTER_BYTES - 3000, F.MAX_FILTER_BYTES + 3000))
    return {"$or": [{"s": "y" * (size // 4 - 30)} for _ in range(4)]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=near_the_limits())
def test_python_and_sql_agree_at_the_limits(limits_db: tuple[str, vectorpg.Database], spec: dict[str, Any]) -> None:
    url, _ = limits_db
    try:
        F.compile_filter(spec, documents_table.c.metadata)
        python_ok = True
    except FilterError:
        python_ok = False
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute("SELECT clause FROM vectorpg.filter_sql(%s::jsonb)", [json.dumps(spec)])
            sql_ok = True
        except psycopg.errors.InvalidParameterValue:
            sql_ok = False
    # byte counts differ slightly between the two JSON renderings: within 2% of the limit either may refuse
    size = len(json.dumps(spec).encode())
    if abs(size - F.MAX_FILTER_BYTES) > F.MAX_FILTER_BYTES // 50:
        assert python_ok == sql_ok, f"python {'accepts' if python_ok else 'refuses'}, SQL does not ({size} bytes)"

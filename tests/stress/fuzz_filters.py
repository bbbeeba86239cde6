"""The filter fuzzing of tests/test_fuzz_filters.py at scale: ``python -m tests.stress.fuzz_filters --examples
100000`` runs that many generated filters through the Python API against the oracle (SQL text, rows,
canary, slow statements) and prints the count, how many were valid, refused, and the failures (0)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from sqlalchemy import event
from sqlalchemy.dialects import postgresql

import vectorpg
from tests import filter_oracle
from tests.test_fuzz_filters import MARK, ROWS, filters
from vectorpg.db.server import embedded_server
from vectorpg.filters import compile_filter
from vectorpg.own_schema.tables import documents_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args(argv)
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    server = embedded_server()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS vectorpg_fuzz WITH (FORCE)"))
        conn.execute(sql.SQL("CREATE DATABASE vectorpg_fuzz"))
    db = vectorpg.connect(make_url(server.url).set(database="vectorpg_fuzz").render_as_string(hide_password=False))
    docs = db.collection("fuzz", dimension=4, embedder=None)
    docs.add(
        vectors=np.random.default_rng(0).normal(size=(len(ROWS), 4)) + 0.01,
        ids=[str(i) for i in range(len(ROWS))],
        metadata=ROWS,
    )
    with db.psycopg_connection() as raw:
        raw.execute("CREATE TABLE canary (x int)")
        raw.execute("INSERT INTO canary VALUES (1), (2), (3)")
    counts = {"examples": 0, "valid": 0, "refused": 0, "failures": 0, "slowest_s": 0.0}
    statements = [0]
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=filters)
    def check(spec: Any) -> None:
        counts["examples"] += 1
        try:
            filter_oracle.check(spec)
        except filter_oracle.Invalid:
            before = statements[0]
            try:
                docs.count(spec)
                counts["failures"] += 1
            except vectorpg.FilterError:
                counts["refused"] += statements[0] == before
            return
        counts["valid"] += 1
        text = str(compile_filter(spec, documents_table.c.metadata).compile(dialect=postgresql.dialect()))
        start = time.perf_counter()
        got = {h.id for h in docs.search([1, 1, 1, 1], len(ROWS), where=spec, strategy="exact")}
        counts["slowest_s"] = max(counts["slowest_s"], time.perf_counter() - start)
        expected = {str(i) for i, meta in enumerate(ROWS) if filter_oracle.matches(spec, meta)}
        if MARK in text or got != expected:
            counts["failures"] += 1
        if counts["examples"] % 10_000 == 0:
            print(f"{counts}", flush=True)

    check()
    with db.psycopg_connection() as raw:
        canary = raw.execute("SELECT count(*) FROM canary").fetchone() == (3,)
    print(
        f"{counts['examples']:,} filters fuzzed: {counts['valid']:,} valid and matching the oracle, "
        f"{counts['refused']:,} refused before any SQL ran, {counts['failures']} failures; canary "
        f"{'intact' if canary else 'DAMAGED'}; slowest search {counts['slowest_s'] * 1000:.0f} ms"
    )
    return 0 if counts["failures"] == 0 and canary else 1


if __name__ == "__main__":
    sys.exit(main())

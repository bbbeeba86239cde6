"""The suite's fixtures live in plugins, one per concern (as psycopg's do): ``fix_db`` (the PostgreSQL
server and a fresh database per test), ``fix_embedders`` (deterministic embedders that need no model),
``fix_pgbouncer`` (a real PgBouncer in transaction mode), ``fix_replicas`` (a primary and two streaming
replicas) and ``fix_aio`` (the sync and the async API behind one face)."""

import os

pytest_plugins = ("tests.fix_db", "tests.fix_embedders", "tests.fix_pgbouncer", "tests.fix_aio", "tests.fix_replicas")

# No test talks to (or starts) a search helper left by someone's terminal: tests/test_cli_helper.py starts its
# own, in a directory of its own (vectorpg.cli.helper)
os.environ["VECTORPG_HELPER"] = "0"

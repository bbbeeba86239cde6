"""The suite's fixtures live in plugins, one per concern (as psycopg's do): ``fix_db`` (the PostgreSQL
server and a fresh database per test), ``fix_embedders`` (deterministic embedders that need no model) and
``fix_pgbouncer`` (a real PgBouncer in transaction mode) and ``fix_aio`` (the sync and the async API behind one
face)."""

pytest_plugins = ("tests.fix_db", "tests.fix_embedders", "tests.fix_pgbouncer", "tests.fix_aio")

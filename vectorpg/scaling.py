"""Tables past one machine: Citus's own sharding, driven from vectorpg.

::

    plan = vectorpg.scaling.distribute(db, Article, "tenant_id", shard_count=32)   # or a Collection, or a table name
    print(plan.statements)                                                       # what ran, as SQL text

:func:`distribute` runs Citus's ``create_distributed_table(table, column, shard_count => n, colocate_with =>
...)``. Citus then moves the rows into shards across its workers and builds every index of the table, HNSW
and IVFFlat included, on each shard (co-located: a shard's ANN index covers just that shard's rows). A
nearest-neighbour query ``ORDER BY embedding <=> q LIMIT k`` is pushed down to every shard (each returns its
``k`` nearest) and the coordinator merges them, so ``k`` rows come back whenever ``k`` match. Two things
vectorpg sets for it:

* ``citus.propagate_set_commands = 'local'`` for the database (a statement of the plan): a search's ``SET
  LOCAL`` settings (``hnsw.ef_search``, iterative scans) reach the shards' queries;
* on a distributed table, searches cast the query vector to its type in the SQL (``CAST(:query AS
  vector(n))``, :mod:`vectorpg.db.citus`): a prepared ``ORDER BY embedding <-> $1 LIMIT $2`` fails on Citus
  with "could not determine data type of parameter $1" (citus#7078).

A collection is a partition of ``vectorpg.documents``: distributing it means distributing that table on ``id``
(every collection spread over the workers), with vectorpg's small registry tables as reference tables, which
Citus copies to every node.

Citus is not installable on the machine this project is built on. ``docker compose --profile citus up``
(``docker-compose.yml``, image in ``docker/citus/``) starts a coordinator and two workers with pgvector. The
tests of the live path run when ``$VECTORPG_CITUS_URL`` names such a coordinator and skip otherwise. The
statements themselves are tested offline (:func:`distribution_statements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from sqlalchemy import Table, text

from vectorpg.db import citus
from vectorpg.db.engine import HasEngine, engine_of
from vectorpg.db.translate import translating
from vectorpg.errors import ConfigurationError, InvalidArgumentError
from vectorpg.own_schema.tables import SCHEMA
from vectorpg.validation import identifier

#: vectorpg's own tables that every node needs whole (small, read by every search's planning)
REFERENCE_TABLES = ("collections", "index_tuning", "embedding_cache")


@dataclass(frozen=True)
class DistributionPlan:
    """What :func:`distribute` ran: the table, its shard key and the statements (as SQL text)."""

    table: str
    shard_key: str
    statements: list[str]


def _table_of(target: Any) -> tuple[str | None, str, str | None]:
    """(schema, table, forced shard key) of a model class, a Repository, a Collection or ``"schema.table"``."""
    if isinstance(target, str):
        schema, _, table = target.rpartition(".")
        return (identifier(schema, "schema") if schema else None), identifier(table, "table"), None
    if hasattr(target, "partition") and hasattr(target, "embedder_name"):  # a Collection: the whole store's table
        return SCHEMA, "documents", "id"
    found = getattr(target, "table", None)  # a Repository
    found = found if isinstance(found, Table) else getattr(target, "__table__", None)  # a model class
    if not isinstance(found, Table):
        raise InvalidArgumentError(
            f"distribute() takes a model class, a Repository, a Collection or a table name, got {type(target).__name__}"
        )
    return found.schema, found.name, None


def distribution_statements(
    target: Any, shard_key: str | None, *, shard_count: int | None = None, colocate_with: str | None = None
) -> list[sql.Composed]:
    """The statements :func:`distribute` runs for ``target`` (names as identifiers and values as literals:
    nothing of the caller's is spliced in as SQL)."""
    schema, table, forced = _table_of(target)
    key = forced or shard_key
    if key is None:
        raise InvalidArgumentError("distribute() needs the shard key: the column whose value picks a row's shard")
    if forced and shard_key not in (None, forced):
        raise InvalidArgumentError(f"a collection is distributed on {forced!r} (the store's table), not {shard_key!r}")
    identifier(key, "column")
    if shard_count is not None and (
        isinstance(shard_count, bool) or not isinstance(shard_count, int) or not 1 <= shard_count <= 64000
    ):
        raise InvalidArgumentError(f"shard_count is an integer from 1 to 64000, got {shard_count!r}")
    qualified = sql.Identifier(*([schema] if schema else []), table)
    statements: list[sql.Composed] = []
    if forced:  # the registry every node reads, whole, before the sharded documents
        statements += [
            sql.SQL("SELECT create_reference_table({})").format(sql.Literal(f"{SCHEMA}.{name}"))
            for name in REFERENCE_TABLES
        ]
    # a search's SET LOCAL settings (ef_search, iterative scans) must reach the shards' queries: for every
    # new connection to this database
    statements.append(
        sql.SQL(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', "
            "current_database(), 'local'); END $$"
        ).format()
    )
    options = [sql.SQL("shard_count => {}").format(sql.Literal(shard_count))] if shard_count else []
    if colocate_with is not None:
        options.append(sql.SQL("colocate_with => {}").format(sql.Literal(colocate_with)))
    statements.append(
        sql.SQL("SELECT create_distributed_table({}::regclass, {}{})").format(
            sql.Literal(qualified.as_string(None)),
            sql.Literal(key),
            sql.SQL("").join(sql.SQL(", ") + o for o in options),
        )
    )
    return statements


@translating("distributing a table")
def distribute(
    db: HasEngine,
    target: Any,
    shard_key: str | None = None,
    *,
    shard_count: int | None = None,
    colocate_with: str | None = None,
) -> DistributionPlan:
    """Shard ``target`` (a model class, a Repository, a Collection or ``"schema.table"``) on ``shard_key``
    across the Citus workers of ``db``'s coordinator: Citus's ``create_distributed_table``, which copies the
    rows into the shards and builds the table's indexes (HNSW too) on every shard. Raises
    :class:`ConfigurationError` when ``db`` is not a Citus coordinator."""
    statements = distribution_statements(target, shard_key, shard_count=shard_count, colocate_with=colocate_with)
    engine = engine_of(db)
    with engine.begin() as conn:
        found = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'citus'")).scalar()
        if found is None:
            raise ConfigurationError(
                "this database has no Citus (the citus extension is not installed): distribute() runs on a Citus "
                "coordinator. `docker compose --profile citus up` starts one with two workers and pgvector "
                "(docs/scaling.md)"
            )
        raw = conn.connection.driver_connection
        texts = [s.as_string(raw) for s in statements]
        for statement in texts:
            conn.exec_driver_sql(statement)
    citus.forget()
    engine.dispose()  # new connections: they get the database's citus.propagate_set_commands
    schema, table, forced = _table_of(target)
    return DistributionPlan(f"{schema + '.' if schema else ''}{table}", forced or str(shard_key), texts)


__all__: Sequence[str] = ["DistributionPlan", "distribute", "distribution_statements"]

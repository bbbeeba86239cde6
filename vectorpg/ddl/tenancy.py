"""Multi-tenant isolation with PostgreSQL row-level security (opt-in).

::

    enable_tenant_isolation(owner_db, Item, tenant_column="tenant", app_role="app")   # once, as the owner
    app_db = vectorpg.connect("postgresql://app@host/db")                           # not the owner
    with tenant_session(app_db, "acme") as session:                                 # one transaction
        repo = Repository(Item, session)
        repo.add_many([...]); repo.search(q, 10)                                    # acme's rows only

* The table gets a policy ``tenant_column = current_setting('vectorpg.tenant', true)`` for reads and
  writes (``USING`` and ``WITH CHECK``), ``ENABLE`` and ``FORCE ROW LEVEL SECURITY`` (the owner is bound
  too), and the application role gets the table privileges, nothing more.
* :func:`tenant_session` sets the tenant with ``set_config('vectorpg.tenant', tenant, true)``: local to
  the transaction, so it ends with it and can never leak through a connection pooler to the next
  request. Without a tenant set, the policy matches no row.
* A search under RLS filters the index's candidates afterwards, like any post-filter: on a shared HNSW
  index a small tenant can get fewer than ``k`` rows. Search with ``where=Item.tenant == tenant`` (the
  planner then counts the tenant's rows and scans them exactly when they are few), or partition the table
  by tenant (:class:`vectorpg.partitioning.Partitioning`), one index per tenant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql
from sqlalchemy import Engine, bindparam, func, select, true
from sqlalchemy.orm import Session

from vectorpg.db.engine import HasEngine, engine_of, raw_connection
from vectorpg.errors import InvalidArgumentError
from vectorpg.orm import table_of
from vectorpg.validation import identifier

SETTING = "vectorpg.tenant"
POLICY = "vectorpg_tenant_isolation"
_TENANT = re.compile(r"[^\x00]{1,256}\Z")


def enable_tenant_isolation(
    db: Engine | HasEngine,
    target: Any,
    *,
    tenant_column: str = "tenant",
    metadata_key: str | None = None,
    app_role: str | None = None,
    bind: str = "setting",
) -> None:
    """Turn on row-level security for ``target`` (a table or model) by ``tenant_column``; idempotent.

    Run it as the table's owner. The tenant of a row is ``tenant_column``, or with ``metadata_key`` the
    value of that key in the JSONB ``metadata`` column (the store's ``vectorpg.documents``:
    ``enable_tenant_isolation(db, vectorpg.models.documents_table, metadata_key="tenant")``).

    ``bind`` says where the current tenant comes from:

    * ``"setting"``: ``vectorpg.tenant``, set per transaction by :func:`tenant_session` (an empty or unset
      setting matches no row). A role that can run arbitrary SQL can set it to any tenant.
    * ``"role"``: the name of the connected role (``current_user``): one login role per tenant, which no
      client can change (it can ``SET ROLE`` only to roles it is a member of). Sound when the application
      runs untrusted SQL; each tenant gets its own pool.

    A partitioned table's partitions get the same policies (queries that name a partition obey only the
    partition's own), now and when created later by :func:`vectorpg.partitioning.create_partition` or
    ``vectorpg.create_collection``. ``app_role``, if given, is granted SELECT, INSERT, UPDATE and DELETE on
    the table (and USAGE on its schema and sequences): connect the application as that role.
    """
    table = table_of(target)
    if bind not in ("setting", "role"):
        raise InvalidArgumentError(f"bind is 'setting' or 'role', got {bind!r}")
    if metadata_key is not None:
        identifier(metadata_key, "metadata key")
        if "metadata" not in table.c:
            raise InvalidArgumentError(f"{table.name} has no metadata column to read {metadata_key!r} from")
        tenant: sql.Composable = sql.SQL("({} ->> {})").format(sql.Identifier("metadata"), sql.Literal(metadata_key))
    else:
        identifier(tenant_column, "column")
        if tenant_column not in table.c:
            raise InvalidArgumentError(f"{table.name} has no column {tenant_column!r} to isolate tenants by")
        tenant = sql.Identifier(tenant_column)
    current = (
        sql.SQL("nullif(current_setting({}, true), '')").format(sql.Literal(SETTING))  # '' once reset: unset
        if bind == "setting"
        else sql.SQL("current_user::text")
    )
    name = sql.Identifier(*([table.schema] if table.schema else []), table.name)
    check = sql.SQL("{} = {}").format(tenant, current)
    with raw_connection(engine_of(db)) as raw:
        raw.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(name))
        raw.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(name))
        raw.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(POLICY), name))
        raw.execute(
            sql.SQL("CREATE POLICY {} ON {} USING ({}) WITH CHECK ({})").format(
                sql.Identifier(POLICY), name, check, check
            )
        )
        sync_partition_security(raw, name)
        if app_role is not None:
            role = sql.Identifier(identifier(app_role, "role"))
            raw.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(name, role))
            schema = sql.Identifier(table.schema or "public")
            raw.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
            raw.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role))
            partitions = raw.execute(
                "SELECT n.nspname, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass",
                [name.as_string(raw)],
            ).fetchall()
            for schema_name, partition in partitions:  # queries that name a partition need its own grants
                raw.execute(
                    sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                        sql.Identifier(schema_name, partition), role
                    )
                )


def sync_partition_security(raw: Any, table: sql.Identifier, partition: sql.Identifier | None = None) -> None:
    """If ``table`` is partitioned, give its partitions (or only ``partition``) its row-level security
    (``vectorpg.sync_partition_security``, which needs vectorpg's SQL functions: :meth:`Database.setup`).
    Runs in ``raw``'s transaction."""
    regclass = table.as_string(raw)
    row = raw.execute("SELECT relkind::text FROM pg_class WHERE oid = %s::regclass", [regclass]).fetchone()
    if row is None or row[0] != "p":
        return
    signature = "vectorpg.sync_partition_security(regclass, regclass)"
    found = raw.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature]).fetchone()
    if not found or not found[0]:
        raise InvalidArgumentError(
            "row-level security on a partitioned table must reach its partitions, which needs vectorpg's SQL "
            "functions in this database: run Database.setup() once, then again"
        )
    only = partition.as_string(raw) if partition is not None else None
    raw.execute("SELECT vectorpg.sync_partition_security(%s::regclass, %s::regclass)", [regclass, only])


def check_tenant(tenant: object) -> str:
    """A tenant is a non-empty string (no NUL), at most 256 characters."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidArgumentError(f"a tenant is a non-empty string of at most 256 characters, got {tenant!r}")
    return tenant


def set_tenant(session: Session, tenant: str) -> None:
    """Make ``tenant`` the current tenant until the end of the session's current transaction."""
    session.execute(select(func.set_config(bindparam("n", SETTING), bindparam("t", check_tenant(tenant)), true())))


@contextmanager
def tenant_session(db: Engine | HasEngine, tenant: str) -> Iterator[Session]:
    """A session in one transaction, acting as ``tenant`` (committed at the end, rolled back on error)."""
    check_tenant(tenant)
    with Session(engine_of(db), expire_on_commit=False) as session, session.begin():
        set_tenant(session, tenant)
        yield session

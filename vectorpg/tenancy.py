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

from .connection import Database, engine_of, raw_connection
from .errors import InvalidArgumentError
from .models import table_of
from .validation import identifier

SETTING = "vectorpg.tenant"
POLICY = "vectorpg_tenant_isolation"
_TENANT = re.compile(r"[^\x00]{1,256}\Z")


def enable_tenant_isolation(
    db: Database | Engine, target: Any, *, tenant_column: str = "tenant", app_role: str | None = None
) -> None:
    """Turn on row-level security for ``target`` (a table or model) by ``tenant_column``; idempotent.

    Run it as the table's owner. ``app_role``, if given, is granted SELECT, INSERT, UPDATE and DELETE on
    the table (and USAGE on its schema and sequences): connect the application as that role.
    """
    table = table_of(target)
    identifier(tenant_column, "column")
    if tenant_column not in table.c:
        raise InvalidArgumentError(f"{table.name} has no column {tenant_column!r} to isolate tenants by")
    name = sql.Identifier(*([table.schema] if table.schema else []), table.name)
    check = sql.SQL("{} = current_setting({}, true)").format(sql.Identifier(tenant_column), sql.Literal(SETTING))
    with raw_connection(engine_of(db)) as raw:
        raw.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(name))
        raw.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(name))
        raw.execute(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(POLICY), name))
        raw.execute(
            sql.SQL("CREATE POLICY {} ON {} USING ({}) WITH CHECK ({})").format(
                sql.Identifier(POLICY), name, check, check
            )
        )
        if app_role is not None:
            role = sql.Identifier(identifier(app_role, "role"))
            raw.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(name, role))
            schema = sql.Identifier(table.schema or "public")
            raw.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
            raw.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role))


def check_tenant(tenant: object) -> str:
    """A tenant is a non-empty string (no NUL), at most 256 characters."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidArgumentError(f"a tenant is a non-empty string of at most 256 characters, got {tenant!r}")
    return tenant


def set_tenant(session: Session, tenant: str) -> None:
    """Make ``tenant`` the current tenant until the end of the session's current transaction."""
    session.execute(select(func.set_config(bindparam("n", SETTING), bindparam("t", check_tenant(tenant)), true())))


@contextmanager
def tenant_session(db: Database | Engine, tenant: str) -> Iterator[Session]:
    """A session in one transaction, acting as ``tenant`` (committed at the end, rolled back on error)."""
    check_tenant(tenant)
    with Session(engine_of(db), expire_on_commit=False) as session, session.begin():
        set_tenant(session, tenant)
        yield session

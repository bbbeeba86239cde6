"""Tenancy gaps of issue 12 (finding 5): an empty tenant setting is unset, row-level security holds on every
path of the store (partitions, the SQL functions), tenants bound to roles, and a least-privilege app role.

Before the fix: after any tenant_session on a pooled connection, a request without a tenant saw the rows
whose tenant is '' (the setting reverts to '', not NULL); with RLS on vectorpg.documents, Collection.search
and vectorpg.search read the partitions directly and returned other tenants' rows while count() said 0; a
non-owner role could not open a collection at all (ExtensionError "permission denied for database").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import BigInteger, Text, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import vectorpg
from vectorpg import vector_column
from vectorpg.ddl.tenancy import enable_tenant_isolation, tenant_session
from vectorpg.own_schema.tables import documents_table

DIM = 4
SUFFIX = f"{os.getpid()}"


def as_role(url: str, role: str, **query: str) -> str:
    parsed = make_url(url).set(username=role)
    if query:
        parsed = parsed.update_query_dict(query)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def roles(database_url: str) -> Iterator[Any]:
    made: list[str] = []

    def make(name: str) -> str:
        role = f"{name}_{SUFFIX}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
        made.append(role)
        return role

    yield make
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in made:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "tenant_notes"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant: Mapped[str] = mapped_column(Text)
    embedding = vector_column(DIM)


def test_an_empty_tenant_setting_matches_no_row(database_url: str, roles: Any) -> None:
    owner = vectorpg.connect(database_url)
    Base.metadata.create_all(owner.engine)
    app_role = roles("notes_app")
    enable_tenant_isolation(owner, Note, app_role=app_role)
    with owner.engine.begin() as conn:  # the superuser bypasses row-level security
        conn.execute(text("INSERT INTO tenant_notes VALUES (1, 'acme', '[1,0,0,0]'), (2, '', '[0,1,0,0]')"))
    app = vectorpg.connect(as_role(database_url, app_role), pool_size=1, max_overflow=0)
    try:
        with tenant_session(app, "acme") as session:
            assert session.execute(text("SELECT id FROM tenant_notes")).scalars().all() == [1]
        with Session(app.engine) as session:  # the same pooled connection, no tenant set
            assert session.execute(text("SELECT current_setting('vectorpg.tenant', true)")).scalar() == ""
            assert session.execute(text("SELECT count(*) FROM tenant_notes")).scalar() == 0
    finally:
        app.close()
        owner.close()


def _store(owner: vectorpg.Database, name: str) -> vectorpg.Collection:
    docs = owner.collection(name, dimension=DIM, metric="l2", embedder=None)
    rng = np.random.default_rng(1)
    docs.add(
        [f"{t} note {i}" for t in ("acme", "globex") for i in range(50)],
        vectors=rng.normal(size=(100, DIM)).astype(np.float32),
        ids=[f"{t}-{i}" for t in ("acme", "globex") for i in range(50)],
        metadata=[{"tenant": t} for t in ("acme", "globex") for i in range(50)],
    )
    return docs


def test_row_level_security_holds_on_every_path_of_the_store(database_url: str, roles: Any) -> None:
    owner = vectorpg.connect(database_url)
    _store(owner, "shared").create_index()
    acme, globex = roles("acme"), roles("globex")
    enable_tenant_isolation(owner, documents_table, metadata_key="tenant", bind="role")
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in (acme, globex):
            conn.execute("SELECT vectorpg.grant_app_role(%s)", [role])
        conn.execute("UPDATE vectorpg.documents SET metadata = jsonb_build_object('tenant', %s::text) "
                     "WHERE metadata->>'tenant' = 'acme'", [acme])  # fmt: skip
        conn.execute("UPDATE vectorpg.documents SET metadata = jsonb_build_object('tenant', %s::text) "
                     "WHERE metadata->>'tenant' = 'globex'", [globex])  # fmt: skip
    _store(owner, "later")  # a collection created after isolation was turned on
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE vectorpg.documents SET metadata = jsonb_build_object('tenant', %s::text) "
                     "WHERE collection = 'later'", [globex])  # fmt: skip
    app = vectorpg.connect(as_role(database_url, acme))
    try:
        query = [0.1, 0.2, 0.3, 0.4]
        for name, own in (("shared", 50), ("later", 0)):
            docs = app.collection(name, embedder=None)
            assert docs.count() == own
            for strategy in ("exact", "ann", "auto"):
                hits = docs.search(query, k=100, strategy=strategy) if name == "shared" or strategy == "exact" else []
                assert {h.metadata["tenant"] for h in hits} <= {acme}
                if name == "shared" and strategy == "exact":
                    assert len(hits) == 50
            assert docs.get([f"globex-{i}" for i in range(5)]) == []
        with psycopg.connect(as_role(database_url, acme)) as conn:
            rows = conn.execute(
                "SELECT metadata FROM vectorpg.search('shared', %s::real[]::vector, 100, %s)",
                [query, json.dumps({})],
            ).fetchall()
            assert rows and {r[0]["tenant"] for r in rows} == {acme}
            assert conn.execute("SELECT count(*) FROM vectorpg.documents_later").fetchone() == (0,)
            # a tenant cannot become another by setting a variable or switching roles
            conn.execute("SELECT set_config('vectorpg.tenant', %s, false)", [globex])
            assert conn.execute("SELECT count(*) FROM vectorpg.documents_shared").fetchone() == (50,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'SET ROLE "{globex}"')
    finally:
        app.close()
        owner.close()


def test_a_reembedded_collection_keeps_its_row_level_security(database_url: str, roles: Any) -> None:
    """reembed() replaces the collection's partition: the new one has the parent's policies and the app
    role's grants, so a tenant still sees its own rows and no others."""
    from tests.fix_embedders import HashEmbedder

    owner = vectorpg.connect(database_url)
    acme = roles("acme")
    try:
        _store(owner, "moved")
        enable_tenant_isolation(owner, documents_table, metadata_key="tenant", bind="role")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT vectorpg.grant_app_role(%s)", [acme])
            conn.execute("UPDATE vectorpg.documents SET metadata = jsonb_build_object('tenant', %s::text) "
                         "WHERE collection = 'moved' AND metadata->>'tenant' = 'acme'", [acme])  # fmt: skip
        owner.collection("moved", embedder=None).reembed(HashEmbedder(dimension=8), progress=False)
        with psycopg.connect(as_role(database_url, acme)) as conn:
            rows = conn.execute("SELECT metadata->>'tenant', vector_dims(embedding) FROM vectorpg.documents_moved")
            assert set(rows.fetchall()) == {(acme, 8)}
            assert conn.execute("SELECT count(*) FROM vectorpg.documents_moved").fetchone() == (50,)
    finally:
        owner.close()


def test_a_least_privilege_app_role_uses_existing_collections(database_url: str, roles: Any) -> None:
    owner = vectorpg.connect(database_url)
    _store(owner, "shared")
    app_role = roles("plain_app")
    refused = vectorpg.connect(as_role(database_url, app_role))
    with pytest.raises(vectorpg.PermissionDeniedError, match="grant_app_role"):
        refused.collection("shared", embedder=None)
    refused.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT vectorpg.grant_app_role(%s)", [app_role])
    app = vectorpg.connect(as_role(database_url, app_role))
    try:
        docs = app.collection("shared", embedder=None)
        docs.add(["from the app"], vectors=[[1.0, 0.0, 0.0, 0.0]], ids=["app-1"], metadata=[{"tenant": "acme"}])
        assert docs.count() == 101
        assert docs.search([1.0, 0.0, 0.0, 0.0], k=1)[0].id == "app-1"
        assert docs.delete(["app-1"]) == 1
        with pytest.raises(vectorpg.PermissionDeniedError):
            app.collection("new_one", dimension=DIM, embedder=None)
        with pytest.raises(vectorpg.IndexBuildError, match="must be owner"):
            docs.create_index()
        with psycopg.connect(as_role(database_url, app_role)) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE vectorpg.collections SET dimension = 3")
    finally:
        app.close()
        owner.close()

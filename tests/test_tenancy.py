"""Tenant isolation with row-level security: the application connects as a non-owner role, the tenant is set
per transaction, and no operation ever returns or changes another tenant's rows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Text, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import HNSW, Repository, vector_column, vector_index
from vectorpg.ddl.tenancy import enable_tenant_isolation, tenant_session

DIM = 8
APP = "vectorpg_app"
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "small"]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "tenant_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    embedding = vector_column(DIM)
    __table_args__ = (vector_index("embedding", HNSW(), metric="l2", dimension=DIM),)


@pytest.fixture(scope="module")
def app_db(module_database_url: str) -> Iterator[tuple[vectorpg.Database, vectorpg.Database]]:
    owner = vectorpg.connect(module_database_url)
    owner.install_extension()
    Base.metadata.create_all(owner.engine)
    with psycopg.connect(module_database_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {APP}")
        conn.execute(f"CREATE ROLE {APP} LOGIN")  # not the owner, not a superuser: RLS applies
    enable_tenant_isolation(owner, Item, tenant_column="tenant", app_role=APP)
    app = vectorpg.connect(make_url(module_database_url).set(username=APP).render_as_string(hide_password=False))
    yield owner, app
    app.close()
    with owner.engine.begin() as conn:
        conn.execute(text("DROP TABLE tenant_items"))
        conn.execute(text(f"DROP OWNED BY {APP}"))
        conn.execute(text(f"DROP ROLE {APP}"))
    owner.close()


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "delete", "search", "count", "get", "foreign_add", "foreign_delete"]),
        st.sampled_from(TENANTS),
        st.integers(0, 10**6),
    ),
    min_size=3,
    max_size=10,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_no_operation_crosses_tenants(app_db: Any, ops: list[tuple[str, str, int]]) -> None:
    owner, app = app_db
    with owner.engine.begin() as conn:  # the test's owner is a superuser, whom RLS never binds
        conn.execute(text("DELETE FROM tenant_items"))
    expected: dict[str, set[int]] = {t: set() for t in TENANTS}
    next_id = [1]
    for op, tenant, seed in ops:
        rng = random.Random(seed)
        with tenant_session(app, tenant) as session:
            repo = Repository(Item, session, metric="l2")
            if op == "add":
                ids = list(range(next_id[0], next_id[0] + rng.randint(1, 80)))
                next_id[0] += len(ids)
                rows = [
                    {
                        "id": i,
                        "tenant": tenant,
                        "body": f"{tenant} {i}",
                        "embedding": np.random.default_rng(i).normal(size=DIM),
                    }
                    for i in ids
                ]
                repo.add(rows)
                expected[tenant] |= set(ids)
            elif op == "foreign_add":  # writing a row for another tenant is refused by the policy
                other = rng.choice([t for t in TENANTS if t != tenant])
                with pytest.raises(Exception, match="row-level security"):
                    repo.add([{"id": 10**7 + seed, "tenant": other, "body": "x", "embedding": np.ones(DIM)}])
            elif op in ("delete", "foreign_delete"):
                pool = sorted(set().union(*expected.values()))
                victims = rng.sample(pool, min(len(pool), 20)) if pool else []
                deleted = repo.delete(victims)
                mine = {v for v in victims if v in expected[tenant]}
                assert deleted == len(mine)  # other tenants' ids: 0 rows
                expected[tenant] -= mine
            elif op == "search":
                hits = repo.search(np.random.default_rng(seed).normal(size=DIM), 10, where=Item.tenant == tenant)
                assert all(row.tenant == tenant for row, _ in hits)
                assert len(hits) == min(10, len(expected[tenant]))
                unfiltered = repo.search(np.random.default_rng(seed).normal(size=DIM), 10, strategy="exact")
                assert {row.id for row, _ in unfiltered} <= expected[tenant]
            elif op == "count":
                assert repo.count() == len(expected[tenant])
            else:
                pool = sorted(set().union(*expected.values()))
                asked = rng.sample(pool, min(len(pool), 30)) if pool else []
                assert {row.id for row in repo.get(asked)} == {a for a in asked if a in expected[tenant]}


def test_without_a_tenant_nothing_is_visible_and_nothing_leaks_through_the_pool(app_db: Any) -> None:
    _, app = app_db
    with tenant_session(app, "acme") as session:
        Repository(Item, session).add([{"id": 5_000_000, "tenant": "acme", "body": "b", "embedding": np.ones(DIM)}])
        assert Repository(Item, session).count() >= 1
    # the same pooled connection, next transaction: the setting ended with the previous one
    repo = Repository(Item, app)
    assert repo.count() == 0
    with app.engine.connect() as conn:
        assert conn.execute(text("SELECT coalesce(current_setting('vectorpg.tenant', true), '')")).scalar() == ""
    with pytest.raises(Exception, match="row-level security"):
        repo.add([{"id": 5_000_001, "tenant": "acme", "body": "b", "embedding": np.ones(DIM)}])


def test_a_small_tenant_on_a_shared_index(app_db: Any) -> None:
    """The known weakness, measured: RLS filters the HNSW candidates afterwards, so a tenant with few rows
    gets fewer than k from an index scan; the planner's exact path (a filter on the tenant) gives k."""
    owner, app = app_db
    rng = np.random.default_rng(1)
    with tenant_session(app, "big") as session:
        Repository(Item, session).add(
            {"id": 6_000_000 + i, "tenant": "big", "body": "b", "embedding": rng.normal(size=DIM)} for i in range(5_000)
        )
    with tenant_session(app, "small") as session:
        Repository(Item, session).add(
            {"id": 7_000_000 + i, "tenant": "small", "body": "s", "embedding": rng.normal(size=DIM)} for i in range(20)
        )
    with owner.engine.begin() as conn:
        conn.execute(text("ANALYZE tenant_items"))
    shortfalls = []
    for seed in range(20):
        q = np.random.default_rng(100 + seed).normal(size=DIM)
        with tenant_session(app, "small") as session:
            repo = Repository(Item, session, metric="l2")
            through_index = repo.search(q, 10, strategy="ann")
            planned = repo.search(q, 10, where=Item.tenant == "small")
        assert all(row.tenant == "small" for row, _ in through_index + planned)
        assert len(planned) == 10
        shortfalls.append(10 - len(through_index))
    print(
        f"\nshared HNSW + RLS: the 20-row tenant got {10 - np.mean(shortfalls):.1f} of 10 rows on average through "
        f"the index (min {10 - max(shortfalls)}); with a tenant filter the planner returned 10 every time"
    )
    assert max(shortfalls) > 0  # the weakness is real (RLS is a post-filter on the index's candidates)

"""Fixtures (a pytest plugin): where the test PostgreSQL comes from, and one fresh database per test.

In order: ``$VECTORPG_TEST_URL``; a testcontainers ``pgvector/pgvector:pg18`` container when a Docker engine
answers; otherwise the embedded server in a temporary data directory. The embedded server is always
there, so no test skips for lack of a database. Each test that asks for ``db`` gets a new database
(copied from a template that already has the vector extension), dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import vectorpg
from vectorpg.db.server import embedded_server

TEMPLATE = "vectorpg_test_template"
_counter = itertools.count()


def docker_engine_answers() -> bool:
    """True when a Docker engine responds (not just a docker client on PATH)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of the PostgreSQL + pgvector server the whole session uses."""
    env = os.environ.get("VECTORPG_TEST_URL")
    if env:
        yield _libpq_url(env)
        return
    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("pgvector/pgvector:pg18", driver=None) as container:
            yield container.get_connection_url()
        return
    server = embedded_server(tmp_path_factory.mktemp("pg") / "data")
    yield server.url


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """Create the template database (with the vector extension) once per session."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    url = with_database(server_url, TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return url


def _create_database(server_url: str, template: str) -> tuple[str, str]:
    name = f"vectorpg_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name, with_database(server_url, name)


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str, template_url: str) -> Iterator[str]:
    """URL of a fresh database with pgvector installed, dropped after the test."""
    name, url = _create_database(server_url, TEMPLATE)
    yield url
    _drop_database(server_url, name)


@pytest.fixture(scope="module")
def module_database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh database shared by one test module (for read-only tests over costly data)."""
    name, url = _create_database(server_url, TEMPLATE)
    yield url
    _drop_database(server_url, name)


@pytest.fixture
def bare_database_url(server_url: str) -> Iterator[str]:
    """URL of a fresh database *without* the vector extension."""
    name, url = _create_database(server_url, "template1")
    yield url
    _drop_database(server_url, name)


@pytest.fixture
def db(database_url: str) -> Iterator[vectorpg.Database]:
    database = vectorpg.connect(database_url)
    yield database
    database.close()

"""connect(): the embedded server, URLs, the extension and its version check."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import make_url

import vectorpg
from tests.fix_db import with_database
from vectorpg.db.engine import MIN_PGVECTOR, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.8.5", (0, 8, 5)), ("0.10.0", (0, 10, 0)), ("1.0", (1, 0)), ("0.9.0-dev", (0, 9, 0))],
)
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected
    assert (parse_version("0.10.0") > parse_version("0.8.5")) is True  # not a string comparison


@pytest.mark.parametrize(
    "url",
    ["mysql://u@localhost/db", "postgresql+psycopg2://u@localhost/db", "not a url at all", "sqlite:///x.db"],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(vectorpg.ConfigurationError):
        vectorpg.connect(url)


def test_unreachable_server_is_a_server_error() -> None:
    with pytest.raises(vectorpg.ServerError, match="cannot reach PostgreSQL") as info:
        vectorpg.connect("postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")
    assert info.value.__cause__ is not None  # the driver's error is chained


def test_connect_runs_no_ddl_and_install_is_explicit(bare_database_url: str) -> None:
    db = vectorpg.connect(bare_database_url)
    assert db.extension_version() is None  # connecting installed nothing
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert not db.has_store_schema()
    version = db.install_extension()
    assert version >= MIN_PGVECTOR and db.extension_version() == version
    assert db.install_extension() == version  # idempotent
    db.setup()
    db.setup()
    assert db.has_store_schema()
    db.close()


def test_store_works_on_a_database_without_the_extension(bare_database_url: str) -> None:
    """db.collection() installs pgvector and the schema the first time, and vectors then round-trip."""
    db = vectorpg.connect(bare_database_url)
    docs = db.collection("first", dimension=2)
    docs.add(vectors=[[1, 0], [0, 1]], ids=["x", "y"])
    assert docs.search([1, 0.1], k=1)[0].id == "x"
    db.close()


def test_too_old_pgvector_is_refused_with_the_version(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector'")
    db = vectorpg.connect(database_url)
    with pytest.raises(vectorpg.ExtensionError, match=r"pgvector 0\.7\.4 .* needs >= 0\.8\.0") as info:
        db.install_extension()
    assert info.value.found == "0.7.4" and "ALTER EXTENSION vector UPDATE" in str(info.value)
    db.close()


def test_missing_privilege_to_create_the_extension(bare_database_url: str) -> None:
    role = sql.Identifier("vectorpg_weak_role")
    with psycopg.connect(bare_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))
    weak = make_url(bare_database_url).set(username="vectorpg_weak_role").render_as_string(hide_password=False)
    db = vectorpg.connect(weak)
    with pytest.raises(vectorpg.ExtensionError, match="CREATE EXTENSION vector") as info:
        db.install_extension()
    assert isinstance(info.value.__cause__, psycopg.errors.InsufficientPrivilege)
    db.close()
    with psycopg.connect(bare_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(sql.SQL("DROP ROLE {}").format(role))


def test_url_from_environment(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORPG_URL", database_url)
    db = vectorpg.connect()
    assert db.server is None and db.extension_version() is not None
    db.close()


def test_default_data_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vectorpg.db.server import default_data_dir

    monkeypatch.setenv("VECTORPG_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == (tmp_path / "here").resolve()
    monkeypatch.delenv("VECTORPG_DATA_DIR")
    assert default_data_dir().name == "pg18"


_CHILD = textwrap.dedent(
    """
    import sys, vectorpg
    db = vectorpg.connect()
    docs = db.collection("shared", dimension=2)
    docs.add(vectors=[[1, float(sys.argv[1])]], ids=["p" + sys.argv[1]])
    print(docs.count(), db.server.url)
    """
)


def test_embedded_server_two_processes_at_once_and_data_persists(tmp_path: Path) -> None:
    """Two processes start the embedded server on one data directory at the same moment; both work, and
    the data is still there after the last one exited (which stops the server)."""
    env = {**os.environ, "VECTORPG_DATA_DIR": str(tmp_path / "pgdata")}
    env.pop("VECTORPG_URL", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    urls = {out.split()[1] for out, _ in outputs}
    assert len(urls) == 1  # the same server
    # Both processes have exited: the server stopped, the data stayed. A third run finds both rows.
    third = subprocess.run([sys.executable, "-c", _CHILD, "3"], env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert third.stdout.split()[0] == "3"


def test_with_database_helper(server_url: str) -> None:
    assert "vectorpg_x" in with_database(server_url, "vectorpg_x")


def test_no_automatic_prepared_statements(db: vectorpg.Database) -> None:
    """A cached generic plan would ignore per-query planner settings (and breaks behind poolers)."""
    with db.psycopg_connection() as conn:
        assert conn.prepare_threshold is None


def test_setup_adds_indexes_missing_from_an_older_schema(database_url: str) -> None:
    db = vectorpg.connect(database_url)
    db.setup()
    with db.engine.begin() as conn:  # what an older version left: no such index, its own fingerprint
        conn.exec_driver_sql("DROP INDEX vectorpg.documents_metadata_idx")
        conn.exec_driver_sql("COMMENT ON SCHEMA vectorpg IS 'vectorpg 2 0123456789abcdef'")
    again = vectorpg.connect(database_url)
    again.setup()
    with again.engine.connect() as conn:
        found = conn.exec_driver_sql("SELECT 1 FROM pg_indexes WHERE indexname = 'documents_metadata_idx'").all()
    assert found == [(1,)]
    db.close()
    again.close()


def test_setup_of_a_current_schema_runs_no_ddl(database_url: str) -> None:
    """Every process start calls setup(): on a current schema it must take no lock a writer could be holding."""
    db = vectorpg.connect(database_url)
    db.setup()
    db.collection("busy", dimension=2, embedder=None)
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE vectorpg.documents IN ACCESS EXCLUSIVE MODE")
        url = make_url(database_url).update_query_dict({"options": "-c lock_timeout=500"})
        late = vectorpg.connect(url.render_as_string(hide_password=False))
        late.setup()  # before the fingerprint, this re-ran the scripts and waited for the lock
        late.close()
    db.close()

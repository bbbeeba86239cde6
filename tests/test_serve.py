"""`vectorpg serve` and the embedded server's lifecycle (issue 12, findings 1 and 4), as subprocesses against
temporary data directories.

Before the fix, `serve` left ``host all all 127.0.0.1/32 trust`` and the passwordless superuser as the only
role: any local OS user ran ``COPY ... TO PROGRAM`` as the server's user. Any other vectorpg command on the
served data directory stopped the server when it exited, a busy port printed "listening" (it had connected
to the other server), a client killed with -9 kept the server running for nobody, and a process whose server
crashed got errors forever.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import vectorpg
from tests.stress.crash import free_port
from vectorpg.cli.serve import CLIENT_ROLE, PASSWORD_FILE
from vectorpg.db.server import postgres_binary, status


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vectorpg.cli", *args], capture_output=True, text=True, timeout=timeout
    )


class Served:
    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vectorpg.cli", "serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline()
        if "listening" not in self.first_line:
            self.process.kill()
            raise AssertionError(self.first_line + self.process.stderr.read())  # type: ignore[union-attr]
        self.url = self.first_line.split(": ", 1)[1].strip()

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "pg", free_port())
    yield server
    if server.process.poll() is None:
        server.stop()


def _refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(url, connect_timeout=5).close()
    return str(info.value)


def test_clients_get_a_password_role_without_superuser_rights(served: Served) -> None:
    assert served.url.startswith(f"postgresql://{CLIENT_ROLE}:") and f"@127.0.0.1:{served.port}/postgres" in served.url
    password_file = served.data_dir / PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text().strip() in served.url
    with psycopg.connect(served.url, autocommit=True) as conn:  # over TCP, like any other language's driver
        assert conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False, False, False, False)
        # the store works for it: collections, writes, searches (it owns vectorpg's schema)
        conn.execute("SELECT vectorpg.create_collection('served', 2)")
        conn.execute("INSERT INTO vectorpg.documents (collection, id, embedding) VALUES ('served', 'a', '[1,0]')")
        assert conn.execute("SELECT id FROM vectorpg.search('served', '[1,0.1]', 1)").fetchone() == ("a",)
        for forbidden in (
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "CREATE ROLE intruder LOGIN SUPERUSER",
            "CREATE ROLE intruder",
            "SELECT pg_read_file('postgresql.conf')",
            "ALTER SYSTEM SET log_statement = 'all'",
            "CREATE DATABASE other",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
    # data of the superuser's that was not granted stays closed, in this database and in others
    admin = f"postgresql://postgres@/postgres?host={served.data_dir}&port={served.port}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.secret (v text)")
        conn.execute("INSERT INTO public.secret VALUES ('s3cret')")
        conn.execute("CREATE DATABASE private_db")
    with psycopg.connect(admin.replace("/postgres?", "/private_db?"), autocommit=True) as conn:
        conn.execute("CREATE TABLE hidden (v text)")
    with psycopg.connect(served.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.secret")
    with psycopg.connect(served.url.replace("/postgres", "/private_db"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.hidden")


def test_tcp_without_the_password_is_refused(served: Served) -> None:
    no_password = f"postgresql://postgres@127.0.0.1:{served.port}/postgres"
    assert "password" in _refused(no_password)
    assert "password" in _refused(f"postgresql://postgres:guess@127.0.0.1:{served.port}/postgres")
    assert "password" in _refused(f"postgresql://{CLIENT_ROLE}:wrong@127.0.0.1:{served.port}/postgres")
    rules = [line.split() for line in (served.data_dir / "pg_hba.conf").read_text().splitlines()]
    host_rules = [rule for rule in rules if rule and rule[0].startswith("host")]
    assert host_rules and all(rule[-1] == "scram-sha-256" for rule in host_rules)


def test_the_reviews_attack_is_refused(served: Served) -> None:
    """`runuser -u nobody -- psql -h 127.0.0.1 -U postgres -c "COPY ... TO PROGRAM"`: over TCP, without the password,
    as this OS user; and as another OS user (``nobody``) over TCP and over the socket, where this process may
    switch users (root, as in CI)."""
    psql = str(postgres_binary("psql"))
    attack = ["-w", "-U", "postgres", "-d", "postgres", "-c", "COPY (SELECT 1) TO PROGRAM 'id'"]
    tcp = ["-h", "127.0.0.1", "-p", str(served.port)]
    socket = ["-h", str(served.data_dir), "-p", str(served.port)]
    attempts = [[psql, *tcp, *attack]]
    if os.geteuid() == 0:
        pwd.getpwnam("nobody")
        attempts += [["runuser", "-u", "nobody", "--", psql, *target, *attack] for target in (tcp, socket)]
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, result.stdout
        assert "password" in result.stderr or "Permission denied" in result.stderr, result.stderr


def test_remote_listening_needs_allow_remote(tmp_path: Path) -> None:
    refused = run_cli("serve", "--data-dir", str(tmp_path / "pg"), "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr and "listening" not in refused.stdout
    remote = Served(tmp_path / "pg", free_port(), "--host", "0.0.0.0", "--allow-remote")
    try:
        assert "0.0.0.0/0      scram-sha-256" in (tmp_path / "pg" / "pg_hba.conf").read_text()
        with psycopg.connect(remote.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (CLIENT_ROLE,)
        assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{remote.port}/postgres")
    finally:
        remote.stop()


def test_a_busy_port_fails_loudly(tmp_path: Path, served: Served) -> None:
    second = run_cli("serve", "--data-dir", str(tmp_path / "other"), "--port", str(served.port))
    assert second.returncode == 2 and "listening" not in second.stdout
    assert f"cannot listen on 127.0.0.1:{served.port}" in second.stderr and "--port" in second.stderr
    same_dir = run_cli("serve", "--data-dir", str(served.data_dir), "--port", str(free_port()))
    assert same_dir.returncode == 2 and "already runs" in same_dir.stderr


def test_other_commands_never_stop_a_served_server(served: Served) -> None:
    for _ in range(2):
        listed = run_cli("collections", "--data-dir", str(served.data_dir))
        assert listed.returncode == 0, listed.stderr
    with psycopg.connect(served.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    state = run_cli("status", "--data-dir", str(served.data_dir))
    assert state.returncode == 0 and f"port {served.port}" in state.stdout
    assert str(served.process.pid) in state.stdout
    code, out = served.stop()
    assert code == 0 and "stopped (status 0)" in out


_HOLDER = """
import sys, time, vectorpg
db = vectorpg.connect(data_dir=sys.argv[1])
db.collections()
print("ready", flush=True)
time.sleep(600)
"""


def test_a_client_killed_with_sigkill_leaves_no_orphaned_server(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "pg")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, data_dir], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    assert status(data_dir)["running"]
    holder.kill()
    holder.wait()
    # the next process to use the server is its last live user: when it exits, the server stops
    listed = run_cli("collections", "--data-dir", data_dir)
    assert listed.returncode == 0, listed.stderr
    deadline = time.monotonic() + 30
    while status(data_dir)["running"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not status(data_dir)["running"]
    assert run_cli("status", "--data-dir", data_dir).returncode == 1


def test_stop_command_stops_a_server_nobody_owns(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "pg")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, data_dir], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    holder.kill()
    holder.wait()
    assert status(data_dir)["running"] and status(data_dir)["users"] == []
    stopped = run_cli("stop", "--data-dir", data_dir)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not status(data_dir)["running"]
    again = run_cli("stop", "--data-dir", data_dir)
    assert again.returncode == 0 and "no server was running" in again.stdout


def test_a_process_outlives_a_crash_of_its_embedded_server(tmp_path: Path) -> None:
    db = vectorpg.connect(data_dir=tmp_path / "pg")
    try:
        docs = db.collection("crashy", dimension=2, embedder=None)
        docs.add(["a"], vectors=[[1.0, 0.0]], ids=["a"])
        before = status(tmp_path / "pg")["pid"]
        os.kill(before, signal.SIGKILL)  # the postmaster
        deadline = time.monotonic() + 10
        while status(tmp_path / "pg")["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        results: list[Any] = []
        for _ in range(3):  # a connection taken before the crash may still fail once, with a typed error
            try:
                results.append(docs.count())
                break
            except vectorpg.ConnectionLostError:
                continue
        assert results == [1]
        assert status(tmp_path / "pg")["pid"] not in (None, before)
    finally:
        db.close()
    shutil.rmtree(tmp_path / "pg", ignore_errors=True)


def test_vectorpg_replica_streams_from_the_served_server(served: Served, tmp_path: Path) -> None:
    """`vectorpg replica`: a streaming replica of the served data directory on its own port, reached with the
    URL it prints (serve's vectorpg_client and its password, scram over TCP, no trust line), read-only,
    following the primary's writes; `vectorpg replica promote` makes it writable."""
    db = vectorpg.connect(served.url)
    db.collection("mirrored", dimension=3, embedder=None).add(vectors=[[1, 0, 0]], ids=["before"])
    port = free_port()
    replica = subprocess.Popen(
        [sys.executable, "-m", "vectorpg.cli", "replica", "--data-dir", str(served.data_dir),
         "--replica-dir", str(tmp_path / "replica"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert replica.stdout is not None
        line = replica.stdout.readline()
        assert "streaming on postgresql://" in line, line + replica.stderr.read()  # type: ignore[union-attr]
        url = line.split("streaming on ", 1)[1].strip()
        assert url.startswith(f"postgresql://{CLIENT_ROLE}:") and f":{port}/" in url
        assert "next: vectorpg.connect(PRIMARY_URL, replicas=" in replica.stdout.readline()
        assert "password" in _refused(f"postgresql://postgres@127.0.0.1:{port}/postgres")  # no trust over TCP
        db.collection("mirrored", embedder=None, create=False).add(vectors=[[0, 1, 0]], ids=["after"])
        routed = vectorpg.connect(served.url, replicas=[url], read_your_writes=True)
        mirrored = routed.collection("mirrored", embedder=None, create=False)
        assert {d.id for d in mirrored.get(["before", "after"])} == {"before", "after"}
        with routed.reading(read_your_writes=False):  # (waiting for replay could fall back to the primary under load)
            assert mirrored.explain([1, 0, 0], k=1).server.startswith("replica 1")
        with pytest.raises(vectorpg.VectorPgError):
            vectorpg.connect(url).collection("mirrored", embedder=None, create=False).add(vectors=[[0, 0, 1]])
        promoted = run_cli("replica", "promote", "--replica-dir", str(tmp_path / "replica"))
        assert promoted.returncode == 0 and "is a primary now" in promoted.stdout, promoted.stderr
        vectorpg.connect(url).collection("mirrored", embedder=None, create=False).add(vectors=[[0, 0, 1]], ids=["new"])
        routed.close()
    finally:
        db.close()
        replica.send_signal(signal.SIGINT)
        replica.communicate(timeout=60)
    assert replica.returncode == 0

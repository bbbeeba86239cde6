"""A real PgBouncer (the Debian package, ``apt-get install pgbouncer``: ``.ci/run`` installs it) in
transaction pooling mode in front of the session's server, for the tests of applications' own engines."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

#: where Debian puts it (not on a non-root PATH)
BINARIES = ("pgbouncer", "/usr/sbin/pgbouncer")


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("PgBouncer is not installed: apt-get install pgbouncer (.ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(host: str | None, port: str) -> list[str]:
    """PgBouncer refuses to run as root: then it runs as the user that owns the server's socket (which
    can reach it), or nobody for a TCP server."""
    if os.geteuid() != 0:
        return []
    owner = "nobody"
    if host and host.startswith("/"):
        sock = Path(host) / f".s.PGSQL.{port}"
        if sock.exists():
            owner = pwd.getpwuid(sock.stat().st_uid).pw_name
    return ["-u", owner]


@pytest.fixture(scope="session")
def pgbouncer_server_url(server_url: str) -> Iterator[str]:
    """A ``postgresql://`` URL (database left to the test) of a PgBouncer in ``pool_mode = transaction``
    with 3 server connections a database, so that a client's transactions run on changing server
    connections, as they do in production."""
    params = conninfo_to_dict(server_url)
    host, port = params.get("host"), str(params.get("port") or 5432)
    target = " ".join(f"{k}={params[k]}" for k in ("host", "user", "password") if params.get(k)) + f" port={port}"
    home = Path(tempfile.mkdtemp(prefix="vectorpg-pgbouncer-"))
    home.chmod(0o755)  # read by the user PgBouncer runs as
    listen = _free_port()
    config = home / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = {target}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 3\nmax_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits,options\nlogfile =\npidfile =\n"
    )
    config.chmod(0o644)
    log = (home / "pgbouncer.log").open("wb")
    process = subprocess.Popen([_binary(), *_run_as(host, port), str(config)], stdout=log, stderr=log)
    url = f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{listen}/postgres"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:  # not the template: CREATE DATABASE copies it
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"PgBouncer did not start: {(home / 'pgbouncer.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        shutil.rmtree(home, ignore_errors=True)

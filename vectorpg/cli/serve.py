"""``vectorpg serve``: the embedded server on a TCP port, for psql and other languages' drivers.

Over TCP every role needs a password (scram-sha-256); the superuser has none and is reachable only through
the unix socket in the data directory (mode 0700). Clients get :data:`CLIENT_ROLE`, a login role without
superuser rights that owns vectorpg's schema, and its generated password (docs/security.md).
"""

from __future__ import annotations

import os
import pwd
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from vectorpg.database import connect
from vectorpg.db.server import (
    forget_dead_users,
    pgserver_classes,
    resolve_data_dir,
    running_postmaster,
)
from vectorpg.db.standby import admin_url, start_server, stopped_on_signal
from vectorpg.errors import ServerError

#: The login role that `vectorpg serve` hands to clients: no superuser, no CREATEROLE / CREATEDB, owner of
#: vectorpg's schema in the served database and nothing else.
CLIENT_ROLE = "vectorpg_client"
#: Where `vectorpg serve` keeps that role's generated password (mode 0600, in the data directory).
PASSWORD_FILE = "vectorpg_client.password"

_LOOPBACK = ("127.0.0.1", "::1", "localhost")

_HBA = """\
# Written by `vectorpg serve` each time it starts; edit serve's options, not this file.
# The unix socket lives in the data directory (mode 0700): only its owner reaches the superuser there.
local   all  all                 trust
# `vectorpg replica` copies and streams from this server over the same socket (pg_basebackup, walreceiver)
local   replication  all         trust
# TCP needs a password: the superuser has none, so over TCP only the roles with a password log in.
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
"""

_HBA_REMOTE = """\
# --allow-remote
host    all  all  0.0.0.0/0      scram-sha-256
host    all  all  ::/0           scram-sha-256
"""


def _ensure_password(data_dir: Path, owner: str | None) -> str:
    path = data_dir / PASSWORD_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    if owner is not None:  # the server's account reads its whole data directory (pg_basebackup of a replica too)
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path.read_text().strip()


def _write_hba(data_dir: Path, *, allow_remote: bool, owner: str | None) -> None:
    path = data_dir / "pg_hba.conf"
    path.write_text(_HBA + (_HBA_REMOTE if allow_remote else ""))
    path.chmod(0o600)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_port_free(host: str, port: int) -> None:

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServerError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another program uses that port; "
                "pick another one with --port."
            ) from exc


def _prepare_client_role(admin_url: str, password: str) -> None:
    """Create or refresh :data:`CLIENT_ROLE` with ``password`` and give it vectorpg's schema."""

    with psycopg.connect(admin_url, autocommit=True) as conn:
        # the verifier is computed here by libpq: the password itself never travels or gets logged
        verifier = conn.pgconn.encrypt_password(password.encode(), CLIENT_ROLE.encode(), b"scram-sha-256")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [CLIENT_ROLE]).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        options = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
        conn.execute(
            sql.SQL("{} ROLE {} {} PASSWORD {}").format(
                verb, sql.Identifier(CLIENT_ROLE), options, sql.Literal(verifier.decode())
            )
        )
        conn.execute("SELECT vectorpg.set_owner(%s)", [CLIENT_ROLE])


def serve(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 5432,
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Run the embedded PostgreSQL on ``host:port`` over TCP in the foreground, until SIGINT or SIGTERM.

    The data directory is initialised if new. When the server accepts connections, pgvector and vectorpg's
    schema are installed and ``on_ready(url)`` is called with a URL for :data:`CLIENT_ROLE`, a login role
    without superuser rights whose generated password (kept in ``<data dir>/vectorpg_client.password``,
    mode 0600) the URL carries. Over TCP every role needs a password (scram-sha-256); the superuser has none
    and is reachable only through the unix socket in the data directory. A ``host`` other than loopback
    needs ``allow_remote=True``.

    While it runs, other vectorpg processes on the same data directory use this server and never stop it.
    Returns the server's exit status (0 after a clean shutdown). Raises :class:`ServerError` if the port
    is taken, or if another process already runs a server on this data directory.
    """

    path = resolve_data_dir(data_dir)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ServerError(f"port must be from 1 to 65535, got {port!r}")
    if host not in _LOOPBACK and not allow_remote:
        raise ServerError(
            f"refusing to listen on {host}: that makes the database reachable from other machines. Pass "
            "--allow-remote (allow_remote=True) to do it anyway; clients then need the password that serve "
            f"prints (and keeps in {path / PASSWORD_FILE}), and should reach it over a private network or TLS."
        )
    postgres_server, _ = pgserver_classes()
    path.mkdir(parents=True, exist_ok=True)
    running = running_postmaster(path)
    if running is not None:
        raise ServerError(
            f"a PostgreSQL server already runs on {path} (pid {running.pid}), started by another vectorpg process "
            "over its unix socket. Stop the processes that use it (or `vectorpg stop`), or serve another --data-dir."
        )
    _check_port_free("127.0.0.1" if host == "localhost" else host, port)
    server = postgres_server(path, cleanup_mode=None)
    server.ensure_pgdata_inited()
    _write_hba(path, allow_remote=allow_remote, owner=server.system_user)
    password = _ensure_password(path, server.system_user)
    process = start_server(path, host=host, port=port, user=server.system_user, log=path / "serve.log", timeout=timeout)
    # the superuser's door: this server's own socket, so a server of someone else's on the port is never used
    admin = admin_url(path, port)
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "*", "") else host
    url = f"postgresql://{CLIENT_ROLE}:{password}@{client_host}:{port}/postgres"

    try:
        with stopped_on_signal(process):
            # serve counts as a user of the server, so no other vectorpg process that exits stops it
            with postgres_server._lock:
                forget_dead_users(path)
                server.global_process_id_list.get_and_add(os.getpid())

            db = connect(admin)
            db.setup()
            db.close()
            _prepare_client_role(admin, password)
            if on_ready is not None:
                on_ready(url)
            return int(process.wait())
    finally:
        with postgres_server._lock:
            server.global_process_id_list.get_and_remove(os.getpid())

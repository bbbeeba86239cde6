"""The search helper: a process that keeps ``vectorpg search``'s model and database connections between searches.

A ``vectorpg search`` in a new process pays for importing vectorpg, loading the embedding model and starting or
reaching the database before its 25 ms of work. After the first search from a terminal, a helper process starts
in the background (the first search itself runs as before), loads what that search needed, and listens on a Unix
socket. Later ``vectorpg search`` calls find the socket and send it their arguments, environment (the
``VECTORPG_*`` variables) and working directory. The helper runs the same command-line code on them, with the
model already loaded and the connection open, and sends back the output and the exit code. Such a call imports
nothing but the standard library and vectorpg's lazy package: about 0.1 s end to end
(``benchmarks/results/cli_search.md``).

* **Where:** ``$VECTORPG_HELPER_DIR``, else ``$XDG_RUNTIME_DIR/vectorpg``, else ``/tmp/vectorpg-<uid>``. The
  directory is mode 0700 and must be owned by the user: a socket anyone else could reach is never used. A
  directory so deep that the socket's path would pass the Unix limit (about 100 bytes) gets no helper.
* **Which helper:** the socket's name carries a fingerprint of the Python executable and of vectorpg's code
  (version, location, the modules' modification times). An upgraded or edited vectorpg never talks to an older
  helper; the older one exits when idle.
* **Lifetime:** a helper exits after ``$VECTORPG_HELPER_IDLE`` seconds without a request (default 600).
* **Control:** ``VECTORPG_HELPER=0`` never uses or starts one. ``VECTORPG_HELPER=1`` starts one even when the
  output is not a terminal (scripts, benchmarks). By default only a terminal session starts one.

This module imports only the standard library at the top: the client side must stay cheap.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any

#: commands the helper answers (read-only, and cheap once warm)
COMMANDS = ("search",)
#: a helper that is starting (loading the model) keeps this marker; a second search does not start another
STARTING_SECONDS = 120


def _idle_seconds() -> float:
    return float(os.environ.get("VECTORPG_HELPER_IDLE", "600"))


def helper_dir() -> Path | None:
    """The helper's directory (created 0700), or ``None`` when it is not private to this user."""
    explicit = os.environ.get("VECTORPG_HELPER_DIR")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(explicit) if explicit else Path(runtime) / "vectorpg" if runtime else None
    path = base or Path(tempfile.gettempdir()) / f"vectorpg-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path if private else None


def fingerprint(package: Path | None = None) -> str:
    """What the helper's code must share with the client's: the interpreter and vectorpg's modules (those of
    ``package``, a directory, for a test)."""
    package = package or Path(__file__).resolve().parent.parent
    digest = sha256(os.path.realpath(sys.executable).encode())
    for root, dirs, files in os.walk(package):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                digest.update(f"{root}/{name}:{os.stat(os.path.join(root, name)).st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


#: the longest path a Unix socket can have (sun_path is 108 bytes on Linux, 104 on macOS, with its NUL)
_SOCKET_PATH_MAX = 103
#: the helper first binds ``search-<fingerprint>.<pid>`` (pid_max is at most 4194304: 7 digits), then renames it
_BIND_SUFFIX = 8


def socket_path() -> Path | None:
    """The socket of the helper for this code, or ``None`` without a private directory, or when its path
    would be too long for a Unix socket (a deep ``$VECTORPG_HELPER_DIR``: searches then run without one)."""
    where = helper_dir()
    if where is None:
        return None
    path = where / f"search-{fingerprint()}.sock"
    return path if len(os.fsencode(path.with_suffix(""))) + _BIND_SUFFIX <= _SOCKET_PATH_MAX else None


def answerable(argv: Sequence[str]) -> bool:
    """Whether this command line is one a helper runs (one of :data:`COMMANDS`, never ``--help``)."""
    return bool(argv) and argv[0] in COMMANDS and not any(a in ("-h", "--help") for a in argv)


def wanted(argv: Sequence[str]) -> bool:
    """Whether to ask a helper for this command line (it answers it, and helpers are not turned off)."""
    return os.environ.get("VECTORPG_HELPER") != "0" and answerable(argv)


# -- the client side -------------------------------------------------------------------------------


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def _receive(conn: socket.socket) -> dict[str, Any] | None:
    head = _read(conn, 4)
    if head is None:
        return None
    body = _read(conn, struct.unpack("!I", head)[0])
    return json.loads(body) if body is not None else None


def _read(conn: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _request(argv: Sequence[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k.startswith("VECTORPG_")}
    return {"argv": list(argv), "env": env, "cwd": os.getcwd()}


def run_in_helper(argv: Sequence[str]) -> int | None:
    """Run ``vectorpg <argv>`` in a running helper: its exit code after printing its output, or ``None`` when
    there is no helper to ask (the caller runs the command itself)."""
    if not wanted(argv):
        return None
    reply = _ask(_request(argv), timeout=None)  # a search takes what it takes
    if reply is None:
        return None  # none, or gone (a stale socket): run here; the next search starts a new helper
    sys.stdout.write(reply["stdout"])
    sys.stderr.write(reply["stderr"])
    return int(reply["code"])


def start_helper(argv: Sequence[str]) -> bool:
    """After ``vectorpg <argv>`` ran in this process: start a helper in the background (from a terminal, or
    with ``VECTORPG_HELPER=1``) unless one is running or starting. It first runs ``argv`` once, quietly, so
    that the model is loaded when the next search comes. True if one was started."""
    forced = os.environ.get("VECTORPG_HELPER") == "1"
    if not wanted(argv) or not (forced or sys.stdout.isatty()):
        return False
    path = socket_path()
    if path is None or path.exists():
        return False
    marker = path.with_suffix(".starting")
    with contextlib.suppress(OSError):
        if time.time() - marker.stat().st_mtime < STARTING_SECONDS:
            return False
    marker.write_text(str(os.getpid()))
    subprocess.Popen(  # our own interpreter and module
        [sys.executable, "-m", "vectorpg.cli.helper", str(path), json.dumps(_request(argv))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command and its terminal's signals
        close_fds=True,
    )
    if sys.stderr.isatty():
        print(
            f"(vectorpg: a search helper now keeps the model loaded for {_idle_seconds() / 60:.0f} minutes, so the "
            "next searches are fast; VECTORPG_HELPER=0 turns it off)",
            file=sys.stderr,
        )
    return True


def stop_helper() -> bool:
    """Ask the helper for this code to exit; True if one answered."""
    return _ask({"stop": True}, timeout=5) is not None


def _ask(message: dict[str, Any], *, timeout: float | None) -> dict[str, Any] | None:
    """The helper's reply to ``message``, or ``None`` when no helper for this code answers."""
    path = socket_path()
    if path is None or not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(path))
            conn.settimeout(timeout)
            _send(conn, message)
            return _receive(conn)
    except OSError:
        return None


# -- the helper itself -----------------------------------------------------------------------------


@contextlib.contextmanager
def _as_the_caller(request: dict[str, Any]) -> Iterator[None]:
    """The caller's ``VECTORPG_*`` environment and working directory for the time of one request."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("VECTORPG_")}
    cwd = os.getcwd()
    for key in saved:
        del os.environ[key]
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("VECTORPG_")]:
            del os.environ[key]
        os.environ.update(saved)
        os.chdir(cwd)


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Run one request's command line with the command-line code itself: its output and exit code."""
    from vectorpg.cli.main import main

    if not answerable(request.get("argv") or []):  # what the client asks for, checked here too
        return {"code": 2, "stdout": "", "stderr": f"vectorpg: the search helper runs only {', '.join(COMMANDS)}\n"}
    out, err = io.StringIO(), io.StringIO()
    with _as_the_caller(request), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(request["argv"])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # reported to the caller as the command would report it
            print(f"vectorpg: error: {exc}", file=sys.stderr)
            code = 1
    if code != 0:  # perhaps a server that went away: connect afresh next time
        _forget_databases()
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _forget_databases() -> None:
    from vectorpg.cli import search

    for db in (search.KEPT or {}).values():
        with contextlib.suppress(Exception):
            db.close()
    if search.KEPT is not None:
        search.KEPT.clear()


def serve(path: Path, first: dict[str, Any]) -> None:
    """Warm up on ``first`` (the search that started this helper), then answer requests on ``path`` until
    idle for ``$VECTORPG_HELPER_IDLE`` seconds or asked to stop."""
    from vectorpg.cli import search

    search.KEPT = {}  # databases stay open between searches
    marker = path.with_suffix(".starting")
    try:
        answer(first)
        bound = path.with_suffix(f".{os.getpid()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(bound))
            os.chmod(bound, 0o600)
            os.replace(bound, path)  # appears whole: a client never finds a half-set-up socket
            with contextlib.suppress(OSError):
                marker.unlink()
            listener.listen(8)
            listener.settimeout(_idle_seconds())
            while True:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    return
                with conn:
                    conn.settimeout(10)  # a client that connects and sends nothing does not hold the helper
                    try:
                        request = _receive(conn)
                    except (OSError, ValueError):  # (a timeout, or not one of our messages)
                        continue
                    conn.settimeout(None)
                    if request is None:
                        continue
                    if request.get("stop"):
                        _send(conn, {"stopped": True})
                        return
                    _send(conn, answer(request))
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
        with contextlib.suppress(OSError):
            if path.exists() and not _answers(path):
                path.unlink()
        _forget_databases()


def _answers(path: Path) -> bool:
    """Whether another helper now listens on ``path`` (then its socket stays)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(0.5)
            conn.connect(str(path))
        return True
    except OSError:
        return False


if __name__ == "__main__":
    serve(Path(sys.argv[1]), json.loads(sys.argv[2]))

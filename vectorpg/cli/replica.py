"""``vectorpg replica``: a streaming replica of the server ``vectorpg serve`` runs, on a port of its own.

``vectorpg replica --data-dir PRIMARY_DIR --replica-dir DIR --port PORT`` clones the running server into
``DIR`` the first time (``pg_basebackup -R``, :mod:`vectorpg.db.standby`), then starts the replica there
and prints a URL for ``connect(primary_url, replicas=[...])``. It runs until stopped (Ctrl-C, SIGTERM), as
``serve`` does, and restarts on the same ``DIR`` later. The replica is a physical copy: ``serve``'s
``vectorpg_client`` role and its password work on it, over TCP with scram-sha-256 as on the primary.
``vectorpg replica promote --replica-dir DIR`` makes it the primary once the old one is lost.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vectorpg.cli.serve import _LOOPBACK, CLIENT_ROLE, PASSWORD_FILE, _check_port_free
from vectorpg.db import standby
from vectorpg.db.server import resolve_data_dir, running_postmaster
from vectorpg.errors import ServerError


def replica(
    primary_dir: str | os.PathLike[str] | None,
    replica_dir: str | os.PathLike[str],
    *,
    port: int,
    host: str = "127.0.0.1",
    on_ready: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Run a streaming replica of the server on ``primary_dir`` (cloned into ``replica_dir`` if new) on
    ``host:port`` in the foreground until SIGINT or SIGTERM; ``on_ready(url)`` once it accepts connections.
    Returns the server's exit status."""
    primary = resolve_data_dir(primary_dir)
    target = Path(replica_dir).resolve()
    if host not in _LOOPBACK:
        raise ServerError(f"a replica listens on loopback (127.0.0.1, ::1, localhost), not {host}")
    running = running_postmaster(primary)
    if running is None or not running.port:
        raise ServerError(
            f"no server runs on {primary}: start it with `vectorpg serve --data-dir {primary}` first, then the replica"
        )
    if target == primary:
        raise ServerError("--replica-dir must be another directory than --data-dir")
    user = standby.system_user(primary)
    if not (target / "PG_VERSION").exists():
        standby.clone(primary, running.port, target, user=user)
    elif not (target / "standby.signal").exists():
        raise ServerError(
            f"{target} holds a server that is not a replica (promoted, or another one): serve it with "
            f"`vectorpg serve --data-dir {target}`, or clone a replica into a new directory"
        )
    if running_postmaster(target) is not None:
        raise ServerError(f"a server already runs on {target}")
    _check_port_free("127.0.0.1" if host == "localhost" else host, port)
    process = standby.start_server(target, host=host, port=port, user=user, log=target / "replica.log", timeout=timeout)
    password = (primary / PASSWORD_FILE).read_text().strip()
    url = f"postgresql://{CLIENT_ROLE}:{password}@{host}:{port}/postgres"

    with standby.stopped_on_signal(process):
        if on_ready is not None:
            on_ready(url)
        return int(process.wait())


def promote(replica_dir: str | os.PathLike[str]) -> None:
    """Make the replica running on ``replica_dir`` the primary (after the old primary is lost)."""
    target = Path(replica_dir).resolve()
    if not (target / "standby.signal").exists():
        raise ServerError(f"{target} is not a replica (no standby.signal): nothing to promote")
    if running_postmaster(target) is None:
        raise ServerError(f"the replica on {target} is not running: start it with vectorpg replica first")
    standby.promote(target, user=standby.system_user(target))


def add_command(sub: Any, local: argparse.ArgumentParser) -> None:
    """Add ``replica`` (``run``, the default, or ``promote``) to the ``vectorpg`` parser's subcommands."""
    parser = sub.add_parser(
        "replica",
        parents=[local],
        help="run a streaming replica of the server `vectorpg serve` runs",
        description="Clone the server that `vectorpg serve --data-dir PRIMARY` runs into --replica-dir (the first "
        "time), start it as a streaming replica on --port and print its URL, for "
        "vectorpg.connect(primary_url, replicas=[url]). Runs until Ctrl-C. `vectorpg replica promote "
        "--replica-dir DIR` makes a running replica the primary.",
    )
    parser.add_argument("action", nargs="?", choices=["run", "promote"], default="run")
    parser.add_argument("--replica-dir", required=True, help="where the replica's data lives")
    parser.add_argument("--port", type=int, default=5433, help="TCP port of the replica (default: 5433)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.action == "promote":
        promote(args.replica_dir)
        print(f"promoted: {args.replica_dir} is a primary now; point writers at it, and clone new replicas from it")
        return 0

    def ready(url: str) -> None:
        print(f"replica of {resolve_data_dir(args.data_dir)} streaming on {url}", flush=True)
        print(f"next: vectorpg.connect(PRIMARY_URL, replicas=[{url!r}]); Ctrl-C stops it", flush=True)

    return replica(args.data_dir, args.replica_dir, port=args.port, host=args.host, on_ready=ready)

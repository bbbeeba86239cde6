"""Real streaming replicas (a pytest plugin): a primary and two replicas from the embedded server's binaries,
``pg_basebackup -R`` clones, TCP ports on 127.0.0.1, each stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from vectorpg.db import standby
from vectorpg.db.server import pgserver_classes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running server of the cluster: its data directory, port and process."""

    data_dir: Path
    port: int
    user: str | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.process = standby.start_server(
            self.data_dir,
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            log=self.data_dir.parent / f"{self.data_dir.name}.log",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend (a machine that died)."""
        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        for proc in [*parent.children(recursive=True), parent]:
            with contextlib.suppress(ProcessLookupError):  # a backend that exited meanwhile
                os.kill(proc.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)


@dataclass
class Cluster:
    primary: Server
    replicas: list[Server] = field(default_factory=list)

    def stop(self) -> None:
        for server in [*self.replicas, self.primary]:
            server.stop()


def start_cluster(root: Path, replicas: int = 2) -> Cluster:
    """A new primary (initdb as the embedded server does it) with ``replicas`` streaming replicas."""
    postgres_server, _ = pgserver_classes()
    primary_dir = root / "primary"
    primary_dir.mkdir(parents=True)
    embedded = postgres_server(primary_dir, cleanup_mode=None)
    embedded.ensure_pgdata_inited()
    user = embedded.system_user
    cluster = Cluster(Server(primary_dir, free_port(), user))
    cluster.primary.start()
    for i in range(1, replicas + 1):
        target = root / f"replica{i}"
        standby.clone(primary_dir, cluster.primary.port, target, user=user)
        server = Server(target, free_port(), user)
        server.start()
        cluster.replicas.append(server)
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A primary and two streaming replicas for one test module."""
    running = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()

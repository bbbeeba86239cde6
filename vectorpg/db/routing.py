"""Reads on streaming replicas: :class:`ReadRouter` and the :func:`routed` decorator of the read operations.

``vectorpg.connect(primary_url, replicas=[url, ...])`` gives its :class:`~vectorpg.Database` a router. Then
every search, count and get (the operations marked :func:`routed`) runs on a replica: the next healthy one in
round-robin order. Writes and DDL always run on the primary (they are not routed). A replica is healthy when:

* it answers (a connection error marks it down for ``retry_after`` seconds, and the read runs again on the
  next server: a read is idempotent, so the caller sees a result, never a half one);
* it lags less than ``max_lag`` seconds: it has replayed the primary's current WAL position, or its last
  replayed transaction is at most that old. This is checked every ``check_every`` seconds, not on every read.

``read_your_writes=True`` (per Database, or for the reads inside ``with db.reading(read_your_writes=True)``)
reads the primary's WAL position (``pg_current_wal_lsn()``) first, then waits, at most ``wait`` seconds, for
the chosen replica to replay it. That position covers every write committed before the read, this process's
included, whichever connection made it (COPY or ORM alike). When no replica catches up in time, the read
runs on the primary. When every replica is down, reads run on the primary, and nothing fails while one
server is up.

Where a read ran is :func:`current_server` (``"primary"`` or ``"replica 1 (host:port)"``): ``explain()``
reports it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from vectorpg.awaiting import await_, in_greenlet
from vectorpg.errors import ConnectionLostError, InvalidArgumentError

F = TypeVar("F", bound=Callable[..., Any])

#: (name, engine) of the server the current read runs on; None outside a routed read
_current: ContextVar[tuple[str, Engine] | None] = ContextVar("vectorpg_read_server", default=None)
#: read_your_writes for the reads inside Database.reading(...); None: the router's own setting
_consistency: ContextVar[bool | None] = ContextVar("vectorpg_read_your_writes", default=None)
#: what a lost server raises, before or after vectorpg translated it
_LOST = (ConnectionLostError, OperationalError, psycopg.OperationalError)


@dataclass
class _Replica:
    name: str
    engine: Engine
    down_until: float = 0.0
    checked_at: float = float("-inf")
    lagging: bool = False


class ReadRouter:
    """Where reads go: the replicas, round robin, skipping the down and the lagging; else the primary."""

    def __init__(
        self,
        primary: Engine,
        replicas: Sequence[Engine],
        *,
        read_your_writes: bool = False,
        max_lag: float | None = 10.0,
        wait: float = 2.0,
        retry_after: float = 5.0,
        check_every: float = 0.5,
    ) -> None:
        if not replicas:
            raise InvalidArgumentError("replicas=[...] needs at least one replica URL")
        for name, value in (("max_lag", max_lag), ("wait", wait), ("retry_after", retry_after)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise InvalidArgumentError(f"{name} is a number of seconds >= 0, got {value!r}")
        self.primary = primary
        self.replicas = [
            _Replica(f"replica {i} ({engine.url.host or engine.url.query.get('host')}:{engine.url.port})", engine)
            for i, engine in enumerate(replicas, 1)
        ]
        self.read_your_writes = read_your_writes
        self.max_lag = max_lag
        self.wait = wait
        self.retry_after = retry_after
        self.check_every = check_every
        self._turn = itertools.count()
        self._lock = threading.Lock()
        #: (primary WAL position, when read) for the lag checks of one check window
        self._checked_lsn: tuple[str, float] | None = None

    # -- choosing ----------------------------------------------------------------------------------

    def candidates(self) -> Iterator[tuple[str, Engine]]:
        """The servers to try for one read, in order: the healthy replicas from the next in turn (caught up
        with the primary first, under read-your-writes), then the primary."""
        consistent = _consistency.get()
        consistent = self.read_your_writes if consistent is None else consistent
        target = self._primary_lsn() if consistent else None
        start = next(self._turn)
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            if not self._usable(replica):
                continue
            if target is not None and not self._caught_up(replica, target):
                continue
            yield replica.name, replica.engine
        yield "primary", self.primary

    def _usable(self, replica: _Replica) -> bool:
        now = time.monotonic()
        if now < replica.down_until:
            return False
        if self.max_lag is not None and now - replica.checked_at >= self.check_every:
            with self._lock:
                if now - replica.checked_at >= self.check_every:
                    replica.lagging = self._lags(replica)
                    replica.checked_at = now
        return not replica.lagging

    def _lags(self, replica: _Replica) -> bool:
        """Whether ``replica`` is more than ``max_lag`` behind: it has not replayed the primary's position and
        its last replayed transaction is older than that. Unknown (it serves): the primary does not answer,
        or the replica has replayed no transaction since it started (a fresh clone)."""
        now = time.monotonic()
        try:
            if self._checked_lsn is None or now - self._checked_lsn[1] >= self.check_every:
                self._checked_lsn = (self._primary_lsn(), now)
        except _LOST:
            return False
        target = self._checked_lsn[0]
        try:
            with replica.engine.connect() as conn:
                behind = conn.execute(
                    text(
                        "SELECT coalesce(pg_last_wal_replay_lsn() < CAST(:lsn AS pg_lsn), false) "
                        "AND coalesce(now() - pg_last_xact_replay_timestamp() > make_interval(secs => :lag), false)"
                    ),
                    {"lsn": target, "lag": self.max_lag},
                ).scalar()
        except _LOST:
            self.mark_down(replica.engine)
            return True
        return bool(behind)

    def _primary_lsn(self) -> str:
        with self.primary.connect() as conn:
            return str(conn.execute(text("SELECT CAST(pg_current_wal_lsn() AS text)")).scalar())

    def _caught_up(self, replica: _Replica, target: str) -> bool:
        """Wait (at most ``wait`` seconds) until ``replica`` has replayed the WAL position ``target``."""
        deadline = time.monotonic() + self.wait
        try:
            with replica.engine.connect() as conn:
                while True:
                    done = conn.execute(
                        text("SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn), false)"),
                        {"lsn": target},
                    ).scalar()
                    if done or time.monotonic() >= deadline:
                        return bool(done)
                    _sleep(0.005)
        except _LOST:
            self.mark_down(replica.engine)
            return False

    def mark_down(self, engine: Engine) -> None:
        """Skip the replica of ``engine`` for ``retry_after`` seconds (its pooled connections are dropped)."""
        for replica in self.replicas:
            if replica.engine is engine:
                replica.down_until = time.monotonic() + self.retry_after
                engine.dispose()

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()


def replica_urls(replicas: Sequence[str] | None) -> list[str]:
    """``connect(..., replicas=...)`` as a list of URLs (a lone string is the usual slip: refused)."""
    if isinstance(replicas, str):
        raise InvalidArgumentError("replicas is a list of URLs, not one string: replicas=[url, ...]")
    return list(replicas or ())


def _sleep(seconds: float) -> None:
    """A pause that, under the async API (:mod:`vectorpg.aio`), lets the event loop go on."""
    if in_greenlet():
        await_(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


def routed(method: F) -> F:
    """Run a read operation on the server its object's router chooses (``self.router``; none: as it is),
    again on the next one when that server is lost mid-read."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        router: ReadRouter | None = getattr(self, "router", None)
        if router is None or _current.get() is not None:  # not routed, or already inside a routed read
            return method(self, *args, **kwargs)
        lost: BaseException | None = None
        for name, engine in router.candidates():
            token = _current.set((name, engine))
            try:
                return method(self, *args, **kwargs)
            except _LOST as exc:
                if engine is router.primary:
                    raise
                router.mark_down(engine)
                lost = exc
            finally:
                _current.reset(token)
        assert lost is not None
        raise lost

    return run  # type: ignore[return-value]


def read_bind(default: Any) -> Any:
    """The engine the current routed read runs on, or ``default`` (also when ``default`` is a caller's
    Session, whose reads stay in its transaction)."""
    current = _current.get()
    return current[1] if current is not None and isinstance(default, Engine) else default


def current_server() -> str:
    """Where the current read runs: ``"primary"``, ``"replica N (host:port)"``, or ``""`` when not routed."""
    current = _current.get()
    return current[0] if current is not None else ""


@contextmanager
def reading(*, read_your_writes: bool) -> Iterator[None]:
    """Reads inside the block wait for (``True``) or skip (``False``) the replicas' catching up."""
    token = _consistency.set(read_your_writes)
    try:
        yield
    finally:
        _consistency.reset(token)

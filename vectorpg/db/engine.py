"""Engines that speak pgvector: the URL check, the psycopg 3 engine, and vector type registration.

Every connection of an engine made by :func:`create_vector_engine` has pgvector's binary dumpers and
loaders registered when it opens; :func:`ensure_vector_types` does the same, once per pooled connection,
for engines vectorpg did not create (an application's own). What was registered is recorded in the pooled
connection's ``.info``, which lives exactly as long as the driver connection.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import pgvector
import psycopg
from pgvector.psycopg.bit import register_bit_info
from pgvector.psycopg.halfvec import register_halfvec_info
from pgvector.psycopg.sparsevec import register_sparsevec_info
from pgvector.psycopg.vector import register_vector_info
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection

from vectorpg.awaiting import await_
from vectorpg.db.bridge import SyncBridge, sync_driver
from vectorpg.errors import ConfigurationError, ServerError
from vectorpg.sqltypes import EncodedVector

if TYPE_CHECKING:
    from vectorpg.db.server import EmbeddedServer

#: Oldest pgvector that vectorpg supports (iterative index scans arrived in 0.8.0).
MIN_PGVECTOR = (0, 8, 0)

_TYPES_KEY = "vectorpg_types"
_servers: weakref.WeakKeyDictionary[Engine, EmbeddedServer] = weakref.WeakKeyDictionary()


class HasEngine(Protocol):
    """Anything that carries an engine (a :class:`vectorpg.Database`)."""

    @property
    def engine(self) -> Engine: ...


def engine_of(bind: Engine | HasEngine) -> Engine:
    """The engine itself, or the engine of a :class:`~vectorpg.Database`."""
    return bind if isinstance(bind, Engine) else bind.engine


def embedded_server_of(engine: Engine) -> EmbeddedServer | None:
    """The embedded server that ``engine`` connects to, if vectorpg started it."""
    return _servers.get(engine)


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.8.5"`` -> ``(0, 8, 5)``; pre-release suffixes are ignored (``"0.9.0-dev"`` -> ``(0, 9, 0)``)."""
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in parts)


def _fetch_type(conn: psycopg.Connection[Any], name: str) -> TypeInfo | None:
    if isinstance(conn, SyncBridge):  # an async connection: psycopg's async catalog query, awaited
        return await_(TypeInfo.fetch(conn.async_connection, name))
    return TypeInfo.fetch(conn, name)


def _register_vector_types(conn: psycopg.Connection[Any]) -> bool:
    """Register pgvector's binary dumpers and loaders on a psycopg connection (sync, or an async one under
    a :class:`~vectorpg.db.bridge.SyncBridge`); ``False`` if the extension is not installed yet
    (:meth:`vectorpg.Database.install_extension` then resets the pool)."""

    info = _fetch_type(conn, "vector")
    if info is None:
        return False
    register_vector_info(conn, info)
    _register_encoded(conn, info.oid, pgvector.Vector)
    for name, register in (
        ("halfvec", register_halfvec_info),
        ("sparsevec", register_sparsevec_info),
        ("bit", register_bit_info),
    ):
        type_info = _fetch_type(conn, name)
        if type_info is not None:
            register(conn, type_info)
            if name == "halfvec":
                _register_encoded(conn, type_info.oid, pgvector.HalfVector)
    return True


def _register_encoded(conn: psycopg.Connection[Any], oid: int, value_class: type[Any]) -> None:
    """The binary dumper binary COPY uses for ``oid``: pre-encoded :class:`EncodedVector` values go out as
    they are (no per-row conversion); anything else is encoded by pgvector."""

    class EncodedDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> Any:
            if isinstance(obj, EncodedVector):
                return obj
            value = obj if isinstance(obj, value_class) else value_class(obj)
            return value.to_binary()

    EncodedDumper.oid = oid
    conn.adapters.register_dumper(EncodedVector, EncodedDumper)


def driver_connection(connection: PoolProxiedConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under a pooled connection (``Connection.connection``), in psycopg's sync API:
    an async engine's :class:`~psycopg.AsyncConnection` through :class:`~vectorpg.db.bridge.SyncBridge`
    (its calls awaited in the greenlet that SQLAlchemy runs the async engine's work in)."""
    raw = connection.driver_connection
    if raw is None:
        raise ConfigurationError("the pooled connection has no driver connection (it was closed)")
    return sync_driver(raw, connection.info)


def ensure_vector_types(connection: PoolProxiedConnection) -> None:
    """Register the vector types on a pooled connection (``Connection.connection``) once."""
    if not connection.info.get(_TYPES_KEY):
        connection.info[_TYPES_KEY] = _register_vector_types(driver_connection(connection))


@contextmanager
def vector_statements(connection: PoolProxiedConnection) -> Iterator[None]:
    """Ready a pooled connection (``Connection.connection``) for vectorpg's statements: the vector types
    registered (once), and psycopg's automatic server-side prepared statements off while they run, put
    back as they were afterwards (an application's own engine keeps its setting for its own statements).

    A prepared statement lives on one server connection: behind a transaction-mode pooler (PgBouncer) the
    next transaction may run on another, where it does not exist (``prepared statement "_pg3_0" does not
    exist``, or a Bind for another statement's parameters); and a cached generic plan would ignore the
    planner settings a search applies to its statement."""
    ensure_vector_types(connection)
    raw = driver_connection(connection)
    was = raw.prepare_threshold
    if was is None:
        yield
        return
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = was


def _driver(dbapi_connection: Any) -> Any:
    """The psycopg connection of an engine event's DBAPI connection (an async engine's is SQLAlchemy's
    adapter around it)."""
    return getattr(dbapi_connection, "driver_connection", dbapi_connection)


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    record.info[_TYPES_KEY] = _register_vector_types(sync_driver(_driver(dbapi_connection), record.info))


#: a pooled connection idle longer than this is pinged before it is handed out
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_KEY = "vectorpg_idle_since"


def _note_idle(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_IDLE_KEY] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Check a connection that sat idle in the pool (the server may have restarted meanwhile); a dead one
    raises DisconnectionError, and the pool replaces it with a new connection."""
    raw = _driver(dbapi_connection)
    if raw.closed or raw.broken:
        raise DisconnectionError("the pooled connection is closed")
    since = record.info.get(_IDLE_KEY)
    if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
        return
    try:  # libpq directly: a plain SELECT outside psycopg's transaction handling leaves the connection idle
        result = raw.pgconn.exec_(b"SELECT 1")
    except Exception as exc:
        raise DisconnectionError(f"the pooled connection failed its ping: {exc}") from exc
    if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
        raise DisconnectionError("the pooled connection failed its ping")


def sqlalchemy_url(url: str) -> str:
    """``url`` as a ``postgresql+psycopg://`` URL; :class:`ConfigurationError` for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {url!r} ({exc})") from exc
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"vectorpg needs PostgreSQL; got a {parsed.get_backend_name()!r} URL")
    driver = parsed.get_driver_name()
    if parsed.drivername not in ("postgresql", "postgres") and driver != "psycopg":
        raise ConfigurationError(
            f"vectorpg uses the psycopg 3 driver; use postgresql+psycopg:// (got {parsed.drivername}://)"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _engine_options(engine_kwargs: dict[str, Any]) -> bool:
    """vectorpg's engine defaults put into ``engine_kwargs`` (a caller's own win); whether the pool pings
    every checkout itself."""
    # A pooled connection is pinged at checkout only after it sat idle (see _ping_if_idle), not before
    # every use: a ping is a round trip, as long as a small search's own work.
    ping_each_checkout = bool(engine_kwargs.setdefault("pool_pre_ping", False))
    # The most recently used connection first: a sequential caller keeps one warm server process (FIFO
    # rotates through the pool, and each process's caches are cold again: measured +0.4 ms a search).
    engine_kwargs.setdefault("pool_use_lifo", True)
    # No automatic server-side prepared statements: a cached generic plan ignores the per-query planner
    # settings vectorpg applies, and prepared statements break behind transaction-mode poolers.
    connect_args = dict(engine_kwargs.pop("connect_args", {}))
    connect_args.setdefault("prepare_threshold", None)
    engine_kwargs["connect_args"] = connect_args
    return ping_each_checkout


def _listen(engine: Engine, ping_each_checkout: bool, server: EmbeddedServer | None) -> None:
    event.listen(engine, "connect", _on_connect)
    if not ping_each_checkout:
        event.listen(engine, "checkin", _note_idle)
        event.listen(engine, "checkout", _ping_if_idle)
    if server is not None:
        embedded = server
        event.listen(engine, "do_connect", lambda *_args: embedded.ensure_running())
        _servers[engine] = server


def _unreachable(url: str, exc: DBAPIError) -> ServerError:
    return ServerError(
        f"cannot reach PostgreSQL at {make_url(sqlalchemy_url(url)).render_as_string()}: {exc.orig}. "
        "Check that the server is running and the URL (host, port, user, password, database) is right."
    )


def create_vector_engine(
    url: str, *, echo: bool = False, server: EmbeddedServer | None = None, **engine_kwargs: Any
) -> Engine:
    """A psycopg 3 engine for ``url`` with the vector types registered on every connection, checked by
    connecting once (:class:`ServerError` says what to check). With ``server``, a new connection after
    the embedded server crashed or was stopped starts it again."""
    ping_each_checkout = _engine_options(engine_kwargs)
    engine = create_engine(sqlalchemy_url(url), echo=echo, **engine_kwargs)
    _listen(engine, ping_each_checkout, server)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise _unreachable(url, exc) from exc
    return engine


async def create_async_vector_engine(
    url: str, *, echo: bool = False, server: EmbeddedServer | None = None, **engine_kwargs: Any
) -> AsyncEngine:
    """:func:`create_vector_engine`'s async twin: an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` on
    psycopg's async connection, with the same defaults and the same vector types on every connection."""
    ping_each_checkout = _engine_options(engine_kwargs)
    engine = create_async_engine(sqlalchemy_url(url), echo=echo, **engine_kwargs)
    _listen(engine.sync_engine, ping_each_checkout, server)
    try:
        async with engine.connect():
            pass
    except DBAPIError as exc:
        await engine.dispose()
        raise _unreachable(url, exc) from exc
    return engine


@contextmanager
def raw_connection(engine: Engine, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """The psycopg connection under a pooled SQLAlchemy connection: in a transaction that commits when the
    block ends (SQLAlchemy's own, so that it really commits), or in autocommit mode for statements that
    cannot run in a transaction block (``CONCURRENTLY``)."""
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    with engine.connect().execution_options(**options) as conn:
        raw = driver_connection(conn.connection)
        if autocommit:
            yield raw
        else:
            with conn.begin():
                yield raw

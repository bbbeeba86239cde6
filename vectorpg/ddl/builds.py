"""Building vector indexes: create, drop, reindex; concurrently or not; with progress and scoped tuning.

Build indexes *after* a bulk load: building over existing rows is several times faster than inserting
into an existing HNSW graph row by row (``benchmarks/`` measures the ratio).

Build tuning (``maintenance_work_mem``, ``max_parallel_maintenance_workers``) is scoped to the build: with
``set_config(..., true)`` inside the build's transaction, or, for ``CONCURRENTLY`` (which cannot run in a
transaction block), set on a dedicated connection and reset before it goes back to the pool. Progress comes
from ``pg_stat_progress_create_index``, polled from a second connection while the build runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg import sql
from sqlalchemy import Column, Engine, Index, MetaData, Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex

from vectorpg.db.engine import HasEngine, embedded_server_of, engine_of, raw_connection
from vectorpg.errors import IndexBuildError, InvalidArgumentError
from vectorpg.indexes import VectorIndex, list_vector_indexes
from vectorpg.orm import table_of
from vectorpg.validation import identifier


@dataclass(frozen=True)
class BuildProgress:
    """One reading of ``pg_stat_progress_create_index``."""

    phase: str
    blocks_done: int
    blocks_total: int
    tuples_done: int
    tuples_total: int

    @property
    def fraction(self) -> float | None:
        """Share of the current phase done (tuples if known, else blocks), or ``None``."""
        if self.tuples_total:
            return self.tuples_done / self.tuples_total
        if self.blocks_total:
            return self.blocks_done / self.blocks_total
        return None


def default_tuning(db: Engine | HasEngine) -> dict[str, str]:
    """Build settings for the embedded server on this machine: 1/16 of RAM (64 MB to 2 GB) and all but one core.

    For a server given by URL, vectorpg leaves the server's own settings alone.
    """
    if embedded_server_of(engine_of(db)) is None:
        return {}
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        ram = 4 << 30
    mem_mb = max(64, min(2048, ram // 16 // (1 << 20)))
    workers = max(0, min(7, (os.cpu_count() or 1) - 1))
    return {"maintenance_work_mem": f"{mem_mb}MB", "max_parallel_maintenance_workers": str(workers)}


def _bound_index(table: Table, index: Index | VectorIndex, name: str | None, concurrently: bool) -> Index:
    """A copy of the index bound to a private copy of ``table`` (the caller's metadata is not touched)."""
    spec = index if isinstance(index, VectorIndex) else index.info.get("vectorpg")
    if spec is None:
        raise InvalidArgumentError("not a vector index: declare it with vectorpg.vector_index(...)")
    index_name = name or (index.name if isinstance(index, Index) else None) or spec.default_name(table.name)
    identifier(str(index_name), "index")
    bound = spec.to_index(str(index_name))
    bound.dialect_options["postgresql"]["concurrently"] = concurrently
    Table(table.name, MetaData(), *(Column(c.name, c.type) for c in table.columns), bound, schema=table.schema)
    return bound


def _qualified(table: Table, name: str) -> sql.Composable:
    return sql.Identifier(*([table.schema] if table.schema else []), name)


@contextmanager
def _progress_watch(
    engine: Engine, pid: int, progress: Callable[[BuildProgress], None] | None, interval: float
) -> Iterator[None]:
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        with engine.connect() as conn:
            while not stop.wait(interval):
                row = conn.execute(
                    text(
                        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                        "FROM pg_stat_progress_create_index WHERE pid = :pid"
                    ),
                    {"pid": pid},
                ).first()
                conn.rollback()  # a fresh snapshot of the statistics on every poll
                if row is not None:
                    progress(BuildProgress(str(row[0]), *(int(v or 0) for v in row[1:])))

    thread = threading.Thread(target=poll, name="vectorpg-index-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def create_vector_index(
    db: Engine | HasEngine,
    target: Table | type,
    index: Index | VectorIndex,
    *,
    name: str | None = None,
    concurrently: bool = False,
    settings: dict[str, str] | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    poll_interval: float = 0.5,
) -> str:
    """Build a vector index on ``target`` (a table or model) and return its name.

    ``index`` is a declared index (``vector_index(...)`` or one from ``Model.__table__.indexes``) or a
    :class:`VectorIndex`. An existing valid index of that name is left alone; an INVALID one (left by a
    failed concurrent build) raises :class:`IndexBuildError` (rebuild it with :func:`reindex_vector_index`).
    ``settings`` override the build tuning (default: :func:`default_tuning`); ``progress`` receives
    :class:`BuildProgress` readings while the build runs.
    """
    engine = engine_of(db)
    table = table_of(target)
    bound = _bound_index(table, index, name, concurrently)
    index_name = str(bound.name)
    tuning = {**default_tuning(db), **(settings or {})}
    with engine.connect() as conn:
        existing = {info.name: info for info in list_vector_indexes(conn, table)}
    if index_name in existing:
        if not existing[index_name].valid:
            raise IndexBuildError(
                f"index {index_name} exists but is INVALID (a concurrent build failed); rebuild it with "
                "reindex_vector_index(...) or drop it with drop_vector_index(...)",
                name=index_name,
                invalid=True,
            )
        return index_name
    ddl = CreateIndex(bound)
    try:
        if concurrently:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                try:
                    for key, value in tuning.items():
                        conn.execute(text("SELECT set_config(:k, :v, false)"), {"k": key, "v": value})
                    with _progress_watch(engine, pid, progress, poll_interval):
                        conn.execute(ddl)
                finally:
                    for key in tuning:  # session settings must not go back to the pool
                        conn.execute(text("SELECT set_config(:k, NULL, false)"), {"k": key})
        else:
            with engine.begin() as conn:
                pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                for key, value in tuning.items():
                    conn.execute(text("SELECT set_config(:k, :v, true)"), {"k": key, "v": value})
                with _progress_watch(engine, pid, progress, poll_interval):
                    conn.execute(ddl)
    except DBAPIError as exc:
        invalid = False
        if concurrently:
            with engine.connect() as conn:
                invalid = any(i.name == index_name and not i.valid for i in list_vector_indexes(conn, table))
        hint = " It was left INVALID: rebuild it with reindex_vector_index(...) or drop it." if invalid else ""
        raise IndexBuildError(
            f"building index {index_name} failed: {exc.orig}.{hint}", name=index_name, invalid=invalid
        ) from exc
    return index_name


def drop_vector_index(db: Engine | HasEngine, target: Table | type, name: str, *, concurrently: bool = False) -> bool:
    """Drop the index ``name`` of ``target`` if it exists; return whether it existed."""
    engine = engine_of(db)
    table = table_of(target)
    identifier(name, "index")
    with engine.connect() as conn:
        if name not in {i.name for i in list_vector_indexes(conn, table)}:
            return False
    statement = sql.SQL("DROP INDEX {}{}").format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), _qualified(table, name)
    )
    with raw_connection(engine, autocommit=concurrently) as raw:  # CONCURRENTLY: outside a transaction
        raw.execute(statement)
    return True


def reindex_vector_index(db: Engine | HasEngine, target: Table | type, name: str, *, concurrently: bool = True) -> None:
    """Rebuild the index ``name`` (for example one left INVALID by a failed concurrent build)."""
    engine = engine_of(db)
    table = table_of(target)
    identifier(name, "index")
    statement = sql.SQL("REINDEX INDEX {}{}").format(
        sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL(""), _qualified(table, name)
    )
    with raw_connection(engine, autocommit=concurrently) as raw:  # CONCURRENTLY: outside a transaction
        raw.execute(statement)

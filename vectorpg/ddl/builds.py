"""Building vector indexes: create, drop, reindex; concurrently or not; with progress and scoped tuning.

Build indexes *after* a bulk load: building over existing rows is several times faster than inserting
into an existing HNSW graph row by row (``benchmarks/`` measures the ratio).

Build tuning (``maintenance_work_mem``, ``max_parallel_maintenance_workers``: :func:`plan_build`, from the
index's estimated size, the machine and ``/dev/shm``) is scoped to the build: with
``set_config(..., true)`` inside the build's transaction, or, for ``CONCURRENTLY`` (which cannot run in a
transaction block), set on a dedicated connection and reset before it goes back to the pool. Progress comes
from ``pg_stat_progress_create_index``, polled from a second connection while the build runs.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Column, Connection, Engine, Index, MetaData, Table, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateIndex

from vectorpg.awaiting import in_greenlet
from vectorpg.db.engine import HasEngine, driver_connection, embedded_server_of, engine_of, raw_connection
from vectorpg.errors import IndexBuildError, InvalidArgumentError, PerformanceWarning
from vectorpg.indexes import HNSW, VectorIndex, list_vector_indexes
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


MB = 1 << 20
#: bytes an HNSW build holds per row besides the indexed value: ~2m + m/ln(m) neighbour entries of 16
#: bytes (pointer, distance, flag) and the element's own header (pgvector's hnswbuild.c)
HNSW_ROW_OVERHEAD = 128
#: share of RAM a build on the embedded server may take
BUILD_RAM_SHARE = 4


@dataclass(frozen=True)
class BuildPlan:
    """What a build will need (from the table's size and the index) and the settings chosen for it."""

    rows: int
    graph_bytes: int
    settings: dict[str, str]
    notes: tuple[str, ...] = ()


def plan_build(
    engine: Engine, table: Table, spec: VectorIndex, settings: dict[str, str] | None, *, name: str = ""
) -> BuildPlan:
    """Settings for building ``spec`` on ``table``, chosen from the index's estimated size and the machine.

    An HNSW build keeps its graph in ``maintenance_work_mem`` (it slows sharply once the graph no longer
    fits); a parallel build puts that memory in dynamic shared memory (``/dev/shm`` on Linux). On the
    embedded server (this machine) the memory is the graph's estimated size plus a quarter, from 64 MB up
    to a quarter of RAM, and workers are all cores but one, unless ``/dev/shm`` cannot hold the graph: then
    the build runs serially. On a server given by URL its own settings stay; a note says when the graph
    will not fit them. ``settings`` are used as given; a parallel build they ask for that ``/dev/shm``
    cannot hold raises :class:`IndexBuildError` before the build.
    """
    with engine.connect() as conn:  # one connection for what the plan reads
        rows, value_bytes = _table_estimate(conn, table, spec)
        server: dict[str, str] = dict(conn.execute(text(
            "SELECT name, setting FROM pg_settings WHERE name IN ('maintenance_work_mem', "
            "'max_parallel_maintenance_workers', 'dynamic_shared_memory_type')"
        )).all())  # fmt: skip
    per_row = value_bytes + (34 * spec.method.m + HNSW_ROW_OVERHEAD if isinstance(spec.method, HNSW) else 0)
    graph = rows * per_row if isinstance(spec.method, HNSW) else rows * value_bytes // 20  # IVFFlat: a sample
    chosen = dict(settings or {})
    notes: list[str] = []
    embedded = embedded_server_of(engine) is not None
    if embedded and "maintenance_work_mem" not in chosen:
        cap = _ram() // BUILD_RAM_SHARE
        want = max(64 * MB, graph * 5 // 4)
        if want > cap:
            notes.append(f"the graph needs about {graph // MB:,} MB, more than the {cap // MB:,} MB a build may take "
                         "here: it builds, slower, once the graph no longer fits")  # fmt: skip
        chosen["maintenance_work_mem"] = f"{min(want, cap) // MB}MB"
    memory = _bytes(chosen.get("maintenance_work_mem")) or int(server.get("maintenance_work_mem", "65536")) * 1024
    if not embedded and graph > memory and isinstance(spec.method, HNSW):
        notes.append(f"the graph needs about {graph // MB:,} MB and maintenance_work_mem is {memory // MB:,} MB: the "
                     "build slows once it no longer fits; pass settings={'maintenance_work_mem': "
                     f"'{graph * 5 // 4 // MB}MB'}} or raise it on the server")  # fmt: skip
    asked = "max_parallel_maintenance_workers" in chosen
    if embedded and not asked:
        chosen["max_parallel_maintenance_workers"] = str(max(0, min(7, (os.cpu_count() or 1) - 1)))
    workers = int(chosen.get("max_parallel_maintenance_workers") or server.get("max_parallel_maintenance_workers") or 0)
    free = _shm_free() if embedded and server.get("dynamic_shared_memory_type") == "posix" else None
    if workers > 0 and isinstance(spec.method, HNSW) and free is not None and free < memory + 16 * MB:
        message = (f"a parallel build keeps its {memory // MB:,} MB graph in shared memory, and /dev/shm has "
                   f"{free // MB:,} MB free")  # fmt: skip
        if asked:
            raise IndexBuildError(
                f"{message}: build with settings={{'max_parallel_maintenance_workers': '0'}}, a smaller "
                "maintenance_work_mem, or more /dev/shm (docker run --shm-size=...)",
                name=name,
                invalid=False,
            )
        notes.append(f"{message}: building serially")
        chosen["max_parallel_maintenance_workers"] = "0"
    return BuildPlan(rows, graph, chosen, tuple(notes))


def _table_estimate(conn: Connection, table: Table, spec: VectorIndex) -> tuple[int, int]:
    """(rows, bytes of one indexed value) from the catalog's row estimate (a count if there is none) and a
    sample of the indexed values."""
    target = table.c[spec.column]
    raw = driver_connection(conn.connection)
    name = sql.Identifier(*([table.schema] if table.schema else []), table.name).as_string(raw)
    rows = int(conn.execute(text("SELECT reltuples::bigint FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                            {"t": name}).scalar_one())  # fmt: skip
    if rows < 0:  # never analyzed
        rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    sample = select(spec.expression(target).label("v")).where(target.is_not(None)).limit(1000).subquery()
    size = conn.execute(select(func.avg(func.pg_column_size(sample.c.v)))).scalar()
    return rows, int(size or 0)


def _bytes(setting: str | None) -> int | None:
    """``"512MB"`` / ``"2GB"`` / ``"65536"`` (kB) in bytes."""
    if not setting:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(kB|MB|GB|TB)?\s*", setting)
    if match is None:
        return None
    unit = {"kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, None: 1 << 10}[match.group(2)]
    return int(match.group(1)) * unit


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


def _shm_free() -> int | None:
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


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
def _side_connection(engine: Engine, plain: bool) -> Iterator[psycopg.Connection[Any]]:
    if plain:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as raw:
            yield raw
        return
    with engine.connect() as conn:
        yield driver_connection(conn.connection)


@contextmanager
def _progress_watch(
    engine: Engine, pid: int, progress: Callable[[BuildProgress], None] | None, interval: float
) -> Iterator[None]:
    if progress is None:
        yield
        return
    stop = threading.Event()
    query = (
        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
        "FROM pg_stat_progress_create_index WHERE pid = %s"
    )

    def poll() -> None:
        # on a connection of its own: the engine's, or under vectorpg.aio (whose connections belong to the
        # event loop, not to this thread) a plain psycopg one to the same server
        with _side_connection(engine, async_engine) as raw:
            while not stop.wait(interval):
                row = raw.execute(query, [pid]).fetchone()
                raw.rollback()  # a fresh snapshot of the statistics on every poll
                if row is not None:
                    progress(BuildProgress(str(row[0]), *(int(v or 0) for v in row[1:])))

    async_engine = in_greenlet()

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
    ``settings`` override the build tuning (default: :func:`plan_build`'s, from the index's estimated
    size and the machine; its notes come as a :class:`PerformanceWarning`); ``progress`` receives
    :class:`BuildProgress` readings while the build runs.
    """
    engine = engine_of(db)
    table = table_of(target)
    bound = _bound_index(table, index, name, concurrently)
    index_name = str(bound.name)
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
    plan = plan_build(engine, table, bound.info["vectorpg"], settings, name=index_name)
    for note in plan.notes:
        warnings.warn(f"building {index_name}: {note}", PerformanceWarning, stacklevel=2)
    tuning = plan.settings
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

"""Partitioned vector tables: LIST (per tenant or collection), HASH (spread), RANGE (by time).

::

    class Chunk(Base):
        __tablename__ = "chunks"
        tenant: Mapped[str] = mapped_column(primary_key=True)
        id: Mapped[int] = mapped_column(primary_key=True)
        embedding: Mapped[np.ndarray] = vector_column(384)
        __table_args__ = (
            vector_index("embedding", HNSW(), metric="cosine", dimension=384),
            Partitioning.by_list("tenant").table_kwargs(),
        )

    create_partition(db, Chunk, "chunks_acme", values=["acme"])
    create_partition(db, Chunk, "chunks_other", default=True)

An index declared on the parent exists on every partition, including partitions created later
(PostgreSQL propagates it), and a query whose filter fixes the partition key reads only that partition.
Partition bounds are DDL, which takes no bind parameters: they are validated and rendered as quoted
literals by psycopg; table names are validated identifiers composed with ``sql.Identifier``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import sql
from sqlalchemy import Engine, Table, text

from vectorpg.db.engine import HasEngine, driver_connection, engine_of, raw_connection
from vectorpg.db.translate import translating
from vectorpg.ddl.tenancy import sync_partition_security
from vectorpg.errors import InvalidArgumentError
from vectorpg.orm import table_of
from vectorpg.validation import identifier

Strategy = Literal["list", "hash", "range"]
_BOUND_TYPES = (str, int, float, decimal.Decimal, dt.date, dt.datetime)


@dataclass(frozen=True)
class Partitioning:
    """How a table is partitioned; ``table_kwargs()`` goes at the end of ``__table_args__``."""

    strategy: Strategy
    column: str
    modulus: int | None = None

    def __post_init__(self) -> None:
        identifier(self.column, "partition key column")
        if self.strategy == "hash":
            if isinstance(self.modulus, bool) or not isinstance(self.modulus, int) or not 1 <= self.modulus <= 1024:
                raise InvalidArgumentError(f"hash partitioning needs a modulus from 1 to 1024, got {self.modulus!r}")
        elif self.modulus is not None:
            raise InvalidArgumentError("modulus applies to hash partitioning only")

    @classmethod
    def by_list(cls, column: str) -> Partitioning:
        """One partition per listed value (a tenant, a collection), plus an optional DEFAULT partition."""
        return cls("list", column)

    @classmethod
    def by_hash(cls, column: str, modulus: int) -> Partitioning:
        """``modulus`` partitions, rows spread by the hash of ``column``."""
        return cls("hash", column, modulus)

    @classmethod
    def by_range(cls, column: str) -> Partitioning:
        """Partitions by ranges of ``column`` (typically a timestamp)."""
        return cls("range", column)

    def clause(self) -> str:
        """``LIST (column)`` and so on; the column is a validated identifier, always quoted."""
        quoted = sql.Identifier(self.column).as_string(None)
        return f"{self.strategy.upper()} ({quoted})"

    def table_kwargs(self) -> dict[str, Any]:
        """``{"postgresql_partition_by": ...}`` for ``__table_args__`` or ``Table(...)``."""
        return {"postgresql_partition_by": self.clause(), "info": {"vectorpg_partitioning": self}}


def partitioning_of(target: Table | type) -> Partitioning:
    """The :class:`Partitioning` declared on a table or model."""
    table = table_of(target)
    found = table.info.get("vectorpg_partitioning")
    if not isinstance(found, Partitioning):
        raise InvalidArgumentError(f"{table.name} is not declared partitioned (Partitioning.table_kwargs())")
    return found


def _name(table: Table, name: str) -> sql.Identifier:
    return sql.Identifier(*([table.schema] if table.schema else []), identifier(name, "partition"))


def _literal(value: object) -> sql.Literal:
    if isinstance(value, bool) or not isinstance(value, _BOUND_TYPES):
        raise InvalidArgumentError(f"partition bounds are strings, numbers, dates or datetimes; got {value!r}")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidArgumentError("partition bound contains a NUL character")
    return sql.Literal(value)


def _bound(
    partitioning: Partitioning,
    values: Sequence[object] | None,
    default: bool,
    from_: object,
    to: object,
    remainder: int | None,
) -> sql.Composable:
    if default:
        if partitioning.strategy == "hash":
            raise InvalidArgumentError("hash partitioning has no DEFAULT partition")
        return bound_clause(default=True)
    if partitioning.strategy == "list":
        if not values:
            raise InvalidArgumentError("a LIST partition needs values=[...] (or default=True)")
        return bound_clause(values=values)
    if partitioning.strategy == "range":
        if from_ is None or to is None:
            raise InvalidArgumentError("a RANGE partition needs from_=... and to=...")
        return bound_clause(from_=from_, to=to)
    assert partitioning.modulus is not None
    if isinstance(remainder, bool) or not isinstance(remainder, int):
        raise InvalidArgumentError(f"remainder must be from 0 to {partitioning.modulus - 1}, got {remainder!r}")
    return bound_clause(modulus=partitioning.modulus, remainder=remainder)


def bound_clause(
    *,
    values: Sequence[object] | None = None,
    default: bool = False,
    from_: object = None,
    to: object = None,
    modulus: int | None = None,
    remainder: int | None = None,
) -> sql.Composable:
    """A partition bound: ``DEFAULT``, ``FOR VALUES IN (...)``, ``FROM (...) TO (...)`` or ``WITH (MODULUS,
    REMAINDER)``, every value a quoted literal."""
    if default:
        return sql.SQL("DEFAULT")
    if values is not None:
        if not values:
            raise InvalidArgumentError("a LIST partition needs at least one value")
        return sql.SQL("FOR VALUES IN ({})").format(sql.SQL(", ").join(_literal(v) for v in values))
    if from_ is not None and to is not None:
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(_literal(from_), _literal(to))
    if modulus is not None and remainder is not None:
        if not 0 <= remainder < modulus:
            raise InvalidArgumentError(f"remainder must be from 0 to {modulus - 1}, got {remainder}")
        return sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            sql.Literal(int(modulus)), sql.Literal(int(remainder))
        )
    raise InvalidArgumentError(
        "give values=[...] (LIST), from_= and to= (RANGE), modulus= and remainder= (HASH) or default=True"
    )


@translating("creating a partition")
def create_partition(
    db: Engine | HasEngine,
    parent: Table | type,
    name: str,
    *,
    values: Sequence[object] | None = None,
    default: bool = False,
    from_: object = None,
    to: object = None,
    remainder: int | None = None,
) -> None:
    """``CREATE TABLE name PARTITION OF parent ...`` with the bound for the parent's strategy.

    A partition of that name that already exists under ``parent`` is left alone (so setup code can run
    again); a table of that name that is not one raises :class:`InvalidArgumentError`.
    """
    table = table_of(parent)
    identifier(name, "partition")
    bound = _bound(partitioning_of(table), values, default, from_, to, remainder)
    with raw_connection(engine_of(db)) as raw:
        existing = raw.execute(
            "SELECT c.relispartition, i.inhparent = %s::regclass FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
            "WHERE c.relname = %s AND c.relnamespace = %s::regnamespace",
            [_name(table, table.name).as_string(raw), name, table.schema or "public"],
        ).fetchone()
        if existing is not None:
            if existing[0] and existing[1]:
                return
            raise InvalidArgumentError(f"a table named {name!r} exists and is not a partition of {table.name}")
        raw.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(_name(table, name), _name(table, table.name), bound)
        )
        secure_like_parent(raw, table, name)


def create_hash_partitions(db: Engine | HasEngine, parent: Table | type) -> list[str]:
    """All ``modulus`` partitions of a HASH-partitioned table, named ``<table>_p<remainder>``."""
    table = table_of(parent)
    partitioning = partitioning_of(table)
    if partitioning.strategy != "hash" or partitioning.modulus is None:
        raise InvalidArgumentError(f"{table.name} is not HASH-partitioned")
    names = [f"{table.name}_p{r}" for r in range(partitioning.modulus)]
    for remainder, name in enumerate(names):
        create_partition(db, table, name, remainder=remainder)
    return names


@translating("attaching a partition")
def attach_partition(
    db: Engine | HasEngine,
    parent: Table | type,
    name: str,
    *,
    values: Sequence[object] | None = None,
    default: bool = False,
    from_: object = None,
    to: object = None,
    remainder: int | None = None,
) -> None:
    """Attach an existing table (same columns) as a partition; PostgreSQL checks its rows fit the bound."""
    table = table_of(parent)
    bound = _bound(partitioning_of(table), values, default, from_, to, remainder)
    with raw_connection(engine_of(db)) as raw:
        raw.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(_name(table, table.name), _name(table, name), bound)
        )
        secure_like_parent(raw, table, name)


def secure_like_parent(raw: Any, table: Table, name: str) -> None:
    """A new partition of a table with row-level security gets the parent's policies (vectorpg.tenancy)."""
    parent = _name(table, table.name)
    secured = raw.execute(
        "SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", [parent.as_string(raw)]
    ).fetchone()
    if secured and secured[0]:
        sync_partition_security(raw, parent, _name(table, name))


@translating("detaching a partition")
def detach_partition(db: Engine | HasEngine, parent: Table | type, name: str) -> None:
    """Detach a partition; it stays as a plain table with its rows."""
    table = table_of(parent)
    with raw_connection(engine_of(db)) as raw:
        raw.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(_name(table, table.name), _name(table, name)))


@dataclass(frozen=True)
class PartitionInfo:
    """A partition as the catalog describes it."""

    name: str
    bound: str
    rows: int


@translating("listing partitions")
def list_partitions(db: Engine | HasEngine, parent: Table | type) -> list[PartitionInfo]:
    """The partitions of ``parent`` with their bounds and exact row counts."""
    table = table_of(parent)
    engine = engine_of(db)
    with engine.connect() as conn:
        raw = driver_connection(conn.connection)
        parent_name = _name(table, table.name).as_string(raw)
        found = conn.execute(
            text(
                "SELECT c.relname, n.nspname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE i.inhparent = to_regclass(:parent) ORDER BY c.relname"
            ),
            {"parent": parent_name},
        ).all()
        out = []
        for name, schema, bound in found:
            count = raw.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
            out.append(PartitionInfo(str(name), str(bound), int(count[0]) if count else 0))
    return out

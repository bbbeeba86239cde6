"""Autogenerate that understands pgvector: vector types with their imports, vector indexes, partitions.

Stock Alembic renders ``pgvector.sqlalchemy.vector.VECTOR(dim=384)`` without importing it, mangles the
opclass of expression indexes, compares reflected ``WITH`` values (strings) with declared ones (numbers),
and proposes to drop every partition (alembic issue #539). The ``vectorpg`` autogenerate plugin:

* renders vector column types with the import they need (``render_item``);
* replaces Alembic's create/drop of HNSW and IVFFlat indexes with ``op.create_vector_index`` /
  ``op.drop_vector_index``, comparing the declared :class:`~vectorpg.indexes.VectorIndex` with the one
  read back from the catalog (method, opclass, options, expression, predicate as PostgreSQL normalises
  it): a change is one drop + create of that index, no change is no diff;
* never proposes to drop a partition (a table whose ``relispartition`` is true): partitions are data,
  created at run time or by ``op.create_partition``; their parent carries the schema.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from alembic.autogenerate.api import AutogenContext
from alembic.operations import ops
from alembic.runtime.plugins import Plugin
from alembic.util import DispatchPriority, PriorityDispatchResult
from psycopg import sql as psycopg_sql
from sqlalchemy import Index, Table, text
from sqlalchemy.engine import Connection

from vectorpg.alembic.dimension import ChangeVectorDimensionOp
from vectorpg.alembic.ops import CreateVectorExtensionOp, CreateVectorIndexOp, DropVectorIndexOp
from vectorpg.db.engine import driver_connection
from vectorpg.indexes import HNSW, IVFFlat, VectorIndex, list_vector_indexes, vector_index
from vectorpg.own_schema.tables import SCHEMA
from vectorpg.sqltypes import describe

PLUGIN = "vectorpg"
#: the context option that configure_kwargs(concurrent_indexes=...) sets
CONCURRENT_OPTION = "vectorpg_concurrent_indexes"
VECTOR_METHODS = ("hnsw", "ivfflat")

# -- types -----------------------------------------------------------------------------------------


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render pgvector column types with their module imported (``render_item`` hook of Alembic)."""
    if type_ != "type" or describe(obj) is None:
        return False
    module = type(obj).__module__
    if module.startswith("pgvector.sqlalchemy"):
        module = "pgvector.sqlalchemy"  # the public name; the class lives in a private submodule
    autogen_context.imports.add(f"import {module}")
    return f"{module}.{obj!r}"


def _chain(user: Callable[..., Any] | None) -> Callable[..., Any]:
    if user is None or getattr(user, "_vectorpg", False):
        return user or render_item

    def both(type_: str, obj: Any, autogen_context: AutogenContext) -> Any:
        rendered = user(type_, obj, autogen_context)
        return rendered if rendered is not False else render_item(type_, obj, autogen_context)

    both._vectorpg = True  # type: ignore[attr-defined]
    return both


render_item._vectorpg = True  # type: ignore[attr-defined]


# -- vector indexes --------------------------------------------------------------------------------


def is_vector_index(index: Index) -> bool:
    """Whether a declared or reflected index is an HNSW / IVFFlat index."""
    using = index.dialect_options["postgresql"].get("using") if "postgresql" in index.dialect_options else None
    return "vectorpg" in index.info or str(using or "").lower() in VECTOR_METHODS


def declared_spec(index: Index, table: Table) -> VectorIndex:
    """The :class:`VectorIndex` a declared index stands for: from :func:`vector_index`, or read from a plain
    ``Index(..., postgresql_using="hnsw", postgresql_ops=..., postgresql_with=...)`` as pgvector documents."""
    found = index.info.get("vectorpg")
    if isinstance(found, VectorIndex):
        spec = found
    else:
        options = index.dialect_options["postgresql"]
        expressions: list[Any] = list(index.expressions)
        first = getattr(expressions[0], "name", None) if expressions else None
        column = table.c[first] if first is not None and first in table.c else None
        if column is None or len(expressions) != 1:
            raise ValueError(f"vectorpg cannot read index {index.name}: declare it with vectorpg.vector_index()")
        opclass = (options.get("ops") or {}).get(column.name, "")
        metric = re.sub(r"^(vector|halfvec|sparsevec|bit)_|_ops$", "", opclass) or "l2"
        method_options = {k: int(v) for k, v in (options.get("with") or {}).items()}

        method = HNSW(**method_options) if options["using"] == "hnsw" else IVFFlat(**method_options)
        where = options.get("where")
        rebuilt = vector_index(column, method, metric={"ip": "inner_product"}.get(metric, metric), where=where)
        spec = rebuilt.info["vectorpg"]
    described = describe(table.c[spec.column].type) if spec.column in table.c else None
    if described is not None and spec.vector_type is described[0] and spec.dimension is None:
        spec = replace(spec, dimension=described[1])
    return spec


def _normalise_predicate(
    connection: Connection, table: Table | None, name: psycopg_sql.Identifier, predicate: str
) -> str:
    """The predicate as PostgreSQL prints it: build a throw-away index with it on a temporary copy of the
    table's columns, read ``pg_get_expr`` back, roll the savepoint back. (The predicate is the model's own
    SQL text, as in ``postgresql_where``.)"""
    if table is None:
        return predicate
    raw = driver_connection(connection.connection)
    with connection.begin_nested() as savepoint:
        raw.execute(psycopg_sql.SQL("CREATE TEMPORARY TABLE vectorpg_probe (LIKE {})").format(name))
        raw.execute(
            psycopg_sql.SQL("CREATE INDEX vectorpg_probe_idx ON vectorpg_probe ((true)) WHERE {}").format(
                psycopg_sql.SQL(predicate)  # type: ignore[arg-type]
            )
        )
        printed = connection.execute(
            text(
                "SELECT pg_get_expr(ix.indpred, ix.indrelid) FROM pg_index ix "
                "WHERE ix.indexrelid = 'vectorpg_probe_idx'::regclass"
            )
        ).scalar()
        savepoint.rollback()
    return str(printed)


def _comparable(spec: VectorIndex) -> VectorIndex:
    # The dimension of an index on the bare column is the column's: a column change, compared by Alembic.
    plain = spec.quantization.value == "none" and not spec.cast
    return replace(spec, dimension=None if plain else spec.dimension)


def _compare_vector_indexes(
    autogen_context: AutogenContext,
    modify_ops: ops.ModifyTableOps,
    schema: str | None,
    table_name: str,
    conn_table: Table | None,
    metadata_table: Table | None,
) -> PriorityDispatchResult:
    declared = {
        str(i.name): i for i in (metadata_table.indexes if metadata_table is not None else ()) if is_vector_index(i)
    }
    reflected_names = {
        str(i.name) for i in (conn_table.indexes if conn_table is not None else ()) if is_vector_index(i)
    }
    # Alembic's own index comparison got these wrong: take its ops on them out, put ours in.
    ours = set(declared) | reflected_names
    modify_ops.ops = [
        o for o in modify_ops.ops if not (isinstance(o, (ops.CreateIndexOp, ops.DropIndexOp)) and o.index_name in ours)
    ]
    resized = _dimension_changes(modify_ops, table_name, schema)
    connection = autogen_context.connection
    assert connection is not None
    name_sql = psycopg_sql.Identifier(*([schema] if schema else []), table_name)
    qualified = name_sql.as_string(connection.connection.driver_connection)
    reflected = {}
    if conn_table is not None and reflected_names:
        reflected = {info.name: info.spec for info in list_vector_indexes(connection, qualified)}

    # configure_kwargs(concurrent_indexes=True): changes to an existing table's indexes without blocking its
    # writers (PostgreSQL builds no partitioned table's index concurrently: those stay plain)
    concurrent = bool(autogen_context.opts.get(CONCURRENT_OPTION)) and conn_table is not None
    concurrent = concurrent and not _partitioned(connection, name_sql)

    def create(name: str, spec: VectorIndex) -> CreateVectorIndexOp:
        return CreateVectorIndexOp(name, table_name, spec, schema=schema, concurrently=concurrent)

    def drop(name: str, was: VectorIndex) -> DropVectorIndexOp:
        return DropVectorIndexOp(name, table_name, schema=schema, concurrently=concurrent, reverse=create(name, was))

    for name, index in sorted(declared.items()):
        assert metadata_table is not None
        spec = declared_spec(index, metadata_table)
        if name not in reflected:
            modify_ops.ops.append(create(name, spec))
            continue
        found = reflected[name]
        if found.column in resized:  # change_vector_dimension re-creates it for the new dimension
            found = replace(found, dimension=resized[found.column])
        if spec.where is not None and found.where is not None:
            spec = replace(spec, where=_normalise_predicate(connection, conn_table, name_sql, spec.where))
        if _comparable(spec) != _comparable(found):
            modify_ops.ops.append(drop(name, found))
            modify_ops.ops.append(create(name, spec))
    for name in sorted(set(reflected) - set(declared)):
        modify_ops.ops.append(drop(name, reflected[name]))
    return PriorityDispatchResult.CONTINUE


def _partitioned(connection: Any, name_sql: psycopg_sql.Identifier) -> bool:
    qualified = name_sql.as_string(connection.connection.driver_connection)
    found = connection.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": qualified})
    return bool(found.scalar() == "p")


def _dimension_changes(modify_ops: ops.ModifyTableOps, table_name: str, schema: str | None) -> dict[str, int]:
    """Replace the type change of a vector column's dimension (which no cast can do) by
    ``op.change_vector_dimension``; return ``{column: new dimension}``."""
    changed: dict[str, int] = {}
    rewritten: list[Any] = []
    for operation in modify_ops.ops:
        if isinstance(operation, ops.AlterColumnOp) and operation.modify_type is not None:
            new = describe(operation.modify_type)
            old = describe(operation.existing_type) if operation.existing_type is not None else None
            if new is not None and old is not None and new[0] is old[0] and new[1] and new[1] != old[1]:
                changed[operation.column_name] = new[1]
                rewritten.append(
                    ChangeVectorDimensionOp(
                        table_name,
                        operation.column_name,
                        new[1],
                        old_dimension=old[1],
                        **({"schema": schema} if schema else {}),
                        **({"vector_type": new[0].value} if new[0].value != "vector" else {}),
                    )
                )
                operation.modify_type = None
                if not operation.has_changes():
                    continue
        rewritten.append(operation)
    modify_ops.ops = rewritten
    return changed


# -- partitions ------------------------------------------------------------------------------------


def _walk(operations: list[Any]) -> Iterator[Any]:
    for operation in operations:
        yield operation
        if hasattr(operation, "ops"):
            yield from _walk(operation.ops)


def _skip_partitions(
    autogen_context: AutogenContext, upgrade_ops: ops.UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    connection = autogen_context.connection
    assert connection is not None
    default = connection.dialect.default_schema_name
    rows = connection.execute(
        text(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relispartition AND c.relkind IN ('r', 'p')"
        )
    ).all()
    declared = {(None if t.schema == default else t.schema, t.name) for t in autogen_context.sorted_tables}
    skip = {(None if s == default else s, t) for s, t in rows} - declared

    def keep(operation: Any) -> bool:
        return not (
            isinstance(operation, (ops.DropTableOp, ops.ModifyTableOps))
            and (operation.schema, operation.table_name) in skip
        )

    upgrade_ops.ops = [o for o in upgrade_ops.ops if keep(o)]
    return PriorityDispatchResult.CONTINUE


def _install_render_item(autogen_context: AutogenContext, upgrade_ops: ops.UpgradeOps) -> PriorityDispatchResult:
    # Plugin users who did not pass configure_kwargs() still get the imports of vector types.
    autogen_context.opts["render_item"] = _chain(autogen_context.opts.get("render_item"))
    return PriorityDispatchResult.CONTINUE


def _extension_installed(connection: Connection | None) -> bool:
    if connection is None:  # offline: nothing to look at; the migration says what it needs
        return False
    return connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is not None


def _complete_migration(autogen_context: AutogenContext, upgrade_ops: ops.UpgradeOps) -> PriorityDispatchResult:
    """After the comparators: what the migration needs beyond its operations. The first one that creates a vector
    column on a database without pgvector creates the extension first (``op.create_vector_extension()``), and a
    partitioned table is rendered without the :class:`~vectorpg.ddl.partitioning.Partitioning` in its ``info``
    (Python-side metadata for vectorpg's helpers, which a migration would need an import for and never uses)."""
    found = list(_walk(upgrade_ops.ops))
    columns = [c for o in found if isinstance(o, ops.CreateTableOp) for c in o.columns if hasattr(c, "type")]
    columns += [o.column for o in found if isinstance(o, ops.AddColumnOp)]
    if any(describe(c.type) is not None for c in columns) and not _extension_installed(autogen_context.connection):
        upgrade_ops.ops.insert(0, CreateVectorExtensionOp())
    for operation in found:  # Python-side metadata (the table's PARTITION BY is rendered on its own)
        if isinstance(operation, ops.CreateTableOp) and "vectorpg_partitioning" in operation.info:
            operation.info = {k: v for k, v in operation.info.items() if k != "vectorpg_partitioning"}
    return PriorityDispatchResult.CONTINUE


def setup(plugin: Plugin) -> None:
    """The Alembic plugin (``autogenerate_plugins=[..., "vectorpg"]``)."""
    plugin.add_autogenerate_comparator(
        _install_render_item, "autogenerate", "vectorpg", priority=DispatchPriority.FIRST
    )
    plugin.add_autogenerate_comparator(
        _complete_migration, "autogenerate", "vectorpg_complete", priority=DispatchPriority.LAST
    )
    plugin.add_autogenerate_comparator(
        _skip_partitions, "schema", "vectorpg_partitions", priority=DispatchPriority.LAST
    )
    plugin.add_autogenerate_comparator(
        _compare_vector_indexes, "table", "vectorpg_indexes", priority=DispatchPriority.LAST
    )


_registered = False


def register() -> None:
    """Register the plugin with Alembic once per process."""
    global _registered
    if not _registered:
        Plugin.setup_plugin_from_module(sys.modules[__name__], PLUGIN)
        _registered = True


def configure_kwargs(*, own_schema: bool = False, concurrent_indexes: bool = False, **user: Any) -> dict[str, Any]:
    """Keyword arguments for ``context.configure(...)`` in an application's ``env.py``::

        context.configure(connection=connection, target_metadata=Base.metadata,
                          **vectorpg.alembic.configure_kwargs())

    Adds the ``vectorpg`` autogenerate plugin to Alembic's default ones and the ``render_item`` hook for
    vector types, and leaves vectorpg's own schema (``vectorpg``: the store's tables, which vectorpg's own
    migrations keep) out of the application's comparisons, so that ``include_schemas=True`` never proposes to
    drop it. Pass your own ``render_item`` / ``autogenerate_plugins`` / ``include_name`` here to combine them;
    ``own_schema=True`` is for the migrations of that schema itself. ``concurrent_indexes=True`` renders the
    creation, change and drop of an existing table's vector indexes ``concurrently=True`` (``CREATE INDEX
    CONCURRENTLY`` in an autocommit block: writers go on while the index builds); each rendered index
    operation says in a comment what it locks.
    """
    register()
    plugins = list(user.pop("autogenerate_plugins", ["alembic.autogenerate.*"]))
    if PLUGIN not in plugins:
        plugins.append(PLUGIN)
    options = {**user, "autogenerate_plugins": plugins, "render_item": _chain(user.get("render_item"))}
    options[CONCURRENT_OPTION] = concurrent_indexes
    if not own_schema:
        options["include_name"] = _without_own_schema(user.get("include_name"))
    return options


def _without_own_schema(user: Callable[..., bool] | None) -> Callable[..., bool]:
    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema" and name == SCHEMA:
            return False
        return True if user is None else bool(user(name, type_, parent_names))

    return include_name

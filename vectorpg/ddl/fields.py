"""Field indexes of a table (:mod:`vectorpg.fields`): create, list and drop them.

Each is a plain btree on the key's typed expression, named after the table, the key and the type, with a
``COMMENT`` that records the key and the type (the catalog is the registry: plain SQL can read it). The
table is analysed after a build, so the planner has the new expression's statistics at once.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql
from sqlalchemy import Engine, Index, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import Grouping

from vectorpg.db.engine import driver_connection
from vectorpg.fields import FieldIndex, FieldType, expression, field_type, key_parts
from vectorpg.validation import derived_name

#: how a field index's comment starts; JSON ``{"key": ..., "type": ...}`` follows
COMMENT_PREFIX = "vectorpg field index "

_CATALOG_SQL = text(
    """
    SELECT c.relname AS name, i.indisvalid AS valid, obj_description(i.indexrelid, 'pg_class') AS comment
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = to_regclass(:table) AND obj_description(i.indexrelid, 'pg_class') LIKE :prefix
    ORDER BY c.relname
    """
)


def _qualified(table: Table) -> sql.Identifier:
    return _sibling(table, table.name)


def _sibling(table: Table, name: str) -> sql.Identifier:
    """``name`` in ``table``'s schema."""
    return sql.Identifier(*([table.schema] if table.schema else []), name)


def _raw(conn: Connection) -> Any:
    raw = driver_connection(conn.connection)
    return raw


def list_field_indexes(conn: Connection, table: Table) -> list[FieldIndex]:
    """The field indexes of ``table``, from the catalog."""
    qualified = _qualified(table).as_string(None)
    out = []
    for row in conn.execute(_CATALOG_SQL, {"table": qualified, "prefix": COMMENT_PREFIX + "%"}):
        recorded = json.loads(row.comment[len(COMMENT_PREFIX) :])
        out.append(FieldIndex(row.name, recorded["key"], field_type(recorded["type"]), bool(row.valid)))
    return out


def create_field_index(engine: Engine, table: Table, key: str, kind: str | FieldType, column: str = "metadata") -> str:
    """Build the field index of ``key`` (if it is not there) and analyse the table; return its name."""
    parts = key_parts(key)
    resolved = field_type(kind)
    name = derived_name(table.name, key.replace(".", "__"), resolved.value, "idx")
    index = Index(name, Grouping(expression(table.c[column], parts, resolved)), _table=table)
    table.indexes.discard(index)  # built here, not declared on the table
    comment = COMMENT_PREFIX + json.dumps({"key": key, "type": resolved.value})
    with engine.begin() as conn:
        conn.execute(CreateIndex(index, if_not_exists=True))
        _raw(conn).execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(_sibling(table, name), sql.Literal(comment)))
        _raw(conn).execute(sql.SQL("ANALYZE {}").format(_qualified(table)))
    return name


def drop_field_index(engine: Engine, table: Table, key: str) -> bool:
    """Drop the field index of ``key``; return whether there was one."""
    key_parts(key)
    with engine.begin() as conn:
        found = [f for f in list_field_indexes(conn, table) if f.key == key]
        for index in found:
            _raw(conn).execute(sql.SQL("DROP INDEX IF EXISTS {}").format(_sibling(table, index.name)))
    return bool(found)

"""Metadata-only updates of a collection: change documents' metadata without sending their text or vectors.

:func:`update_metadata` either replaces the metadata of documents by id (one JSON object for all, or one
per id: one statement over the ids and documents as arrays), or merges keys into (``set``) and removes keys
from (``unset``) the metadata of the documents chosen by ids and/or a filter (one ``UPDATE``, PostgreSQL's
``||`` and ``-`` on ``jsonb``). New metadata is validated as :meth:`Collection.add` validates it (JSON, the
size and depth limits, no NUL), merged metadata is checked against the size limit before the transaction
commits, and the update is all-or-nothing. Vectors, text and the vector index are not touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql
from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import Text

from vectorpg.db.engine import driver_connection
from vectorpg.db.writes import key_in
from vectorpg.errors import InvalidArgumentError, InvalidInputError
from vectorpg.own_schema.tables import SCHEMA, documents_table
from vectorpg.store.batches import MAX_METADATA_BYTES, check_ids, check_metadata

if TYPE_CHECKING:
    from vectorpg.store.collection import Collection


def update_metadata(
    collection: Collection,
    ids: Sequence[str] | None,
    *,
    metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    where: Mapping[str, Any] | None,
    set_: Mapping[str, Any] | None,
    unset: Sequence[str] | None,
) -> int:
    """See :meth:`vectorpg.store.Collection.update`."""
    if metadata is not None and (set_ is not None or unset is not None):
        raise InvalidArgumentError("update() takes metadata=... (replace) or set=/unset= (merge), not both")
    if metadata is None and set_ is None and unset is None:
        raise InvalidArgumentError("nothing to update: pass metadata=..., set={...} or unset=[...]")
    if ids is None and where is None:
        raise InvalidArgumentError("update() needs ids=..., where=..., or where={} for every document")
    id_list = check_ids(list(ids)) if ids is not None else None
    if metadata is not None:
        if where is not None:
            raise InvalidArgumentError("metadata=... replaces documents by id; to change the ones a filter "
                                       "matches, use set={...} and unset=[...] with where=...")  # fmt: skip
        assert id_list is not None
        return _replace(collection, id_list, metadata)
    return _merge(collection, id_list, where, set_ or {}, _keys(unset or []))


def _replace(collection: Collection, ids: list[str], metadata: Any) -> int:
    if isinstance(metadata, Mapping):
        documents = check_metadata([metadata]) * len(ids)
    else:
        documents = check_metadata(list(metadata))
        if len(documents) != len(ids):
            raise InvalidInputError(f"{len(ids)} ids but {len(documents)} metadata entries")
    if not ids:
        return 0
    statement = sql.SQL(
        "UPDATE {} AS d SET metadata = given.metadata::jsonb, updated_at = now() "
        "FROM unnest(%s::text[], %s::text[]) AS given(id, metadata) WHERE d.collection = %s AND d.id = given.id"
    ).format(sql.Identifier(SCHEMA, documents_table.name))
    texts = [document.obj.decode("utf-8") for document in documents]
    with collection.session_factory() as session, session.begin():
        raw = driver_connection(session.connection().connection)
        return int(raw.execute(statement, [ids, texts, collection.name]).rowcount)


def _merge(
    collection: Collection,
    ids: list[str] | None,
    where: Mapping[str, Any] | None,
    set_: Mapping[str, Any],
    unset: list[str],
) -> int:
    t = documents_table
    merged: Any = t.c.metadata
    if unset:
        merged = merged.op("-")(bindparam("unset_keys", unset, type_=ARRAY(Text)))
    if set_:
        encoded = check_metadata([set_])[0].value()
        merged = merged.op("||")(bindparam("set_keys", encoded, type_=JSONB))
    stmt = update(t).where(t.c.collection == collection.name, collection._filter(where, t.c.metadata))
    if ids is not None:
        stmt = stmt.where(key_in(t.c.id, ids))
    stmt = stmt.values(metadata=merged, updated_at=func.now())
    too_large = func.octet_length(t.c.metadata.cast(Text)) > MAX_METADATA_BYTES
    with collection.session_factory() as session, session.begin():
        changed = session.execute(stmt.returning(t.c.id, too_large.label("too_large"))).all()
        for row in changed:
            if row.too_large:  # raised inside the transaction: nothing is written
                raise InvalidInputError(
                    f"document {row.id!r} would hold more than {MAX_METADATA_BYTES} bytes of metadata after the "
                    "update; nothing was changed"
                )
    return len(changed)


def _keys(keys: Sequence[str]) -> list[str]:
    if isinstance(keys, str):
        return [keys]
    out = list(keys)
    for key in out:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"unset= takes metadata keys (non-empty strings), got {key!r}")
    return out

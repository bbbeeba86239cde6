"""Reading a collection's documents back: by id, by filter a page at a time, and a scan of all of them.

Pages are keyset-paginated on the id (``after``: the last id of the previous page), so each page is one short
query on the primary key, however far the scan has gone, and no transaction stays open between pages: a scan
of a collection that changes meanwhile sees each row at most once (rows added behind its position are not
seen; rows added ahead of it are).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vectorpg.db.engine import vector_statements
from vectorpg.db.routing import read_bind
from vectorpg.db.writes import key_in
from vectorpg.errors import InvalidArgumentError
from vectorpg.own_schema.tables import documents_table
from vectorpg.store.batches import check_ids

#: the most documents one page may hold
MAX_PAGE = 100_000


@dataclass(frozen=True)
class Document:
    """A stored document."""

    id: str
    content: str | None
    metadata: dict[str, Any]
    embedding: np.ndarray = field(repr=False)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def count_documents(collection: Any, where: Mapping[str, Any] | None) -> int:
    """:meth:`vectorpg.Collection.count`: the documents matching ``where`` (on a replica, in a routed read)."""
    t = documents_table
    stmt = (
        select(func.count())
        .select_from(t)
        .where(t.c.collection == collection.name, collection._filter(where, t.c.metadata))
    )
    with Session(read_bind(collection.engine)) as session:
        return int(session.scalar(stmt) or 0)


def read_documents(
    collection: Any,
    ids: Sequence[str] | None,
    where: Mapping[str, Any] | None,
    limit: int | None,
    after: str | None,
) -> list[Document]:
    """:meth:`vectorpg.Collection.get`: the documents with ``ids`` in the order asked, else those matching
    ``where`` in id order, after ``after``, at most ``limit``."""
    t = documents_table
    stmt = select(t).where(t.c.collection == collection.name, collection._filter(where, t.c.metadata))
    if ids is not None:
        if limit is not None or after is not None:
            raise InvalidArgumentError("get(ids) returns those ids; limit= and after= page through where= instead")
        wanted = check_ids(list(ids))
        stmt = stmt.where(key_in(t.c.id, wanted))
    else:
        if limit is None:
            raise InvalidArgumentError(f"get() without ids needs limit= (1 to {MAX_PAGE}); scan() reads them all")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidArgumentError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        if after is not None:
            stmt = stmt.where(t.c.id > check_ids([after])[0])
        stmt = stmt.order_by(t.c.id).limit(limit)  # the primary key's order (the database's collation)
    reader = Session(read_bind(collection.engine), expire_on_commit=False)  # a replica's, in a routed read
    with reader as session, vector_statements(session.connection().connection):
        rows = [
            Document(r.id, r.content, r.metadata, np.asarray(r.embedding), r.created_at, r.updated_at)
            for r in session.execute(stmt)
        ]
    if ids is None:
        return rows
    found = {d.id: d for d in rows}
    return [found[i] for i in wanted if i in found]


def scan_documents(collection: Any, where: Mapping[str, Any] | None, batch_size: int) -> Iterator[Document]:
    """:meth:`vectorpg.Collection.scan`: every document matching ``where``, in id order, a page at a time."""
    after: str | None = None
    while True:
        page = collection.get(where=where, limit=batch_size, after=after)
        yield from page
        if len(page) < batch_size:
            return
        after = page[-1].id

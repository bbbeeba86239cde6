"""What ingest knows of the files it wrote, so that an unchanged file costs a ``stat`` and not a re-read.

Every chunk ingest writes carries ``metadata["file"]``: the file's size, modification time (ns), SHA-256,
the chunk count and a key of the settings its chunks came from (chunker, embedder, extra metadata). On the
next ingest of that source:

- same size, mtime and settings: the file is not read at all;
- otherwise the file is read and hashed; same hash and settings (a ``touch``, a checkout): it is not
  chunked or embedded, and its chunks' ``file`` facts are brought up to date;
- otherwise it is chunked, and unchanged chunks are still recognised by id and content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from vectorpg.own_schema.tables import documents_table

if TYPE_CHECKING:
    from vectorpg.rag.chunking import Chunker
    from vectorpg.store.collection import Collection

#: bumped when chunking changes, so files chunked before are chunked again
CHUNKING_VERSION = 1


@dataclass(frozen=True)
class FileFacts:
    size: int
    mtime_ns: int
    sha256: str
    settings: str
    chunks: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def same_stat(self, stat: os.stat_result) -> bool:
        return self.size == stat.st_size and self.mtime_ns == stat.st_mtime_ns


def settings_key(chunker: Chunker, embedder: str | None, extra: Mapping[str, Any]) -> str:
    """What a file's chunks depend on besides its bytes."""
    facts = [CHUNKING_VERSION, chunker.max_tokens, chunker.overlap, embedder, extra]
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stored_facts(collection: Collection) -> dict[str, FileFacts]:
    """The facts kept with the first chunk of each source ingest wrote to ``collection`` (one query)."""
    meta = documents_table.c.metadata
    stmt = select(meta["source"].astext, meta["file"]).where(
        documents_table.c.collection == collection.name,
        meta["chunk"].astext == "0",
        meta.has_key("file"),
    )
    out = {}
    with collection.session_factory() as session:
        for source, facts in session.execute(stmt):
            try:
                out[source] = FileFacts(**facts)
            except TypeError:  # written by another version: read and chunk it again
                continue
    return out


def file_facts(stat: os.stat_result, sha256: str, settings: str, chunks: int = 0) -> FileFacts:
    return FileFacts(stat.st_size, stat.st_mtime_ns, sha256, settings, chunks)


def refresh(session: Session, collection: Collection, facts: Mapping[str, FileFacts]) -> None:
    """Bring the ``file`` facts of these sources' chunks up to date (their content did not change)."""
    meta = documents_table.c.metadata
    stmt = (
        update(documents_table)
        .where(documents_table.c.collection == collection.name, meta["source"].astext == bindparam("s"))
        .values(metadata=func.jsonb_set(meta, literal_column("ARRAY['file']"), bindparam("f", type_=JSONB)))
    )
    if facts:
        session.execute(stmt, [{"s": source, "f": f.as_json()} for source, f in facts.items()])

"""vectorpg's own tables: the built-in documents schema of the store API.

The built-in schema (``vectorpg.collections`` and ``vectorpg.documents``) backs ``db.collection(...)``.
``documents`` is LIST-partitioned by collection: each collection is its own partition, so its rows,
indexes and statistics are separate, and a query for one collection touches only its partition.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from vectorpg.sqltypes import VECTOR

#: Schema that holds vectorpg's own tables and its SQL functions (sql/functions.sql).
SCHEMA = "vectorpg"


store_metadata = MetaData(schema=SCHEMA)

collections_table = Table(
    "collections",
    store_metadata,
    Column("name", Text, primary_key=True),
    Column("dimension", Integer, nullable=False),
    Column("metric", Text, nullable=False),
    Column("embedder", Text, nullable=True, comment="name of the model that embeds the collection's text"),
    Column("next_embedder", Text, nullable=True, comment="model a reembed() in progress moves the collection to"),
    Column("next_dimension", Integer, nullable=True, comment="its dimension"),
    Column(
        "pending_indexes",
        JSONB,
        nullable=True,
        comment="vector indexes that reembed() dropped at its swap and has yet to build again",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("dimension > 0", name="collections_dimension_positive"),
    comment="vectorpg collections: one partition of vectorpg.documents each",
)

documents_table = Table(
    "documents",
    store_metadata,
    Column("collection", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("content", Text, nullable=True),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # No dimension here: collections differ. Each partition checks its own dimension.
    Column("embedding", VECTOR(), nullable=False),
    Column("content_hash", Text, nullable=True, comment="sha256 of content; unchanged text is not re-embedded"),
    Column("embedding_next", VECTOR(), nullable=True, comment="the new model's vector while reembed() runs"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("collection", "id", name="documents_pkey"),
    # JSON filters compile to containment (metadata @> ...), which this index serves on every partition.
    Index("documents_metadata_idx", "metadata", postgresql_using="gin", postgresql_ops={"metadata": "jsonb_path_ops"}),
    postgresql_partition_by="LIST (collection)",
    comment="documents of every collection; LIST-partitioned by collection",
)


tuning_table = Table(
    "index_tuning",
    store_metadata,
    Column("table_name", Text, primary_key=True),
    Column("index_name", Text, primary_key=True),
    Column("target", Float, primary_key=True, comment="recall@k target the value was tuned for"),
    Column("k", Integer, nullable=False),
    Column("knob", Text, nullable=False, comment="ef_search or probes"),
    Column("value", Integer, nullable=False),
    Column("measured_recall", Float, nullable=False),
    Column("queries", Integer, nullable=False),
    Column("tuned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="search settings tuned by vectorpg.tune(): every process applies them",
)


embedding_cache_table = Table(
    "embedding_cache",
    store_metadata,
    Column("model", Text, primary_key=True),
    Column("content_hash", Text, primary_key=True, comment="sha256 of the embedded text"),
    Column("embedding", VECTOR(), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    comment="every text a model embedded, by content hash: never embedded twice by the same model",
)


def partition_name(collection: str) -> str:
    """The table that holds one collection's documents (a partition of ``vectorpg.documents``)."""
    return f"documents_{collection}"

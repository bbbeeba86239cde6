"""vectorpg: PostgreSQL + pgvector as the vector store of LLM applications.

Importing vectorpg starts no server and loads no model: :func:`connect` starts the embedded PostgreSQL
(or connects to a URL), and an embedder loads its model on first use. The layers, top to bottom
(imports go downward only): :mod:`vectorpg.database`; :mod:`vectorpg.rag`; :mod:`vectorpg.store` and
:mod:`vectorpg.repository`; :mod:`vectorpg.search`; :mod:`vectorpg.ddl`; :mod:`vectorpg.own_schema`;
:mod:`vectorpg.db`; the base modules (errors, sqltypes, metrics, validation, filters, indexes, embeddings,
orm). :mod:`vectorpg.alembic` and :mod:`vectorpg.cli` sit on top.
"""

import importlib
from typing import Any

from vectorpg import db, ddl, own_schema, rag, search, store
from vectorpg.database import Database, connect
from vectorpg.ddl.builds import BuildProgress, create_vector_index, drop_vector_index, reindex_vector_index
from vectorpg.ddl.partitioning import (
    PartitionInfo,
    Partitioning,
    attach_partition,
    create_hash_partitions,
    create_partition,
    detach_partition,
    list_partitions,
)
from vectorpg.ddl.tenancy import enable_tenant_isolation, set_tenant, tenant_session
from vectorpg.embeddings import Embedder, SentenceTransformerEmbedder, default_embedder
from vectorpg.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    ConfigurationError,
    ConflictError,
    ConnectionLostError,
    DatabaseError,
    DimensionMismatchError,
    DiskFullError,
    DuplicateIdError,
    ExtensionError,
    FilterError,
    IndexBuildError,
    InvalidArgumentError,
    InvalidIdentifierError,
    InvalidInputError,
    InvalidVectorError,
    LockNotAvailableError,
    MissingDependencyError,
    PerformanceWarning,
    PermissionDeniedError,
    ServerError,
    StatementTimeoutError,
    UnknownMetricError,
    UnreadableFileError,
    UnsupportedMetricError,
    VectorPgError,
)
from vectorpg.filters import compile_filter
from vectorpg.indexes import HNSW, IndexInfo, IVFFlat, Quantization, VectorIndex, list_vector_indexes, vector_index
from vectorpg.metrics import METRICS, Metric, MetricSpec, metric_spec
from vectorpg.orm import vector_column
from vectorpg.rag import DocumentCollection, RetrievedChunk, build_prompt
from vectorpg.repository import Repository
from vectorpg.search import (
    HybridScore,
    PlannerConfig,
    SearchPlan,
    SearchSurface,
    TuningResult,
    recall,
    text_index,
    tune,
)
from vectorpg.sqltypes import BIT, HALFVEC, SPARSEVEC, VECTOR, VectorType
from vectorpg.store.collection import Collection, Hit, HybridHit
from vectorpg.store.reads import Document

__version__ = "0.1.0"

#: submodules that load an optional dependency (Alembic) or are only for the command line: imported on
#: first use, so that ``vectorpg.alembic`` works after a plain ``import vectorpg``
_LAZY = ("alembic", "cli")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"vectorpg.{name}")
    raise AttributeError(f"module 'vectorpg' has no attribute {name!r}")


__all__ = [
    "BIT",
    "HALFVEC",
    "HNSW",
    "METRICS",
    "SPARSEVEC",
    "VECTOR",
    "BuildProgress",
    "Collection",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionLostError",
    "Database",
    "DatabaseError",
    "DimensionMismatchError",
    "DiskFullError",
    "Document",
    "DocumentCollection",
    "DuplicateIdError",
    "Embedder",
    "ExtensionError",
    "FilterError",
    "Hit",
    "HybridHit",
    "HybridScore",
    "IVFFlat",
    "IndexBuildError",
    "IndexInfo",
    "InvalidArgumentError",
    "InvalidIdentifierError",
    "InvalidInputError",
    "InvalidVectorError",
    "LockNotAvailableError",
    "Metric",
    "MetricSpec",
    "MissingDependencyError",
    "PartitionInfo",
    "Partitioning",
    "PerformanceWarning",
    "PermissionDeniedError",
    "PlannerConfig",
    "Quantization",
    "Repository",
    "RetrievedChunk",
    "SearchPlan",
    "SearchSurface",
    "SentenceTransformerEmbedder",
    "ServerError",
    "StatementTimeoutError",
    "TuningResult",
    "UnknownMetricError",
    "UnreadableFileError",
    "UnsupportedMetricError",
    "VectorIndex",
    "VectorPgError",
    "VectorType",
    "attach_partition",
    "build_prompt",
    "compile_filter",
    "connect",
    "create_hash_partitions",
    "create_partition",
    "create_vector_index",
    "db",
    "ddl",
    "default_embedder",
    "detach_partition",
    "drop_vector_index",
    "enable_tenant_isolation",
    "list_partitions",
    "list_vector_indexes",
    "metric_spec",
    "own_schema",
    "rag",
    "recall",
    "reindex_vector_index",
    "search",
    "set_tenant",
    "store",
    "tenant_session",
    "text_index",
    "tune",
    "vector_column",
    "vector_index",
]

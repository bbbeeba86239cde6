"""vectorpg: PostgreSQL + pgvector as the vector store of LLM applications.

Importing vectorpg starts no server and loads no model: :func:`connect` starts the embedded PostgreSQL
(or connects to a URL), and an embedder loads its model on first use.
"""

from .build import BuildProgress, create_vector_index, drop_vector_index, reindex_vector_index
from .collection import Collection, Document, Hit, HybridHit
from .connection import Database, connect
from .distance import METRICS, Metric, MetricSpec, metric_spec
from .embeddings import Embedder, SentenceTransformerEmbedder, default_embedder
from .errors import (
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
    PermissionDeniedError,
    ServerError,
    StatementTimeoutError,
    UnknownMetricError,
    UnreadableFileError,
    UnsupportedMetricError,
    VectorPgError,
)
from .filters import compile_filter
from .hybrid import HybridScore
from .indexes import HNSW, IndexInfo, IVFFlat, Quantization, VectorIndex, list_vector_indexes, vector_index
from .models import vector_column
from .partitioning import (
    PartitionInfo,
    Partitioning,
    attach_partition,
    create_hash_partitions,
    create_partition,
    detach_partition,
    list_partitions,
)
from .planner import PlannerConfig, SearchPlan
from .repository import Repository
from .tuning import TuningResult, recall, tune
from .types import BIT, HALFVEC, SPARSEVEC, VECTOR, VectorType

__version__ = "0.1.0"

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
    "PermissionDeniedError",
    "PlannerConfig",
    "Quantization",
    "Repository",
    "SearchPlan",
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
    "compile_filter",
    "connect",
    "create_hash_partitions",
    "create_partition",
    "create_vector_index",
    "default_embedder",
    "detach_partition",
    "drop_vector_index",
    "list_partitions",
    "list_vector_indexes",
    "metric_spec",
    "recall",
    "reindex_vector_index",
    "tune",
    "vector_column",
    "vector_index",
]

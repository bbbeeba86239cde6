"""vectorpg: PostgreSQL + pgvector as the vector store of LLM applications.

Importing vectorpg starts no server and loads no model: :func:`connect` starts the embedded PostgreSQL
(or connects to a URL), and an embedder loads its model on first use.
"""

from .collection import Collection, Document, Hit
from .connection import Database, connect
from .distance import METRICS, Metric, MetricSpec, metric_spec
from .embeddings import Embedder, SentenceTransformerEmbedder, default_embedder
from .errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    ConfigurationError,
    DimensionMismatchError,
    DuplicateIdError,
    ExtensionError,
    FilterError,
    InvalidArgumentError,
    InvalidIdentifierError,
    InvalidInputError,
    InvalidVectorError,
    MissingDependencyError,
    ServerError,
    UnknownMetricError,
    UnsupportedMetricError,
    VectorPgError,
)
from .filters import compile_filter
from .models import vector_column
from .repository import Repository
from .types import BIT, HALFVEC, SPARSEVEC, VECTOR, VectorType

__version__ = "0.1.0"

__all__ = [
    "BIT",
    "HALFVEC",
    "METRICS",
    "SPARSEVEC",
    "VECTOR",
    "Collection",
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "ConfigurationError",
    "Database",
    "DimensionMismatchError",
    "Document",
    "DuplicateIdError",
    "Embedder",
    "ExtensionError",
    "FilterError",
    "Hit",
    "InvalidArgumentError",
    "InvalidIdentifierError",
    "InvalidInputError",
    "InvalidVectorError",
    "Metric",
    "MetricSpec",
    "MissingDependencyError",
    "Repository",
    "SentenceTransformerEmbedder",
    "ServerError",
    "UnknownMetricError",
    "UnsupportedMetricError",
    "VectorPgError",
    "VectorType",
    "compile_filter",
    "connect",
    "default_embedder",
    "metric_spec",
    "vector_column",
]

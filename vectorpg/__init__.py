"""vectorpg: PostgreSQL + pgvector as the vector store of LLM applications.

Importing vectorpg starts no server and loads no model: :func:`connect` starts the embedded PostgreSQL
(or connects to a URL), and an embedder loads its model on first use. The layers, top to bottom
(imports go downward only): :mod:`vectorpg.database`; :mod:`vectorpg.rag`; :mod:`vectorpg.store` and
:mod:`vectorpg.repository`; :mod:`vectorpg.search`; :mod:`vectorpg.ddl`; :mod:`vectorpg.own_schema`;
:mod:`vectorpg.db`; the base modules (errors, sqltypes, metrics, validation, filters, indexes, embeddings,
orm). :mod:`vectorpg.alembic` and :mod:`vectorpg.cli` sit on top.
"""

import importlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what ``import vectorpg`` offers, each name loaded on first use (__getattr__)
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


#: submodules that load an optional dependency (Alembic) or are only for the command line
_LAZY = ("alembic", "cli", "scaling")


@cache
def _exports() -> dict[str, tuple[str, str | None]]:
    """``{name: (module, attribute or None for the module itself)}``, read once from the imports above: the one
    list of what vectorpg exports. Importing vectorpg loads none of it, so that ``vectorpg search`` talking to
    its helper (:mod:`vectorpg.cli.helper`) starts in milliseconds; a name costs its import when first used."""
    import ast

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    found: dict[str, tuple[str, str | None]] = {name: (f"vectorpg.{name}", None) for name in _LAZY}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        for alias in node.names:
            sub = node.module == "vectorpg"
            found[alias.asname or alias.name] = (f"vectorpg.{alias.name}", None) if sub else (node.module, alias.name)
    return found


def __getattr__(name: str) -> Any:
    if name not in _exports():
        raise AttributeError(f"module 'vectorpg' has no attribute {name!r}")
    module, attribute = _exports()[name]
    loaded = importlib.import_module(module)
    value = loaded if attribute is None else getattr(loaded, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_exports()))


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

"""vectorpg for Alembic: operations for pgvector and an autogenerate plugin that understands it.

In an application's ``env.py``::

    import vectorpg.alembic

    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        **vectorpg.alembic.configure_kwargs(),
    )

Then ``alembic revision --autogenerate`` writes vector columns with their imports, vector indexes as
``op.create_vector_index(...)`` (a changed ``m`` / ``ef_construction`` / ``lists`` / metric / expression /
predicate becomes one drop + create of that index), partitioned tables with their ``PARTITION BY``, and
never proposes to drop a partition. Migrations can use ``op.create_vector_extension()``,
``op.create_vector_index(..., concurrently=True)``, ``op.drop_vector_index(...)``,
``op.create_partition(...)`` / ``attach_partition`` / ``detach_partition`` / ``drop_partition`` and
``op.change_vector_dimension(...)`` (see :mod:`vectorpg.alembic.dimension`).
"""

from importlib.metadata import PackageNotFoundError, version

from vectorpg.errors import MissingDependencyError

#: the oldest Alembic whose plugin API (``alembic.runtime.plugins``) the autogenerate plugin is built on
MIN_ALEMBIC = (1, 18)

try:
    _found = tuple(int(p) for p in version("alembic").split(".")[:2])
except PackageNotFoundError as exc:
    raise MissingDependencyError("alembic", "alembic", "vectorpg.alembic") from exc
if _found < MIN_ALEMBIC:
    raise MissingDependencyError(
        "alembic>=1.18", "alembic", f"vectorpg.alembic (Alembic {version('alembic')} is installed; its plugin API)"
    )

from vectorpg.alembic.autogen import configure_kwargs, declared_spec, is_vector_index, render_item  # noqa: E402
from vectorpg.alembic.dimension import ChangeVectorDimensionOp, change_vector_dimension  # noqa: E402
from vectorpg.alembic.ops import (  # noqa: E402
    AttachPartitionOp,
    CreatePartitionOp,
    CreateVectorExtensionOp,
    CreateVectorIndexOp,
    DetachPartitionOp,
    DropPartitionOp,
    DropVectorExtensionOp,
    DropVectorIndexOp,
    vector_index_spec,
)

__all__ = [
    "AttachPartitionOp",
    "ChangeVectorDimensionOp",
    "CreatePartitionOp",
    "CreateVectorExtensionOp",
    "CreateVectorIndexOp",
    "DetachPartitionOp",
    "DropPartitionOp",
    "DropVectorExtensionOp",
    "DropVectorIndexOp",
    "change_vector_dimension",
    "configure_kwargs",
    "declared_spec",
    "is_vector_index",
    "render_item",
    "vector_index_spec",
]

"""Declarative helpers for an application's own models: vector columns, and the table of a model.

::

    class Article(Base):
        __tablename__ = "articles"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]
        embedding: Mapped[np.ndarray] = vector_column(384)
        __table_args__ = (vector_index("embedding", "cosine", HNSW()),)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.orm import MappedColumn, mapped_column

from vectorpg.errors import InvalidArgumentError
from vectorpg.sqltypes import VectorType, column_type


def vector_column(
    dimension: int,
    vector_type: str | VectorType = VectorType.VECTOR,
    *,
    nullable: bool = False,
    **kwargs: Any,
) -> MappedColumn[Any]:
    """A ``mapped_column`` holding a pgvector value of ``dimension`` elements.

    ``vector_type`` is ``"vector"`` (float32), ``"halfvec"`` (float16), ``"sparsevec"`` or ``"bit"``.
    Extra keyword arguments go to :func:`sqlalchemy.orm.mapped_column`.
    """
    return mapped_column(column_type(vector_type, dimension), nullable=nullable, **kwargs)


def table_of(target: Table | type) -> Table:
    """The table of a :class:`Table` or a mapped model class."""
    if isinstance(target, Table):
        return target
    table: Any = inspect(target).local_table
    if not isinstance(table, Table):
        raise InvalidArgumentError(f"{target!r} is not mapped to a table")
    return table

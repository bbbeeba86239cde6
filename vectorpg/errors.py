"""The exceptions vectorpg raises.

Every error derives from :class:`VectorPgError`. Errors about bad input also derive from
:class:`ValueError` (or :class:`LookupError` / :class:`ImportError` where that is the better fit), so
code that already catches the builtin keeps working. Each class carries the facts that went wrong
(row index, expected and actual dimension, the offending name) as attributes, not only in the message.
"""

from __future__ import annotations

from collections.abc import Sequence


class VectorPgError(Exception):
    """Base class of every error raised by vectorpg."""


class ConfigurationError(VectorPgError, ValueError):
    """A connection URL, data directory or option is unusable."""


class ServerError(VectorPgError):
    """The PostgreSQL server could not be started or reached."""


class ExtensionError(VectorPgError):
    """pgvector is missing, cannot be installed, or is older than vectorpg needs."""

    def __init__(self, message: str, *, found: str | None = None, required: str | None = None) -> None:
        super().__init__(message)
        self.found = found
        self.required = required


class InvalidIdentifierError(VectorPgError, ValueError):
    """A collection, table, column or index name is not an acceptable identifier."""

    def __init__(self, message: str, *, name: object, kind: str) -> None:
        super().__init__(message)
        self.name = name
        self.kind = kind


class InvalidArgumentError(VectorPgError, ValueError):
    """An argument is out of range or of the wrong kind (for example ``k <= 0``)."""


class UnknownMetricError(VectorPgError, ValueError):
    """The distance metric is not one vectorpg knows."""

    def __init__(self, metric: object, known: Sequence[str]) -> None:
        super().__init__(f"unknown metric {metric!r}; use one of: {', '.join(known)}")
        self.metric = metric


class UnsupportedMetricError(VectorPgError, ValueError):
    """The metric exists but does not apply to this vector type (or index method)."""

    def __init__(self, message: str, *, metric: str, vector_type: str) -> None:
        super().__init__(message)
        self.metric = metric
        self.vector_type = vector_type


class InvalidVectorError(VectorPgError, ValueError):
    """A vector is not acceptable: NaN or infinity, empty, zero under cosine, non-numeric, ragged batch.

    ``row`` is the index of the offending vector inside the batch (``None`` for a single query vector).
    """

    def __init__(self, message: str, *, row: int | None = None, reason: str = "invalid") -> None:
        where = f"row {row}: " if row is not None else ""
        super().__init__(where + message)
        self.row = row
        self.reason = reason


class DimensionMismatchError(InvalidVectorError):
    """A vector has a different number of dimensions than its column or collection."""

    def __init__(self, *, expected: int, actual: int, row: int | None = None) -> None:
        super().__init__(f"expected {expected} dimensions, got {actual}", row=row, reason="dimension")
        self.expected = expected
        self.actual = actual


class InvalidInputError(VectorPgError, ValueError):
    """A non-vector value in a batch is unacceptable (empty text, mismatched lengths, bad metadata)."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        where = f"row {row}: " if row is not None else ""
        super().__init__(where + message)
        self.row = row


class FilterError(VectorPgError, ValueError):
    """A ``where`` filter is malformed: unknown operator, invalid key, unsupported value."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message} (at {path})" if path else message)
        self.path = path


class DuplicateIdError(VectorPgError, ValueError):
    """The same id appears twice in one batch, or ``add`` met an id that already exists."""

    def __init__(self, message: str, *, ids: Sequence[object]) -> None:
        super().__init__(message)
        self.ids = list(ids)


class CollectionNotFoundError(VectorPgError, LookupError):
    """The collection does not exist (and ``create=False`` was asked for)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist; call db.collection({name!r}) to create it")
        self.name = name


class CollectionMismatchError(VectorPgError, ValueError):
    """A collection was opened with a dimension, metric or embedder other than the one it was created with."""

    def __init__(
        self, name: str, field: str, recorded: object, requested: object, *, message: str | None = None
    ) -> None:
        super().__init__(
            message
            or f"collection {name!r} was created with {field}={recorded!r}, but {field}={requested!r} was given; "
            f"use the same {field}, or store the new one in a new collection"
        )
        self.name = name
        self.field = field
        self.recorded = recorded
        self.requested = requested


class MissingDependencyError(VectorPgError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        hint = (
            "pip install torch==2.13.0 'vectorpg[embed]' (install torch first to get the CPU build)"
            if extra == "embed"
            else f"pip install 'vectorpg[{extra}]'"
        )
        super().__init__(f"{purpose} needs the {package!r} package: {hint}")
        self.package = package
        self.extra = extra


class IndexBuildError(VectorPgError):
    """Building a vector index failed, or an INVALID index (from a failed concurrent build) is in the way."""

    def __init__(self, message: str, *, name: str, invalid: bool) -> None:
        super().__init__(message)
        self.name = name
        self.invalid = invalid


class UnreadableFileError(VectorPgError, ValueError):
    """A file cannot be ingested: binary, not UTF-8, empty, or not readable. Ingest reports and skips it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DatabaseError(VectorPgError):
    """PostgreSQL refused or could not finish an operation; ``sqlstate`` is its error code, and the
    original error is chained (``__cause__``). Nothing of the failed operation was written."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class PermissionDeniedError(DatabaseError, PermissionError):
    """The database role may not do this (SQLSTATE 42501)."""


class DiskFullError(DatabaseError, OSError):
    """The server ran out of disk space (SQLSTATE 53100)."""


class StatementTimeoutError(DatabaseError, TimeoutError):
    """A statement ran longer than ``statement_timeout`` (SQLSTATE 57014)."""


class ConflictError(DatabaseError):
    """Concurrent transactions conflicted (a deadlock or a serialization failure, SQLSTATE 40P01 / 40001)
    more times than vectorpg retries an operation; nothing of it was written, and a retry may succeed."""


class LockNotAvailableError(DatabaseError, TimeoutError):
    """A lock could not be had in time (``lock_timeout``, or NOWAIT: SQLSTATE 55P03); nothing was written."""


class ConnectionLostError(DatabaseError, ConnectionError):
    """The connection to PostgreSQL broke during an operation (SQLSTATE class 08, 57P01-57P03)."""


class PerformanceWarning(UserWarning):
    """A search runs much slower than it could, and the message says what to change (warned once)."""

"""Bad input: a typed error naming what was wrong and which row, and nothing written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import vectorpg
from vectorpg import validation
from vectorpg.errors import DimensionMismatchError, InvalidVectorError
from vectorpg.metrics import metric_spec
from vectorpg.sqltypes import VectorType

DIM = 4
GOOD = [0.1, 0.2, 0.3, 0.4]


def batch_with(bad: Any, at: int = 7, size: int = 100) -> list[Any]:
    rows: list[Any] = [list(GOOD) for _ in range(size)]
    rows[at] = bad
    return rows


# (label, bad vector, expected error class, reason, metric)
BAD_VECTORS = [
    ("nan", [0.1, float("nan"), 0.3, 0.4], InvalidVectorError, "nonfinite", "l2"),
    ("inf", [0.1, float("inf"), 0.3, 0.4], InvalidVectorError, "nonfinite", "l2"),
    ("-inf", [float("-inf"), 0.2, 0.3, 0.4], InvalidVectorError, "nonfinite", "l2"),
    ("float4 overflow", [1e39, 0.2, 0.3, 0.4], InvalidVectorError, "range", "l2"),
    ("empty", [], InvalidVectorError, "empty", "l2"),
    ("too short", [0.1, 0.2, 0.3], DimensionMismatchError, "dimension", "l2"),
    ("too long", [0.1, 0.2, 0.3, 0.4, 0.5], DimensionMismatchError, "dimension", "l2"),
    ("zero under cosine", [0.0, 0.0, 0.0, 0.0], InvalidVectorError, "zero", "cosine"),
    ("strings", ["a", "b", "c", "d"], InvalidVectorError, "type", "l2"),
    ("numeric strings", ["1", "2", "3", "4"], InvalidVectorError, "type", "l2"),
    ("None", None, InvalidVectorError, "type", "l2"),
    ("nested", [[0.1, 0.2], [0.3, 0.4]], InvalidVectorError, "shape", "l2"),
    ("ragged nested", [[0.1], [0.3, 0.4]], InvalidVectorError, "ragged", "l2"),
    ("text", "0.1,0.2,0.3,0.4", InvalidVectorError, "type", "l2"),
]


@pytest.mark.parametrize(("label", "bad", "error", "reason", "metric"), BAD_VECTORS, ids=[b[0] for b in BAD_VECTORS])
def test_bad_vector_in_a_batch_names_its_row(label: str, bad: Any, error: type, reason: str, metric: str) -> None:
    with pytest.raises(error) as info:
        validation.dense_vectors(batch_with(bad), dimension=DIM, metric=metric_spec(metric))
    assert info.value.row == 7
    assert info.value.reason == reason
    assert str(info.value).startswith("row 7: ")


def test_dimension_error_carries_expected_and_actual() -> None:
    with pytest.raises(DimensionMismatchError) as info:
        validation.dense_vectors(batch_with([1.0, 2.0]), dimension=DIM)
    assert (info.value.expected, info.value.actual, info.value.row) == (4, 2, 7)


def test_zero_vector_is_fine_under_l2() -> None:
    out = validation.dense_vectors([[0.0] * DIM], dimension=DIM, metric=metric_spec("l2"))
    assert out.dtype == np.float32 and out.shape == (1, DIM)


def test_numpy_matrix_fast_path_finds_the_bad_row() -> None:
    matrix = np.ones((1000, DIM))
    matrix[613, 2] = np.inf
    with pytest.raises(InvalidVectorError) as info:
        validation.dense_vectors(matrix, dimension=DIM)
    assert info.value.row == 613


@pytest.mark.parametrize("as_rows", [False, True], ids=["matrix", "list of arrays"])
@pytest.mark.parametrize(
    ("value", "metric", "reason"),
    [
        (np.nan, "l2", "nonfinite"),
        (np.inf, "cosine", "nonfinite"),
        (-np.inf, "ip", "nonfinite"),
        (0.0, "cosine", "zero"),
    ],
)
def test_float32_batches_find_the_bad_row(value: float, metric: str, reason: str, as_rows: bool) -> None:
    """A float32 batch is first checked in one pass (its rows' squared norms); the row it flags is named."""
    matrix = np.ones((1000, DIM), dtype=np.float32)
    matrix[613] = value
    batch: Any = list(matrix) if as_rows else matrix
    with pytest.raises(InvalidVectorError) as info:
        validation.dense_vectors(batch, dimension=DIM, metric=metric_spec(metric))
    assert (info.value.row, info.value.reason) == (613, reason)


@pytest.mark.parametrize(
    "value", [1e20, 3e38, 1e-30, 1e-45], ids=["squares overflow", "float32 max", "squares underflow", "subnormal"]
)
def test_float32_values_whose_squares_leave_float32_are_kept(value: float) -> None:
    """Finite, non-zero values whose squares overflow or underflow float32 are valid vectors, even under cosine."""
    matrix = np.ones((50, DIM), dtype=np.float32)
    matrix[20, 1] = value
    matrix[21] = value
    out = validation.dense_vectors(matrix, dimension=DIM, metric=metric_spec("cosine"))
    assert np.array_equal(out, matrix)


def test_a_float32_batch_is_range_checked_for_halfvec() -> None:
    matrix = np.ones((10, DIM), dtype=np.float32)
    matrix[4, 0] = 70000.0
    with pytest.raises(InvalidVectorError, match="out of range for halfvec") as info:
        validation.dense_vectors(matrix, dimension=DIM, vector_type=VectorType.HALFVEC)
    assert info.value.row == 4


def test_halfvec_range_is_float16() -> None:
    with pytest.raises(InvalidVectorError, match="out of range for halfvec"):
        validation.dense_vectors([[70000.0, 1, 1, 1]], dimension=DIM, vector_type=VectorType.HALFVEC)


def test_sparse_and_bit_checks() -> None:
    with pytest.raises(InvalidVectorError, match="outside"):
        validation.sparse_vectors([{0: 1.0}, {9: 1.0}], dimension=DIM)
    with pytest.raises(InvalidVectorError, match="zero vector"):
        validation.sparse_vectors([{0: 1.0}, {}], dimension=DIM, metric=metric_spec("cosine"))
    with pytest.raises(InvalidVectorError) as info:
        validation.sparse_vectors([{0: 1.0}, {1: float("nan")}], dimension=DIM)
    assert info.value.row == 1
    with pytest.raises(InvalidVectorError, match="'0101' strings"):
        validation.bit_vectors(["0101", "01x1"], dimension=4)
    with pytest.raises(DimensionMismatchError):
        validation.bit_vectors(["0101", "011"], dimension=4)
    with pytest.raises(InvalidVectorError, match="all-zero"):
        validation.bit_vectors(["0000"], dimension=4, metric=metric_spec("jaccard"))


def test_query_vector_errors_name_no_row() -> None:
    with pytest.raises(InvalidVectorError) as info:
        validation.query_vector([np.nan] * DIM, vector_type=VectorType.VECTOR, dimension=DIM, metric=None)
    assert info.value.row is None and not str(info.value).startswith("row")


@pytest.mark.parametrize("vector_type", [VectorType.VECTOR, VectorType.HALFVEC])
def test_a_float32_query_array_is_checked_like_any_other(vector_type: VectorType) -> None:
    """float32 arrays of the right size take a shorter path; it refuses what the batch path refuses."""
    good = np.linspace(-1, 1, DIM, dtype=np.float32)
    got = validation.query_vector(good, vector_type=vector_type, dimension=DIM, metric=metric_spec("cosine"))
    np.testing.assert_array_equal(got, good)
    assert got is not good and got.flags.c_contiguous
    strided = np.repeat(good, 2)[::2]
    assert validation.query_vector(strided, vector_type=vector_type, dimension=DIM, metric=None).flags.c_contiguous
    bad = {"nan": np.full(DIM, np.nan, np.float32), "zero": np.zeros(DIM, np.float32)}
    if vector_type is VectorType.HALFVEC:
        bad["range"] = np.full(DIM, 1e5, np.float32)  # past float16's 65504
    for reason, value in bad.items():
        with pytest.raises(InvalidVectorError) as info:
            validation.query_vector(value, vector_type=vector_type, dimension=DIM, metric=metric_spec("cosine"))
        assert info.value.row is None and info.value.reason in (reason, "nonfinite"), (reason, info.value.reason)
    with pytest.raises(DimensionMismatchError):
        validation.query_vector(good[:-1], vector_type=vector_type, dimension=DIM, metric=None)


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", True, None, 10**9])
def test_bad_k(k: Any) -> None:
    with pytest.raises(vectorpg.InvalidArgumentError):
        validation.positive_k(k)


@pytest.mark.parametrize("metric", ["cosin", "", "l3", None, 5])
def test_unknown_metric(metric: Any) -> None:
    with pytest.raises(vectorpg.UnknownMetricError):
        metric_spec(metric)


HOSTILE_NAMES = [
    "docs; DROP TABLE x",
    'a"b',
    "a'b",
    "../etc",
    "",
    "1abc",
    "a b",
    "x" * 49,
    "ümlaut",
    "a\x00b",
    "docs;--",
    None,
    12,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_collection_names_are_refused(name: Any) -> None:
    with pytest.raises(vectorpg.InvalidIdentifierError):
        validation.collection_name(name)


# -- through the database: the error, and the row count unchanged -------------------------------------


class _Base(DeclarativeBase):
    pass


class Thing(_Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding: Mapped[Any] = vectorpg.vector_column(DIM)


@pytest.mark.parametrize(("label", "bad", "error", "reason", "metric"), BAD_VECTORS, ids=[b[0] for b in BAD_VECTORS])
@pytest.mark.parametrize("size", [10, 1000], ids=["insert", "copy"])
def test_poisoned_batch_writes_nothing(
    db: vectorpg.Database, size: int, label: str, bad: Any, error: type, reason: str, metric: str
) -> None:
    _Base.metadata.create_all(db.engine)
    repo = vectorpg.Repository(Thing, db, metric=metric)
    repo.add({"id": -1, "embedding": GOOD})
    rows = [{"id": i, "embedding": v} for i, v in enumerate(batch_with(bad, at=size - 3, size=size))]
    for write in (repo.add, repo.upsert):
        with pytest.raises(error) as info:
            write(rows)
        assert info.value.row == size - 3
    assert repo.count() == 1


def test_poisoned_collection_batch_writes_nothing(db: vectorpg.Database) -> None:
    docs = db.collection("poison", dimension=DIM)
    docs.add(vectors=[GOOD], ids=["keep"])
    cases: list[tuple[dict[str, Any], type]] = [
        ({"vectors": batch_with([0.0] * DIM, at=500, size=1000)}, InvalidVectorError),
        ({"vectors": batch_with([1.0, 2.0], at=500, size=1000)}, DimensionMismatchError),
        ({"vectors": batch_with([1.0, float("nan"), 1, 1], at=500, size=1000)}, InvalidVectorError),
        ({"vectors": [GOOD] * 3, "metadata": [{}, {"x": float("nan")}, {}]}, vectorpg.InvalidInputError),
        ({"vectors": [GOOD] * 3, "metadata": [{}, {"x": "a\x00b"}, {}]}, vectorpg.InvalidInputError),
        ({"vectors": [GOOD] * 3, "metadata": [{}, "not a dict", {}]}, vectorpg.InvalidInputError),
        ({"vectors": [GOOD] * 3, "ids": ["a", "b", "a"]}, vectorpg.DuplicateIdError),
        ({"vectors": [GOOD] * 3, "ids": ["a", "", "c"]}, vectorpg.InvalidInputError),
        ({"vectors": [GOOD] * 3, "ids": ["a", "b"]}, vectorpg.InvalidInputError),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            docs.add(**kwargs)
    assert docs.count() == 1


def test_hostile_collection_name_never_reaches_sql(db: vectorpg.Database) -> None:
    for name in HOSTILE_NAMES:
        with pytest.raises(vectorpg.InvalidIdentifierError):
            db.collection(name, dimension=DIM)  # type: ignore[arg-type]
    assert not db.has_store_schema()  # refused before any DDL ran

"""Concurrent writers and readers against one server (tests/stress/load.py; the script runs longer)."""

from __future__ import annotations

import pytest

from tests.stress.load import run

pytestmark = pytest.mark.stress


def test_concurrent_writers_and_readers(database_url: str) -> None:
    result = run(database_url, seconds=10, writers=2, readers=2)
    assert result["errors"] == []  # not one non-retryable error
    assert result["searches"] > 50 and result["upserted_rows"] > 500 and result["deleted_rows"] > 0
    assert result["short_results"] == 0  # k rows whenever k match
    assert result["min_recall"] is not None and result["mean_recall"] >= 0.95

"""kill -9 of the server while a client ingests acknowledged batches (tests/stress/crash.py; the script runs 50
rounds and prints the figures): nothing acknowledged is lost, nothing is half-written, a retry duplicates
nothing, and the indexes answer after crash recovery."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.stress.crash import one_round

pytestmark = pytest.mark.stress


def test_kill_9_during_ingest(tmp_path: Path) -> None:
    rng = random.Random(7)
    data_dir = tmp_path / "pg"
    for _ in range(3):
        result = one_round(data_dir, rng)
        assert result["acked"] > 0
        assert result["lost"] == [] and result["partial"] == [] and result["duplicates"] == 0, result
        assert result["index_valid"] and result["ann_in_rows"], result
        assert result["btree"] in ("amcheck", "index = heap"), result

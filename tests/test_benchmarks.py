"""The benchmark suite's quick mode runs end to end, so that it cannot rot (measurements, no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.bench


def test_quick_suite_writes_every_section_and_goal(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "RESULTS.md").read_text()
    for title in (
        "1. Ingest",
        "2. Query overhead",
        "3. Filtered search",
        "4. ANN quality",
        "6. Concurrency",
        "5. Growth",
        "## Goals",
    ):
        assert title in report, title
    summary = json.loads((tmp_path / "suite.json").read_text())
    assert summary["versions"]["PostgreSQL"].startswith("18") and summary["versions"]["pgvector (extension)"] == "0.8.5"
    goals = [g for section in summary["sections"] for g in section["goals"]]
    assert len(goals) >= 7 and all(isinstance(g["met"], bool) for g in goals)
    for plot in ("ingest_peers.png", "query_overhead.png", "filtered_peers.png", "ann_curve.png", "growth.png"):
        assert (tmp_path / plot).stat().st_size > 10_000

"""The main job: the standard-library corpus, the quickstart run, and the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vectorpg
from vectorpg.cli import quickstart


def test_corpus_is_real_and_deterministic() -> None:
    first = quickstart.stdlib_corpus()
    assert len(first) > 2000
    assert [d.id for d in first] == sorted(d.id for d in first)
    by_id = {d.id: d for d in first}
    assert by_id["json.dumps"].metadata == {"module": "json", "kind": "function", "name": "json.dumps"}
    assert by_id["argparse.ArgumentParser"].metadata["kind"] == "class"
    assert all(0 < len(d.text) <= quickstart.MAX_CHARS for d in first)
    assert [d.id for d in quickstart.stdlib_corpus(limit=50)] == [d.id for d in first[:50]]


@pytest.mark.embedder
def test_quickstart_run_indexes_and_searches(db: vectorpg.Database) -> None:
    lines: list[str] = []
    timings = quickstart.run(db, collection="qs", limit=120, out=lines.append, progress_bar=False)
    assert db.collection("qs").count() == 120
    assert sum(1 for line in lines if line.lstrip().startswith("search ")) == len(quickstart.EXAMPLE_QUERIES)
    assert timings["index"] > 0
    note = lines[-1].strip()  # a part of the corpus: the hint says why a hit may be off-topic, and how to get all of it
    assert note.startswith("note: --limit 120 indexed only the first 120 docstrings") and "without --limit" in note
    assert ("more than 0.6 away" in note) == any(
        float(line.split()[0]) > quickstart.FAR for line in lines if line.startswith("  0.") or line.startswith("  1.")
    )
    again: list[str] = []
    quickstart.run(db, collection="qs", limit=120, out=again.append, progress_bar=False)
    assert db.collection("qs").count() == 120


@pytest.mark.embedder
def test_cli_quickstart_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "VECTORPG_DATA_DIR": str(tmp_path / "pg")}
    env.pop("VECTORPG_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "vectorpg.cli", "quickstart", "--limit", "60", "--no-progress", "-k", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "indexed: 60 documents" in result.stdout
    assert result.stdout.count("search '") == len(quickstart.EXAMPLE_QUERIES)
    steps = result.stdout.split("next:")[1]  # how to search what it built: shell, Python, psql, where it lives
    assert "vectorpg search" in steps and "import vectorpg" in steps and "psql" in steps
    assert str(tmp_path / "pg") in steps


def test_cli_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vectorpg.cli",
            "quickstart",
            "--url",
            "postgresql://x@127.0.0.1:1/none?connect_timeout=2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "vectorpg: error: cannot reach PostgreSQL" in result.stderr and "Traceback" not in result.stderr


def test_cli_help() -> None:
    result = subprocess.run([sys.executable, "-m", "vectorpg.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "quickstart" in result.stdout

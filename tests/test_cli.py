"""The CLI's recall and tune commands, run as subprocesses against a temporary embedded server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import vectorpg
from vectorpg import HNSW


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vectorpg.cli", *args], capture_output=True, text=True, timeout=300)


def test_recall_and_tune_commands(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "pg")
    db = vectorpg.connect(data_dir=data_dir)  # this process keeps the server up for the subprocesses
    docs = db.collection("cli_docs", dimension=16, metric="l2")
    docs.add(vectors=np.random.default_rng(0).normal(size=(2000, 16)))
    no_index = run_cli("recall", "--collection", "cli_docs", "--data-dir", data_dir)
    assert no_index.returncode == 0 and "no vector index" in no_index.stdout
    docs.create_index(HNSW())
    measured = run_cli("recall", "--collection", "cli_docs", "--data-dir", data_dir, "--sample", "20")
    assert measured.returncode == 0, measured.stderr
    assert "recall@10 of documents_cli_docs_embedding_l2_idx" in measured.stdout
    tuned = run_cli("tune", "--collection", "cli_docs", "--data-dir", data_dir, "--target", "0.9", "--sample", "20")
    assert tuned.returncode == 0, tuned.stderr
    assert "stored, every process now uses it" in tuned.stdout and "ef_search=" in tuned.stdout
    missing = run_cli("recall", "--collection", "nope", "--data-dir", data_dir)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    db.close()

"""The examples run as written (a subprocess each, against the test database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={**os.environ, "VECTORPG_URL": url},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.embedder
def test_rag_loop(database_url: str) -> None:
    out = run("rag.py", database_url, "How does the planner keep filtered searches complete?")
    assert "ingested:" in out and "[1] " in out
    prompt = out.split("----- prompt sent to the model -----")[1]
    assert "Question: How does the planner keep filtered searches complete?" in prompt
    assert "docs/sql.md" in prompt or "README.md" in prompt  # sources are cited with their files
    again = run("rag.py", database_url, "anything")
    assert "0 new, 0 embedded" in again  # the second run embeds nothing


@pytest.mark.embedder
def test_chat_memory(database_url: str) -> None:
    out = run("chat_memory.py", database_url)
    recalled = out.split("recalled from earlier sessions:")[1]
    assert "Bruno" in recalled and "peanuts" not in recalled

"""The examples run as written, as ``__main__`` against the test database (in this process, so that the
model loads once; ``test_rag_loop_as_a_script`` runs one as its own process too)."""

from __future__ import annotations

import io
import os
import runpy
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, url: str, *args: str) -> str:
    out = io.StringIO()
    saved = sys.argv, os.environ.get("VECTORPG_URL")
    sys.argv = [str(EXAMPLES / script), *args]
    os.environ["VECTORPG_URL"] = url
    try:
        with redirect_stdout(out):
            runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        sys.argv = saved[0]
        if saved[1] is None:
            os.environ.pop("VECTORPG_URL", None)
        else:
            os.environ["VECTORPG_URL"] = saved[1]
    return out.getvalue()


@pytest.mark.embedder
def test_rag_loop(database_url: str) -> None:
    out = run("rag.py", database_url, "How does the planner keep filtered searches complete?")
    assert "ingested:" in out and "[1] " in out
    prompt = out.split("----- prompt sent to the model -----")[1]
    assert "Question: How does the planner keep filtered searches complete?" in prompt
    assert "docs/sql.md" in prompt or "README.md" in prompt  # sources are cited with their files
    again = subprocess.run(
        [sys.executable, str(EXAMPLES / "rag.py"), "anything"],
        env={**os.environ, "VECTORPG_URL": database_url},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert "0 new, 0 embedded" in again.stdout  # the second run, a process of its own, embeds nothing


@pytest.mark.embedder
def test_chat_memory(database_url: str) -> None:
    out = run("chat_memory.py", database_url)
    recalled = out.split("recalled from earlier sessions:")[1]
    assert "Bruno" in recalled and "peanuts" not in recalled

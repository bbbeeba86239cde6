"""The examples run as written, as ``__main__`` against the test database: in this process, so that the
model loads once (the CLI and quickstart tests run vectorpg as a process of its own)."""

from __future__ import annotations

import io
import os
import runpy
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
    again = run("rag.py", database_url, "anything")
    assert "0 new, 0 embedded" in again  # the second run embeds nothing


@pytest.mark.embedder
def test_chat_memory(database_url: str) -> None:
    out = run("chat_memory.py", database_url)
    recalled = out.split("recalled from earlier sessions:")[1]
    assert "Bruno" in recalled and "peanuts" not in recalled


@pytest.mark.embedder
def test_fastapi_demo(database_url: str) -> None:
    out = run("fastapi_app.py", database_url)
    assert "{'written': 2}" in out and "'id': 'cats'" in out and "InvalidInputError" in out

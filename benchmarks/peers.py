"""Peers that cannot live in vectorpg's environment run in their own: ``benchmarks/.peers`` (a virtualenv the
suite creates once with ``pip install langchain-postgres``). langchain-postgres 0.0.19 pins
``pgvector<0.4``; vectorpg needs ``pgvector>=0.4.1``."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import numpy as np

VENV = Path(__file__).resolve().parent / ".peers"
PACKAGES = ["langchain-postgres==0.0.19", "numpy"]
SIDE = Path(__file__).resolve().parent / "langchain_side.py"


def python() -> Path | None:
    """The peers' interpreter, creating the virtualenv on first use; ``None`` if that fails."""
    exe = VENV / "bin" / "python"
    marker = VENV / "installed.json"
    if exe.exists() and marker.exists() and json.loads(marker.read_text()) == PACKAGES:
        return exe
    print(f"installing the LangChain peer into {VENV} (once): {' '.join(PACKAGES)}", file=sys.stderr)
    try:
        venv.create(VENV, with_pip=True, clear=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", *PACKAGES], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"could not install the LangChain peer: {exc}", file=sys.stderr)
        return None
    marker.write_text(json.dumps(PACKAGES))
    return exe


def langchain(command: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run one command of ``langchain_side.py`` (arrays are passed as .npy files)."""
    exe = python()
    if exe is None:
        raise RuntimeError("the LangChain peer is not available")
    with tempfile.TemporaryDirectory() as tmp:
        for key, array in arrays.items():
            path = Path(tmp) / f"{key}.npy"
            np.save(path, array)
            command[key] = str(path)
        result = subprocess.run(
            [str(exe), str(SIDE)], input=json.dumps(command), capture_output=True, text=True, timeout=3600
        )
    if result.returncode != 0:
        raise RuntimeError(f"LangChain peer failed: {result.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out

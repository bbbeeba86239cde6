"""The CLI's commands against temporary embedded servers: in this process (``main(argv)``, so that the model
loads once), and through the real entry point (``python -m vectorpg.cli``) in a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psycopg
import pytest

import vectorpg
from vectorpg import HNSW
from vectorpg.cli import main


def run_cli(*args: str) -> Any:
    """``vectorpg ARGS`` in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            status = exc.code
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def run_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
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


def _folder(root: Path) -> Path:
    root.mkdir()
    (root / "refunds.md").write_text(
        "# Refunds\n\nRefunds are paid to the original card within 14 days.\n\n"
        "## Exceptions\n\nGift cards cannot be refunded.\n"
    )
    (root / "shipping.md").write_text("# Shipping\n\nParcels leave the warehouse every weekday at noon.\n")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    return root


@pytest.mark.embedder
def test_ingest_search_and_collections_commands(tmp_path: Path) -> None:
    """The commands against a temporary data directory, the last one in a process of its own."""
    folder = _folder(tmp_path / "docs")
    data = ["--data-dir", str(tmp_path / "pg")]
    first = run_cli("ingest", str(folder), "--collection", "kb", "--no-progress", *data)
    assert first.returncode == 0, first.stderr
    assert "files: 2 read, 1 skipped" in first.stdout and "image.png: binary file" in first.stdout
    assert "3 new" in first.stdout
    again = run_cli("ingest", str(folder), "--collection", "kb", "--no-progress", *data)
    assert "0 new, 0 updated, 3 unchanged, 0 removed" in again.stdout and "embedded: 0 texts" in again.stdout
    (folder / "shipping.md").unlink()
    synced = run_cli("ingest", str(folder), "--collection", "kb", "--sync", "--no-progress", *data)
    assert "1 removed" in synced.stdout, synced.stdout

    found = run_cli("search", "can I get my money back for a gift card", "--collection", "kb", "-k", "1", *data)
    assert found.returncode == 0, found.stderr
    assert "refunds.md > Refunds > Exceptions" in found.stdout and "Gift cards cannot be refunded." in found.stdout
    as_json = run_cli("search", "refund", "--collection", "kb", "--json", "--where", "chunk=0", *data)
    hits = json.loads(as_json.stdout)
    assert [h["metadata"]["chunk"] for h in hits] == [0]
    hybrid = run_cli("search", "gift cards", "--collection", "kb", "--hybrid", "-k", "2", *data)
    assert hybrid.returncode == 0 and "score" in hybrid.stdout
    bad = run_cli("search", "x", "--collection", "kb", "--filter", '{"a": {"$regex": "."}}', *data)
    assert bad.returncode == 2 and "unknown operator" in bad.stderr

    listed = run_subprocess("collections", *data)
    assert listed.returncode == 0, listed.stderr
    assert "kb: 2 rows, model all-MiniLM-L6-v2, 384 dimensions, cosine" in listed.stdout


def test_schema_command_checks_the_generated_file() -> None:
    checked = run_cli("schema", "--check")
    assert checked.returncode == 0 and "is current" in checked.stdout


def test_help_explains_every_command() -> None:
    for command in ("ingest", "search", "collections", "serve", "quickstart", "recall", "tune", "schema"):
        shown = run_cli(command, "--help")
        assert shown.returncode == 0 and len(shown.stdout.split()) > 30, command
    entry = run_subprocess("--help")
    assert entry.returncode == 0 and "quickstart" in entry.stdout


def test_round_two_commands(tmp_path: Path) -> None:
    """--version, drop, index create / drop, the missing-path and missing-collection errors with the command to
    run, --diversity, the empty-result hint, and serve / status / stop without a --url they would ignore."""
    data_dir = str(tmp_path / "pg")
    data = ["--data-dir", data_dir]
    db = vectorpg.connect(data_dir=data_dir)
    docs = db.collection("managed", dimension=8, metric="l2")
    docs.add(vectors=np.random.default_rng(1).normal(size=(3000, 8)), ids=[str(i) for i in range(3000)])
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("vectorpg ")
    missing = run_cli("ingest", str(tmp_path / "nonexistent"), "--collection", "x", *data)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    nosuch = run_cli("search", "anything", "--collection", "nosuch", *data)
    assert nosuch.returncode == 2 and "vectorpg ingest PATH --collection nosuch" in nosuch.stderr
    assert "db.collection" not in nosuch.stderr
    built = run_cli("index", "create", "managed", *data)
    assert built.returncode == 0, built.stderr
    name = docs.indexes(refresh=True)[0].name
    assert f"built the hnsw index {name}" in built.stdout and "next: vectorpg search" in built.stdout
    text = run_cli("index", "create", "managed", "--text", *data)
    assert text.returncode == 0 and "full-text index" in text.stdout
    dropped = run_cli("index", "drop", "managed", name, *data)
    assert dropped.returncode == 0 and docs.indexes(refresh=True) == []
    assert run_cli("index", "drop", "managed", name, *data).returncode == 1  # nothing to drop: said, not silent
    refused = run_cli("drop", "managed", *data)
    assert refused.returncode == 2 and "3,000 documents" in refused.stderr and "--yes" in refused.stderr
    assert docs.count() == 3000
    gone = run_cli("drop", "managed", "--yes", *data)
    assert gone.returncode == 0 and "dropped 'managed'" in gone.stdout and db.collections() == []
    for command in ("serve", "status", "stop"):
        assert "--url" not in run_cli(command, "--help").stdout
    db.close()


@pytest.mark.embedder
def test_search_says_why_nothing_came_back_and_takes_diversity(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "docs")
    data = ["--data-dir", str(tmp_path / "pg")]
    assert run_cli("ingest", str(folder), "--collection", "kb", "--no-progress", *data).returncode == 0
    none = run_cli("search", "refunds", "--collection", "kb", "--where", "lang=xx", *data)
    assert none.returncode == 0 and "no document matches the filter (the collection holds 3)" in none.stdout
    diverse = run_cli("search", "refunds", "--collection", "kb", "--diversity", "0.5", "-k", "2", "--json", *data)
    assert diverse.returncode == 0 and len(json.loads(diverse.stdout)) == 2
    hybrid = run_cli("search", "gift cards", "--collection", "kb", "--hybrid", "--json", *data)
    first = json.loads(hybrid.stdout)[0]
    assert {"vector_rank", "text_rank", "content"} <= set(first)


@pytest.mark.embedder
def test_search_shows_a_text_found_in_several_files_once(tmp_path: Path) -> None:
    """The same page installed under several names (ls.1, dir.1) is one hit that names the other files, and k
    distinct texts still come back; --duplicates lists them one by one."""
    folder = tmp_path / "man"
    folder.mkdir()
    page = "ls lists directory contents: the files of each directory, sorted by name.\n"
    for name in ("ls.txt", "dir.txt", "vdir.txt"):
        (folder / name).write_text(page)
    (folder / "cp.txt").write_text("cp copies files and directories to a destination.\n")
    (folder / "date.txt").write_text("date prints or sets the system date and time.\n")
    data = ["--data-dir", str(tmp_path / "pg")]
    assert run_cli("ingest", str(folder), "--collection", "man", "--no-progress", *data).returncode == 0
    shown = run_cli("search", "list the files in a directory", "--collection", "man", "-k", "3", *data)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("ls lists directory contents") == 1 and " 3. " in shown.stdout
    same = next(line for line in shown.stdout.splitlines() if "the same text in" in line)
    named = {Path(n.strip(" )")).name for n in same.split("the same text in:")[1].split(",")}
    assert len(named) == 2 and named < {"ls.txt", "dir.txt", "vdir.txt"}  # (dir.txt is a substring of vdir.txt)
    listed = run_cli("search", "list the files in a directory", "--collection", "man", "-k", "3", "--json", *data)
    hits = json.loads(listed.stdout)
    assert len(hits) == 3 and len({h["content"] for h in hits}) == 3 and len(hits[0]["same_text"]) == 2
    every = run_cli("search", "list the files", "--collection", "man", "-k", "3", "--duplicates", *data)
    assert every.stdout.count("ls lists directory contents") == 3 and "the same text in" not in every.stdout


def test_setup_installs_the_sql_functions_in_any_database(bare_database_url: str) -> None:
    done = run_cli("setup", "--url", bare_database_url)
    assert done.returncode == 0, done.stderr
    assert "SQL functions are installed" in done.stdout and "next: psql" in done.stdout
    with psycopg.connect(bare_database_url) as conn:
        assert conn.execute(
            "SELECT to_regprocedure('vectorpg.search(text,vector,integer,jsonb)') IS NOT NULL"
        ).fetchone() == (True,)

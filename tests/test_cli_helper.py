"""The search helper (vectorpg.cli.helper): after a first ``vectorpg search``, later ones are answered by a
process that keeps the model and the connection; their output, errors and exit codes are the command's own, they
import nothing heavy, and a helper never serves another user, another vectorpg or a caller's other database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import vectorpg
from vectorpg.cli import helper

pytestmark = pytest.mark.embedder

TEXTS = ["gzip compresses files", "sockets carry bytes between processes", "a parent receives SIGCHLD"]
#: runs the command in a fresh interpreter and reports whether NumPy (and so vectorpg's store) got imported
CLIENT = (
    "import sys; from vectorpg.cli import main; code = main(sys.argv[1:]); "
    "print('heavy' if 'numpy' in sys.modules else 'light', file=sys.stderr); raise SystemExit(code)"
)


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    db = vectorpg.connect(database_url)
    db.collection("notes").add(TEXTS, ids=["gzip", "socket", "signal"])
    db.close()
    # short, whatever pytest's base directory: a socket's path has a limit of about 100 bytes
    where = Path(tempfile.mkdtemp(prefix="vph-", dir="/tmp"))
    monkeypatch.setenv("VECTORPG_HELPER_DIR", str(where))
    variables = {**os.environ, "VECTORPG_HELPER_DIR": str(where), "VECTORPG_URL": database_url}
    variables |= {"VECTORPG_HELPER": "1", "VECTORPG_HELPER_IDLE": "120", "HF_HUB_OFFLINE": "1"}
    yield variables
    helper.stop_helper()
    deadline = time.monotonic() + 10
    while list(where.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(where.glob("*.sock")), "the helper left its socket behind"
    shutil.rmtree(where, ignore_errors=True)


def search(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", CLIENT, "search", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _wait_for_helper() -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        path = helper.socket_path()
        if path is not None and path.exists():
            return path
        time.sleep(0.2)
    raise AssertionError("no helper came up")


def _without_hint(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if line not in ("heavy", "light"))


def test_the_second_search_is_answered_by_the_helper(env: dict[str, str], database_url: str) -> None:
    first = search(env, "which signal tells a parent its child exited", "--collection", "notes", "-k", "2")
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[-1] == "heavy" and "signal" in first.stdout  # ran here, then started it
    _wait_for_helper()
    second = search(env, "which signal tells a parent its child exited", "--collection", "notes", "-k", "2")
    assert second.returncode == 0 and second.stderr.splitlines()[-1] == "light", second.stderr
    assert second.stdout == first.stdout
    as_json = search(env, "compress a file", "--collection", "notes", "-k", "1", "--json")
    assert '"id": "gzip"' in as_json.stdout and as_json.stderr.strip() == "light"

    # errors and exit codes are the command's own, and the caller's VECTORPG_URL is the one searched
    missing = search(env, "x", "--collection", "nosuch")
    here = search({**env, "VECTORPG_HELPER": "0"}, "x", "--collection", "nosuch")
    assert (missing.returncode, missing.stderr.strip().splitlines()[-1]) == (2, "light")
    assert _without_hint(missing.stderr) == _without_hint(here.stderr) and "vectorpg ingest" in here.stderr
    other = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
    elsewhere = search({**env, "VECTORPG_URL": other}, "x", "--collection", "notes")
    assert elsewhere.returncode == 2 and "does not exist" in elsewhere.stderr
    usage = search(env, "--collection")  # argparse's own error, through the helper too
    assert usage.returncode == 2 and "usage:" in usage.stderr

    # the helper itself runs nothing but searches, whatever a client sends it
    refused = helper._ask({"argv": ["drop", "notes", "--yes"], "env": {}, "cwd": "/"}, timeout=30)
    assert refused is not None and refused["code"] == 2 and "runs only search" in refused["stderr"]
    db = vectorpg.connect(database_url)
    assert db.collection("notes", create=False).count() == 3
    db.close()


def test_no_helper_when_turned_off_or_not_private(env: dict[str, str], tmp_path: Path, monkeypatch: Any) -> None:
    off = search({**env, "VECTORPG_HELPER": "0"}, "gzip", "--collection", "notes", "-k", "1")
    assert off.returncode == 0 and off.stderr.strip() == "heavy"
    time.sleep(1)
    monkeypatch.setenv("VECTORPG_HELPER", "1")
    assert not list(Path(env["VECTORPG_HELPER_DIR"]).glob("*.sock")) and helper.run_in_helper(["search"]) is None
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("VECTORPG_HELPER_DIR", str(shared))
    assert helper.helper_dir() is None and helper.socket_path() is None  # others could reach a socket there
    deep = tmp_path / ("d" * 100)
    deep.mkdir(mode=0o700)
    monkeypatch.setenv("VECTORPG_HELPER_DIR", str(deep))
    assert helper.helper_dir() == deep and helper.socket_path() is None  # too long a path for a Unix socket
    assert not helper.start_helper(["search", "gzip"])  # so no helper is started that could never listen
    assert not helper.wanted(["search", "--help"]) and not helper.wanted(["ingest", "x"])


def test_the_fingerprint_follows_the_code(tmp_path: Path) -> None:
    """An edited module is another fingerprint: a helper running older code is never asked."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    module = package / "sub" / "m.py"
    module.write_text("x = 1\n")
    before = helper.fingerprint(package)
    assert helper.fingerprint(package) == before and helper.fingerprint() != before
    os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 1_000_000_000))
    assert helper.fingerprint(package) != before

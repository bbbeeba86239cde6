"""docs/sql.md is run as written: install.sql, then every ```sql block through the embedded server's own
psql, each block's output compared with the ```text block that follows it (or required to succeed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from vectorpg.db.server import postgres_binary
from vectorpg.own_schema.scripts import sql_dir

DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
_PREFIX = re.compile(r"^psql:[^:]*:\d+: ", re.M)


def examples() -> list[tuple[str, str | None]]:
    """(sql, expected output or None) for every sql block of the page, in order."""
    blocks = [(m.group(1), m.group(2)) for m in _BLOCK.finditer(DOC.read_text())]
    out: list[tuple[str, str | None]] = []
    for i, (kind, body) in enumerate(blocks):
        if kind == "sql":
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            out.append((body, following[1] if following and following[0] == "text" else None))
    return out


def _normalise(text: str) -> str:
    lines = [line.rstrip() for line in _PREFIX.sub("", text).splitlines()]
    return "\n".join(lines).strip("\n")


def matches(output: str, expected: str) -> bool:
    """Line by line; an expected line ending in ``...`` only fixes how the line starts (timestamps), and a
    last line ``...`` stands for any further lines (the CONTEXT trace of an error)."""
    got, want = output.splitlines(), expected.splitlines()
    if want and want[-1] == "...":
        want = want[:-1]
        got = got[: len(want)]
    return len(got) == len(want) and all(
        g.startswith(w[:-3]) if w.endswith("...") else g == w for g, w in zip(got, want)
    )


def psql(url: str, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(postgres_binary("psql")), "-X", "-q", "-d", url, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PGOPTIONS": "-c lc_messages=C", "PATH": "/usr/bin:/bin"},
    )


def test_the_page_has_examples_with_outputs() -> None:
    found = examples()
    assert len(found) >= 12
    assert sum(expected is not None for _, expected in found) >= 10


def test_docs_sql_examples_run_and_print_what_the_page_shows(bare_database_url: str, tmp_path: Path) -> None:
    install = psql(bare_database_url, sql_dir() / "install.sql")
    assert install.returncode == 0, install.stderr
    assert "ERROR" not in install.stderr
    for number, (sql_text, expected) in enumerate(examples()):
        script = tmp_path / f"example_{number}.sql"
        script.write_text(sql_text)
        result = psql(bare_database_url, script)
        output = _normalise(result.stdout + result.stderr)
        if expected is None:
            assert result.returncode == 0 and "ERROR" not in output, f"example {number}:\n{sql_text}\n{output}"
        else:
            assert matches(output, _normalise(expected)), f"example {number}:\n{sql_text}\n--- got:\n{output}"


@pytest.mark.parametrize("script", ["install.sql", "uninstall.sql"])
def test_scripts_are_idempotent(bare_database_url: str, script: str) -> None:
    for _ in range(2):
        result = psql(bare_database_url, sql_dir() / script)
        assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr


def test_readme_sql_runs(bare_database_url: str, tmp_path: Path) -> None:
    readme = (DOC.parent.parent / "README.md").read_text()
    blocks = [m.group(2) for m in _BLOCK.finditer(readme) if m.group(1) == "sql"]
    assert blocks
    assert psql(bare_database_url, sql_dir() / "install.sql").returncode == 0
    script = tmp_path / "readme.sql"
    script.write_text("\\set ON_ERROR_STOP on\n" + "\n".join(blocks))
    result = psql(bare_database_url, script)
    assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr
    assert " pg " in result.stdout  # the search found the document

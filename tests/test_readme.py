"""The README's Python examples run as written (against the test database)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.embedder
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(
    index: int, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VECTORPG_URL", database_url)
    # A real module, so that SQLAlchemy can resolve the example's Mapped[...] annotations.
    module = types.ModuleType(f"readme_example_{index}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), module.__dict__)
    assert capsys.readouterr().out.strip()  # every example prints its results

"""The ``vectorpg`` command: :mod:`~vectorpg.cli.main` (the subcommands), :mod:`~vectorpg.cli.serve` (the
embedded server on a TCP port), :mod:`~vectorpg.cli.quickstart` (the demo corpus) and
:mod:`~vectorpg.cli.helper` (the process that keeps ``vectorpg search``'s model loaded between searches)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorpg`` console script: ``vectorpg search`` through the search helper when one
    runs (nothing but the standard library is imported then), every other command in this process."""
    from vectorpg.cli import helper

    args = list(sys.argv[1:] if argv is None else argv)
    code = helper.run_in_helper(args)
    if code is not None:
        return code
    from vectorpg.cli.main import main as run

    code = run(args)
    if code == 0:
        helper.start_helper(args)
    return code


__all__ = ["main"]

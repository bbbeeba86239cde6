"""The ``vectorpg`` command: :mod:`~vectorpg.cli.main` (the subcommands), :mod:`~vectorpg.cli.serve` (the
embedded server on a TCP port) and :mod:`~vectorpg.cli.quickstart` (the demo corpus)."""

from vectorpg.cli.main import main

__all__ = ["main"]

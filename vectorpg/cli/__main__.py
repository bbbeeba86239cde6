"""``python -m vectorpg.cli``: the ``vectorpg`` command."""

from vectorpg.cli import main

raise SystemExit(main())

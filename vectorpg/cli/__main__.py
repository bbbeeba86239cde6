"""``python -m vectorpg.cli``: the ``vectorpg`` command."""

from vectorpg.cli.main import main

raise SystemExit(main())

"""Whether a table is a Citus distributed table (:mod:`vectorpg.scaling`), asked once per server and table."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, text

_known: dict[tuple[str, str], bool] = {}
_lock = threading.Lock()


def is_distributed(engine: Engine, table: str) -> bool:
    """Whether ``table`` (a qualified name) is distributed by Citus on ``engine``'s server (``False`` without
    Citus). Kept per server and table: distributing a table is a one-off (``forget`` after it)."""
    key = (str(engine.url), table)
    with _lock:
        if key in _known:
            return _known[key]
    with engine.connect() as conn:
        found = bool(conn.execute(text("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")).scalar())
        if found:  # Citus: its catalog of distributed tables (asked only where it exists)
            found = bool(
                conn.execute(
                    text(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition"
                        " WHERE logicalrelid = to_regclass(:t))"
                    ),
                    {"t": table},
                ).scalar()
            )
    with _lock:
        _known[key] = found
    return found


def forget() -> None:
    """Ask again next time (after ``create_distributed_table``)."""
    with _lock:
        _known.clear()

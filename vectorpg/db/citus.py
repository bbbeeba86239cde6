"""Citus support for the search path (:mod:`vectorpg.scaling`): whether a table is distributed (asked once
per server and table), and the row estimate of a distributed query's plan."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

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


def plan_rows(plan: Mapping[str, Any]) -> int:
    """The rows an ``EXPLAIN (FORMAT JSON)`` plan node estimates.

    On Citus the coordinator's node for a distributed query (``Custom Scan``, ``Distributed Query``) carries a
    fixed guess (100,000 rows, whatever the filter). The estimate that means something is the shards' own:
    the shown task's remote plan rows times the task count (shards are hash-spread, so alike), or their sum
    when every task is shown (``citus.explain_all_tasks``). A query routed to one shard has one task."""
    job = plan.get("Distributed Query", {}).get("Job") if plan.get("Node Type") == "Custom Scan" else None
    if job:
        remote = [
            int(task["Remote Plan"][0][0]["Plan"]["Plan Rows"])
            for task in job.get("Tasks", ())
            if "Remote Plan" in task
        ]
        if remote:
            return round(sum(remote) / len(remote) * int(job.get("Task Count", len(remote))))
    return int(plan["Plan Rows"])

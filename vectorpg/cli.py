"""The ``vectorpg`` command line.

Every command uses the embedded PostgreSQL unless ``--url`` (or ``$VECTORPG_URL``) names a server.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .errors import VectorPgError


def _connect(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .connection import connect

    return connect(args.url, data_dir=args.data_dir)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from . import quickstart

    start = time.perf_counter()
    db = _connect(args)
    print(f"database: {db!r} (ready in {time.perf_counter() - start:.1f} s)")
    quickstart.run(db, collection=args.collection, limit=args.limit, k=args.k, progress_bar=not args.no_progress)
    print(f"\ndone in {time.perf_counter() - start:.1f} s. Run it again: unchanged documents are not re-embedded.")
    db.close()
    return 0


def _open_collection(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    db = _connect(args)
    return db, db.collection(args.collection, embedder=None, create=False)


def _cmd_recall(args: argparse.Namespace) -> int:
    db, docs = _open_collection(args)
    indexes = docs.indexes()
    if not indexes:
        print(f"collection {args.collection!r} has no vector index: every search is exact (recall 1.0)")
        return 0
    start = time.perf_counter()
    measured = docs.recall(k=args.k, sample=args.sample)
    names = ", ".join(i.name for i in indexes)
    print(
        f"recall@{args.k} of {names}: {measured:.3f} over {args.sample} sampled queries "
        f"against exact search ({time.perf_counter() - start:.1f} s)"
    )
    db.close()
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    db, docs = _open_collection(args)
    result = docs.tune(args.target, k=args.k, sample=args.sample)
    for value, measured in result.tried:
        print(f"  {result.knob}={value:<5} recall@{args.k}={measured:.3f}")
    verdict = "meets" if result.met else "does NOT meet (best found)"
    print(
        f"{result.index}: {result.knob}={result.value} {verdict} recall@{args.k} >= {args.target} "
        f"({result.recall:.3f}); stored, every process now uses it"
    )
    db.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectorpg",
        description="PostgreSQL + pgvector as a vector store. Uses an embedded PostgreSQL unless --url is given.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help="postgresql:// URL of a server with pgvector (default: $VECTORPG_URL, else the embedded server)",
    )
    common.add_argument(
        "--data-dir",
        help="data directory of the embedded server (default: $VECTORPG_DATA_DIR or a per-user directory)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser(
        "quickstart",
        parents=[common],
        help="index the Python standard library's docstrings and run example searches",
        description="Start the embedded PostgreSQL, embed the docstrings of the Python standard library with "
        "the packaged all-MiniLM-L6-v2 model into a collection, and run a few example searches.",
    )
    quick.add_argument("--collection", default="stdlib_docs", help="collection name (default: stdlib_docs)")
    quick.add_argument(
        "--limit",
        type=int,
        default=None,
        help="index only the first N docstrings (sorted by name); default: all (about 4,000)",
    )
    quick.add_argument("-k", type=int, default=3, help="hits per example search (default: 3)")
    quick.add_argument("--no-progress", action="store_true", help="no progress bar")
    quick.set_defaults(func=_cmd_quickstart)

    for name, func, helptext in (
        ("recall", _cmd_recall, "measure recall@k of a collection's vector index against exact search"),
        ("tune", _cmd_tune, "find and store the smallest ef_search/probes that meets a recall target"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        cmd.add_argument("--collection", required=True, help="collection name")
        cmd.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
        cmd.add_argument("--sample", type=int, default=50, help="rows used as queries (default: 50)")
        if name == "tune":
            cmd.add_argument("--target", type=float, default=0.95, help="recall@k to reach (default: 0.95)")
        cmd.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorpg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except VectorPgError as exc:
        print(f"vectorpg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

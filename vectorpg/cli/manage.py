"""``vectorpg drop`` and ``vectorpg index create | drop``: managing collections and their indexes from a shell."""

from __future__ import annotations

import argparse
from typing import Any

from vectorpg.database import connect
from vectorpg.errors import InvalidArgumentError
from vectorpg.indexes import HNSW, IVFFlat
from vectorpg.progress import progress_bar


def _drop(args: argparse.Namespace) -> int:
    db = connect(args.url, data_dir=args.data_dir)
    docs = db.collection(args.collection, embedder=None, create=False)
    count = docs.count()
    if count and not args.yes:
        raise InvalidArgumentError(
            f"collection {args.collection!r} holds {count:,} documents; drop them too with: "
            f"vectorpg drop {args.collection} --yes (or keep a copy first: vectorpg export {args.collection} FILE)"
        )
    db.drop_collection(args.collection)
    print(f"dropped {args.collection!r} and its {count:,} documents")
    print("next: vectorpg collections")
    db.close()
    return 0


def _index(args: argparse.Namespace) -> int:
    db = connect(args.url, data_dir=args.data_dir)
    docs = db.collection(args.collection, embedder=None, create=False)
    if args.action == "drop":
        if not args.name:
            raise InvalidArgumentError(
                "vectorpg index drop COLLECTION NAME: the index's name (vectorpg collections lists them)"
            )
        found = docs.drop_index(args.name)
        print(f"dropped the index {args.name}" if found else f"no vector index {args.name} on {args.collection!r}")
        db.close()
        return 0 if found else 1
    if args.text:
        name = docs.create_text_index(args.config)
        print(f"built the full-text index {name} ({args.config}): hybrid searches use it")
    else:
        bar = progress_bar(total=100, desc=f"vectorpg: {args.method.upper()} index on {args.collection!r}", unit="%")
        done = [0]

        def step(progress: Any) -> None:
            total = progress.tuples_total or progress.blocks_total
            if total:
                now = int(100 * (progress.tuples_done or progress.blocks_done) / total)
                bar.update(max(0, min(100, now) - done[0]))
                done[0] = max(done[0], min(100, now))

        method = HNSW() if args.method == "hnsw" else IVFFlat()
        try:
            name = docs.create_index(method, concurrently=args.concurrently, progress=step)
        finally:
            bar.close()
        info = next((i for i in docs.indexes(refresh=True) if i.name == name), None)
        size = f", {info.size_bytes / 2**20:.1f} MiB" if info else ""
        print(f"built the {args.method} index {name}{size}")
    print(f'next: vectorpg search "your question" --collection {args.collection}')
    db.close()
    return 0


def _setup(args: argparse.Namespace) -> int:
    db = connect(args.url, data_dir=args.data_dir)
    version = db.install_extension()
    db.setup()
    print(f"pgvector {'.'.join(map(str, version))}, vectorpg's schema and its SQL functions are installed: {db.url}")
    print("next: psql, then SELECT id, distance FROM vectorpg.search('COLLECTION', '[...]', 5);  (docs/sql.md)")
    db.close()
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``setup``, ``drop`` and ``index`` to the ``vectorpg`` parser's subcommands."""
    setup = sub.add_parser(
        "setup", parents=[common], help="install pgvector, vectorpg's schema and its SQL functions in a database",
        description="Install the vector extension, vectorpg's schema and the SQL functions (vectorpg.search, "
        "hybrid_search, filter_sql) in the database of --url (any database, not only the one serve uses).",
    )  # fmt: skip
    setup.set_defaults(func=_setup)
    drop = sub.add_parser(
        "drop", parents=[common], help="drop a collection and its documents",
        description="Drop a collection. One that holds documents is dropped only with --yes.",
    )  # fmt: skip
    drop.add_argument("collection", help="the collection to drop")
    drop.add_argument("--yes", action="store_true", help="drop it even though it holds documents")
    drop.set_defaults(func=_drop)
    index = sub.add_parser(
        "index", parents=[common], help="create or drop a collection's vector or full-text index",
        description="vectorpg index create COLLECTION [--method hnsw|ivfflat | --text]; "
        "vectorpg index drop COLLECTION NAME (vectorpg collections lists the names).",
    )  # fmt: skip
    index.add_argument("action", choices=["create", "drop"])
    index.add_argument("collection", help="the collection")
    index.add_argument("name", nargs="?", default=None, help="drop: the index's name")
    index.add_argument(
        "--method", choices=["hnsw", "ivfflat"], default="hnsw", help="create: the vector index (default hnsw)"
    )
    index.add_argument("--text", action="store_true", help="create: the full-text index hybrid search uses")
    index.add_argument("--config", default="english", help="--text: the text search configuration (default english)")
    index.add_argument("--concurrently", action="store_true", help="create: CONCURRENTLY (writes go on meanwhile)")
    index.set_defaults(func=_index)

"""``vectorpg export`` and ``vectorpg import``: a collection to a file and back (:mod:`vectorpg.store.transfer`)."""

from __future__ import annotations

import argparse
from typing import Any

from vectorpg.database import connect


def _export(args: argparse.Namespace) -> int:
    db = connect(args.url, data_dir=args.data_dir)
    docs = db.collection(args.collection, embedder=None, create=False)
    written = docs.export(args.file, format=args.format, progress=None if not args.quiet else False)
    print(f"exported {written:,} documents of {args.collection!r} to {args.file}")
    print(f"next: vectorpg import {args.file} [--collection NEW_NAME] (here or with --url on another server)")
    db.close()
    return 0


def _import(args: argparse.Namespace) -> int:
    db = connect(args.url, data_dir=args.data_dir)
    docs = db.import_collection(args.file, collection=args.collection, format=args.format,
                                progress=None if not args.quiet else False)  # fmt: skip
    print(f"imported {args.file} into {docs.name!r}: {docs.count():,} documents, {docs.dimension} dimensions")
    print(f"next: vectorpg search \"your question\" --collection {docs.name}" if docs.embedder_name else
          "next: search it by vector from Python (it has no model to embed a text query)")  # fmt: skip
    db.close()
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the two commands to the ``vectorpg`` parser's subcommands."""
    for name, func, helptext in (
        ("export", _export, "write a collection to a .jsonl or .parquet file (ids, content, metadata, vectors)"),
        ("import", _import, "read an export file into a collection (created if missing), all or nothing"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        if name == "export":
            cmd.add_argument("collection", help="the collection to export")
            cmd.add_argument("file", help="the file to write: NAME.jsonl, or NAME.parquet (needs pyarrow)")
        else:
            cmd.add_argument("file", help="a file vectorpg export wrote")
            cmd.add_argument(
                "--collection", default=None, help="the collection to import into (default: the exported name)"
            )
        cmd.add_argument("--format", choices=["jsonl", "parquet"], default=None, help="default: from the file's suffix")
        cmd.add_argument("--quiet", action="store_true", help="no progress bar")
        cmd.set_defaults(func=func)

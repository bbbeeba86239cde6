"""``vectorpg search``: a collection searched by text from a shell (vector, hybrid, or diverse by MMR)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from vectorpg.database import connect
from vectorpg.errors import InvalidArgumentError


def _where(pairs: Sequence[str], raw: str | None) -> dict[str, Any]:
    """``--where key=value`` pairs (values read as JSON when they parse: numbers, true, null) and ``--filter``."""
    try:
        where: dict[str, Any] = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--filter is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("--filter is nested too deep (filters allow 32 levels)") from None
    if not isinstance(where, dict):
        raise InvalidArgumentError('--filter is a JSON object, for example \'{"year": {"$gte": 2020}}\'')
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"--where takes key=value, got {pair!r}")
        try:
            where[key] = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            where[key] = value  # not JSON (or absurdly nested): the text itself, which the filter checks
    return where


#: set by the search helper (:mod:`vectorpg.cli.helper`): databases kept open between searches, by where they are
KEPT: dict[tuple[Any, ...], Any] | None = None


def _database(args: argparse.Namespace) -> Any:
    if KEPT is None:
        return connect(args.url, data_dir=args.data_dir)
    key = (args.url, args.data_dir, os.environ.get("VECTORPG_URL"), os.environ.get("VECTORPG_DATA_DIR"), os.getcwd())
    if key not in KEPT:
        KEPT[key] = connect(args.url, data_dir=args.data_dir)
    return KEPT[key]


def _search(args: argparse.Namespace) -> int:
    db = _database(args)
    docs = db.collection(args.collection, create=False)
    where = _where(args.where, args.filter)
    # identical chunks (the same page installed under several names) are shown once: ask for more to fill k
    fetch = args.k if args.duplicates else min(4 * args.k, args.k + 50)
    extra: list[dict[str, Any]] = []
    if args.hybrid:
        hits: list[Any] = docs.hybrid_search(args.text, fetch, where=where or None)
        rows = [(h.id, h.score.score, h.content, h.metadata) for h in hits]
        extra = [
            {"vector_rank": h.score.vector_rank, "vector_distance": h.score.vector_distance,
             "text_rank": h.score.text_rank, "text_score": h.score.text_score}
            for h in hits
        ]  # fmt: skip
        label = "score"
    else:
        hits = docs.search(args.text, fetch, where=where or None, diversity=args.diversity)
        rows = [(h.id, h.distance, h.content, h.metadata) for h in hits]
        label = "distance"
    kept, same = _collapsed(rows, args.k, keep_all=args.duplicates)
    if args.json:
        out = [
            {"id": rows[i][0], label: rows[i][1], "content": rows[i][2], "metadata": rows[i][3]}
            | (extra[i] if extra else {})
            | ({"same_text": [rows[j][0] for j in same[i]]} if same[i] else {})
            for i in kept
        ]
        print(json.dumps(out, indent=2))
    else:
        for rank, i in enumerate(kept, 1):
            ident, value, content, meta = rows[i]
            snippet = " ".join((content or "").split())[:160]
            print(f"{rank:>2}. {label} {value:.4f}  {_source(ident, meta)}\n    {snippet}")
            if same[i]:
                print(f"    (the same text in: {', '.join(_source(*rows[j][::3]) for j in same[i])})")
        if not rows:
            total = docs.count()
            print(
                "no results: " + (f"no document matches the filter (the collection holds {total:,})" if where and total
                else f"the collection {args.collection!r} is empty; add documents with: vectorpg ingest PATH "
                f"--collection {args.collection}")
            )  # fmt: skip
    if KEPT is None:
        db.close()
    return 0


def _source(ident: str, meta: Any) -> str:
    """Where a hit comes from: its file (and heading) when ingested, else its id."""
    where_from = meta.get("source", ident) if isinstance(meta, dict) else ident
    heading = f" > {meta['heading']}" if isinstance(meta, dict) and meta.get("heading") else ""
    return f"{where_from}{heading}"


def _collapsed(rows: Sequence[tuple[Any, ...]], k: int, *, keep_all: bool) -> tuple[list[int], dict[int, list[int]]]:
    """The first ``k`` rows with distinct text (whitespace aside), best first, and for each the later rows with
    the same text; every row of the first ``k`` with ``keep_all``."""
    if keep_all:
        return list(range(min(k, len(rows)))), {i: [] for i in range(len(rows))}
    first: dict[str, int] = {}
    same: dict[int, list[int]] = {}
    for i, (_, _, content, _) in enumerate(rows):
        text = " ".join((content or "").split())
        if text in first:
            same[first[text]].append(i)
        else:
            first[text] = i
            same[i] = []
    return list(first.values())[:k], same


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``search`` to the ``vectorpg`` parser's subcommands."""
    search = sub.add_parser(
        "search",
        parents=[common],
        help="search a collection by text",
        description="Embed the text with the collection's model and print the nearest documents. --where "
        "key=value filters on metadata (values are read as JSON when they parse: 2024, true, null); "
        '--filter takes a whole JSON filter, for example \'{"year": {"$gte": 2020}}\'.',
    )
    search.add_argument("text", help="what to search for")
    search.add_argument("--collection", required=True, help="collection name")
    search.add_argument("-k", type=int, default=5, help="number of results (default: 5)")
    search.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="metadata filter")
    search.add_argument("--filter", default=None, metavar="JSON", help="a JSON filter (combined with --where)")
    search.add_argument("--hybrid", action="store_true", help="full text + vector, fused by rank (RRF)")
    search.add_argument(
        "--diversity", type=float, default=None, metavar="0..1",
        help="re-order the nearest by maximal marginal relevance: near-duplicates give way (e.g. 0.3)",
    )  # fmt: skip
    search.add_argument(
        "--duplicates", action="store_true",
        help="list hits with the same text one by one (by default a text is shown once, with where else it is)",
    )  # fmt: skip
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=_search)

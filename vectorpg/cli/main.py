"""The ``vectorpg`` command line.

Every command uses the embedded PostgreSQL unless ``--url`` (or ``$VECTORPG_URL``) names a server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vectorpg.cli import manage, quickstart, replica, search, transfer
from vectorpg.cli.serve import CLIENT_ROLE, PASSWORD_FILE, serve
from vectorpg.database import connect
from vectorpg.db.server import resolve_data_dir, status, stop
from vectorpg.errors import CollectionNotFoundError, InvalidArgumentError, VectorPgError
from vectorpg.own_schema.scripts import sql_dir, write_schema


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vectorpg")
    except PackageNotFoundError:  # a source tree that is not installed
        return "(not installed)"


def _connect(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    return connect(args.url, data_dir=args.data_dir)


def _cmd_quickstart(args: argparse.Namespace) -> int:

    start = time.perf_counter()
    db = _connect(args)
    print(f"database: {db!r} (ready in {time.perf_counter() - start:.1f} s)")
    quickstart.run(db, collection=args.collection, limit=args.limit, k=args.k, progress_bar=not args.no_progress)
    print(f"\ndone in {time.perf_counter() - start:.1f} s. Run it again: unchanged documents are not re-embedded.")
    stored = f"--url {args.url}" if args.url else f"(data in {db.server.data_dir})" if db.server else ""
    name, query = args.collection, "read a gzip file"
    steps = [
        f'vectorpg search "{query}" --collection {name} [--hybrid] [--diversity 0.3]   # from a shell',
        f'python -c "import vectorpg; print(vectorpg.connect().collection({name!r}).search({query!r}, k=3))"',
        "vectorpg serve   # then from psql: SELECT id FROM vectorpg.search(" + repr(name) + ", ...)",  # noqa: S608
        f"vectorpg collections   # what is stored {stored}".rstrip(),
    ]
    print("\nnext:\n" + "\n".join(f"  {step}" for step in steps))
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


def _cmd_ingest(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise InvalidArgumentError(f"no such file or folder: {', '.join(missing)}")
    db = _connect(args)
    docs = db.collection(args.collection)
    print(f"ingesting into {args.collection!r} ({docs.embedder_name}, {docs.dimension} dimensions)")
    report = docs.ingest(
        args.paths,
        glob=args.glob,
        sync=args.sync,
        max_tokens=args.max_tokens,
        overlap=args.overlap,
        progress=not args.no_progress,
    )
    print(report)
    db.close()
    return 0


def _cmd_collections(args: argparse.Namespace) -> int:
    db = _connect(args)
    names = db.collections()
    if not names:
        print("no collections")
    for name in names:
        docs = db.collection(name, embedder=None, create=False)
        indexes = ", ".join(
            f"{i.name} ({i.spec.method.method}, {i.size_bytes / 2**20:.1f} MiB)" for i in docs.indexes()
        )
        print(
            f"{name}: {docs.count():,} rows, model {docs.embedder_name or '(vectors only)'}, "
            f"{docs.dimension} dimensions, {docs.metric.metric.value}; indexes: {indexes or 'none (exact search)'}"
        )
    db.close()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:

    def ready(url: str) -> None:
        print(f"PostgreSQL + pgvector with vectorpg's schema is listening: {url}", flush=True)
        print(
            f"  psql {url}\n  export VECTORPG_URL={url}\n"
            f"The role {CLIENT_ROLE} (no superuser rights) owns vectorpg's schema; its password is kept in "
            f"{resolve_data_dir(args.data_dir) / PASSWORD_FILE} (mode 0600). Ctrl-C stops the server.",
            flush=True,
        )

    status = serve(args.data_dir, host=args.host, port=args.port, allow_remote=args.allow_remote, on_ready=ready)
    print(f"stopped (status {status})")
    return 0 if status == 0 else 1


def _cmd_status(args: argparse.Namespace) -> int:

    state = status(args.data_dir)
    if not state["running"]:
        print(f"no server runs on {state['data_dir']}. `vectorpg serve` starts one on a TCP port.")
        return 1
    users = ", ".join(map(str, state["users"])) or "none"
    print(
        f"PostgreSQL runs on {state['data_dir']}: pid {state['pid']}, port {state['port']}, socket in "
        f"{state['socket_dir']}; vectorpg processes using it: {users}. `vectorpg stop` stops it."
    )
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:

    data_dir = args.data_dir
    if stop(data_dir):
        print("stopped. Processes still using it start it again when they next connect.")
    else:
        print("no server was running.")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").exists():
        raise InvalidArgumentError(
            "the benchmark suite ships with vectorpg's source (benchmarks/): run this from a checkout"
        )
    command = [sys.executable, "-m", "benchmarks", "run", *(["--quick"] if args.quick else [])]
    if args.only:
        command += ["--only", args.only]
    return subprocess.call(command, cwd=root)


def _cmd_schema(args: argparse.Namespace) -> int:

    target = sql_dir() / "schema.sql"
    if args.check:
        current = write_schema(check=True)
        print(f"{target} is {'current' if current else 'out of date: run vectorpg schema'}")
        return 0 if current else 1
    write_schema()
    print(f"wrote {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectorpg",
        description="PostgreSQL + pgvector as a vector store. Uses an embedded PostgreSQL unless --url is given.",
    )
    parser.add_argument("--version", action="version", version=f"vectorpg {_version()}")
    local = argparse.ArgumentParser(add_help=False)  # the embedded server's commands take no --url
    local.add_argument(
        "--data-dir",
        help="data directory of the embedded server (default: $VECTORPG_DATA_DIR or a per-user directory)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[local])
    common.add_argument(
        "--url",
        help="postgresql:// URL of a server with pgvector (default: $VECTORPG_URL, else the embedded server)",
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

    ingest = sub.add_parser(
        "ingest",
        parents=[common],
        help="chunk, embed and store files and folders (Markdown, reStructuredText, HTML, text)",
        description="Read files and folders, split them into chunks by headings, paragraphs and sentences, "
        "embed the chunks with the collection's model (the packaged all-MiniLM-L6-v2 for a new collection) "
        "and store them with their source. Unchanged files write and embed nothing; a changed file's old "
        "chunks are replaced. Unreadable and binary files are reported and skipped.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files and folders")
    ingest.add_argument("--collection", required=True, help="collection name (created if missing)")
    ingest.add_argument("--glob", default="**/*", help="files to take from folders (default: **/*)")
    ingest.add_argument("--sync", action="store_true", help="also remove the chunks of files that are gone")
    ingest.add_argument("--max-tokens", type=int, default=None, help="chunk size in model tokens (default: 200)")
    ingest.add_argument("--overlap", type=int, default=None, help="tokens repeated between chunks (default: 32)")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(func=_cmd_ingest)

    search.add_command(sub, common)

    listing = sub.add_parser(
        "collections",
        parents=[common],
        help="list collections: rows, model, dimension, indexes and their sizes",
        description="List the collections with their row counts, models, dimensions, metrics and vector indexes.",
    )
    listing.set_defaults(func=_cmd_collections)

    transfer.add_commands(sub, common)
    manage.add_commands(sub, common)

    replica.add_command(sub, local)
    serve = sub.add_parser(
        "serve",
        parents=[local],
        help="run the embedded PostgreSQL on a TCP port in the foreground",
        description="Run the embedded PostgreSQL (its --data-dir) on HOST:PORT over TCP until Ctrl-C, with "
        "pgvector and vectorpg's schema and SQL functions installed, so that psql and other languages' "
        "drivers can connect. TCP clients log in as vectorpg_client (no superuser rights) with the password "
        "it prints; the superuser is reachable only through the data directory's unix socket.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5432, help="port (default: 5432)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (clients then connect from other machines, with the password)",
    )
    serve.set_defaults(func=_cmd_serve)

    state = sub.add_parser(
        "status", parents=[local], help="is the embedded server of --data-dir running, and who uses it"
    )
    state.set_defaults(func=_cmd_status)
    stopping = sub.add_parser("stop", parents=[local], help="stop the embedded server of --data-dir (a fast shutdown)")
    stopping.set_defaults(func=_cmd_stop)

    bench = sub.add_parser(
        "bench",
        help="run the benchmark suite against the peers (python -m benchmarks run)",
        description="Run the benchmark suite: ingest, query overhead, filtered search, ANN quality and speed, "
        "concurrency and growth with the number of vectors, against raw psycopg, pgvector-python's ORM, "
        "LangChain and Faiss, on a fresh embedded PostgreSQL. Writes benchmarks/RESULTS.md and plots (with "
        "--quick: benchmarks/RESULTS-quick.md, a smoke run of a few minutes).",
    )
    bench.add_argument("--quick", action="store_true", help="small synthetic data, a few minutes")
    bench.add_argument(
        "--only", default="", help="comma-separated subset: ingest,query,filtered,ann,concurrency,growth"
    )
    bench.set_defaults(func=_cmd_bench)

    schema = sub.add_parser(
        "schema",
        help="write sql/schema.sql from vectorpg's models (for vectorpg developers)",
        description="vectorpg's tables are declared once, in vectorpg/own_schema/tables.py; sql/schema.sql, which "
        "Database.setup(), the Alembic migrations and psql apply, is generated from them. Run this after "
        "changing the models. With --check, exit with status 1 when the file is out of date (for CI).",
    )
    schema.add_argument("--check", action="store_true", help="only check")
    schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorpg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except CollectionNotFoundError as exc:  # the command to run, not the Python call
        print(
            f"vectorpg: error: collection {exc.name!r} does not exist; create it with: vectorpg ingest PATH "
            f"--collection {exc.name} (vectorpg collections lists the ones there are)",
            file=sys.stderr,
        )
        return 2
    except VectorPgError as exc:
        print(f"vectorpg: error: {exc}", file=sys.stderr)
        return 2

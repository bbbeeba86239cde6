"""The quickstart: index the Python standard library's documentation and search it.

The corpus is on every machine that has Python: the docstrings of the standard library's modules and of
the public classes, functions and methods they define, found by importing each module and introspecting
it. Each docstring is one document, with metadata ``module``, ``kind`` (module / class / function /
method) and ``name``. Documents are sorted by id, so a ``limit`` takes the same subset on every machine.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vectorpg.indexes import HNSW

# Modules that open windows, play sounds, print on import, or exist only on other platforms.
_SKIP = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "test",
    "msvcrt",
    "winreg",
    "winsound",
    "nt",
    "msilib",
    "xxsubtype",
    "xxlimited",
}
#: a cosine distance past which an all-MiniLM-L6-v2 hit is rarely on the topic of the query
FAR = 0.6
MAX_CHARS = 1000  # all-MiniLM-L6-v2 reads 256 word pieces (about 1,000 characters) and truncates the rest


@dataclass(frozen=True)
class DocItem:
    """One docstring of the corpus."""

    id: str
    text: str
    metadata: dict[str, str]


def _import_quietly(name: str) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)


def _item(module: str, kind: str, name: str, obj: Any) -> DocItem | None:
    doc = inspect.getdoc(obj)
    if not doc or not doc.strip():
        return None
    text = f"{name}: {doc.strip()}"[:MAX_CHARS]
    return DocItem(id=name, text=text, metadata={"module": module, "kind": kind, "name": name})


def _module_items(module_name: str, module: Any) -> Iterator[DocItem]:
    item = _item(module_name, "module", module_name, module)
    if item:
        yield item
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        qualified = f"{module_name}.{attr}"
        if inspect.isclass(obj):
            if item := _item(module_name, "class", qualified, obj):
                yield item
            for method_name, method in sorted(vars(obj).items()):
                if method_name.startswith("_"):
                    continue
                if (inspect.isfunction(method) or inspect.ismethoddescriptor(method)) and (
                    item := _item(module_name, "method", f"{qualified}.{method_name}", method)
                ):
                    yield item
        elif (inspect.isfunction(obj) or inspect.isbuiltin(obj)) and (
            item := _item(module_name, "function", qualified, obj)
        ):
            yield item


def stdlib_corpus(limit: int | None = None) -> list[DocItem]:
    """Docstrings of the standard library (about 4,000 on CPython 3.11), sorted by id; first ``limit``."""
    items: dict[str, DocItem] = {}
    for module_name in sorted(sys.stdlib_module_names):
        if module_name.startswith("_") or module_name in _SKIP:
            continue
        try:
            module = _import_quietly(module_name)
        except BaseException:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. typing.io warns when its docstring is read
            for item in _module_items(module_name, module):
                items.setdefault(item.id, item)
        # ids start with their module's name, so every id of this module sorts before the next module's:
        # the first `limit` ids are all read once `limit` items are
        if limit is not None and len(items) >= limit:
            break
    ordered = [items[k] for k in sorted(items)]
    return ordered[:limit] if limit is not None else ordered


EXAMPLE_QUERIES: list[tuple[str, dict[str, Any] | None]] = [
    ("parse command line arguments", None),
    ("compute a SHA-256 hash of some bytes", None),
    ("read and write CSV files", None),
    ("run a function in a background thread", {"kind": "class"}),
    ("join two file system paths", {"module": {"$in": ["os", "pathlib", "posixpath"]}}),
]


def run(
    db: Any,
    *,
    collection: str = "stdlib_docs",
    limit: int | None = None,
    k: int = 3,
    out: Callable[[str], None] = print,
    progress_bar: bool = True,
) -> dict[str, float]:
    """Index the corpus into ``collection`` and run the example searches; return timings in seconds."""
    from tqdm import tqdm

    timings: dict[str, float] = {}
    start = time.perf_counter()
    corpus = stdlib_corpus(limit)
    timings["corpus"] = time.perf_counter() - start
    out(
        f"corpus: {len(corpus)} docstrings from the Python {sys.version.split()[0]} standard library "
        f"({timings['corpus']:.1f} s)"
    )

    start = time.perf_counter()
    docs = db.collection(collection)
    timings["open"] = time.perf_counter() - start
    out(f"collection: {docs!r}")

    start = time.perf_counter()
    with tqdm(total=len(corpus), desc="embedding", unit="doc", disable=not progress_bar) as bar:
        docs.upsert(
            [d.text for d in corpus],
            ids=[d.id for d in corpus],
            metadata=[d.metadata for d in corpus],
            progress=bar.update,
        )
    timings["index"] = time.perf_counter() - start
    total = docs.count()
    out(f"indexed: {total} documents in {timings['index']:.1f} s (unchanged documents are not embedded again)")

    start = time.perf_counter()
    if not any(info.valid for info in docs.indexes()):  # built after the bulk load: faster than row by row
        with tqdm(total=100, desc="HNSW index", unit="%", disable=not progress_bar) as bar:

            def show(reading: Any) -> None:
                if reading.fraction is not None:
                    bar.n = round(100 * reading.fraction)
                    bar.set_postfix_str(reading.phase)
                    bar.refresh()

            docs.create_index(HNSW(), progress=show)
    timings["hnsw"] = time.perf_counter() - start
    for info in docs.indexes():
        out(
            f"vector index: {info.name} ({info.spec.method.method}, {info.spec.metric.value}, "
            f"{info.size_bytes / 1e6:.1f} MB, built in {timings['hnsw']:.1f} s)"
        )

    if docs.embedder is not None:  # load the model now, so that the search timings are the searches'
        start = time.perf_counter()
        docs.embedder.embed(["warm up"])
        timings["model"] = time.perf_counter() - start
    distances: list[float] = []
    for query, where in EXAMPLE_QUERIES:
        start = time.perf_counter()
        hits = docs.search(query, k=k, where=where)
        distances += [hit.distance for hit in hits]
        elapsed = time.perf_counter() - start
        label = f"{query!r}" + (f" where {where}" if where else "")
        out(f"\nsearch {label}  ({elapsed * 1000:.1f} ms, embedding included)")
        for hit in hits:
            first_line = (hit.content or "").split("\n", 1)[0][:90]
            out(f"  {hit.distance:.3f}  {hit.id:<40} {first_line}")
        timings[f"search:{query}"] = elapsed
    if limit is not None:
        far = sum(1 for d in distances if d > FAR)
        out(
            f"\nnote: --limit {limit} indexed only the first {len(corpus):,} docstrings (sorted by name) of about "
            f"4,000, so these answers come from that part alone"
            + (
                f"; {far} of the hits above are more than {FAR} away (cosine), which usually means off-topic"
                if far
                else ""
            )
            + ". Run without --limit to index the whole corpus."
        )
    return timings

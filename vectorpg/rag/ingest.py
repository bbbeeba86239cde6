"""Ingest files and folders into a collection: read → chunk → embed in batches → binary COPY.

::

    report = docs.ingest("handbook/", glob="**/*.md", sync=True)
    print(report)   # files, chunks, new / updated / unchanged / removed, embed and store time

* **Formats.** Markdown (``.md``, ``.markdown``), reStructuredText (``.rst``, ``.rst.txt``), HTML
  (``.html``, ``.htm``: text extracted with BeautifulSoup, headings kept as headings) and plain text (any
  other file the glob matches). A binary, non-UTF-8, empty or unreadable file is reported in
  ``report.skipped`` and the run goes on.
* **Nothing twice.** A chunk's id derives from its source, position and content hash, so an unchanged
  file writes nothing and embeds nothing; text a model embedded before, in any collection, comes from
  the embedding cache (:mod:`vectorpg.cache`).
* **No orphans.** When a file changed, its new chunks are written and its old ones removed in the same
  transaction. With ``sync=True``, the chunks of files that are gone from the ingested folders (or were
  given by name and no longer exist) are removed too.

Each chunk's metadata links it back: ``source`` (the file's absolute path), ``chunk`` (its position),
``start`` / ``end`` (character offsets in the file's text: the extracted text for HTML), ``heading``,
``tokens``, plus any ``metadata`` given to :meth:`~vectorpg.rag.DocumentCollection.ingest`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, not_, select
from sqlalchemy.sql.elements import ColumnElement

from vectorpg.db.writes import key_in
from vectorpg.errors import InvalidArgumentError, MissingDependencyError, UnreadableFileError
from vectorpg.own_schema.tables import documents_table
from vectorpg.progress import progress_bar
from vectorpg.rag.chunking import Chunk, Chunker
from vectorpg.rag.fingerprints import FileFacts, file_facts, refresh, settings_key, stored_facts
from vectorpg.rag.report import IngestReport
from vectorpg.store.batches import DocumentBatch, WriteBehind

if TYPE_CHECKING:
    from vectorpg.store.collection import Collection

_FORMATS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".html": "html", ".htm": "html"}
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_BLOCKS = (
    "p", "div", "section", "article", "li", "dt", "dd", "blockquote", "tr", "table", "ul", "ol", "dl",
    "figcaption", "caption", "header", "footer", "main", "aside", "br", "hr",
)  # fmt: skip


def file_format(path: Path) -> str:
    """``markdown``, ``rst``, ``html`` or ``text``, from the file name (``x.rst.txt`` is reStructuredText)."""
    name = path.name.lower()
    if name.endswith(".rst.txt"):
        return "rst"
    return _FORMATS.get(path.suffix.lower(), "text")


def html_to_text(html: str) -> str:
    """The readable text of an HTML page, with ``h1``-``h6`` as Markdown headings and ``pre`` as fenced
    code (so that chunking sees the structure). Scripts, styles and navigation are dropped."""
    try:
        from bs4 import BeautifulSoup
    except ImportError as exc:
        raise MissingDependencyError("beautifulsoup4", "ingest", "reading HTML") from exc

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "svg", "head"]):
        tag.decompose()
    for tag in soup.find_all(_HEADINGS):
        title = " ".join(tag.get_text(" ").split())
        tag.replace_with(f"\n\n{'#' * int(tag.name[1])} {title}\n\n" if title else "\n\n")
    for tag in soup.find_all("pre"):
        tag.replace_with(f"\n\n```\n{tag.get_text().strip(chr(10))}\n```\n\n")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    text = soup.get_text()
    lines = [" ".join(line.split()) if not line.startswith("    ") else line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


@dataclass(frozen=True)
class SourceText:
    """A document's text, ready to chunk."""

    source: str
    text: str
    fmt: str
    #: of the file's bytes
    sha256: str = ""


def read_document(path: str | Path) -> SourceText:
    """Read one file as text (see the module for formats); :class:`UnreadableFileError` says why not."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(str(file), f"cannot be read ({exc.strerror or exc})") from exc
    if b"\x00" in data[:8192]:
        raise UnreadableFileError(str(file), "binary file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(str(file), f"not UTF-8 text (byte {exc.start})") from exc
    fmt = file_format(file)
    if fmt == "html":
        text, fmt = html_to_text(text), "markdown"
    if not text.strip():
        raise UnreadableFileError(str(file), "empty")
    return SourceText(str(file.resolve()), text, fmt, hashlib.sha256(data).hexdigest())


def collect_files(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], glob: str = "**/*"
) -> tuple[list[Path], list[Path]]:
    """The files to ingest (sorted, so runs are deterministic) and the folders they came from."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InvalidArgumentError("ingest needs at least one file or folder")
    files: dict[Path, None] = {}
    folders: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            folders.append(path.resolve())
            for found in sorted(path.glob(glob)):
                if any(part.startswith(".") for part in found.relative_to(path).parts):
                    continue  # hidden files and folders (.git, .venv...)
                if found.is_file():
                    files[found.resolve()] = None
                elif found.is_symlink():  # a broken link: reported as unreadable
                    files[found.absolute()] = None
        elif path.is_file():
            files[path.resolve()] = None
        elif not path.exists():
            files[path.resolve()] = None  # reported as unreadable; with sync, its chunks are removed
        else:
            raise InvalidArgumentError(f"{path} is neither a file nor a folder")
    return list(files), folders


@dataclass
class ChunkGroup:
    """The chunks of some documents, written together (and their sources' stale chunks removed)."""

    sources: list[str] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    #: each source's facts, kept with its chunks (vectorpg.rag.fingerprints)
    files: dict[str, FileFacts] = field(default_factory=dict)


def ingest(
    collection: Collection,
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    glob: str = "**/*",
    sync: bool = False,
    chunker: Chunker | None = None,
    metadata: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> IngestReport:
    """Ingest files and folders into ``collection``; see the module. Returns an :class:`IngestReport`."""
    started = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    chunker = chunker or default_chunker(collection)
    files, folders = collect_files(paths, glob)
    report = IngestReport()
    extra = dict(metadata or {})
    bar = progress_bar(total=len(files), desc=f"ingest into {collection.name}", unit="file", disable=not progress)
    pending = ChunkGroup()
    present: set[str] = set()
    seen = Seen(stored_facts(collection), settings_key(chunker, collection.embedder_name, extra))
    try:
        with WriteBehind() as behind:  # group n is written while group n+1 is read, chunked and embedded
            for document, stat in _read_all(files, report, seen, present, bar):
                tick = time.perf_counter()
                pending.sources.append(document.source)
                chunks = chunker.split(document.text, document.source, document.fmt)
                pending.chunks.extend(chunks)
                pending.files[document.source] = file_facts(stat, document.sha256, seen.settings, len(chunks))
                report.read_seconds += time.perf_counter() - tick
                bar.update(1)
                if len(pending.chunks) >= batch_size:
                    write_chunks(collection, pending, extra, report, behind, _show(bar, report))
                    pending = ChunkGroup()
            write_chunks(collection, pending, extra, report, behind, _show(bar, report))
        if seen.touched:
            with collection.session_factory() as session, session.begin():
                refresh(session, collection, seen.touched)
        bar.update(len(files) - bar.n)
        if sync:
            _remove_missing(collection, files, folders, present, report)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report


def default_chunker(collection: Collection) -> Chunker:
    """Chunks of at most 200 tokens of the collection's embedder (fewer if its model reads fewer), with
    the default overlap; four characters per token when the embedder has no tokenizer."""
    embedder = collection.embedder
    limit = getattr(embedder, "max_tokens", None) if embedder is not None else None
    counter = getattr(embedder, "count_tokens", None) if embedder is not None else None
    return Chunker(min(200, int(limit)) if limit else 200, None, counter)


@dataclass
class Seen:
    """The facts of the files ingest wrote before, the settings key of this run, and the files whose bytes
    are unchanged under a new mtime (their facts are refreshed at the end)."""

    known: dict[str, FileFacts]
    settings: str
    touched: dict[str, FileFacts] = field(default_factory=dict)


def _read_all(
    files: Sequence[Path], report: IngestReport, seen: Seen, present: set[str], bar: Any
) -> Iterator[tuple[SourceText, os.stat_result]]:
    """The documents to chunk, with their ``stat``; an unchanged file is counted and skipped: by size and
    mtime before it is read, or by its hash before it is chunked."""
    for path in files:
        tick = time.perf_counter()
        try:
            source, stat = str(path.resolve()), path.stat()
            old = seen.known.get(source)
            current = old is not None and old.settings == seen.settings
            if current and old is not None and old.same_stat(stat):
                _unchanged(report, present, source, old, bar)
                continue
            document = read_document(path)
            if current and old is not None and old.sha256 == document.sha256:
                seen.touched[source] = file_facts(stat, document.sha256, seen.settings, old.chunks)
                _unchanged(report, present, source, old, bar)
                continue
        except OSError as exc:
            report.skipped.append((str(path), f"cannot be read ({exc.strerror or exc})"))
            continue
        except UnreadableFileError as exc:
            report.skipped.append((exc.path, exc.reason))
            continue
        finally:
            report.read_seconds += time.perf_counter() - tick
        report.files += 1
        present.add(document.source)
        yield document, stat


def _unchanged(report: IngestReport, present: set[str], source: str, facts: FileFacts, bar: Any) -> None:
    report.files += 1
    report.unchanged_files += 1
    report.chunks += facts.chunks
    report.unchanged += facts.chunks
    present.add(source)
    bar.update(1)


def _show(bar: Any, report: IngestReport) -> Callable[[int], None]:
    """The bar's counts, moved as each model batch is embedded (not once a group of files is written)."""
    done = [report.embedded]

    def embedded(n: int) -> None:
        done[0] += n
        bar.set_postfix(chunks=report.chunks, embedded=done[0], stored=report.new + report.updated)

    return embedded


def write_chunks(
    collection: Collection,
    pending: ChunkGroup,
    extra: dict[str, Any],
    report: IngestReport,
    behind: WriteBehind,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Embed the chunks of a group of files here (``progress`` told of each model batch), then write them and
    drop their stale chunks, in one transaction, on ``behind``'s thread."""
    if not pending.sources:
        return
    chunks = pending.chunks
    report.chunks += len(chunks)
    tick = time.perf_counter()
    batch = collection.prepare_batch(
        [c.text for c in chunks],
        ids=[c.id for c in chunks],
        metadata=[{**extra, **c.metadata(), **_file_of(pending, c.source)} for c in chunks],
        progress=progress,
    )
    report.embed_seconds += time.perf_counter() - tick
    report.embedded += batch.embedded
    report.cached += batch.cached
    report.unchanged += batch.unchanged
    behind.submit(_store_chunks, collection, pending, batch, report)


def _store_chunks(collection: Collection, pending: ChunkGroup, batch: DocumentBatch, report: IngestReport) -> None:
    tick = time.perf_counter()
    chunks = pending.chunks
    docs = documents_table
    with collection.session_factory() as session, session.begin():
        written = [row[1] for row in batch.rows] + [i for i, _ in batch.metadata_only]
        report.updated += sum(1 for i in written if i in batch.existing)
        report.new += sum(1 for i in written if i not in batch.existing)
        kept = {i for i in batch.existing}
        collection.write_batch(session, batch)
        by_source: dict[str, list[str]] = {source: [] for source in pending.sources}
        for chunk in chunks:
            by_source[chunk.source].append(chunk.id)
        for source, ids in by_source.items():
            stale = delete(docs).where(
                docs.c.collection == collection.name,
                docs.c.metadata.contains({"source": source}),
                written_by_ingest(),
                not_(key_in(docs.c.id, ids)) if ids else docs.c.id.is_not(None),
            )
            removed = int(session.execute(stale).rowcount)  # type: ignore[attr-defined]
            report.removed += removed
            report.note_file(source, known=bool(removed) or any(i in kept for i in ids))
    report.store_seconds += time.perf_counter() - tick


def _file_of(pending: ChunkGroup, source: str) -> dict[str, Any]:
    """``{"file": facts}`` for a chunk of a file (a text given as a string has none)."""
    facts = pending.files.get(source)
    return {"file": facts.as_json()} if facts is not None else {}


def written_by_ingest() -> ColumnElement[bool]:
    """True for the rows ingest wrote: their id is the chunk id (chunking.chunk_id) of their own source,
    position and text. A document that only names a ``source`` in its metadata is never removed."""
    meta = documents_table.c.metadata
    key = func.concat_ws("\x1f", meta["source"].astext, meta["chunk"].astext, documents_table.c.content_hash)
    derived = func.left(func.encode(func.sha256(func.convert_to(key, "UTF8")), "hex"), 32)
    return documents_table.c.id == derived


def _remove_missing(
    collection: Collection, files: list[Path], folders: list[Path], present: set[str], report: IngestReport
) -> None:
    """Sync: delete the chunks of sources under the ingested folders (or named files) that are gone."""
    docs = documents_table
    source = docs.c.metadata["source"].astext
    named = {str(f) for f in files}
    tick = time.perf_counter()
    with collection.session_factory() as session, session.begin():
        stored = session.scalars(select(func.distinct(source)).where(docs.c.collection == collection.name))
        gone = []
        for name in stored:
            if name is None or name in present:
                continue
            inside = any(Path(name).is_relative_to(folder) for folder in folders)
            if (inside or name in named) and not Path(name).exists():
                gone.append(name)
        for name in gone:
            result = session.execute(
                delete(docs).where(
                    docs.c.collection == collection.name,
                    docs.c.metadata.contains({"source": name}),
                    written_by_ingest(),
                )
            )
            report.removed += int(result.rowcount)  # type: ignore[attr-defined]
    report.store_seconds += time.perf_counter() - tick

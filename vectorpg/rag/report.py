"""What an ingest did (:class:`IngestReport`): files read, unchanged, new and changed (named), chunks written,
kept and removed, texts embedded, and where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field

#: files named in the report's lines, at most (the report's lists hold them all)
MAX_NAMED = 10


@dataclass
class IngestReport:
    """What an ingest did."""

    files: int = 0
    #: files recognised as unchanged before they were chunked (vectorpg.rag.fingerprints)
    unchanged_files: int = 0
    chunks: int = 0
    #: chunks written for the first time / rewritten (text or metadata changed) / left as they were
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    #: chunks deleted: stale chunks of changed files, and (sync) chunks of files that are gone
    removed: int = 0
    #: texts the model embedded, and texts whose vector came from the embedding cache
    embedded: int = 0
    cached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: files read and written: seen before (their chunks replaced as needed) / never seen before
    changed_files: list[str] = field(default_factory=list)
    new_files: list[str] = field(default_factory=list)
    read_seconds: float = 0.0
    embed_seconds: float = 0.0
    store_seconds: float = 0.0
    seconds: float = 0.0

    def note_file(self, source: str, *, known: bool) -> None:
        """Count a file whose chunks were written: one the collection held before, or a new one."""
        (self.changed_files if known else self.new_files).append(source)

    def __str__(self) -> str:
        rate = self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0
        lines = [
            f"files: {self.files - self.unchanged_files} read"
            + (f", {self.unchanged_files} unchanged (not chunked again)" if self.unchanged_files else "")
            + f", {len(self.skipped)} skipped"
            + (f"; {len(self.new_files)} new" if self.new_files else "")
            + (f"; {len(self.changed_files)} changed" if self.changed_files else ""),
            f"chunks: {self.chunks} ({self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed)"
            + (
                ": an edited passage is a new chunk, the one it replaces is removed"
                if self.new and self.removed
                else ""
            ),
            f"embedded: {self.embedded} texts in {self.embed_seconds:.1f} s ({rate:.0f}/s), "
            f"{self.cached} from the cache",
            f"time: read+chunk {self.read_seconds:.1f} s, embed {self.embed_seconds:.1f} s, "
            f"store {self.store_seconds:.1f} s, total {self.seconds:.1f} s",
        ]
        for label, names in (("changed", self.changed_files), ("new", self.new_files)):
            if names:
                shown = ", ".join(names[:MAX_NAMED]) + (
                    f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
                )
                lines.append(f"{label}: {shown}")
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)

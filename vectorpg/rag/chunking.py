"""Split documents into chunks for embedding: by structure first, measured in the embedder's tokens.

::

    chunks = chunk_text(markdown, source="docs/guide.md", max_tokens=200, overlap=32,
                        count_tokens=embedder.count_tokens, fmt="markdown")

1. **Sections.** Headings cut the document into sections (Markdown through markdown-it-py, so headings
   inside code blocks are not headings; reStructuredText by its underlined / overlined titles). Each
   chunk keeps the path of headings it sits under (``"Guide > Install > Linux"``) and never spans two
   sections.
2. **Paragraphs, sentences, words.** Within a section, paragraphs (blank-line separated) are packed
   into chunks of at most ``max_tokens``; a paragraph too long for one chunk is split into sentences,
   and a sentence too long into runs of words.
3. **Overlap.** A chunk after the first of its section starts with the last whole sentences of the
   previous chunk, up to ``overlap`` tokens (default: 32, or a quarter of ``max_tokens`` if less), so
   that a thought cut at a boundary is seen whole once.

Sizes are counted with ``count_tokens`` (the embedder's tokenizer); without one, four characters count
as a token. Offsets are character offsets into the text given (chunk text is ``text[start:end]``), and
ids are derived from the source, the position and the content hash: the same input always gives the
same chunks with the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vectorpg.errors import InvalidArgumentError, MissingDependencyError
from vectorpg.store.embedding_cache import content_hash

FORMATS = ("markdown", "rst", "text")
TokenCounter = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=\S)")
_WORD = re.compile(r"\S+")
_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")


def approximate_tokens(text: str) -> int:
    """Four characters count as one token (used when no tokenizer is given)."""
    return (len(text) + 3) // 4


def chunk_id(source: str, index: int, text: str) -> str:
    """The id of chunk ``index`` of ``source`` with this text: stable across runs."""
    return hashlib.sha256(f"{source}\x1f{index}\x1f{content_hash(text)}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, with the way back to it."""

    id: str
    text: str
    source: str
    #: position of the chunk in its document (0, 1, 2...)
    index: int
    #: character offsets of ``text`` in the document's text
    start: int
    end: int
    #: the headings the chunk sits under, outermost first, joined by " > " (``None`` before any heading)
    heading: str | None
    tokens: int

    def metadata(self) -> dict[str, Any]:
        """What the store keeps with the chunk (its link back to the source)."""
        return {
            "source": self.source,
            "chunk": self.index,
            "start": self.start,
            "end": self.end,
            "heading": self.heading,
            "tokens": self.tokens,
        }


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    heading: str | None


def _markdown_sections(text: str) -> list[_Section]:
    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise MissingDependencyError("markdown-it-py", "ingest", "chunking Markdown") from exc

    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    tokens = MarkdownIt("commonmark").parse(text)
    found: list[tuple[int, int, int, str]] = []  # (level, heading start, body start, title)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            level = int(token.tag[1])
            found.append((level, offsets[token.map[0]], offsets[min(token.map[1], len(lines))], title))
    return _sections_from(text, found)


def _rst_sections(text: str) -> list[_Section]:
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use: their level
    found: list[tuple[int, int, int, str]] = []
    i = 0
    while i + 1 < len(lines):
        title, under = lines[i].rstrip(), lines[i + 1].rstrip()
        over = i > 0 and bool(_RST_ADORNMENT.match(lines[i - 1].rstrip()))
        match = _RST_ADORNMENT.match(under)
        if title.strip() and not _RST_ADORNMENT.match(title) and match and len(under) >= len(title.strip()):
            style = (match.group(1), over)
            if style not in styles:
                styles.append(style)
            start = offsets[i - 1] if over else offsets[i]
            found.append((styles.index(style) + 1, start, offsets[i + 2], title.strip()))
            i += 2
            continue
        i += 1
    return _sections_from(text, found)


def _sections_from(text: str, headings: list[tuple[int, int, int, str]]) -> list[_Section]:
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    if not headings or headings[0][1] > 0:
        sections.append(_Section(0, headings[0][1] if headings else len(text), None))
    for n, (level, _, body, title) in enumerate(headings):
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
        end = headings[n + 1][1] if n + 1 < len(headings) else len(text)
        sections.append(_Section(body, end, " > ".join(t for _, t in stack if t)))
    return sections


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The pieces of ``text[start:end]`` between matches of ``pattern``, as trimmed (start, end) offsets."""
    position = start
    for match in pattern.finditer(text, start, end):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


class Chunker:
    """Chunking settings; :meth:`split` cuts one document. See the module for the method."""

    def __init__(
        self, max_tokens: int = 200, overlap: int | None = None, count_tokens: TokenCounter | None = None
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 8:
            raise InvalidArgumentError(f"max_tokens must be an integer >= 8, got {max_tokens!r}")
        if overlap is None:
            overlap = min(32, max_tokens // 4)
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= max_tokens // 2:
            raise InvalidArgumentError(f"overlap must be an integer from 0 to max_tokens / 2, got {overlap!r}")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.count = count_tokens or approximate_tokens

    def split(self, text: str, source: str = "", fmt: str = "text") -> list[Chunk]:
        """The chunks of one document (``fmt``: ``markdown``, ``rst`` or ``text``)."""
        if fmt not in FORMATS:
            raise InvalidArgumentError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if fmt == "markdown":
            sections = _markdown_sections(text)
        elif fmt == "rst":
            sections = _rst_sections(text)
        else:
            sections = [_Section(0, len(text), None)]
        ranges: list[tuple[int, int, str | None]] = []
        for section in sections:
            ranges.extend((s, e, section.heading) for s, e in self._section_chunks(text, section))
        return [
            Chunk(chunk_id(source, i, text[s:e]), text[s:e], source, i, s, e, heading, self.count(text[s:e]))
            for i, (s, e, heading) in enumerate(ranges)
        ]

    def _units(self, text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Paragraphs that fit, else their sentences, else runs of words: ``(start, end, tokens)``."""
        for p_start, p_end in _spans(_PARAGRAPH_BREAK, text, start, end):
            tokens = self.count(text[p_start:p_end])
            if tokens <= self.max_tokens:
                yield p_start, p_end, tokens
                continue
            for s_start, s_end in _spans(_SENTENCE_END, text, p_start, p_end):
                tokens = self.count(text[s_start:s_end])
                if tokens <= self.max_tokens:
                    yield s_start, s_end, tokens
                else:
                    yield from self._word_runs(text, s_start, s_end)

    def _word_runs(self, text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """Runs of whole words of at most ``max_tokens``; a single longer "word" is cut where it fits."""
        position = start
        while position < end:
            run_end = None
            for word in _WORD.finditer(text, position, end):
                if self.count(text[position : word.end()]) > self.max_tokens:
                    break
                run_end = word.end()
            if run_end is None:  # the first word alone is longer than a chunk: the longest prefix that fits
                low, high = position + 1, min(end, position + self.max_tokens * 8)
                while low < high:
                    middle = (low + high + 1) // 2
                    low, high = (
                        (middle, high) if self.count(text[position:middle]) <= self.max_tokens else (low, middle - 1)
                    )
                run_end = low
            yield position, run_end, self.count(text[position:run_end])
            position = run_end
            while position < end and text[position].isspace():
                position += 1

    def _overlap_start(self, text: str, start: int, end: int) -> int | None:
        """Where the last whole sentences of ``text[start:end]`` totalling at most ``overlap`` tokens begin."""
        if self.overlap == 0:
            return None
        chosen = None
        total = 0
        for s_start, s_end in reversed(list(_spans(_SENTENCE_END, text, start, end))):
            total += self.count(text[s_start:s_end])
            if total > self.overlap:
                break
            chosen = s_start
        return chosen if chosen is not None and chosen > start else None

    def _section_chunks(self, text: str, section: _Section) -> Iterator[tuple[int, int]]:
        chunk_start: int | None = None
        chunk_end = 0
        budget = 0
        for u_start, u_end, tokens in self._units(text, section.start, section.end):
            if chunk_start is not None and budget + tokens <= self.max_tokens:
                chunk_end = u_end
                budget += tokens
                continue
            if chunk_start is not None:
                yield chunk_start, chunk_end
                carried = self._overlap_start(text, chunk_start, chunk_end)
                if carried is not None and self.count(text[carried:chunk_end]) + tokens <= self.max_tokens:
                    chunk_start, budget = carried, self.count(text[carried:chunk_end]) + tokens
                    chunk_end = u_end
                    continue
            chunk_start, chunk_end, budget = u_start, u_end, tokens
        if chunk_start is not None:
            yield chunk_start, chunk_end


def chunk_text(
    text: str,
    *,
    source: str = "",
    max_tokens: int = 200,
    overlap: int | None = None,
    count_tokens: TokenCounter | None = None,
    fmt: str = "text",
) -> list[Chunk]:
    """Split ``text`` into :class:`Chunk` objects (see the module)."""
    return Chunker(max_tokens, overlap, count_tokens).split(text, source, fmt)
